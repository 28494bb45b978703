"""The shell kernel daemon: one persistent bash per kernel, so state lasts across runs.

Query mode evaluates each snippet in the same bash (variables, functions, ``cd``, ``$$`` and
aliases stay); :class:`~sorna.repl.evaluator.PersistentEvaluator` streams its output, answers
``read`` through ``waiting-input`` and delivers Ctrl-C. The bash is interactive (``-i``), the
one mode in which SIGINT ends the running command, however busy, and leaves the shell at its
prompt, as in a terminal; its prompts are empty and ``PROMPT_COMMAND`` reports each snippet
done. Batch mode runs commands as separate programs (``*``: main.sh or ./main).
"""

import shutil

from sorna.repl.daemon import serve
from sorna.repl.evaluator import ENV_INPUT_FD, ENV_REPORT_FD, EvaluatorSpec, PersistentEvaluator
from sorna.repl.runner import SubprocessBackend

BASH = shutil.which("bash") or "/bin/bash"

#: The descriptors the shell keeps its report and user-input pipes on (user code rarely goes
#: this high; snippets run with both closed and fd 0 = user input).
REPORT_FD = 60
INPUT_FD = 61

#: Run once when the shell starts; the last line's PROMPT_COMMAND answers ``D 0 0``.
INIT = (
    f'exec {REPORT_FD}>&"${ENV_REPORT_FD}" {INPUT_FD}<&"${ENV_INPUT_FD}"\n'
    f'builtin eval "exec ${ENV_REPORT_FD}>&- ${ENV_INPUT_FD}<&-"\n'
    f"unset {ENV_REPORT_FD} {ENV_INPUT_FD} HISTFILE MAILCHECK PROMPT_COMMAND\n"
    "set +H +o history\n"
    "PS1= PS2= PS0=\n"
    # Both keep $? of the last snippet, so that the next one sees it as in a terminal.
    "__sorna_begin() { local s=$?; __sorna_seq=$1; PS1= PS2=;"
    f" builtin printf 'S %s\\n' \"$1\" >&{REPORT_FD}; return $s; }}\n"
    "__sorna_done() { local s=$?;"
    f' builtin printf \'D %s %s\\n\' "${{__sorna_seq:-0}}" "$s" >&{REPORT_FD}; return $s; }}\n'
    "PROMPT_COMMAND=__sorna_done\n"
).encode()

_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def ansi_c_quote(text: str) -> str:
    """``text`` as one bash ``$'...'`` word on a single line (NUL bytes cannot be in bash)."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch == "\0":
            continue
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "$'" + "".join(out) + "'"


def frame(seq: int, code: str) -> bytes:
    """One command line: report the start, eval the snippet on the user's stdin, report done.

    After an interrupt the rest of the line is skipped and PROMPT_COMMAND reports instead.
    """
    return (
        f"\\__sorna_begin {seq}; \\builtin eval {ansi_c_quote(code)}"
        f" 0<&{INPUT_FD} {REPORT_FD}>&- {INPUT_FD}<&-; \\__sorna_done\n"
    ).encode("utf-8", "surrogateescape")


BASH_EVALUATOR = EvaluatorSpec(
    argv=(BASH, "--norc", "--noprofile", "--noediting", "+m", "-i"),
    init=INIT,
    frame=frame,
)


class ShellBackend(SubprocessBackend):
    """Query mode in one persistent bash; batch exec ``*`` runs main.sh or ./main."""

    lang = "shell"
    source_name = "main.sh"
    tty_argv = (BASH, "-i")

    def __init__(self) -> None:
        super().__init__()
        self._evaluator: PersistentEvaluator | None = None

    def run_code(self, code: str) -> int:
        if self._evaluator is None:
            self._evaluator = PersistentEvaluator(BASH_EVALUATOR, self.io, name="shell")
        return self._evaluator.run(code)

    def default_exec(self) -> list[str] | None:
        if (self.io.workdir / "main.sh").is_file():
            return [BASH, "main.sh"]
        return super().default_exec()

    def interrupt(self) -> None:
        if self._evaluator is not None:
            self._evaluator.interrupt()
        super().interrupt()

    def close(self) -> None:
        if self._evaluator is not None:
            self._evaluator.close()
        super().close()


if __name__ == "__main__":
    serve(ShellBackend())
