"""The REPL wire protocol, per language, against real daemons (local process or container)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from sorna.repl.client import ReplClient, RunResult
from sorna.repl.protocol import DEFAULT_OUTPUT_LIMIT, Frame, InputOp, OutputOp

if TYPE_CHECKING:
    from conftest import StartKernel  # the factory fixture's type (tests/conftest.py)

HELLO = {
    "python3": 'print("Hello, world!")',
    "c": '#include <stdio.h>\nint main(void) { printf("Hello, world!\\n"); return 0; }',
    "cpp": '#include <iostream>\nint main() { std::cout << "Hello, world!" << std::endl; }',
    "shell": 'echo "Hello, world!"',
}


def assert_one_finished(result: RunResult, op: OutputOp = OutputOp.FINISHED) -> None:
    assert result.ops.count(op) == 1, result.ops
    assert result.ops[-1] == op


async def first_frame(client: ReplClient, op: OutputOp) -> list[Frame]:
    """Frames up to and including the first ``op`` one (failing on an early ``finished``)."""
    frames: list[Frame] = []
    while True:
        frame = await client.recv()
        frames.append(frame)
        if frame.op == op:
            return frames
        assert frame.op != OutputOp.FINISHED, [f.op for f in frames]


@pytest.mark.parametrize("lang", sorted(HELLO))
async def test_hello_world(repl_kernel: StartKernel, lang: str) -> None:
    client = await repl_kernel(lang)
    result = await client.run_code(HELLO[lang])
    assert result.stdout == "Hello, world!\n"
    assert result.stderr == ""
    assert result.exit_code == 0
    assert_one_finished(result)


async def test_python_state_kept_across_runs(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("python3")
    await client.run_code("x = 20\ndef double(v):\n    return v * 2")
    result = await client.run_code("print(double(x) + 2)")
    assert result.stdout == "42\n"
    # A trailing expression shows its value, as in the interactive interpreter.
    assert (await client.run_code("x + 1")).stdout == "21\n"


async def test_python_error_traceback_starts_at_user_input(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("python3")
    result = await client.run_code("def f():\n    return 1 / 0\n\nf()")
    assert_one_finished(result)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1] == '  File "<input>", line 4, in <module>'
    assert lines[-1] == "ZeroDivisionError: division by zero"
    assert 'File "<input>", line 2, in f' in result.stderr
    assert "sorna" not in result.stderr and "run.py" not in result.stderr
    # ... and the kernel is still fine.
    assert (await client.run_code("print('ok')")).stdout == "ok\n"


async def test_python_syntax_error(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("python3")
    result = await client.run_code("print('unclosed'")
    assert_one_finished(result)
    assert "SyntaxError" in result.stderr
    assert 'File "<input>", line 1' in result.stderr
    assert "sorna" not in result.stderr


async def test_shell_error_is_bash_message(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("shell")
    result = await client.run_code("no-such-command-here")
    assert_one_finished(result)
    assert "no-such-command-here: command not found" in result.stderr
    assert result.exit_code == 127


@pytest.mark.parametrize("lang", ["c", "cpp"])
async def test_compile_error_in_query_mode(repl_kernel: StartKernel, lang: str) -> None:
    client = await repl_kernel(lang)
    result = await client.run_code("int main(void) { return undefined_name; }")
    assert_one_finished(result)
    assert "error:" in result.stderr and "undefined_name" in result.stderr
    assert result.stdout == ""
    assert result.exit_code != 0


async def test_c_runtime_crash_still_finishes(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("c")
    result = await client.run_code("int main(void) { int *p = 0; return *p; }")
    assert_one_finished(result)
    assert "SIGSEGV" in result.stderr
    assert (await client.run_code(HELLO["c"])).stdout == "Hello, world!\n"


async def test_python_input_and_getpass(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("python3")
    code = (
        "import getpass\n"
        "name = input('Name? ')\n"
        "secret = getpass.getpass('Secret: ')\n"
        "print(f'{name} has a {len(secret)}-letter secret')"
    )
    result = await client.run_code(code, input_answers=["Ada", "hunter2"])
    assert result.waiting_inputs == [{"is_password": False}, {"is_password": True}]
    # The prompt reaches the client before the waiting-input frame.
    first_wait = result.ops.index(OutputOp.WAITING_INPUT)
    assert "".join(f.text for f in result.frames[:first_wait]) == "Name? "
    assert result.stdout == "Name? Secret: Ada has a 7-letter secret\n"
    assert "hunter2" not in result.stdout
    assert_one_finished(result)


async def test_python_sys_stdin_readline(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("python3")
    result = await client.run_code(
        "import sys\nprint(sys.stdin.readline().upper(), end='')", input_answers=["abc"]
    )
    assert result.stdout == "ABC\n"


SCANF = (
    "#include <stdio.h>\n"
    "int main(void) {\n"
    '    int a, b;\n    printf("Two numbers: ");\n'
    '    if (scanf("%d", &a) != 1) return 1;\n'
    '    printf("and? ");\n'
    '    if (scanf("%d", &b) != 1) return 1;\n'
    '    printf("%d + %d = %d\\n", a, b, a + b);\n'
    "    return 0;\n}\n"
)
CIN = (
    "#include <iostream>\n#include <string>\n"
    "int main() {\n    std::string name;\n"
    '    std::cout << "Name? ";\n    std::cin >> name;\n'
    '    std::cout << "Hello, " << name << "!" << std::endl;\n}\n'
)


async def test_c_scanf_through_waiting_input(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("c")
    result = await client.run_code(SCANF, input_answers=["20", "22"])
    assert result.waiting_inputs == [{"is_password": False}] * 2
    assert result.stdout == "Two numbers: and? 20 + 22 = 42\n"
    first_wait = result.ops.index(OutputOp.WAITING_INPUT)
    assert "".join(f.text for f in result.frames[:first_wait]) == "Two numbers: "
    assert_one_finished(result)


async def test_cpp_cin_through_waiting_input(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("cpp")
    result = await client.run_code(CIN, input_answers=["Grace"])
    assert result.waiting_inputs == [{"is_password": False}]
    assert result.stdout == "Name? Hello, Grace!\n"


async def test_shell_read_through_waiting_input(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("shell")
    result = await client.run_code('read -r name\necho "hi $name"', input_answers=["Linus"])
    assert result.waiting_inputs == [{"is_password": False}]
    assert result.stdout == "hi Linus\n"


async def test_shell_state_kept_across_runs(repl_kernel: StartKernel) -> None:
    """One bash per kernel: variables, functions, arrays, cd and $$ last across runs."""
    client = await repl_kernel("shell")
    first = await client.run_code(
        'greeting=hello\nshout() { echo "${1^^}!"; }\ndeclare -A ages=([ada]=36)\n'
        "mkdir -p sub && cd sub\necho $$"
    )
    assert first.exit_code == 0, first.stderr
    second = await client.run_code('shout "$greeting"; echo "${ages[ada]} ${PWD##*/}"; echo $$')
    assert second.stdout.splitlines() == ["HELLO!", "36 sub", first.stdout.strip()]
    assert second.stderr == ""
    assert_one_finished(second)


async def test_shell_stderr_and_exit_status(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("shell")
    result = await client.run_code("echo out\necho err >&2\nls /no-such-dir-here")
    assert_one_finished(result)
    assert result.stdout == "out\n"
    assert result.stderr.startswith("err\n")
    assert "/no-such-dir-here" in result.stderr
    assert result.exit_code == 2
    # The status of the last command is $? in the next run, as in a terminal.
    again = await client.run_code("echo $?; false")
    assert (again.stdout, again.exit_code) == ("2\n", 1)


async def test_shell_unicode_in_and_out(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("shell")
    await client.run_code("word='wörld 🌍'")
    result = await client.run_code(
        'read -r s\necho "héllo $word ${#s} $s"', input_answers=["日本語 ✓"]
    )
    assert result.waiting_inputs == [{"is_password": False}]
    assert result.stdout == "héllo wörld 🌍 5 日本語 ✓\n"


async def test_shell_interrupt_ends_a_loop_and_keeps_the_shell(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("shell")
    before = await client.run_code("counter=41; echo $$")
    await client.send(InputOp.CODE, "echo started\nwhile true; do :; done")
    frames = await first_frame(client, OutputOp.STDOUT)
    assert frames[-1].text == "started\n"
    await client.interrupt()
    result = await client.collect()
    assert_one_finished(result)
    assert result.exit_code == 130
    # A program the snippet waits for is stopped the same way.
    await client.send(InputOp.CODE, "echo sleeping; sleep 300; echo never")
    await first_frame(client, OutputOp.STDOUT)
    await client.interrupt()
    slept = await client.collect()
    assert "never" not in slept.stdout
    assert slept.exit_code == 130
    # ... and so is a `read` waiting for a line.
    await client.send(InputOp.CODE, "read -r line; echo never")
    await first_frame(client, OutputOp.WAITING_INPUT)
    await client.interrupt()
    reading = await client.collect()
    assert (reading.stdout, reading.exit_code) == ("", 130)
    after = await client.run_code("echo $((counter + 1)) $$")
    assert after.stdout == f"42 {before.stdout.strip()}\n"


async def test_shell_that_ignores_interrupt_is_killed_by_a_second_one(
    repl_kernel: StartKernel,
) -> None:
    client = await repl_kernel("shell")
    await client.send(InputOp.CODE, "trap '' INT\necho started\nwhile true; do :; done")
    await first_frame(client, OutputOp.STDOUT)
    await client.interrupt()
    await client.interrupt()
    result = await client.collect()
    assert_one_finished(result)
    assert "the shell was killed; the next run starts a new one" in result.stderr
    assert (await client.run_code("echo fresh")).stdout == "fresh\n"


async def test_shell_exit_starts_a_new_shell(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("shell")
    await client.run_code("kept=yes")
    result = await client.run_code("echo bye\nexit 3")
    assert_one_finished(result)
    assert result.stdout == "bye\n"
    assert result.exit_code == 3
    assert "the shell exited with status 3; the next run starts a new one" in result.stderr
    after = await client.run_code('echo "kept=${kept:-gone}"')
    assert after.stdout == "kept=gone\n"


async def test_shell_input_a_run_did_not_read_does_not_feed_the_next(
    repl_kernel: StartKernel,
) -> None:
    client = await repl_kernel("shell")
    await client.send(InputOp.CODE, "read -r a; echo got $a")
    await first_frame(client, OutputOp.WAITING_INPUT)
    await client.send_input("one\ntwo")
    assert (await client.collect()).stdout == "got one\n"
    result = await client.run_code("read -r b; echo got $b", input_answers=["three"])
    assert result.stdout == "got three\n"


NODE_READLINE = (
    "{ const rl = require('readline').createInterface({ input: process.stdin });\n"
    "  rl.on('line', (line) => { console.log(`got ${line}`); rl.close(); }); }"
)


async def test_nodejs_readline_line_event_reads_through_waiting_input(
    repl_kernel: StartKernel,
) -> None:
    client = await repl_kernel("nodejs")
    result = await client.run_code(NODE_READLINE, input_answers=["Ada ✓ 日本"])
    assert result.waiting_inputs == [{"is_password": False}]
    assert result.stdout == "got Ada ✓ 日本\n"
    assert_one_finished(result)
    # A second interface in the next run reads again (the first one paused stdin).
    again = await client.run_code(NODE_READLINE, input_answers=["Grace"])
    assert again.stdout == "got Grace\n"


async def test_nodejs_readline_question_and_several_lines(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("nodejs")
    code = (
        "const rl = require('readline').createInterface({"
        " input: process.stdin, output: process.stdout });\n"
        "rl.question('Name? ', (name) => { console.log(`hi ${name}`); rl.close(); });"
    )
    result = await client.run_code(code, input_answers=["Linus"])
    first_wait = result.ops.index(OutputOp.WAITING_INPUT)
    assert "".join(f.text for f in result.frames[:first_wait]) == "Name? "
    assert result.stdout == "Name? hi Linus\n"
    lines = (
        "const rl2 = require('readline').createInterface({ input: process.stdin });\n"
        "const seen = [];\n"
        "rl2.on('line', (l) => { seen.push(l); if (seen.length === 3) rl2.close(); });\n"
        "rl2.on('close', () => console.log(seen.join('+')));"
    )
    three = await client.run_code(lines, input_answers=["a", "b", "c"])
    assert three.waiting_inputs == [{"is_password": False}] * 3
    assert three.stdout == "a+b+c\n"


async def test_nodejs_process_stdin_data_event(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("nodejs")
    result = await client.run_code(
        "process.stdin.setEncoding('utf8');\n"
        "process.stdin.once('data', (d) => console.log(JSON.stringify(d)));",
        input_answers=["héllo"],
    )
    assert result.waiting_inputs == [{"is_password": False}]
    assert result.stdout == '"héllo\\n"\n'


async def test_nodejs_fs_read_file_sync_of_stdin(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("nodejs")
    result = await client.run_code(
        "const fs = require('fs');\n"
        "const [a, b] = fs.readFileSync(0, 'utf8').trim().split(' ').map(Number);\n"
        "console.log(a + b);\n"
        "console.log(fs.readFileSync('/dev/stdin').toString().trim().toUpperCase());",
        input_answers=["20 22", "wörld"],
    )
    assert result.waiting_inputs == [{"is_password": False}] * 2
    assert result.stdout == "42\nWÖRLD\n"
    assert result.stderr == ""


async def test_nodejs_interrupt_while_readline_waits(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("nodejs")
    await client.run_code("globalThis.kept = 41")
    await client.send(
        InputOp.CODE,
        "require('readline').createInterface({ input: process.stdin })"
        ".on('line', (l) => console.log(l));",
    )
    await first_frame(client, OutputOp.WAITING_INPUT)
    await client.interrupt()
    result = await client.collect()
    assert_one_finished(result)
    assert "Interrupted" in result.stderr
    # The interrupted run's listener does not make the next run wait for input.
    after = await client.run_code("console.log(kept + 1)")
    assert after.stdout == "42\n"
    assert after.waiting_inputs == []


async def test_python_completion(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("python3")
    await client.run_code("import os\nmy_variable = 1\nmy_value = 2")
    assert set(await client.complete("print(my_v")) >= {"my_variable", "my_value"}
    path_attrs = await client.complete("os.pa")
    assert "os.path" in path_attrs and "os.pardir" in path_attrs
    assert "print" in await client.complete("pri")
    assert await client.complete("zzz_nothing_") == []


async def test_python_interrupt_stops_a_busy_loop(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("python3")
    await client.send(InputOp.CODE, "print('started', flush=True)\nwhile True: pass")
    frames = await first_frame(client, OutputOp.STDOUT)
    assert frames[-1].text == "started\n"
    await client.interrupt()
    result = await client.collect()
    assert_one_finished(result)
    assert result.stderr.splitlines()[-1] == "KeyboardInterrupt"
    assert (await client.run_code("print(1)")).stdout == "1\n"


async def test_python_interrupt_while_waiting_for_input(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("python3")
    await client.send(InputOp.CODE, "input('> ')")
    await first_frame(client, OutputOp.WAITING_INPUT)
    await client.interrupt()
    result = await client.collect()
    assert_one_finished(result)
    assert "KeyboardInterrupt" in result.stderr
    assert "queue" not in result.stderr and "sorna" not in result.stderr
    assert (await client.run_code("print(1)")).stdout == "1\n"


async def test_c_interrupt_stops_a_busy_loop(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("c")
    code = '#include <stdio.h>\nint main(void) { puts("started"); for (;;) {} }'
    await client.send(InputOp.CODE, code)
    frames = await first_frame(client, OutputOp.STDOUT)
    assert frames[-1].text == "started\n"
    await client.interrupt()
    result = await client.collect()
    assert_one_finished(result)
    assert "interrupted" in result.stderr
    assert (await client.run_code(HELLO["c"])).stdout == "Hello, world!\n"


def big_line(i: int) -> str:
    return f"{i:08d} {'x' * 90}\n"  # 100 bytes


BIG_LINES = 50_000  # 5 MB
BIG_PY = f"""
import os, time
for i in range({BIG_LINES}):
    if i == 1000:
        deadline = time.monotonic() + 60
        while not os.path.exists("go") and time.monotonic() < deadline:
            time.sleep(0.01)
    print(f"{{i:08d}} {{'x' * 90}}")
"""
BIG_C = f"""
#include <stdio.h>
#include <time.h>
#include <unistd.h>
int main(void) {{
    for (int i = 0; i < {BIG_LINES}; i++) {{
        if (i == 1000) {{
            fflush(stdout);
            time_t deadline = time(NULL) + 60;
            while (access("go", F_OK) != 0 && time(NULL) < deadline) usleep(10000);
        }}
        printf("%08d %s\\n", i, "{"x" * 90}");
    }}
    return 0;
}}
"""


@pytest.mark.parametrize("lang", ["python3", "c"])
async def test_large_output_streams_complete_and_in_order(
    repl_kernel: StartKernel, tmp_path: Path, lang: str
) -> None:
    workdir = tmp_path / "big"
    workdir.mkdir()
    client = await repl_kernel(lang, workdir=workdir)
    await client.send(InputOp.CODE, BIG_PY if lang == "python3" else BIG_C)
    # The program holds after its first 1000 lines until it sees `go`: the first chunk
    # must reach us while the run is still going.
    early = await first_frame(client, OutputOp.STDOUT)
    (workdir / "go").write_text("")
    rest = await client.collect()
    assert_one_finished(rest)
    frames = [*early, *rest.frames]
    stdout = "".join(f.text for f in frames if f.op == OutputOp.STDOUT)
    assert len(stdout) == 100 * BIG_LINES
    assert stdout == "".join(big_line(i) for i in range(BIG_LINES))
    assert rest.stderr == ""
    assert sum(f.op == OutputOp.STDOUT for f in frames) > 1


async def test_python_output_cap(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("python3")
    result = await client.run_code(
        "chunk = 'y' * 1023 + '\\n'\nfor _ in range(12 * 1024):\n    print(chunk, end='')\n"
        "print('never reached')"
    )
    assert_one_finished(result)
    assert len(result.stdout.encode()) <= DEFAULT_OUTPUT_LIMIT
    assert len(result.stdout.encode()) > DEFAULT_OUTPUT_LIMIT - 2048
    assert "never reached" not in result.stdout
    assert "output limit of 10 MiB per run exceeded" in result.stderr
    # The cap is per run: the next one may print again.
    assert (await client.run_code("print(1)")).stdout == "1\n"


async def test_shell_output_cap_kills_the_program(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("shell")
    result = await client.run_code("yes sorna-output-line")
    assert_one_finished(result)
    assert len(result.stdout.encode()) <= DEFAULT_OUTPUT_LIMIT
    assert "output limit of 10 MiB per run exceeded" in result.stderr


async def test_python_unicode_in_and_out(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("python3")
    result = await client.run_code(
        "s = input('입력: ')\nprint('héllo wörld 🌍', s[::-1])", input_answers=["日本語 ✓"]
    )
    assert result.stdout == "입력: héllo wörld 🌍 ✓ 語本日\n"


async def test_c_unicode_in_and_out(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("c")
    code = (
        "#include <stdio.h>\nint main(void) { char buf[64];\n"
        '  printf("입력: "); if (scanf("%63s", buf) != 1) return 1;\n'
        '  printf("héllo 🌍 %s\\n", buf); return 0; }'
    )
    result = await client.run_code(code, input_answers=["日本語"])
    assert result.stdout == "입력: héllo 🌍 日本語\n"


async def test_python_media_and_html_records(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("python3")
    result = await client.run_code(
        "import builtins\nprint('before')\n"
        "builtins._sorna_emit({'type': 'text/html', 'data': '<b>bold</b>'})\n"
        "builtins._sorna_emit({'type': 'image/svg+xml', 'data': '<svg/>'})\nprint('after')"
    )
    assert result.ops == ["stdout", "html", "media", "stdout", "finished"]
    assert result.html == ["<b>bold</b>"]
    assert result.media == [{"type": "image/svg+xml", "data": "<svg/>"}]


TWO_FILE_C = {
    "main.c": '#include <stdio.h>\n#include "util.h"\n'
    'int main(void) { printf("sum=%d\\n", add(40, 2)); return 0; }\n',
    "util.c": '#include "util.h"\nint add(int a, int b) { return a + b; }\n',
    "util.h": "int add(int a, int b);\n",
}


async def test_batch_build_and_exec_of_two_file_c_program(
    repl_kernel: StartKernel, tmp_path: Path
) -> None:
    workdir = tmp_path / "batch"
    workdir.mkdir()
    for name, text in TWO_FILE_C.items():
        (workdir / name).write_text(text)
    client = await repl_kernel("c", workdir=workdir)
    build = await client.build("*")
    assert_one_finished(build, OutputOp.BUILD_FINISHED)
    assert build.exit_code == 0, build.stderr
    run = await client.exec("*")
    assert_one_finished(run)
    assert run.stdout == "sum=42\n"
    # An explicit command works too.
    assert (await client.exec("./main && echo done")).stdout == "sum=42\ndone\n"


async def test_batch_build_uses_makefile(repl_kernel: StartKernel, tmp_path: Path) -> None:
    workdir = tmp_path / "make"
    workdir.mkdir()
    for name, text in TWO_FILE_C.items():
        (workdir / name).write_text(text)
    (workdir / "Makefile").write_text("main: main.c util.c\n\tgcc -o main main.c util.c\n")
    client = await repl_kernel("c", workdir=workdir)
    build = await client.build("*")
    assert build.exit_code == 0, build.stderr
    assert "gcc -o main main.c util.c" in build.stdout
    assert (await client.exec("*")).stdout == "sum=42\n"


async def test_batch_compile_error(repl_kernel: StartKernel, tmp_path: Path) -> None:
    workdir = tmp_path / "broken"
    workdir.mkdir()
    (workdir / "main.c").write_text("int main(void) { return missing_symbol; }\n")
    client = await repl_kernel("c", workdir=workdir)
    build = await client.build("*")
    assert_one_finished(build, OutputOp.BUILD_FINISHED)
    assert "missing_symbol" in build.stderr and "error" in build.stderr
    assert build.exit_code != 0
    run = await client.exec("*")
    assert_one_finished(run)
    assert run.exit_code != 0


async def test_python_batch_exec(repl_kernel: StartKernel, tmp_path: Path) -> None:
    workdir = tmp_path / "pybatch"
    workdir.mkdir()
    (workdir / "main.py").write_text("print('from main.py', input('? '))\n")
    client = await repl_kernel("python3", workdir=workdir)
    build = await client.build("*")
    assert build.ops == ["build-finished"]
    result = await client.exec("*", input_answers=["yes"])
    assert result.stdout == "? from main.py yes\n"
    assert (await client.exec("echo custom")).stdout == "custom\n"


async def test_queue_is_fifo_with_one_finished_per_run_and_status(
    repl_kernel: StartKernel,
) -> None:
    client = await repl_kernel("python3")
    assert await client.status() == {"busy": False, "runs_queued": 0}
    await client.send(InputOp.CODE, "print('first', input())")
    await first_frame(client, OutputOp.WAITING_INPUT)
    for n in range(2, 5):
        await client.send(InputOp.CODE, f"print('run {n}')")
    await client.send(InputOp.CODE, "raise ValueError('run 5 fails')")
    await client.send(InputOp.CODE, "print('run 6')")
    assert await client.status() == {"busy": True, "runs_queued": 5}
    await client.send_input("answer")
    results = [await client.collect() for _ in range(6)]
    for result in results:
        assert_one_finished(result)
    assert [r.stdout for r in results] == [
        "first answer\n",
        "run 2\n",
        "run 3\n",
        "run 4\n",
        "",
        "run 6\n",
    ]
    assert "ValueError: run 5 fails" in results[4].stderr
    assert await client.status() == {"busy": False, "runs_queued": 0}
    # Nothing else is pending: no stray second `finished`.
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await client.recv()


async def test_unknown_op_is_ignored(repl_kernel: StartKernel) -> None:
    client = await repl_kernel("python3")
    await client.send("no-such-op", b"whatever")
    assert (await client.run_code("print(1)")).stdout == "1\n"


async def test_shell_tty_bridge(tmp_path: Path) -> None:
    """The shell kernel's PTY: keys in on one socket, the terminal's screen out on another."""
    import zmq
    import zmq.asyncio

    from sorna.repl.localkernel import local_kernel
    from sorna.repl.protocol import default_pty_addrs

    workdir = tmp_path / "tty"
    workdir.mkdir()
    async with local_kernel("shell", workdir=workdir, jail=False) as client:
        keys_addr, screen_addr = default_pty_addrs(client.input_addr)
        ctx = zmq.asyncio.Context()
        keys, screen = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
        try:
            keys.connect(keys_addr)
            screen.connect(screen_addr)
            async with asyncio.timeout(120):  # a hang guard only: every wait below is on output
                # Screen output nobody reads is dropped, and the connection is made in the
                # background: press Enter (a fresh prompt each time) until the terminal's
                # bytes reach us. From then on nothing is dropped.
                while True:
                    await keys.send(b"\r")
                    if await screen.poll(500, zmq.POLLIN):
                        break
                await keys.send(b"echo tty-$((6 * 7))\r")
                seen = b""
                while b"tty-42" not in seen.replace(b"tty-$((6 * 7))", b""):
                    seen += await screen.recv()
            # The REPL side keeps working beside the terminal.
            assert (await client.run_code("echo repl")).stdout == "repl\n"
        finally:
            keys.close(linger=0)
            screen.close(linger=0)
            ctx.term()


def test_default_pty_addrs() -> None:
    from sorna.repl.protocol import default_pty_addrs

    assert default_pty_addrs("tcp://*:2000") == ("tcp://*:2002", "tcp://*:2003")
    assert default_pty_addrs("ipc:///x/y/repl-in.sock") == (
        "ipc:///x/y/repl-pty-in.sock",
        "ipc:///x/y/repl-pty-out.sock",
    )


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


async def test_background_leftovers_are_killed_when_the_run_ends(tmp_path: Path) -> None:
    from sorna.repl.localkernel import local_kernel

    async with local_kernel("shell", workdir=tmp_path, jail=False) as client:
        result = await client.run_code("sleep 300 &\necho $!")
        assert_one_finished(result)
        pid = int(result.stdout)
        for _ in range(250):  # the SIGKILL is sent before `finished`; allow for reaping
            if not _alive(pid):
                break
            await asyncio.sleep(0.02)
        assert not _alive(pid)


async def test_stopping_a_busy_kernel_leaves_no_process(tmp_path: Path) -> None:
    from sorna.repl.localkernel import local_kernel

    async with local_kernel("shell", workdir=tmp_path, jail=False) as client:
        await client.send(InputOp.CODE, "echo $$; sleep 300")
        pid = int((await first_frame(client, OutputOp.STDOUT))[-1].text)
        assert _alive(pid)
    assert not _alive(pid)


@pytest.mark.parametrize("lang", ["python3", "nodejs"])
def test_daemon_that_cannot_bind_says_why_on_stderr(tmp_path: Path, lang: str) -> None:
    """A kernel that cannot start prints why on its own stderr (not into its dead socket)."""
    import os
    import subprocess

    from sorna.repl import paths
    from sorna.repl.localkernel import daemon_argv
    from sorna.repl.protocol import ENV_INPUT_ADDR, ENV_OUTPUT_ADDR

    missing = tmp_path / "no-such-folder"
    addrs = {ENV_INPUT_ADDR: f"ipc://{missing}/in", ENV_OUTPUT_ADDR: f"ipc://{missing}/out"}
    argv = [
        *daemon_argv(lang),
        "--input",
        addrs[ENV_INPUT_ADDR],
        "--output",
        addrs[ENV_OUTPUT_ADDR],
    ]
    env = {**os.environ, **addrs, "PYTHONPATH": str(paths.PACKAGE_DIR.parents[1])}
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path, env=env
    )
    assert proc.returncode == 1
    assert f"{lang} kernel cannot start: cannot bind" in proc.stderr
    assert str(missing) in proc.stderr
