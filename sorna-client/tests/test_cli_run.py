"""The real ``sorna`` / ``lcc`` / ``lpython`` console scripts, in subprocesses, against the real
gateway and agent of the ``stack`` fixture."""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from sorna.client import AsyncAdmin, AsyncSession, ClientConfig

from .conftest import Stack

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


async def cli(
    stack: Stack,
    home: Path,
    *argv: str,
    script: str = "sorna",
    stdin: str = "",
    cwd: Path | None = None,
    config: ClientConfig | None = None,
    drop_env: tuple[str, ...] = (),
) -> Completed:
    """Run a console script to its end without blocking the loop the gateway runs in."""
    env = {k: v for k, v in stack.cli_env(home, config).items() if k not in drop_env}
    proc = await asyncio.create_subprocess_exec(
        str(BIN / script),
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd or home,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout=90)
    finally:
        if proc.returncode is None:  # timed out or cancelled: leave no process behind
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Completed(proc.returncode, out.decode(), err.decode())


async def live_kernels(stack: Stack) -> list[dict[str, object]]:
    async with AsyncSession(stack.admin) as session:
        return await AsyncAdmin(session).kernels()


async def test_run_code_prints_42_and_removes_the_kernel(stack: Stack, tmp_path: Path) -> None:
    done = await cli(stack, tmp_path, "run", "python3", "-c", "print(6*7)")
    assert (done.returncode, done.stdout, done.stderr) == (0, "42\n", "")
    assert await live_kernels(stack) == []  # --rm is the default for a fresh session


async def test_python_exception_exits_1_with_traceback(stack: Stack, tmp_path: Path) -> None:
    done = await cli(stack, tmp_path, "run", "python3", "-c", "print('before')\n1/0")
    assert done.returncode == 1
    assert done.stdout == "before\n"
    assert "Traceback" in done.stderr and "ZeroDivisionError" in done.stderr


async def test_lcc_compiles_and_runs(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "hello.c").write_text(
        '#include <stdio.h>\nint main(void) { printf("hello, c\\n"); return 0; }\n'
    )
    done = await cli(stack, tmp_path, "hello.c", script="lcc")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello, c\n"


async def test_batch_with_two_files_and_failing_exit_status(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "greet.h").write_text("int greet(const char *who);\n")
    (tmp_path / "greet.c").write_text(
        '#include <stdio.h>\nint greet(const char *who) { printf("hi %s\\n", who); return 3; }\n'
    )
    (tmp_path / "main.c").write_text(
        '#include "greet.h"\nint main(void) { return greet("two files"); }\n'
    )
    done = await cli(stack, tmp_path, "run", "c", "main.c", "greet.c", "greet.h")
    assert done.stdout == "hi two files\n"
    assert done.returncode == 1  # the program exited with 3

    done = await cli(
        stack,
        tmp_path,
        "run",
        "c",
        "main.c",
        "greet.c",
        "greet.h",
        "--build",
        "gcc -o prog main.c greet.c",
        "--exec",
        "./prog; echo exit=$?",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hi two files\nexit=3\n"


async def test_lpython_runs_a_script_with_its_module(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "helper.py").write_text("WORD = 'helped'\n")
    (tmp_path / "script.py").write_text("import helper\nprint(helper.WORD)\n")
    done = await cli(stack, tmp_path, "script.py", "helper.py", script="lpython")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "helped\n"


async def test_prompts_are_answered_from_piped_stdin(stack: Stack, tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import getpass
        name = input("name? ")
        secret = getpass.getpass("password: ")
        print("hi", name, "secret length", len(secret))
        """
    )
    done = await cli(stack, tmp_path, "run", "python3", "-c", code, stdin="Ada\nhunter2\n")
    assert done.returncode == 0, done.stderr
    assert "name? " in done.stdout
    assert done.stdout.endswith("hi Ada secret length 7\n")
    assert "hunter2" not in done.stdout + done.stderr


async def test_bad_credentials_exit_2_with_one_line(stack: Stack, tmp_path: Path) -> None:
    bad = ClientConfig(stack.user.access_key, "z" * 40, endpoint=stack.endpoint)
    done = await cli(stack, tmp_path, "run", "python3", "-c", "print(1)", config=bad)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith("sorna: error: 401 auth-failed: ")


async def test_missing_credentials_exit_2_naming_the_variable(stack: Stack, tmp_path: Path) -> None:
    done = await cli(stack, tmp_path, "run", "python3", "-c", "1", drop_env=("SORNA_SECRET_KEY",))
    assert done.returncode == 2
    assert done.stderr.startswith("sorna: error: no secret key configured: set SORNA_SECRET_KEY")
    assert done.stderr.count("\n") == 1


async def test_config_file_is_used(stack: Stack, tmp_path: Path) -> None:
    cfg = tmp_path / ".config" / "sorna" / "client.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(
        f'endpoint = "{stack.endpoint}"\naccess_key = "{stack.user.access_key}"\n'
        f'secret_key = "{stack.user.secret_key}"\n'
    )
    variables = ("SORNA_ENDPOINT", "SORNA_ACCESS_KEY", "SORNA_SECRET_KEY")
    done = await cli(stack, tmp_path, "run", "python3", "-c", "print('file')", drop_env=variables)
    assert (done.returncode, done.stdout) == (0, "file\n"), done.stderr


async def test_media_html_and_downloads_are_saved(stack: Stack, tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import builtins
        builtins._sorna_emit({"type": "image/svg+xml", "data": "<svg id='s'/>"})
        builtins._sorna_emit({"type": "text/html", "data": "<b>table</b>"})
        open("result.txt", "w").write("the result\\n")
        print("done")
        """
    )
    media, downloads = tmp_path / "media", tmp_path / "dl"
    done = await cli(
        stack,
        tmp_path,
        "run",
        "python3",
        "-c",
        code,
        "--media-dir",
        str(media),
        "--download",
        str(downloads),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"
    svg = next(media.glob("*.svg"))
    html = next(media.glob("*.html"))
    assert svg.read_text() == "<svg id='s'/>"
    assert html.read_text() == "<b>table</b>"
    assert str(svg) in done.stderr and str(html) in done.stderr
    assert (downloads / "result.txt").read_text() == "the result\n"


async def test_token_reuses_a_session_until_rm(stack: Stack, tmp_path: Path) -> None:
    first = await cli(stack, tmp_path, "run", "python3", "-t", "cli-token-1", "-c", "x = 21")
    assert first.returncode == 0, first.stderr
    kernels = await live_kernels(stack)
    assert len(kernels) == 1  # kept: -t means reuse
    second = await cli(
        stack, tmp_path, "run", "python3", "-t", "cli-token-1", "--rm", "-c", "print(x * 2)"
    )
    assert (second.returncode, second.stdout) == (0, "42\n")
    assert await live_kernels(stack) == []


async def test_no_rm_tells_how_to_reuse(stack: Stack, tmp_path: Path) -> None:
    done = await cli(stack, tmp_path, "run", "python3", "--no-rm", "-c", "y = 1")
    assert done.returncode == 0
    assert "kept; reuse it with -t " in done.stderr
    token = done.stderr.split("-t ", 1)[1].split()[0]
    again = await cli(stack, tmp_path, "run", "python3", "-t", token, "--rm", "-c", "print(y)")
    assert again.stdout == "1\n"


async def test_usage_errors_exit_2(stack: Stack, tmp_path: Path) -> None:
    nothing = await cli(stack, tmp_path, "run", "python3")
    assert nothing.returncode == 2
    assert nothing.stderr.startswith("sorna: error: give code with -c CODE")
    missing = await cli(stack, tmp_path, "run", "c", "nope.c")
    assert missing.returncode == 2 and "nope.c: no such file" in missing.stderr
    bad_option = await cli(stack, tmp_path, "run", "--frobnicate")
    assert bad_option.returncode == 2
    unknown_lang = await cli(stack, tmp_path, "run", "cobol", "-c", "x")
    assert unknown_lang.returncode == 2
    assert unknown_lang.stderr.startswith("sorna: error: 404 unsupported-lang: ")


async def test_ctrl_c_interrupts_and_cleans_up(stack: Stack, tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "sorna"),
        "run",
        "python3",
        "-c",
        "import time\nprint('started', flush=True)\ntime.sleep(60)",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=stack.cli_env(tmp_path),
    )
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), timeout=60) == b"started\n"
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 130
    assert err.decode().endswith("sorna: interrupted\n")
    assert await live_kernels(stack) == []
