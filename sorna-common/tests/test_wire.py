"""Protocol dataclasses, the key layout, language aliases and logging."""

from __future__ import annotations

import io
import json
import logging

import pytest

from sorna.common import codec
from sorna.common.errors import CodecError
from sorna.common.ids import KernelId, new_agent_id, new_kernel_id, new_run_id
from sorna.common.keys import RedisKeys
from sorna.common.langs import LanguageOffer, decode_aliases, encode_aliases, image_name
from sorna.common.logging import setup_logging
from sorna.common.messages import (
    EVENT_NAMES,
    EVENT_TYPES,
    RPC_METHODS,
    CreateKernelParams,
    ExecuteResult,
    KernelLimits,
    KernelTerminated,
)


def test_every_protocol_method_has_types() -> None:
    assert set(RPC_METHODS) == {
        "ping", "create_kernel", "destroy_kernel", "restart_kernel", "execute",
        "interrupt_kernel", "get_completions", "upload_file", "list_files",
        "download_file", "reset",
    }  # fmt: skip
    assert set(EVENT_NAMES.values()) == set(EVENT_TYPES)


def test_messages_round_trip_through_the_codec() -> None:
    p = CreateKernelParams(
        kernel_id=new_kernel_id(), lang="python3", owner="AKIA", limits=KernelLimits(mem_kib=1024)
    )
    back = CreateKernelParams.from_wire(codec.unpackb(codec.packb(p.to_wire())))
    assert back == p
    r = ExecuteResult(runId=new_run_id(), status="finished", console=[["stdout", "hi\n"]])
    assert ExecuteResult.from_wire(codec.unpackb(codec.packb(r.to_wire()))) == r


def test_unknown_fields_are_ignored_and_missing_ones_rejected() -> None:
    t = KernelTerminated.from_wire({"kernel_id": "k", "reason": "exited", "future_field": 1})
    assert t == KernelTerminated(kernel_id=KernelId("k"), reason="exited")
    with pytest.raises(CodecError, match="missing field 'reason'"):
        KernelTerminated.from_wire({"kernel_id": "k"})
    with pytest.raises(CodecError, match="'mem_kib' has the wrong type"):
        KernelLimits.from_wire({"mem_kib": "lots"})
    with pytest.raises(CodecError, match=r"field .cpus. has the wrong type .bool."):
        KernelLimits.from_wire({"cpus": True})
    with pytest.raises(CodecError, match="expected a map"):
        KernelLimits.from_wire([1, 2])  # type: ignore[arg-type]


def test_key_layout() -> None:
    k = RedisKeys()
    assert k.agent("i-1") == "sorna:agent:i-1"  # type: ignore[arg-type]
    assert k.agent_alive("i-1") == "sorna:agent:i-1:alive"  # type: ignore[arg-type]
    assert k.session("AK", "python3", "tok") == "sorna:session:AK:python3:tok"  # type: ignore[arg-type]
    assert RedisKeys("other").events() == "other:events"
    with pytest.raises(ValueError, match="invalid Redis namespace"):
        RedisKeys("bad:ns")


def test_language_offer_merges_agents_and_resolves_names() -> None:
    """The aliases come from the agents' entries; a gateway holds no language table."""
    one = {"py3": "python3", "Python": "python3"}
    assert decode_aliases(encode_aliases(one)) == {"py3": "python3", "python": "python3"}
    assert decode_aliases("py=python3,broken,=x,y=") == {"py": "python3"}
    offer = LanguageOffer()
    offer.add(["python3"], ["nodejs"], one)
    offer.add(["shell"], [], {"bash": "shell"})
    assert offer.resolve(" Python ") == "python3"
    assert offer.resolve("BASH") == "shell"
    assert offer.resolve("nodejs") == "nodejs"
    assert offer.resolve("cobol") is None
    assert offer.why_not("cobol") == "unknown language 'cobol' (served: python3, shell)"
    assert "make image LANG=nodejs" in offer.why_not("nodejs")
    assert "python -m sorna.repl.imagebuild nodejs" in offer.why_not("nodejs")
    assert LanguageOffer().why_not("x") == "unknown language 'x' (served: none)"
    assert image_name("python3") == "sorna/kernel-python3:latest"


def test_ids_are_unique_and_shaped() -> None:
    assert len({new_kernel_id() for _ in range(100)}) == 100
    assert new_agent_id().startswith("i-")
    assert len(new_run_id()) == 16


def test_json_logging_writes_one_object_per_line() -> None:
    buf = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging("INFO", "json", stream=buf)
        logging.getLogger("sorna.test").info("kernel %s created", "k1", extra={"agent": "i-1"})
        logging.getLogger("sorna.test").debug("hidden")
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["msg"] == "kernel k1 created"
    assert rec["level"] == "INFO" and rec["logger"] == "sorna.test" and rec["agent"] == "i-1"


def test_usage_is_one_type_in_events_and_results() -> None:
    from sorna.common.messages import DestroyKernelResult, KernelStats, KernelUsage

    usage = KernelUsage(cpu_ms=5, mem_cur_bytes=2048, mem_max_bytes=10240)
    stats = KernelStats(stats={KernelId("k"): usage})
    back = KernelStats.from_wire(codec.unpackb(codec.packb(stats.to_wire())))
    assert back == stats and back.stats["k"].mem_cur_kib == 2
    assert KernelTerminated.from_wire({"kernel_id": "k", "reason": "exited"}).stats == KernelUsage()
    assert usage.columns() == {
        "cpu_used_ms": 5, "max_mem_kib": 10, "io_read_bytes": 0, "io_write_bytes": 0,
        "net_rx_bytes": 0, "net_tx_bytes": 0,
    }  # fmt: skip
    with pytest.raises(CodecError, match="'cpu_ms' must be int"):
        KernelStats.from_wire({"stats": {"k": {"cpu_ms": "lots"}}})
    with pytest.raises(CodecError, match="'stats' must be a map"):
        DestroyKernelResult.from_wire({"stats": 5})
