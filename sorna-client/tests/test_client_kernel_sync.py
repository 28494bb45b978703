"""The blocking Kernel/Session/Admin end to end. The gateway runs in the test's event loop, so
each scenario runs in a worker thread, as a user's blocking program would."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from sorna.client import (
    Admin,
    AuthenticationError,
    Forbidden,
    InputRequest,
    Kernel,
    KernelNotFound,
    RunStatus,
    Session,
)

from .conftest import Stack


def loop_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "sorna-client-loop"}


async def test_kernel_methods(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("uploaded\n")
    before = loop_threads()

    def scenario() -> None:
        with Kernel.get_or_create("python3", config=stack.user) as kernel:
            assert kernel.created and kernel.lang == "python3"
            assert kernel.execute("x = 20").status == RunStatus.FINISHED
            assert kernel.run("print(x * 2 + 2)").stdout == "42\n"

            asked: list[InputRequest] = []
            result = kernel.run(
                "print(input('n? ') + '!')", on_input=lambda r: asked.append(r) or "yes"
            )
            assert result.stdout.endswith("yes!\n") and asked[0].prompt == "n? "

            kernel.upload([tmp_path / "data.txt"], basedir=tmp_path)
            assert "data.txt" in {e.name for e in kernel.list_files()}
            assert kernel.run("print(open('data.txt').read().strip())").stdout == "uploaded\n"
            assert kernel.download("data.txt", tmp_path / "back.txt").read_text() == "uploaded\n"

            kernel.run("xyz_name = 1")
            assert "xyz_name" in kernel.complete("xyz_", {"row": 0, "col": 4, "line": "xyz_"})
            assert kernel.get_info().lang == "python3"
            kernel.interrupt()  # nothing running: harmless
            kernel.restart()
            assert "NameError" in kernel.run("x").stderr

            with kernel.stream_execute("print('streamed')") as stream:
                events = list(stream)
            assert [e.type for e in events][-1] == "finished"
            assert any(e.type == "stdout" and "streamed" in e.data for e in events)
            kernel_id = kernel.kernel_id

        with Session(stack.user) as session, pytest.raises(KernelNotFound):
            Kernel.from_id(kernel_id, session=session).get_info()  # destroyed by `with`

    await asyncio.to_thread(scenario)
    assert loop_threads() == before  # every owned session closed its loop thread


async def test_session_admin_and_errors(stack: Stack) -> None:
    def scenario() -> None:
        with Session(stack.admin) as session:
            assert session.hello()["version"] == "v2.20170315"
            assert session.authorize("ping") == "ping"
            admin = Admin(session)
            created = admin.create_keypair(concurrency_limit=2, rate_limit=50)
            assert created["accessKey"] in {k["accessKey"] for k in admin.keypairs()}
            assert admin.agents()

            kernel = Kernel.get_or_create("python3", "shared-token", session=session)
            assert kernel.kernel_id in str(admin.kernels())
            again = Kernel.get_or_create("python3", "shared-token", session=session)
            assert again.kernel_id == kernel.kernel_id and not again.created
            stats = kernel.destroy()
            assert isinstance(stats, dict)
            assert not session.aio.closed  # a lent session stays open

        with Session(stack.user) as session, pytest.raises(Forbidden):
            Admin(session).agents()

        bad = stack.user.__class__(stack.user.access_key, "y" * 40, endpoint=stack.endpoint)
        with pytest.raises(AuthenticationError) as info:
            Kernel.get_or_create("python3", config=bad)
        assert info.value.status == 401

    await asyncio.to_thread(scenario)


async def test_function_api(stack: Stack) -> None:
    from sorna.client import (
        create_kernel,
        destroy_kernel,
        execute_code,
        get_kernel_info,
        restart_kernel,
    )

    def scenario() -> None:
        kernel_id = create_kernel("python3", "fn-api-token", config=stack.user)
        assert create_kernel("python3", "fn-api-token", config=stack.user) == kernel_id
        assert execute_code(kernel_id, "v = 2", config=stack.user).status == RunStatus.FINISHED
        assert execute_code(kernel_id, "print(v * 21)", config=stack.user).stdout == "42\n"
        assert get_kernel_info(kernel_id, config=stack.user).lang == "python3"
        restart_kernel(kernel_id, config=stack.user)
        assert "NameError" in execute_code(kernel_id, "v", config=stack.user).stderr
        assert isinstance(destroy_kernel(kernel_id, config=stack.user), dict)
        with pytest.raises(KernelNotFound):
            get_kernel_info(kernel_id, config=stack.user)

    await asyncio.to_thread(scenario)
