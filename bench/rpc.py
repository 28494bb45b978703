"""Benchmark sorna.common.rpc against raw pyzmq REQ/REP over TCP loopback.

Prints p50/p99 round-trip latency of ``ping`` through the typed agent client (``AgentClient``
to an ``AgentMethods`` table: the gateway's path), through the RPC layer alone (maps by
method name), and through a bare REQ/REP pair exchanging the same bytes, their ratios
(target <= 1.5), and the throughput of 64 concurrent typed callers sharing one client socket
(target >= 5,000 calls/s). Each server runs in its own process, like an agent would.

Usage: ``python bench/rpc.py [--calls N] [--payload BYTES]``
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import subprocess
import sys
import time

import zmq
import zmq.asyncio

from sorna.common.agentapi import AgentClient, AgentMethods
from sorna.common.codec import packb
from sorna.common.messages import PING, PingParams, PingResult
from sorna.common.rpc import RPCClient, RPCServer

CONCURRENCY = 64
RATIO_TARGET = 1.5
THROUGHPUT_TARGET = 5_000.0


def _ping(params: PingParams) -> PingResult:
    # A plain function: quick methods like ping are answered inline, without a task.
    return PingResult(echo=params.echo)


async def _serve_rpc() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    methods = AgentMethods()
    methods.serve_inline(PING, _ping)
    handlers = methods.handlers(partial=True)
    async with RPCServer(address="tcp://127.0.0.1:0", handlers=handlers) as server:
        print(server.address, flush=True)
        await stop.wait()


def _serve_raw() -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind("tcp://127.0.0.1:0")
    print(sock.getsockopt_string(zmq.LAST_ENDPOINT), flush=True)
    while True:  # until SIGTERM ends the process
        sock.send(sock.recv())


class _Server:
    """A server process of one kind; its first stdout line is the bound address."""

    def __init__(self, kind: str) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", kind], stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        self.address = self._proc.stdout.readline().strip()
        if not self.address:
            raise RuntimeError(f"{kind} server did not start")

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _percentiles(samples_ns: list[int]) -> tuple[float, float]:
    """Return (p50, p99) in microseconds."""
    cuts = statistics.quantiles(samples_ns, n=100, method="inclusive")
    return cuts[49] / 1e3, cuts[98] / 1e3


async def _measure(
    raw_address: str, rpc_address: str, payload: bytes, calls: int, rounds: int
) -> tuple[list[int], list[int], list[int], float]:
    """Time sequential round trips of each kind in alternating rounds, then the throughput.

    Alternating keeps the samples comparable on a machine whose load drifts.
    """
    body = packb(
        {"v": 1, "id": "0", "method": PING.name, "params": {"echo": payload}, "deadline": 0.0}
    )
    params = {"echo": payload}
    typed_params = PingParams(echo=payload)
    raw: list[int] = []
    rpc: list[int] = []
    typed: list[int] = []
    clock = time.perf_counter_ns
    ctx = zmq.Context()
    req = ctx.socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(raw_address)
    try:
        async with RPCClient(rpc_address, timeout=10.0) as client:
            agent = AgentClient(client)
            for _ in range(calls // 10):  # warm up every path
                req.send(body)
                req.recv()
                await client.call(PING.name, params)
                await agent.ping(typed_params)
            for _ in range(rounds):
                for _ in range(calls // rounds):
                    started = clock()
                    req.send(body)
                    req.recv()
                    raw.append(clock() - started)
                for _ in range(calls // rounds):
                    started = clock()
                    await client.call(PING.name, params)
                    rpc.append(clock() - started)
                for _ in range(calls // rounds):
                    started = clock()
                    await agent.ping(typed_params)
                    typed.append(clock() - started)

            per_caller = max(calls // CONCURRENCY, 50)

            async def caller() -> None:
                for _ in range(per_caller):
                    await agent.ping(typed_params)

            started = clock()
            await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
            throughput = CONCURRENCY * per_caller / ((clock() - started) / 1e9)
    finally:
        req.close()
        ctx.term()
    return raw, rpc, typed, throughput


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="measured sequential calls")
    parser.add_argument("--payload", type=int, default=64, help="ping echo size in bytes")
    parser.add_argument("--rounds", type=int, default=10, help="alternating measurement rounds")
    parser.add_argument("--serve", choices=["rpc", "raw"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "rpc":
        asyncio.run(_serve_rpc())
        return 0
    if args.serve == "raw":
        _serve_raw()
        return 0

    raw_server, rpc_server = _Server("raw"), _Server("rpc")
    try:
        raw, rpc, typed, throughput = asyncio.run(
            _measure(
                raw_server.address, rpc_server.address, b"x" * args.payload, args.calls, args.rounds
            )
        )
    finally:
        raw_server.stop()
        rpc_server.stop()

    raw_p50, raw_p99 = _percentiles(raw)
    rpc_p50, rpc_p99 = _percentiles(rpc)
    typed_p50, typed_p99 = _percentiles(typed)
    print(f"ping round trip over TCP loopback, {args.payload} B payload, {args.calls} calls")
    print(f"  raw pyzmq REQ/REP   p50 {raw_p50:8.1f} us   p99 {raw_p99:8.1f} us")
    print(f"  sorna.common.rpc    p50 {rpc_p50:8.1f} us   p99 {rpc_p99:8.1f} us   (by name)")
    print(f"  AgentClient         p50 {typed_p50:8.1f} us   p99 {typed_p99:8.1f} us   (typed)")
    for label, p50, p99 in (("rpc", rpc_p50, rpc_p99), ("typed", typed_p50, typed_p99)):
        ratio = p50 / raw_p50
        ok = "ok" if ratio <= RATIO_TARGET else "OVER TARGET"
        print(f"  ratio {label:5} (p50)   {ratio:8.2f}   (target <= {RATIO_TARGET}: {ok})")
        print(f"  ratio {label:5} (p99)   {p99 / raw_p99:8.2f}")
    ok = "ok" if throughput >= THROUGHPUT_TARGET else "UNDER TARGET"
    print(
        f"  throughput, {CONCURRENCY} concurrent callers on one socket: "
        f"{throughput:,.0f} calls/s   (target >= {THROUGHPUT_TARGET:,.0f}: {ok})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
