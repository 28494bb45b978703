"""The typed agent RPC: AgentClient against an AgentMethods table on real ZMQ sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from sorna.common import messages as m
from sorna.common.agentapi import AgentClient, AgentMethods
from sorna.common.errors import BadReply, ErrorType, RemoteError, SornaError
from sorna.common.ids import KernelId, RunId
from sorna.common.rpc import Handler, RPCClient, RPCServer


class Refused(SornaError):
    error_type = ErrorType.PAYLOAD_TOO_LARGE


def _table(**overrides: Handler) -> dict[str, Handler]:
    methods = AgentMethods()
    methods.serve_inline(m.PING, lambda p: m.PingResult(echo=p.echo))

    async def create(p: m.CreateKernelParams) -> m.CreateKernelResult:
        return m.CreateKernelResult(
            kernel_id=p.kernel_id, lang=p.lang, image="img", limits=p.limits, features=["tty"]
        )

    async def destroy(p: m.KernelRef) -> m.DestroyKernelResult:
        return m.DestroyKernelResult(stats=m.KernelUsage(cpu_ms=7, mem_max_bytes=4096))

    async def empty(p: m.KernelRef) -> m.Empty:
        return m.Empty()

    async def execute(p: m.ExecuteParams) -> m.ExecuteResult:
        return m.ExecuteResult(runId=p.run_id, status="finished", console=[["stdout", p.code]])

    async def complete(p: m.CompletionParams) -> m.CompletionResult:
        return m.CompletionResult(completions=[p.code + "nt"])

    async def upload(p: m.UploadFileParams) -> m.Empty:
        raise Refused(f"{len(p.data)} bytes do not fit")

    async def listing(p: m.ListFilesParams) -> m.ListFilesResult:
        return m.ListFilesResult(files=[{"name": p.path}])

    async def download(p: m.DownloadFileParams) -> m.DownloadFileResult:
        return m.DownloadFileResult(data=b"abc"[p.offset :], eof=True)

    async def reset(p: m.Empty) -> m.ResetResult:
        return m.ResetResult(destroyed=[KernelId("k")])

    methods.serve(m.CREATE_KERNEL, create)
    methods.serve(m.DESTROY_KERNEL, destroy)
    methods.serve(m.RESTART_KERNEL, empty)
    methods.serve(m.INTERRUPT_KERNEL, empty)
    methods.serve(m.EXECUTE, execute)
    methods.serve(m.GET_COMPLETIONS, complete)
    methods.serve(m.UPLOAD_FILE, upload)
    methods.serve(m.LIST_FILES, listing)
    methods.serve(m.DOWNLOAD_FILE, download)
    methods.serve(m.RESET, reset)
    return {**methods.handlers(), **overrides}


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Any]]:
    opened: list[RPCServer | RPCClient] = []

    async def start(**overrides: Handler) -> AgentClient:
        server = RPCServer(address="tcp://127.0.0.1:0", handlers=_table(**overrides))
        await server.start()
        opened.append(server)
        rpc = RPCClient(server.address, timeout=10)
        opened.append(rpc)
        return AgentClient(rpc)

    try:
        yield start
    finally:
        for each in reversed(opened):
            await each.close()


async def test_every_method_round_trips_its_dataclasses(connect: Any) -> None:
    agent: AgentClient = await connect()
    k = KernelId("k1")
    assert await agent.ping(m.PingParams(echo=[1, "x"])) == m.PingResult(echo=[1, "x"])
    created = await agent.create_kernel(
        m.CreateKernelParams(kernel_id=k, lang="python3", owner="AK", limits=m.KernelLimits(cpus=2))
    )
    assert created.limits == m.KernelLimits(cpus=2) and created.features == ["tty"]
    destroyed = await agent.destroy_kernel(m.KernelRef(k))
    assert destroyed.stats.columns()["max_mem_kib"] == 4 and destroyed.stats.cpu_ms == 7
    assert await agent.restart_kernel(m.KernelRef(k)) == m.Empty()
    assert await agent.interrupt_kernel(m.KernelRef(k)) == m.Empty()
    ran = await agent.execute(
        m.ExecuteParams(kernel_id=k, run_id=RunId("r"), mode="query", code="1")
    )
    assert ran.console == [["stdout", "1"]] and ran.runId == "r"
    found = await agent.get_completions(m.CompletionParams(kernel_id=k, code="pri"))
    assert found.completions == ["print"]
    listed = await agent.list_files(m.ListFilesParams(kernel_id=k, path="d"))
    assert listed.files == [{"name": "d"}]
    got = await agent.download_file(m.DownloadFileParams(kernel_id=k, path="f", offset=1))
    assert (got.data, got.eof) == (b"bc", True)
    assert (await agent.reset(m.Empty())).destroyed == ["k"]


async def test_a_handler_error_crosses_as_its_error_type(connect: Any) -> None:
    agent: AgentClient = await connect()
    with pytest.raises(RemoteError) as caught:
        await agent.upload_file(m.UploadFileParams(kernel_id=KernelId("k"), path="p", data=b"xy"))
    assert caught.value.type is ErrorType.PAYLOAD_TOO_LARGE
    assert caught.value.message == "2 bytes do not fit"


async def test_params_of_the_wrong_type_are_invalid_api_params(connect: Any) -> None:
    agent: AgentClient = await connect()
    rpc = agent._rpc  # the raw map, as a peer of another version could send it
    with pytest.raises(RemoteError) as caught:
        await rpc.call(m.CREATE_KERNEL.name, {"kernel_id": "k", "lang": 5, "owner": "AK"})
    assert caught.value.type is ErrorType.INVALID_API_PARAMS
    assert "'lang'" in caught.value.message


async def test_a_malformed_reply_is_a_bad_reply(connect: Any) -> None:
    async def wrong(params: dict[str, Any]) -> Any:
        return {"completions": "not a list"}

    async def not_a_map(params: dict[str, Any]) -> Any:
        return [1, 2]

    agent: AgentClient = await connect(
        **{m.GET_COMPLETIONS.name: wrong, m.LIST_FILES.name: not_a_map}
    )
    with pytest.raises(BadReply, match="completions"):
        await agent.get_completions(m.CompletionParams(kernel_id=KernelId("k"), code=""))
    with pytest.raises(BadReply) as caught:
        await agent.list_files(m.ListFilesParams(kernel_id=KernelId("k")))
    assert caught.value.type is ErrorType.BAD_REPLY


async def test_an_unknown_wire_type_keeps_its_name(connect: Any) -> None:
    async def newer(params: dict[str, Any]) -> Any:
        raise RemoteError("kernel-on-fire", "hot")  # type: ignore[arg-type]

    agent: AgentClient = await connect(**{m.INTERRUPT_KERNEL.name: newer})
    with pytest.raises(RemoteError) as caught:
        await agent.interrupt_kernel(m.KernelRef(KernelId("k")))
    assert caught.value.type is ErrorType.INTERNAL_ERROR
    assert caught.value.message == "kernel-on-fire: hot"


def test_the_table_is_complete_and_each_method_served_once() -> None:
    methods = AgentMethods()
    methods.serve_inline(m.PING, lambda p: m.PingResult(echo=p.echo))
    with pytest.raises(ValueError, match="served twice"):
        methods.serve_inline(m.PING, lambda p: m.PingResult())
    with pytest.raises(ValueError, match="no handler for create_kernel"):
        methods.handlers()


def test_the_client_has_one_method_per_rpc_method() -> None:
    for name, method in m.RPC_METHODS.items():
        assert callable(getattr(AgentClient, name)), name
        assert method.name == name
    # The error types keep the wire strings of before (the API shows them in agent_details).
    assert ErrorType.KERNEL_NOT_FOUND.value == "kernel-not-found"
    assert ErrorType.INVALID_API_PARAMS.value == "invalid-api-params"
