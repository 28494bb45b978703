"""The python3 kernel daemon: in-process Python with persistent globals."""

from sorna.repl.daemon import serve
from sorna.repl.pyexec import PythonBackend

if __name__ == "__main__":
    serve(PythonBackend())
