"""Daemons under the jail, as local processes: the sandbox holds and the protocol still works."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sorna.repl.localkernel import local_kernel
from sorna.repl.protocol import InputOp, OutputOp

pytestmark = pytest.mark.jail


@pytest.fixture(scope="module")
def jail_binary() -> Path:
    """The built jail; a build failure fails the tests (it is not a reason to skip)."""
    if importlib.util.find_spec("sorna.repl.jailbin") is None:
        pytest.skip("sorna.repl.jailbin is not written yet")
    from sorna.repl.jailbin import jail_path

    return jail_path()


@pytest.fixture
async def jailed(jail_binary: Path, tmp_path: Path) -> AsyncIterator[Path]:
    """The work dir for a jailed kernel."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    yield workdir


async def test_python_hello_under_the_jail(jailed: Path) -> None:
    async with local_kernel("python3", workdir=jailed, jail=True) as client:
        result = await client.run_code("print('Hello, jail!')")
        assert result.stdout == "Hello, jail!\n"
        assert result.ops[-1] == OutputOp.FINISHED


async def test_writing_etc_passwd_fails_and_the_daemon_survives(jailed: Path) -> None:
    async with local_kernel("python3", workdir=jailed, jail=True) as client:
        result = await client.run_code("open('/etc/passwd', 'a').write('evil::0:0::/:/bin/sh\\n')")
        assert result.ops.count(OutputOp.FINISHED) == 1
        assert "PermissionError" in result.stderr and "/etc/passwd" in result.stderr
        ok = await client.run_code(
            "open('notes.txt', 'w').write('fine'); print(open('notes.txt').read())"
        )
        assert ok.stdout == "fine\n"
        assert (jailed / "notes.txt").read_text() == "fine"


async def test_c_compile_and_scanf_under_the_jail(jailed: Path) -> None:
    code = (
        "#include <stdio.h>\n"
        'int main(void) { int a; printf("n? "); if (scanf("%d", &a) != 1) return 1;\n'
        '  printf("%d\\n", a * 2);\n'
        '  FILE *f = fopen("/etc/passwd", "a"); if (!f) perror("fopen /etc/passwd");\n'
        "  return 0; }"
    )
    async with local_kernel("c", workdir=jailed, jail=True) as client:
        result = await client.run_code(code, input_answers=["21"])
        assert result.waiting_inputs == [{"is_password": False}]
        assert result.stdout == "n? 42\n"
        assert "fopen /etc/passwd: Permission denied" in result.stderr


async def test_interrupt_under_the_jail(jailed: Path) -> None:
    async with local_kernel("python3", workdir=jailed, jail=True) as client:
        await client.send(InputOp.CODE, "print('go', flush=True)\nwhile True: pass")
        assert (await client.recv()).text == "go\n"
        await client.interrupt()
        result = await client.collect()
        assert "KeyboardInterrupt" in result.stderr
        assert (await client.run_code("print(1)")).stdout == "1\n"


async def test_shell_cannot_signal_outside_its_tree(jailed: Path) -> None:
    async with local_kernel("shell", workdir=jailed, jail=True) as client:
        result = await client.run_code("kill -0 1 && echo reached-pid-1 || echo denied")
        assert "reached-pid-1" not in result.stdout
        assert "denied" in result.stdout


async def test_make_runs_gcc_under_the_jail(jailed: Path) -> None:
    (jailed / "main.c").write_text('#include <stdio.h>\nint main(void) { puts("made"); }\n')
    (jailed / "Makefile").write_text("main: main.c\n\tgcc -o main main.c\n")
    async with local_kernel("c", workdir=jailed, jail=True) as client:
        build = await client.build("*")
        assert build.exit_code == 0, build.stderr
        assert (await client.exec("*")).stdout == "made\n"


async def test_nodejs_runs_as_a_jailed_local_kernel(jailed: Path) -> None:
    # run.js reads its socket addresses from the environment only, not from arguments.
    async with local_kernel("nodejs", workdir=jailed, jail=True) as client:
        first = await client.run_code("let n = 20; console.log('ünïcode', n + 1)")
        assert first.stdout == "ünïcode 21\n"
        second = await client.run_code("console.log(n * 2)")
        assert second.stdout == "40\n"
        assert second.ops[-1] == OutputOp.FINISHED
