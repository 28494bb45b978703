"""The pytest plugin every Sorna package's tests use (registered as the ``sorna`` pytest11 entry point)."""
