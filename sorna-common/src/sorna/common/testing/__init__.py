"""Sorna's test harness: real servers started on free ports, for every package's tests."""
