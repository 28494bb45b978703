"""The cpp kernel daemon: g++-compiled snippets and batch builds, run as child processes."""

from pathlib import Path

from sorna.repl.daemon import serve
from sorna.repl.runner import SubprocessBackend


class CppBackend(SubprocessBackend):
    """Query mode compiles the snippet with g++ into .sorna/main and runs it."""

    lang = "cpp"
    source_name = "main.cpp"

    def query_commands(self, source: Path) -> tuple[list[str] | None, list[str]]:
        binary = source.with_suffix("")
        build = ["g++", "-std=gnu++17", "-O2", "-o", str(binary), str(source)]
        return build, [str(binary)]


if __name__ == "__main__":
    serve(CppBackend())
