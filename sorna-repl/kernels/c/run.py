"""The c kernel daemon: gcc-compiled snippets and batch builds, run as child processes."""

from pathlib import Path

from sorna.repl.daemon import serve
from sorna.repl.runner import SubprocessBackend


class CBackend(SubprocessBackend):
    """Query mode compiles the snippet with gcc into .sorna/main and runs it."""

    lang = "c"
    source_name = "main.c"

    def query_commands(self, source: Path) -> tuple[list[str] | None, list[str]]:
        binary = source.with_suffix("")
        build = ["gcc", "-std=gnu17", "-O2", "-o", str(binary), str(source), "-lm"]
        return build, [str(binary)]


if __name__ == "__main__":
    serve(CBackend())
