"""The public names of sorna.client are exactly ``__all__``, and each one is documented."""

from __future__ import annotations

import inspect

import sorna.client
from sorna.client import __all__ as public_names

EXPECTED = {
    # library
    "Kernel", "AsyncKernel", "Session", "AsyncSession", "Admin", "AsyncAdmin",
    "ExecuteStream", "AsyncExecuteStream", "PtyStream", "AsyncPtyStream", "StreamEvent",
    "ExecMode", "InputRequest",
    # the original function API
    "create_kernel", "destroy_kernel", "restart_kernel", "get_kernel_info", "execute_code",
    # configuration
    "ClientConfig", "load_config",
    # results
    "RunResult", "RunStatus", "ConsoleItem", "Media", "OutputFile", "KernelInfo", "FileEntry",
    "KernelId", "RunId",
    # errors
    "SornaError", "SornaClientError", "SornaAPIError", "ConfigError", "ConnectionFailed",
    "ProtocolError", "InvalidRequest", "AuthenticationError", "Forbidden", "NotFound",
    "KernelNotFound", "QuotaExceeded", "PayloadTooLarge", "RateLimitExceeded", "ServerError",
    "ServiceUnavailable",
    "__version__",
}  # fmt: skip


def test_all_lists_the_public_api() -> None:
    assert set(public_names) == EXPECTED
    assert len(public_names) == len(set(public_names))


def test_every_name_in_all_exists_and_is_documented() -> None:
    for name in public_names:
        obj = getattr(sorna.client, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), f"{name} has no docstring"


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from sorna.client import *", namespace)
    assert {k for k in namespace if k != "__builtins__"} == set(public_names)


def test_no_other_public_module_level_names() -> None:
    modules = {"admin", "auth", "config", "exceptions", "kernel", "session", "streams", "sync"}
    modules |= {"types", "cli", "functions"}
    extra = {
        name
        for name in vars(sorna.client)
        if not name.startswith("_") and name not in public_names and name not in modules
    }
    assert extra == set()
