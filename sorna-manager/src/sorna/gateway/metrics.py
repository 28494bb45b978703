"""Prometheus text-format metrics, kept in-process per gateway."""

from __future__ import annotations

import bisect
from collections import defaultdict
from typing import Final

BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency_buckets: dict[str, list[int]] = defaultdict(lambda: [0] * len(BUCKETS))
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.latency_count: dict[str, int] = defaultdict(int)
        self.rpc_errors: dict[str, int] = defaultdict(int)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, status)] += 1
        i = bisect.bisect_left(BUCKETS, seconds)
        buckets = self.latency_buckets[route]
        for j in range(i, len(BUCKETS)):
            buckets[j] += 1
        self.latency_sum[route] += seconds
        self.latency_count[route] += 1

    def rpc_error(self, kind: str) -> None:
        self.rpc_errors[kind] += 1

    def render(self, *, live_kernels: int, live_agents: int) -> str:
        out = [
            "# HELP sorna_http_requests_total HTTP requests by method, route and status.",
            "# TYPE sorna_http_requests_total counter",
        ]
        for (method, route, status), n in sorted(self.requests.items()):
            out.append(
                f'sorna_http_requests_total{{method="{method}",route="{_esc(route)}",'
                f'status="{status}"}} {n}'
            )
        out += [
            "# HELP sorna_http_request_duration_seconds Request latency by route.",
            "# TYPE sorna_http_request_duration_seconds histogram",
        ]
        for route, buckets in sorted(self.latency_buckets.items()):
            r = _esc(route)
            for le, n in zip(BUCKETS, buckets, strict=True):
                out.append(
                    f'sorna_http_request_duration_seconds_bucket{{route="{r}",le="{le}"}} {n}'
                )
            count = self.latency_count[route]
            out.append(
                f'sorna_http_request_duration_seconds_bucket{{route="{r}",le="+Inf"}} {count}'
            )
            out.append(
                f'sorna_http_request_duration_seconds_sum{{route="{r}"}} {self.latency_sum[route]}'
            )
            out.append(f'sorna_http_request_duration_seconds_count{{route="{r}"}} {count}')
        out += [
            "# HELP sorna_live_kernels Kernels alive in the books.",
            "# TYPE sorna_live_kernels gauge",
            f"sorna_live_kernels {live_kernels}",
            "# HELP sorna_live_agents Agents with a fresh heartbeat.",
            "# TYPE sorna_live_agents gauge",
            f"sorna_live_agents {live_agents}",
            "# HELP sorna_rpc_errors_total Agent RPC failures by kind.",
            "# TYPE sorna_rpc_errors_total counter",
        ]
        for kind, n in sorted(self.rpc_errors.items()):
            out.append(f'sorna_rpc_errors_total{{kind="{_esc(kind)}"}} {n}')
        return "\n".join(out) + "\n"


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
