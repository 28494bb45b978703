"""Batch mode: `exec *` runs this file."""

print("batch hello from main.py")
