"""The manager's settings: ``load_settings(ManagerSettings, path=..., env=...)``."""

from __future__ import annotations

import dataclasses

from sorna.common.config import (
    DatabaseSettings,
    LoggingSettings,
    RedisSettings,
    S3Settings,
    section,
    setting,
)
from sorna.common.constants import GATEWAY_HTTP_PORT, HEARTBEAT_INTERVAL
from sorna.manager.scheduler import DEFAULT_POLICY, PolicyName


@dataclasses.dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = setting("0.0.0.0", "address the API listens on")
    port: int = setting(GATEWAY_HTTP_PORT, "port the API listens on")
    workers: int = setting(1, "gateway processes sharing the port (SO_REUSEPORT)")
    metrics_host: str = setting("", "separate address for /metrics; empty serves it on the API")
    metrics_port: int = setting(9180, "port of the separate /metrics listener")
    max_body_bytes: int = setting(2 << 20, "largest JSON request body")
    console_enabled: bool = setting(
        False, "serve the demo console page at /console/ (needs the sorna-media package)"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class AuthSettings:
    max_skew_s: float = setting(900.0, "allowed difference between Date and the server clock")
    cache_ttl_s: float = setting(2.0, "how long a keypair stays cached in-process")
    usage_flush_s: float = setting(1.0, "period of the batched last_used/num_queries write")


@dataclasses.dataclass(frozen=True, slots=True)
class LimitSettings:
    rate_window_s: int = setting(900, "sliding rate-limit window (seconds)")
    default_rate_limit: int = setting(1000, "requests per window of a new keypair")
    default_concurrency_limit: int = setting(5, "live kernels of a new keypair")
    max_code_bytes: int = setting(1 << 20, "largest code of one execute request")
    upload_max_files: int = setting(20, "files in one upload")
    upload_max_file_bytes: int = setting(
        1 << 20, "bytes of one uploaded file (the one upload cap; over it: 413)"
    )
    download_chunk_bytes: int = setting(256 << 10, "bytes fetched per download RPC")


@dataclasses.dataclass(frozen=True, slots=True)
class ManagerTimings:
    liveness_interval_s: float = setting(1.0, "period of the agent liveness sweep")
    startup_grace_s: float = setting(
        2 * HEARTBEAT_INTERVAL, "after start-up, 503 instead of 'no agent' while heartbeats arrive"
    )
    rpc_timeout_s: float = setting(30.0, "default agent RPC timeout")
    create_timeout_s: float = setting(60.0, "timeout of create_kernel and restart_kernel")
    execute_timeout_s: float = setting(60.0, "timeout of one execute RPC")
    create_wait_s: float = setting(60.0, "how long a concurrent create waits for the first")


@dataclasses.dataclass(frozen=True, slots=True)
class SchedulerSettings:
    policy: PolicyName = setting(
        DEFAULT_POLICY,
        "placement of new kernels: least-loaded (the agent with the most free slots) or pack"
        " (the one with the fewest that still has one: agents fill in turn)",
    )


@dataclasses.dataclass(frozen=True, slots=True)
class ManagerSettings:
    server: ServerSettings = section(ServerSettings, "HTTP listener")
    redis: RedisSettings = section(RedisSettings, "Redis")
    db: DatabaseSettings = section(DatabaseSettings, "PostgreSQL")
    s3: S3Settings = section(S3Settings, "S3 (unused by the gateway itself)")
    logging: LoggingSettings = section(LoggingSettings, "logging")
    auth: AuthSettings = section(AuthSettings, "authentication")
    limits: LimitSettings = section(LimitSettings, "limits")
    timings: ManagerTimings = section(ManagerTimings, "manager timings")
    scheduler: SchedulerSettings = section(SchedulerSettings, "placement of new kernels")
