"""Write the ``sorna`` client's configuration file for the single-PC stack."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from sorna.client.config import default_config_path

#: First line of a file written here (one without it is the user's own and is kept aside).
MARKER = "# Written by `sorna up`"


def write_client_config(
    endpoint: str, keypair: Mapping[str, str], data_dir: Path
) -> tuple[Path, Path | None]:
    """Point the client at ``endpoint`` with ``keypair``; return the file and any backup.

    The file is the client's own default (``$XDG_CONFIG_HOME/sorna/client.toml``, else
    ``~/.config/sorna/client.toml``, or ``$SORNA_CLIENT_CONFIG``). A file not written by
    ``sorna up`` is renamed to ``client.toml.bak`` first.
    """
    path = default_config_path()
    text = (
        f"{MARKER} for the stack in {data_dir}\n"
        f'endpoint = "{endpoint}"\n'
        f'access_key = "{keypair["access_key"]}"\n'
        f'secret_key = "{keypair["secret_key"]}"\n'
    )
    backup: Path | None = None
    try:
        old = path.read_text()
    except FileNotFoundError:
        old = None
    if old is not None and old != text and not old.startswith(MARKER):
        backup = path.with_name(path.name + ".bak")
        path.replace(backup)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path, backup
