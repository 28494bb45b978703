"""The manager's side of the agent seam: the error table and the query-mode rule."""

from __future__ import annotations

import pytest

from sorna.common.errors import ErrorType
from sorna.common.types import ExecMode, RunStatus
from sorna.manager.errors import AGENT_ERRORS, InvalidAPIParams, KernelNotFound, PayloadTooLarge
from sorna.manager.kernels import query_mode


def test_every_agent_error_type_has_its_api_problem() -> None:
    assert set(AGENT_ERRORS) == set(ErrorType)
    assert AGENT_ERRORS[ErrorType.KERNEL_NOT_FOUND] is KernelNotFound
    assert AGENT_ERRORS[ErrorType.INVALID_API_PARAMS] is InvalidAPIParams
    assert AGENT_ERRORS[ErrorType.PAYLOAD_TOO_LARGE] is PayloadTooLarge
    # The rest are the failure of the call (kernel-creation- or kernel-execution-failed).
    assert AGENT_ERRORS[ErrorType.INSTANCE_FULL] is None


CONT, WAIT = str(RunStatus.CONTINUED), str(RunStatus.WAITING_INPUT)


@pytest.mark.parametrize(
    ("mode", "code", "run_id", "pending", "state", "expected"),
    [
        # An empty query continues, whatever is pending.
        (ExecMode.QUERY, "", None, "r1", CONT, ExecMode.CONTINUE),
        (ExecMode.QUERY, "", None, None, "", ExecMode.CONTINUE),
        # Code while the pending run waits for input is that input.
        (ExecMode.QUERY, "bob", None, "r1", WAIT, ExecMode.INPUT),
        (ExecMode.QUERY, "bob", "r1", "r1", WAIT, ExecMode.INPUT),
        # Code naming the pending run continues it; otherwise code is a new run.
        (ExecMode.QUERY, "x", "r1", "r1", CONT, ExecMode.CONTINUE),
        (ExecMode.QUERY, "x", None, "r1", CONT, ExecMode.QUERY),
        (ExecMode.QUERY, "x", "r2", "r1", WAIT, ExecMode.QUERY),
        (ExecMode.QUERY, "x", None, None, "", ExecMode.QUERY),
        # Explicit modes are taken as they are.
        (ExecMode.BATCH, "", None, "r1", CONT, ExecMode.BATCH),
        (ExecMode.INPUT, "", "r1", "r1", WAIT, ExecMode.INPUT),
        (ExecMode.CONTINUE, "x", None, None, "", ExecMode.CONTINUE),
    ],
)
def test_query_mode(
    mode: ExecMode,
    code: str,
    run_id: str | None,
    pending: str | None,
    state: str,
    expected: ExecMode,
) -> None:
    assert query_mode(mode, code, run_id, pending, state) is expected
