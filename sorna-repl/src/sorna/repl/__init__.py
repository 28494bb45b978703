"""Sorna repl."""

__version__ = "2.0.0"
