"""The ZMQ RPC: real ROUTER/DEALER sockets over TCP loopback, on free ports."""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import pytest
import zmq
import zmq.asyncio

from sorna.common.codec import packb, unpackb
from sorna.common.errors import (
    CodecError,
    ConfigError,
    MethodNotFound,
    RemoteError,
    RPCClosed,
    RPCTimeout,
)
from sorna.common.rpc import Handler, RPCClient, RPCClientPool, RPCServer

LOOPBACK = "tcp://127.0.0.1:0"
MIB = 1024 * 1024


async def ping(params: dict[str, Any]) -> Any:
    return {"echo": params.get("echo")}


async def echo_after(params: dict[str, Any]) -> Any:
    await asyncio.sleep(params["delay"])
    return params["value"]


async def hang(params: dict[str, Any]) -> Any:
    await asyncio.Event().wait()


async def kernel_not_found(params: dict[str, Any]) -> Any:
    raise RemoteError("kernel-not-found", f"no kernel {params['kernel_id']}", {"retry": False})


async def crash(params: dict[str, Any]) -> Any:
    raise ValueError("boom")


async def bad_config(params: dict[str, Any]) -> Any:
    raise ConfigError("limits.mem_kib: not a number")


async def unencodable(params: dict[str, Any]) -> Any:
    return {"oops": object()}


async def reverse_bytes(params: dict[str, Any]) -> Any:
    data: bytes = params["data"]
    return {"data": data[::-1], "size": len(data)}


HANDLERS: Mapping[str, Handler] = {
    "ping": ping,
    "echo_after": echo_after,
    "hang": hang,
    "kernel_not_found": kernel_not_found,
    "crash": crash,
    "bad_config": bad_config,
    "unencodable": unencodable,
    "reverse_bytes": reverse_bytes,
}

ServerFactory = Callable[..., Awaitable[RPCServer]]
ClientFactory = Callable[..., RPCClient]


@pytest.fixture(autouse=True)
async def nothing_left_behind() -> AsyncIterator[None]:
    """Fail a test that leaves tasks running or sockets/contexts unclosed."""
    yield
    # Set up first, so torn down last: every server and client is closed by now.
    assert asyncio.all_tasks() == {asyncio.current_task()}
    # Unclosed zmq sockets and contexts warn (an error here) when collected.
    gc.collect()


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    servers: list[RPCServer] = []

    async def make(
        handlers: Mapping[str, Handler] = HANDLERS, address: str = LOOPBACK
    ) -> RPCServer:
        server = RPCServer(address=address, handlers=handlers)
        await server.start()
        servers.append(server)
        return server

    try:
        yield make
    finally:
        for server in servers:
            await server.close()


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    clients: list[RPCClient] = []

    def make(address: str, **kwargs: Any) -> RPCClient:
        client = RPCClient(address, **kwargs)
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close()


@pytest.fixture
async def server(make_server: ServerFactory) -> RPCServer:
    return await make_server()


@pytest.fixture
def client(server: RPCServer, make_client: ClientFactory) -> RPCClient:
    return make_client(server.address)


async def test_round_trip(server: RPCServer, client: RPCClient) -> None:
    assert server.address.startswith("tcp://127.0.0.1:")
    assert await client.call("ping", {"echo": "hello"}) == {"echo": "hello"}
    assert await client.call("ping", {"echo": b"\x00\xff"}) == {"echo": b"\x00\xff"}
    assert client.pending == 0


async def test_concurrent_calls_are_matched_by_id_not_order(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    finished: list[int] = []

    async def jitter(params: dict[str, Any]) -> Any:
        await asyncio.sleep(params["delay"])
        finished.append(params["n"])
        return {"n": params["n"], "square": params["n"] ** 2}

    server = await make_server({"jitter": jitter})
    client = make_client(server.address)
    rng = random.Random(2)
    calls = [client.call("jitter", {"n": n, "delay": rng.uniform(0, 0.05)}) for n in range(1000)]
    results = await asyncio.gather(*calls)

    assert results == [{"n": n, "square": n * n} for n in range(1000)]
    assert sorted(finished) == list(range(1000))
    assert finished != list(range(1000)), "replies should have come back out of order"
    assert client.pending == 0


async def test_timeout_raises_and_leaves_no_pending_entry(
    server: RPCServer, client: RPCClient
) -> None:
    with pytest.raises(RPCTimeout):  # the call's deadline fires first (bench/deadlines.py)
        await asyncio.wait_for(client.call("hang", timeout=0.2), 60)
    assert client.pending == 0
    # The client is still usable afterwards.
    assert await client.call("ping", {"echo": 1}) == {"echo": 1}


async def test_late_reply_after_timeout_is_dropped(server: RPCServer, client: RPCClient) -> None:
    with pytest.raises(RPCTimeout):
        await client.call("echo_after", {"delay": 0.3, "value": "late"}, timeout=0.1)
    assert client.pending == 0
    await asyncio.sleep(0.4)  # the late reply arrives now and must be ignored
    assert await client.call("echo_after", {"delay": 0, "value": "fresh"}) == "fresh"
    assert client.pending == 0


async def test_per_method_default_timeout(server: RPCServer, make_client: ClientFactory) -> None:
    client = make_client(server.address, timeout=3600.0, method_timeouts={"hang": 0.1})
    with pytest.raises(RPCTimeout):  # the method's deadline, long before the client's
        await asyncio.wait_for(client.call("hang"), 60)
    assert client.pending == 0
    # An explicit timeout beats the method's default.
    assert await client.call("echo_after", {"delay": 0.2, "value": 1}, timeout=5) == 1


async def test_cancelled_call_leaves_no_pending_entry(server: RPCServer, client: RPCClient) -> None:
    task = asyncio.create_task(client.call("hang"))
    await asyncio.sleep(0.05)
    assert client.pending == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.pending == 0


async def test_remote_error_keeps_its_type(server: RPCServer, client: RPCClient) -> None:
    with pytest.raises(RemoteError) as caught:
        await client.call("kernel_not_found", {"kernel_id": "k1"})
    assert type(caught.value) is RemoteError
    assert caught.value.type == "kernel-not-found"
    assert caught.value.message == "no kernel k1"
    assert caught.value.data == {"retry": False}


async def test_handler_crash_is_an_internal_error(server: RPCServer, client: RPCClient) -> None:
    with pytest.raises(RemoteError) as caught:
        await client.call("crash")
    assert caught.value.type == "internal-error"
    assert "ValueError: boom" in caught.value.message
    # The server survives its handler's crash.
    assert await client.call("ping", {"echo": 2}) == {"echo": 2}


async def test_sorna_error_maps_to_its_type_name(server: RPCServer, client: RPCClient) -> None:
    with pytest.raises(RemoteError) as caught:
        await client.call("bad_config")
    assert caught.value.type == "config-error"
    assert caught.value.message == "limits.mem_kib: not a number"


async def test_unencodable_result_becomes_a_codec_error(
    server: RPCServer, client: RPCClient
) -> None:
    with pytest.raises(RemoteError) as caught:
        await client.call("unencodable")
    assert caught.value.type == "codec-error"


async def test_unencodable_params_fail_in_the_caller(server: RPCServer, client: RPCClient) -> None:
    with pytest.raises(CodecError):
        await client.call("ping", {"echo": object()})
    assert client.pending == 0


async def test_unknown_method(server: RPCServer, client: RPCClient) -> None:
    with pytest.raises(MethodNotFound) as caught:
        await client.call("no_such_method", {})
    assert caught.value.type == "method-not-found"
    assert "no_such_method" in caught.value.message
    assert client.pending == 0


async def test_ten_mib_payload_both_ways(server: RPCServer, client: RPCClient) -> None:
    data = random.Random(10).randbytes(10 * MIB)
    result = await client.call("reverse_bytes", {"data": data}, timeout=30)
    assert result["size"] == 10 * MIB
    assert result["data"] == data[::-1]


async def test_server_restart_mid_use(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    first = await make_server()
    address = first.address
    client = make_client(address)
    assert await client.call("ping", {"echo": "before"}) == {"echo": "before"}

    await first.close()
    # A call made while the server is down waits and succeeds once it is back.
    during = asyncio.create_task(client.call("ping", {"echo": "during"}, timeout=10))
    await asyncio.sleep(0.3)
    assert not during.done()

    second = await make_server(address=address)
    assert second.address == address
    assert await during == {"echo": "during"}
    assert await client.call("ping", {"echo": "after"}, timeout=10) == {"echo": "after"}
    results = await asyncio.gather(*(client.call("ping", {"echo": n}) for n in range(100)))
    assert results == [{"echo": n} for n in range(100)]
    assert client.pending == 0


async def test_request_lost_with_the_old_server_times_out(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    first = await make_server()
    address = first.address
    client = make_client(address)
    lost = asyncio.create_task(client.call("hang", timeout=1.0))
    await asyncio.sleep(0.1)
    await first.close()
    await make_server(address=address)
    with pytest.raises(RPCTimeout):
        await lost
    assert await client.call("ping", {"echo": 3}, timeout=10) == {"echo": 3}
    assert client.pending == 0


async def test_close_fails_pending_calls(server: RPCServer, client: RPCClient) -> None:
    calls = [asyncio.create_task(client.call("hang")) for _ in range(5)]
    await asyncio.sleep(0.05)
    assert client.pending == 5
    await client.close()
    for call in calls:
        with pytest.raises(RPCClosed):
            await call
    assert client.pending == 0
    with pytest.raises(RPCClosed):
        await client.call("ping")
    await client.close()  # closing twice is harmless


async def test_server_close_cancels_running_handlers(make_client: ClientFactory) -> None:
    entered = asyncio.Event()
    cancelled = asyncio.Event()

    async def wait_forever(params: dict[str, Any]) -> Any:
        entered.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    async with RPCServer(address=LOOPBACK, handlers={"wait": wait_forever}) as server:
        client = make_client(server.address)
        call = asyncio.create_task(client.call("wait", timeout=0.5))
        await asyncio.wait_for(entered.wait(), 5)
    assert cancelled.is_set()
    with pytest.raises(RPCTimeout):
        await call


async def test_wire_format_and_expired_deadline(server: RPCServer) -> None:
    """Speak the protocol with a bare DEALER: exact reply maps, and expired requests dropped."""
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(server.address)
        await sock.send(b"\xc1 not msgpack")
        await sock.send(packb(["not", "a", "map"]))
        await sock.send(
            packb(
                {"v": 1, "id": "old", "method": "ping", "params": {}, "deadline": time.time() - 1}
            )
        )
        await sock.send(packb({"v": 2, "id": "v2", "method": "ping", "params": {}}))
        await sock.send(packb({"v": 1, "id": "a", "method": "ping", "params": {"echo": 7}}))
        await sock.send(packb({"v": 1, "id": "b", "method": "nope", "params": {}}))

        replies = [unpackb(await asyncio.wait_for(sock.recv(), 5)) for _ in range(3)]
        by_id = {reply["id"]: reply for reply in replies}
        assert by_id["v2"]["error"]["type"] == "bad-request"
        assert by_id["a"] == {"v": 1, "id": "a", "result": {"echo": 7}}
        assert by_id["b"]["v"] == 1
        assert by_id["b"]["error"]["type"] == "method-not-found"
        assert set(by_id["b"]["error"]) == {"type", "message", "data"}
        # Nothing ever answers the garbage or the expired request.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(sock.recv(), 0.3)
    finally:
        sock.close()
        ctx.term()


async def test_pool_keeps_one_client_per_address(make_server: ServerFactory) -> None:
    one, two = await make_server(), await make_server()
    async with RPCClientPool(method_timeouts={"hang": 0.1}) as pool:
        assert pool.get(one.address) is pool.get(one.address)
        assert await pool.call(one.address, "ping", {"echo": 1}) == {"echo": 1}
        assert await pool.call(two.address, "ping", {"echo": 2}) == {"echo": 2}
        with pytest.raises(RPCTimeout):
            await pool.call(two.address, "hang")
        first = pool.get(one.address)
        await pool.discard(one.address)
        assert pool.get(one.address) is not first
        pending = asyncio.create_task(pool.call(one.address, "hang", timeout=10))
        await asyncio.sleep(0.05)
    with pytest.raises(RPCClosed):
        await pending
    with pytest.raises(RPCClosed):
        pool.get(one.address)


async def test_shared_context_is_left_open(make_server: ServerFactory) -> None:
    ctx = zmq.asyncio.Context()
    try:
        server = await make_server()
        async with RPCClient(server.address, context=ctx) as client:
            assert await client.call("ping", {"echo": 4}) == {"echo": 4}
        assert not ctx.closed
    finally:
        ctx.term()


async def test_coroutine_handlers_run_in_a_task_and_plain_ones_inline(
    make_client: ClientFactory,
) -> None:
    async def bounded(params: dict[str, Any]) -> Any:
        # asyncio.timeout needs a current task, even before the first wait.
        assert asyncio.current_task() is not None
        async with asyncio.timeout(5):
            await asyncio.sleep(0)
            return params["x"] * 2

    def quick(params: dict[str, Any]) -> Any:
        return {"inline": asyncio.current_task() is None, "x": params["x"]}

    def quick_fails(params: dict[str, Any]) -> Any:
        raise KeyError("nope")

    handlers = {"bounded": bounded, "quick": quick, "quick_fails": quick_fails}
    async with RPCServer(address=LOOPBACK, handlers=handlers) as server:
        client = make_client(server.address)
        assert await client.call("bounded", {"x": 21}) == 42
        assert await client.call("quick", {"x": 1}) == {"inline": True, "x": 1}
        with pytest.raises(RemoteError) as err:
            await client.call("quick_fails")
        assert err.value.type == "internal-error"


async def test_handlers_that_wait_in_several_steps_and_fail_late(
    make_client: ClientFactory,
) -> None:
    async def steps(params: dict[str, Any]) -> Any:
        total = 0
        for i in range(3):
            await asyncio.sleep(0)  # a bare yield
            await asyncio.sleep(0.001 * i)  # a timer future
            total += i
        if params.get("fail"):
            raise LookupError("late failure")
        return total

    async def survives_cancel_of_inner(params: dict[str, Any]) -> Any:
        inner = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, inner.set_exception, KeyError("inner"))
        try:
            await inner
        except KeyError:
            return "caught"
        return "not reached"

    handlers = {"steps": steps, "inner": survives_cancel_of_inner}
    async with RPCServer(address=LOOPBACK, handlers=handlers) as server:
        client = make_client(server.address)
        results = await asyncio.gather(*(client.call("steps") for _ in range(20)))
        assert results == [3] * 20
        with pytest.raises(RemoteError) as err:
            await client.call("steps", {"fail": True})
        assert err.value.type == "internal-error"
        assert "LookupError: late failure" in err.value.message
        assert await client.call("inner") == "caught"
