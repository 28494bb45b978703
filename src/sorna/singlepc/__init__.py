"""Sorna on one PC: ``sorna up`` / ``sorna down`` / ``sorna status`` (the ``sorna`` package).

:mod:`.cli` holds the commands (registered with the client CLI through the
``sorna.cli_commands`` entry-point group), :mod:`.supervisor` the process that runs the stack,
:mod:`.config` the settings and the data folder's layout, :mod:`.state` its lock and state.
"""
