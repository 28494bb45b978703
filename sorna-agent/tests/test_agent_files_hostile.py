"""A kernel that attacks the agent through its own folder: link swaps, FIFOs, odd names.

The agent works on a kernel's folder as root, so each test here is a kernel trying to make it
read, list or write host files, block its threads, or fail on a name. Every test runs on both
backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import stat
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sorna.common import messages as msg
from sorna.common.errors import RemoteError

pytestmark = pytest.mark.docker

#: What the kernel's own file holds: a download must only ever return a prefix of it.
LEGIT = b"legit kernel content\n" * 8

#: A forked child of the kernel that swaps each pair of names with renameat2(RENAME_EXCHANGE)
#: for as long as it lives; its pid is left in ``_swapper`` for the test to end it.
SWAPPER = """
import ctypes, os
_pairs = {pairs!r}
_swapper = os.fork()
if _swapper == 0:
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        while True:
            for a, b in _pairs:
                libc.renameat2(-100, a, -100, b, 2)
    finally:
        os._exit(0)
"""
STOP_SWAPPER = "import os, signal\nos.kill(_swapper, signal.SIGKILL)\nos.waitpid(_swapper, 0)"


def _objects(bucket: Any) -> dict[str, bytes]:
    """Every object in a test bucket, by key."""
    s3 = bucket.client()
    try:
        listed = s3.list_objects_v2(Bucket=bucket.name).get("Contents", [])
        return {
            o["Key"]: s3.get_object(Bucket=bucket.name, Key=o["Key"])["Body"].read() for o in listed
        }
    finally:
        s3.close()


@pytest.fixture
def host_secret() -> Iterator[tuple[Path, bytes]]:
    """A root-only host file with a unique secret, outside every kernel's folder."""
    folder = Path(tempfile.mkdtemp(prefix="sorna-secret-"))
    secret = b"SECRET-" + uuid.uuid4().hex.encode() * 4
    path = folder / "secret"
    path.write_bytes(secret)
    path.chmod(0o600)
    try:
        yield path, secret
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def host_folder() -> Iterator[tuple[Path, str]]:
    """A host folder holding one uniquely named entry."""
    folder = Path(tempfile.mkdtemp(prefix="sorna-hostdir-"))
    entry = f"host-entry-{uuid.uuid4().hex}"
    (folder / entry).write_text("host")
    try:
        yield folder, entry
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def _kernel(make_agent, rpc, backend: str, **kw: Any):
    """An agent and a python3 kernel; its id is unique (Docker names are host-wide)."""
    agent = await make_agent(backend=backend, **kw)
    client = rpc(agent)
    kid = f"k{uuid.uuid4().hex[:8]}"
    await client.call(msg.CREATE_KERNEL.name, {"kernel_id": kid, "lang": "python3", "owner": "AK"})
    return agent, client, kid


async def _refused(call: Any) -> RemoteError:
    with pytest.raises(RemoteError) as info:
        await call
    assert info.value.type == "invalid-api-params", info.value
    return info.value


async def test_link_swap_race_never_reaches_the_host(
    make_agent, rpc, run, backend_name, host_secret, host_folder
) -> None:
    secret_path, secret = host_secret
    host_dir, host_entry = host_folder
    _, client, kid = await _kernel(make_agent, rpc, backend_name)
    setup = (
        "import os\n"
        f"open('f', 'wb').write({LEGIT!r})\n"
        f"os.symlink({str(secret_path)!r}, 'lf')\n"
        "os.mkdir('d')\n"
        "open('d/inner', 'w').write('inner')\n"
        f"os.symlink({str(host_dir)!r}, 'ld')\n"
    )
    setup += SWAPPER.format(pairs=[(b"f", b"lf"), (b"d", b"ld")])
    result = await run(client, kid, setup)
    assert result["stderr"] == "", result["stderr"]

    rounds = 2000  # of each: download, list, upload
    wins: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    unexpected: list[str] = []
    k = {"kernel_id": kid}

    async def attempt(method: str, params: dict[str, Any]) -> Any:
        try:
            return await client.call(method, {**k, **params})
        except RemoteError as e:
            if e.type != "invalid-api-params":
                unexpected.append(f"{method}: {e}")
            seen[f"{method} refused"] += 1
            return None

    def check_host() -> None:
        extra = set(os.listdir(host_dir)) - {host_entry}
        if extra:
            wins["upload into the host folder"] += 1
            for name in extra:
                os.unlink(host_dir / name)
        if secret_path.read_bytes() != secret:
            wins["upload onto the host file"] += 1
            secret_path.write_bytes(secret)

    async def worker(n: int) -> None:
        for i in range(n):
            got = await attempt(msg.DOWNLOAD_FILE.name, {"path": "f", "length": 1 << 16})
            if got is not None:
                data = got["data"]
                if secret[:7] in data or data != LEGIT[: len(data)]:
                    wins["download of the host file"] += 1
                seen["download ok"] += 1
            listing = await attempt(msg.LIST_FILES.name, {"path": "d"})
            if listing is not None:
                names = {f["name"] for f in listing["files"]}
                if host_entry in names:
                    wins["listing of the host folder"] += 1
                seen["listed folder"] += 1
            upload = ("d/up", b"up") if i % 2 else ("f", LEGIT)
            await attempt(msg.UPLOAD_FILE.name, {"path": upload[0], "data": upload[1]})
            check_host()

    workers = 8
    try:
        await asyncio.gather(*(worker(rounds // workers) for _ in range(workers)))
    finally:
        await run(client, kid, STOP_SWAPPER)
    assert dict(wins) == {}, (dict(wins), dict(seen), f"{len(unexpected)} other errors")
    assert not unexpected, unexpected[:5]
    # The race was live: each op met the real file or folder and the swapped-in link.
    assert seen["download ok"] and seen[f"{msg.DOWNLOAD_FILE.name} refused"], dict(seen)
    assert seen["listed folder"] and seen[f"{msg.LIST_FILES.name} refused"], dict(seen)
    assert sorted(os.listdir(host_dir)) == [host_entry]
    assert secret_path.read_bytes() == secret


async def test_output_file_swapped_for_a_link_never_reaches_s3(
    make_agent, rpc, run, backend_name, s3_bucket, host_secret
) -> None:
    secret_path, secret = host_secret
    _, client, kid = await _kernel(make_agent, rpc, backend_name, s3=s3_bucket)
    runs = 30
    pairs = [(f"out-{i}.txt".encode(), f"lnk-{i}".encode()) for i in range(runs)]
    await run(client, kid, SWAPPER.format(pairs=pairs))
    try:
        for i in range(runs):
            code = (
                f"open('out-{i}.txt', 'w').write('legit')\n"
                f"os.symlink({str(secret_path)!r}, 'lnk-{i}')\n"
            )
            result = await run(client, kid, code, run_id=f"r{i}")
            assert result["stderr"] == "", result["stderr"]
    finally:
        await run(client, kid, STOP_SWAPPER)
    stored = await asyncio.to_thread(_objects, s3_bucket)
    leaked = sorted(key for key, body in stored.items() if body != b"legit")
    assert not leaked, f"{len(leaked)} of {len(stored)} objects hold host bytes: {leaked}"
    assert all(secret[:7] not in body for body in stored.values())
    assert stored, "no output file was uploaded at all"


async def test_fifos_and_sockets_are_refused_at_once(
    make_agent, rpc, run, backend_name, scratch_root
) -> None:
    _, client, kid = await _kernel(make_agent, rpc, backend_name, file_workers=2)
    result = await run(
        client,
        kid,
        "import os, socket\nos.mkfifo('p')\ns = socket.socket(socket.AF_UNIX)\ns.bind('s')\n"
        "os.symlink('/etc/hostname', 'l')",
    )
    assert result["stderr"] == "", result["stderr"]
    fifo = scratch_root / "work" / kid / "p"
    k = {"kernel_id": kid}
    try:
        error = await _refused(client.call(msg.UPLOAD_FILE.name, {**k, "path": "p", "data": b"x"}))
        assert "regular file" in error.message
        for name in ("p", "s"):
            error = await _refused(client.call(msg.DOWNLOAD_FILE.name, {**k, "path": name}))
            assert "regular file" in error.message
        top = await client.call(msg.LIST_FILES.name, {**k, "path": ""})
        assert {f["name"]: f["type"] for f in top["files"]} == {
            "p": "fifo",
            "s": "socket",
            "l": "link",
        }
        one = await client.call(msg.LIST_FILES.name, {**k, "path": "p"})
        assert [(f["name"], f["type"]) for f in one["files"]] == [("p", "fifo")]

        # A flood of hostile file calls on a pool of two threads, and another user's create.
        hostile = [
            client.call(msg.UPLOAD_FILE.name, {**k, "path": "p", "data": b"x" * 1000})
            if i % 2
            else client.call(msg.DOWNLOAD_FILE.name, {**k, "path": "p"})
            for i in range(20)
        ]
        create = client.call(
            msg.CREATE_KERNEL.name, {"kernel_id": kid + "b", "lang": "python3", "owner": "BK"}
        )
        *answers, created = await asyncio.gather(*hostile, create, return_exceptions=True)
        assert isinstance(created, dict) and created["kernel_id"] == kid + "b", created
        assert all(
            isinstance(a, RemoteError) and a.type == "invalid-api-params" for a in answers
        ), answers
        # The file pool still serves.
        await client.call(msg.UPLOAD_FILE.name, {**k, "path": "ok.txt", "data": b"ok"})
        got = await client.call(msg.DOWNLOAD_FILE.name, {**k, "path": "ok.txt"})
        assert got["data"] == b"ok"
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    finally:
        # Free writers blocked on the FIFO (an agent without the fix) so that the agent can
        # close: a reader opens it, and a regular file takes its name for those still queued.
        with contextlib.suppress(OSError):
            reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            (fifo.parent / "p.tmp").write_bytes(b"")
            os.replace(fifo.parent / "p.tmp", fifo)
            os.close(reader)


async def test_a_name_that_is_not_utf8_loses_nothing(
    make_agent, rpc, run, backend_name, s3_bucket
) -> None:
    _, client, kid = await _kernel(make_agent, rpc, backend_name, s3=s3_bucket)
    code = (
        "open(b'rt-\\xff\\xfe', 'w').write('odd')\n"
        "open('ok.txt', 'w').write('fine')\n"
        "print('the output arrives')\n"
    )
    result = await run(client, kid, code, run_id="r1")
    assert result["stdout"] == "the output arrives\n"
    files = {f["name"]: f for f in result["files"]}
    assert set(files) == {"ok.txt", "rt-\\xff\\xfe"}
    assert files["rt-\\xff\\xfe"]["downloadable"] is False
    assert "url" not in files["rt-\\xff\\xfe"]
    assert files["ok.txt"]["url"].startswith(s3_bucket.endpoint_url)
    assert "downloadable" not in files["ok.txt"]
    assert await asyncio.to_thread(_objects, s3_bucket) == {f"{kid}/r1/ok.txt": b"fine"}
    listing = await client.call(msg.LIST_FILES.name, {"kernel_id": kid, "path": ""})
    entries = {f["name"]: f for f in listing["files"]}
    assert set(entries) == {"ok.txt", "rt-\\xff\\xfe"}
    assert entries["rt-\\xff\\xfe"]["downloadable"] is False
    assert entries["rt-\\xff\\xfe"]["size"] == 3
    # The escaped form names no file: a download of it is a plain "does not exist".
    await _refused(client.call(msg.DOWNLOAD_FILE.name, {"kernel_id": kid, "path": "rt-\\xff\\xfe"}))
    again = await run(client, kid, "print('still fine')")
    assert again["stdout"] == "still fine\n"


def _long_path(total: int) -> str:
    """A path of ``total`` bytes made of names of at most 200 bytes."""
    parts = []
    while total > 200:
        parts.append("n" * 199)
        total -= 200
    return "/".join([*parts, "m" * total])


@pytest.mark.parametrize(
    "path",
    [
        "a" * 256,
        "d/" + "a" * 300,
        "/home/work/" + "a" * 300 + "/b",
        _long_path(4097),
        "/home/work/" + _long_path(4097 - len("/home/work/")),
    ],
    ids=["256-name", "300-name-in-folder", "300-name-absolute", "4097-path", "4097-absolute"],
)
async def test_names_and_paths_past_the_limits_are_refused(make_agent, rpc, path) -> None:
    _, client, kid = await _kernel(make_agent, rpc, "local")
    for method, params in (
        (msg.UPLOAD_FILE.name, {"path": path, "data": b"x"}),
        (msg.LIST_FILES.name, {"path": path}),
        (msg.DOWNLOAD_FILE.name, {"path": path}),
    ):
        error = await _refused(client.call(method, {"kernel_id": kid, **params}))
        assert "longer than" in error.message, (method, error)


async def test_names_and_paths_at_the_limits_work(make_agent, rpc, backend_name) -> None:
    _, client, kid = await _kernel(make_agent, rpc, backend_name)
    name = "n" * 255
    deep = _long_path(4000)
    for path in (name, deep):
        await client.call(msg.UPLOAD_FILE.name, {"kernel_id": kid, "path": path, "data": b"edge"})
        got = await client.call(msg.DOWNLOAD_FILE.name, {"kernel_id": kid, "path": path})
        assert got["data"] == b"edge"
        listing = await client.call(msg.LIST_FILES.name, {"kernel_id": kid, "path": path})
        assert [f["name"] for f in listing["files"]] == [path.rsplit("/", 1)[-1]]
