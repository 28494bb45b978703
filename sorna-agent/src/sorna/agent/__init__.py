"""Sorna agent."""

__version__ = "2.0.0"
