"""The shell kernel daemon: each snippet is a bash script run in the work dir."""

import shutil
from pathlib import Path

from sorna.repl.daemon import serve
from sorna.repl.runner import SubprocessBackend

BASH = shutil.which("bash") or "/bin/bash"


class ShellBackend(SubprocessBackend):
    """Query mode runs the snippet with bash; batch exec ``*`` runs main.sh or ./main."""

    lang = "shell"
    source_name = "main.sh"
    tty_argv = (BASH, "-i")

    def query_commands(self, source: Path) -> tuple[list[str] | None, list[str]]:
        return None, [BASH, str(source)]

    def default_exec(self) -> list[str] | None:
        if (self.io.workdir / "main.sh").is_file():
            return [BASH, "main.sh"]
        return super().default_exec()


if __name__ == "__main__":
    serve(ShellBackend())
