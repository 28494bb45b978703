"""The pytest plugin of every Sorna package (the ``sorna`` pytest11 entry point)."""
