"""Sorna manager."""

__version__ = "2.0.0"
