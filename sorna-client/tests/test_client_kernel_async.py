"""AsyncKernel end to end: a real gateway, a real agent (local backend), Valkey, PostgreSQL."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from sorna.client import (
    AsyncKernel,
    AsyncSession,
    ConsoleItem,
    InputRequest,
    KernelNotFound,
    RunStatus,
)

from .conftest import Stack

SLOW_PRINTS = textwrap.dedent(
    """
    import time
    for i in range(4):
        print("tick", i, flush=True)
        time.sleep(0.4)
    """
)


async def test_get_or_create_run_and_context_manager_destroys(stack: Stack) -> None:
    async with AsyncSession(stack.user) as session:
        async with AsyncKernel.get_or_create("python3", session=session) as kernel:
            assert kernel.created
            result = await kernel.run("print(6 * 7)")
            assert result.status == RunStatus.FINISHED
            assert result.stdout == "42\n"
            assert result.exit_code == 0
            assert not result.failed
        with pytest.raises(KernelNotFound):
            await kernel.get_info()
        assert not session.closed  # a kernel never closes a session it was lent


async def test_await_form_owns_its_session(stack: Stack) -> None:
    kernel = await AsyncKernel.get_or_create("python3", config=stack.user)
    try:
        assert (await kernel.execute("print('hi')")).stdout == "hi\n"
    finally:
        stats = await kernel.destroy()
    assert isinstance(stats, dict)
    assert kernel.session.closed


async def test_same_token_gets_the_same_kernel_with_its_state(stack: Stack) -> None:
    async with AsyncSession(stack.user) as session:
        first = await AsyncKernel.get_or_create("python3", "tok-state-1", session=session)
        try:
            await first.run("x = 41")
            again = await AsyncKernel.get_or_create("python3", "tok-state-1", session=session)
            assert again.kernel_id == first.kernel_id
            assert not again.created
            assert (await again.run("print(x + 1)")).stdout == "42\n"
        finally:
            await first.destroy()


async def test_execute_returns_chunks_and_run_follows_continued(stack: Stack) -> None:
    async with AsyncKernel.get_or_create("python3", config=stack.user) as kernel:
        chunk = await kernel.execute(SLOW_PRINTS, run_id="run-slow-1")
        assert chunk.status == RunStatus.CONTINUED
        assert chunk.run_id == "run-slow-1"
        while chunk.status == RunStatus.CONTINUED:
            chunk = await kernel.execute(mode="continue", run_id="run-slow-1")
        assert chunk.status == RunStatus.FINISHED

        seen: list[tuple[float, ConsoleItem]] = []
        loop = asyncio.get_running_loop()
        result = await kernel.run(SLOW_PRINTS, on_output=lambda i: seen.append((loop.time(), i)))
        assert result.stdout == "".join(f"tick {i}\n" for i in range(4))
        assert [c.kind for c in result.console] == ["stdout"]  # chunks merged
        # Output arrived in more than one chunk, before the run ended.
        assert len(seen) >= 2
        assert seen[-1][0] - seen[0][0] > 0.3


async def test_waiting_input_answered_by_callback_and_password_flag(stack: Stack) -> None:
    asked: list[InputRequest] = []

    async def answer(request: InputRequest) -> str:
        asked.append(request)
        return "s3cret" if request.is_password else "Ada"

    code = textwrap.dedent(
        """
        import getpass
        name = input("name? ")
        pw = getpass.getpass("password: ")
        print("hello", name, len(pw))
        """
    )
    async with AsyncKernel.get_or_create("python3", config=stack.user) as kernel:
        result = await kernel.run(code, on_input=answer)
        assert result.status == RunStatus.FINISHED
        assert "hello Ada 6" in result.stdout
        assert [a.is_password for a in asked] == [False, True]
        assert asked[0].prompt == "name? "
        # A plain function works too.
        result = await kernel.run("print(input() * 2)", on_input=lambda r: "ab")
        assert result.stdout.endswith("abab\n")


async def test_user_program_errors_are_results_not_exceptions(stack: Stack) -> None:
    async with AsyncKernel.get_or_create("python3", config=stack.user) as kernel:
        result = await kernel.run("1 / 0")
        assert result.status == RunStatus.FINISHED
        assert "ZeroDivisionError" in result.stderr
        assert "Traceback" in result.stderr
        assert result.failed


async def test_exec_timeout(stack: Stack) -> None:
    async with AsyncKernel.get_or_create("python3", config=stack.user, exec_timeout=1500) as kernel:
        result = await kernel.run("while True: pass")
        assert result.status == RunStatus.EXEC_TIMEOUT
        assert result.failed
        assert (await kernel.run("print('alive')")).stdout == "alive\n"


async def test_upload_list_download_and_batch(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "helper.py").write_text("def greet():\n    return 'from helper'\n")
    (tmp_path / "main.py").write_text(
        "import sys\nsys.path.insert(0, 'pkg')\nfrom helper import greet\nprint(greet())\n"
        "open('out.txt', 'w').write('written by the run\\n')\n"
    )
    async with AsyncKernel.get_or_create("python3", config=stack.user) as kernel:
        await kernel.upload(
            [tmp_path / "main.py", tmp_path / "pkg" / "helper.py"], basedir=tmp_path
        )
        names = {e.name for e in await kernel.list_files(".")}
        assert {"main.py", "pkg"} <= names
        assert {e.name for e in await kernel.list_files("pkg")} == {"helper.py"}

        result = await kernel.run(mode="batch", opts={"build": "", "exec": "*"})
        assert result.status == RunStatus.FINISHED
        assert result.stdout == "from helper\n"
        assert "out.txt" in {f.name for f in result.files}

        dest = tmp_path / "dl"
        dest.mkdir()
        saved = await kernel.download("out.txt", dest)
        assert saved == dest / "out.txt"
        assert saved.read_text() == "written by the run\n"
        saved = await kernel.download("pkg/helper.py", tmp_path / "copy.py")
        assert saved.read_text() == (tmp_path / "pkg" / "helper.py").read_text()
        assert not list(dest.glob(".*.part"))


async def test_complete_interrupt_restart_info(stack: Stack) -> None:
    async with AsyncKernel.get_or_create("python3", config=stack.user) as kernel:
        await kernel.run("import os\nsorna_value = 1")
        candidates = await kernel.complete("sorna_va", {"row": 0, "col": 8, "line": "sorna_va"})
        assert "sorna_value" in candidates

        chunk = await kernel.execute("import time\nwhile True: time.sleep(0.05)", run_id="spin")
        assert chunk.status == RunStatus.CONTINUED
        await kernel.interrupt()
        while chunk.status == RunStatus.CONTINUED:
            chunk = await kernel.execute(mode="continue", run_id="spin")
        assert chunk.status == RunStatus.FINISHED
        assert "KeyboardInterrupt" in chunk.stderr

        await kernel.run("open('kept.txt', 'w').write('x')")
        before = await kernel.get_info()
        assert before.lang == "python3"
        assert before.num_queries_executed >= 1
        await kernel.restart()
        after = await kernel.run("print(sorna_value)")
        assert "NameError" in after.stderr  # state is gone
        assert "kept.txt" in {e.name for e in await kernel.list_files()}  # files are kept


async def test_stream_execute_delivers_output_as_it_happens(stack: Stack) -> None:
    async with AsyncKernel.get_or_create("python3", config=stack.user) as kernel:
        loop = asyncio.get_running_loop()
        arrivals: list[tuple[float, str]] = []
        async with kernel.stream_execute(SLOW_PRINTS) as stream:
            async for event in stream:
                arrivals.append((loop.time(), event.type))
        types = [t for _, t in arrivals]
        assert types[-1] == "finished"
        assert types.count("stdout") >= 2
        assert arrivals[-1][0] - arrivals[0][0] > 0.3

        events = []
        async with kernel.stream_execute("print('hi', input('who? '))") as stream:
            async for event in stream:
                events.append(event)
                if event.type == "waiting-input":
                    assert not event.is_password
                    await stream.send_input("there")
        text = "".join(
            str(e.console_item.data) for e in events if e.console_item and e.type == "stdout"
        )
        assert "hi there" in text
        assert events[-1].type == "finished"


async def test_stream_execute_batch_runs_exec_after_build(stack: Stack, tmp_path: Path) -> None:
    hello = tmp_path / "hello.c"
    hello.write_text('#include <stdio.h>\nint main(void) { puts("hi from c"); return 0; }\n')
    async with AsyncKernel.get_or_create("c", config=stack.user) as kernel:
        await kernel.upload([hello], basedir=tmp_path)
        async with kernel.stream_execute(mode="batch", opts={"build": "*", "exec": "*"}) as s:
            events = [e async for e in s]
        types = [e.type for e in events]
        assert "build-finished" in types
        assert types[-1] == "finished"
        assert "hi from c" in "".join(str(e.data) for e in events if e.type == "stdout")


async def test_odd_file_names_round_trip(stack: Stack, tmp_path: Path) -> None:
    name = 'my "notes" é & 100%41.txt'  # %41 must not turn into "A"
    (tmp_path / name).write_text("odd\n")
    async with AsyncKernel.get_or_create("python3", config=stack.user) as kernel:
        await kernel.upload([tmp_path / name], basedir=tmp_path)
        assert name in {e.name for e in await kernel.list_files()}
        saved = await kernel.download(name, tmp_path / "back.txt")
        assert saved.read_text() == "odd\n"
