"""Sorna client: run code snippets in Sorna kernels, from Python or the ``sorna`` command.

Blocking::

    from sorna.client import Kernel

    with Kernel.get_or_create("python3") as kernel:
        print(kernel.run("print(6 * 7)").stdout)

Async::

    from sorna.client import AsyncKernel

    async with AsyncKernel.get_or_create("python3") as kernel:
        result = await kernel.run("print(6 * 7)")

Credentials come from ``SORNA_ACCESS_KEY`` / ``SORNA_SECRET_KEY`` (and ``SORNA_ENDPOINT``),
or ``~/.config/sorna/client.toml``; see :mod:`sorna.client.config`.
"""

from .admin import AsyncAdmin
from .config import ClientConfig, load_config
from .exceptions import (
    AuthenticationError,
    ConfigError,
    ConnectionFailed,
    Forbidden,
    InvalidRequest,
    KernelNotFound,
    NotFound,
    PayloadTooLarge,
    ProtocolError,
    QuotaExceeded,
    RateLimitExceeded,
    ServerError,
    ServiceUnavailable,
    SornaAPIError,
    SornaClientError,
    SornaError,
)
from .functions import (
    create_kernel,
    destroy_kernel,
    execute_code,
    get_kernel_info,
    restart_kernel,
)
from .kernel import AsyncKernel, ExecMode, InputRequest
from .session import AsyncSession
from .streams import AsyncExecuteStream, AsyncPtyStream, StreamEvent
from .sync import Admin, ExecuteStream, Kernel, PtyStream, Session
from .types import (
    ConsoleItem,
    FileEntry,
    KernelId,
    KernelInfo,
    Media,
    OutputFile,
    RunId,
    RunResult,
    RunStatus,
)

__version__ = "2.0.0"

__all__ = [
    "Admin",
    "AsyncAdmin",
    "AsyncExecuteStream",
    "AsyncKernel",
    "AsyncPtyStream",
    "AsyncSession",
    "AuthenticationError",
    "ClientConfig",
    "ConfigError",
    "ConnectionFailed",
    "ConsoleItem",
    "ExecMode",
    "ExecuteStream",
    "FileEntry",
    "Forbidden",
    "InputRequest",
    "InvalidRequest",
    "Kernel",
    "KernelId",
    "KernelInfo",
    "KernelNotFound",
    "Media",
    "NotFound",
    "OutputFile",
    "PayloadTooLarge",
    "ProtocolError",
    "PtyStream",
    "QuotaExceeded",
    "RateLimitExceeded",
    "RunId",
    "RunResult",
    "RunStatus",
    "ServerError",
    "ServiceUnavailable",
    "Session",
    "SornaAPIError",
    "SornaClientError",
    "SornaError",
    "StreamEvent",
    "__version__",
    "create_kernel",
    "destroy_kernel",
    "execute_code",
    "get_kernel_info",
    "load_config",
    "restart_kernel",
]
