"""Upload / list / download, path confinement, output files in results and in S3."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sorna.common import messages as msg
from sorna.common.errors import RemoteError

pytestmark = pytest.mark.docker


async def _kernel(make_agent, rpc, backend: str, **kw: Any):
    agent = await make_agent(backend=backend, **kw)
    client = rpc(agent)
    await client.call(msg.CREATE_KERNEL.name, {"kernel_id": "k", "lang": "python3", "owner": "AK"})
    return agent, client


async def test_upload_list_download_round_trip(make_agent, rpc, run, backend_name) -> None:
    _, client = await _kernel(make_agent, rpc, backend_name)
    payload = bytes(range(256)) * 300  # 76800 bytes, several chunks of 32 KiB
    await client.call(
        msg.UPLOAD_FILE.name, {"kernel_id": "k", "path": "in/data.bin", "data": payload}
    )
    await client.call(
        msg.UPLOAD_FILE.name, {"kernel_id": "k", "path": "/home/work/a.txt", "data": b"A"}
    )
    listing = await client.call(msg.LIST_FILES.name, {"kernel_id": "k", "path": "in"})
    assert [(f["name"], f["size"], f["type"]) for f in listing["files"]] == [
        ("data.bin", len(payload), "file")
    ]
    top = await client.call(msg.LIST_FILES.name, {"kernel_id": "k", "path": ""})
    assert {f["name"] for f in top["files"]} == {"in", "a.txt"}
    # The kernel reads and can overwrite what was uploaded.
    result = await run(
        client,
        "k",
        "d = open('in/data.bin', 'rb').read()\nprint(len(d))\n"
        "_ = open('in/data.bin', 'ab').write(b'!')",
    )
    assert result["stdout"] == "76800\n"
    got, offset = b"", 0
    while True:
        chunk = await client.call(
            msg.DOWNLOAD_FILE.name,
            {"kernel_id": "k", "path": "in/data.bin", "offset": offset, "length": 32768},
        )
        got += chunk["data"]
        offset += len(chunk["data"])
        if chunk["eof"]:
            break
    assert got == payload + b"!"


@pytest.mark.parametrize(
    "path", ["../escape.txt", "/etc/passwd", "in/../../x", "/home/workx/y", "/home/work/../z"]
)
async def test_paths_outside_work_are_refused(make_agent, rpc, path) -> None:
    _, client = await _kernel(make_agent, rpc, "local")
    for method, params in (
        (msg.UPLOAD_FILE.name, {"path": path, "data": b"x"}),
        (msg.LIST_FILES.name, {"path": path}),
        (msg.DOWNLOAD_FILE.name, {"path": path}),
    ):
        with pytest.raises(RemoteError) as info:
            await client.call(method, {"kernel_id": "k", **params})
        assert info.value.type == "invalid-api-params", (method, path)


async def test_symlinks_out_of_work_are_refused(make_agent, rpc, run) -> None:
    _, client = await _kernel(make_agent, rpc, "docker")
    await run(client, "k", "import os\nos.symlink('/etc', 'etc')\nos.symlink('/etc/hostname', 'h')")
    for method, params in (
        (msg.UPLOAD_FILE.name, {"path": "etc/evil", "data": b"x"}),
        (msg.UPLOAD_FILE.name, {"path": "h", "data": b"x"}),
        (msg.DOWNLOAD_FILE.name, {"path": "h"}),
        (msg.LIST_FILES.name, {"path": "etc"}),
    ):
        with pytest.raises(RemoteError) as info:
            await client.call(method, {"kernel_id": "k", **params})
        assert info.value.type == "invalid-api-params", method


async def test_upload_size_is_the_gateways_to_cap(make_agent, rpc) -> None:
    # One upload cap, the gateway's (limits.upload_max_file_bytes): the agent writes what it
    # is sent, bounded only by the kernel's disk.
    _, client = await _kernel(make_agent, rpc, "local")
    big = b"x" * (3 << 20)
    await client.call(msg.UPLOAD_FILE.name, {"kernel_id": "k", "path": "big", "data": big})
    got = await client.call(msg.LIST_FILES.name, {"kernel_id": "k", "path": ""})
    assert [f["size"] for f in got["files"] if f["name"] == "big"] == [len(big)]


async def test_output_files_are_listed_and_uploaded(
    make_agent, rpc, run, s3_bucket, backend_name
) -> None:
    _, client = await _kernel(make_agent, rpc, backend_name, s3=s3_bucket)
    await client.call(msg.UPLOAD_FILE.name, {"kernel_id": "k", "path": "old.txt", "data": b"old"})
    code = (
        "import os\n"
        "open('out.txt', 'w').write('result')\n"
        "os.makedirs('plots', exist_ok=True)\n"
        "open('plots/p.svg', 'w').write('<svg/>')\n"
        "open('.hidden', 'w').write('no')\n"
        "open('huge.bin', 'wb').write(b'0' * (6 << 20))\n"
    )
    result = await run(client, "k", code, run_id="run1")
    files = {f["name"]: f for f in result["files"]}
    assert set(files) == {"out.txt", "plots/p.svg"}
    assert all(f["url"].startswith(s3_bucket.endpoint_url) for f in files.values())
    s3 = s3_bucket.client()
    try:
        body = await asyncio.to_thread(
            lambda: s3.get_object(Bucket=s3_bucket.name, Key="k/run1/out.txt")["Body"].read()
        )
        assert body == b"result"
        keys = await asyncio.to_thread(
            lambda: sorted(o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket.name)["Contents"])
        )
        assert keys == ["k/run1/out.txt", "k/run1/plots/p.svg"]
    finally:
        s3.close()
    again = await run(client, "k", "print('nothing new')")
    assert again["files"] == []
