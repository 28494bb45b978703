"""Kernel images and containers: labels, layout, the jail inside, no network, and nodejs.

The images are (re)built once per session through the build tool (the layer cache makes
that a few seconds each when nothing changed; the first build on a fresh machine also makes
the debootstrap base).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from sorna.common import constants as C
from sorna.common.langs import image_name
from sorna.repl import imagebuild
from sorna.repl.client import ReplClient
from sorna.repl.container import DEFAULT_PIDS_LIMIT, DEFAULT_TMP_SIZE_MIB
from sorna.repl.dockerkernel import docker_kernel
from sorna.repl.kernelspec import kernel_specs

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

#: Every language: the folders of sorna-repl/kernels.
LANGS = tuple(kernel_specs())
#: The tag of the images built and tested here (a branch's own builds keep ``latest`` alone).
TAG = os.environ.get("SORNA_TEST_IMAGE_TAG", "latest")
IMAGES = {lang: image_name(lang, TAG) for lang in LANGS}


def _engine_answers() -> bool:
    try:
        proc = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """Skip without a Docker engine, or fail when SORNA_REQUIRE_DOCKER=1."""
    if not _engine_answers():
        if os.environ.get("SORNA_REQUIRE_DOCKER") == "1":
            pytest.fail("SORNA_REQUIRE_DOCKER=1 but no Docker engine answers (docker info)")
        pytest.skip("no Docker engine answers (docker info)")


@pytest.fixture(scope="session")
def kernel_images(docker_engine: None) -> dict[str, str | None]:
    """Build every kernel image once per session; map lang -> build error (None if built)."""
    errors: dict[str, str | None] = {}
    for lang in LANGS:
        try:
            asyncio.run(imagebuild.build_images([lang], progress=lambda line: None, tag=TAG))
            errors[lang] = None
        except imagebuild.ImageBuildError as e:
            errors[lang] = str(e)
    return errors


def need_image(kernel_images: dict[str, str | None], lang: str) -> str:
    error = kernel_images[lang]
    if error is not None:
        pytest.fail(f"image for {lang} could not be built: {error}")
    return image_name(lang, TAG)


def inspect(ref: str) -> dict[str, object]:
    out = subprocess.run(
        ["docker", "image", "inspect", ref], capture_output=True, check=True, text=True
    ).stdout
    info: dict[str, object] = json.loads(out)[0]
    return info


# -- images ----------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_image_has_every_label(kernel_images: dict[str, str | None], lang: str) -> None:
    config = inspect(need_image(kernel_images, lang))["Config"]
    assert isinstance(config, dict)
    labels = config["Labels"]
    spec = kernel_specs()[lang]
    expected = {
        C.LABEL_VERSION: "2",
        C.LABEL_LANG: lang,
        C.LABEL_ALIASES: " ".join(spec.aliases),
        C.LABEL_DISPLAY_NAME: spec.display_name,
        C.LABEL_MAXDISK: spec.maxdisk,
        C.LABEL_MAXMEM: spec.maxmem,
        C.LABEL_MAXCORES: str(spec.maxcores),
        C.LABEL_TIMEOUT: str(spec.timeout),
        C.LABEL_FEATURES: " ".join(spec.features),
        C.LABEL_ENVS_CORECOUNT: ",".join(spec.corecount_envs),
    }
    assert {k: v for k, v in labels.items() if k.startswith("io.sorna.") and k in expected} == (
        expected
    )
    assert "query" in labels[C.LABEL_FEATURES].split()
    assert config["User"] == "work"
    assert config["WorkingDir"] == C.KERNEL_WORK_DIR
    cmd = config["Cmd"]
    assert cmd[:3] == [C.KERNEL_JAIL_PATH, "-policy", C.KERNEL_POLICY_PATH]
    assert cmd[3:5] == ["-tcp-repl", "--"]


@pytest.mark.parametrize("lang", LANGS)
def test_image_layout(kernel_images: dict[str, str | None], lang: str) -> None:
    """Jail, runner package, policy and daemon in place; /home/work owned by `work`.

    Of sorna.common the image holds the constants module alone (no Redis or msgpack client
    code), and none of sorna.repl's host-side modules.
    """
    ref = need_image(kernel_images, lang)
    daemon = kernel_specs()[lang].daemon
    script = (
        f"test -x {C.KERNEL_JAIL_PATH} && test -f /home/sorna/sorna/repl/protocol.py "
        f"&& test -f {C.KERNEL_POLICY_PATH} && test -f /home/sorna/{daemon} "
        "&& test ! -e /home/sorna/sorna/repl/dockerkernel.py "
        "&& test ! -e /home/sorna/sorna/repl/container.py "
        "&& (cd /home/sorna/sorna/common && ls *.py) "
        "&& python3 -c 'import sorna.repl.daemon, sorna.repl.runner' "
        f"&& stat -c '%U %u' {C.KERNEL_WORK_DIR} && id -un"
    )
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network=none", "--entrypoint=/bin/sh", ref, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["constants.py", "work", str(C.KERNEL_WORK_UID), "work"]


@pytest.mark.parametrize("lang", LANGS)
def test_image_policy_is_the_base_policy_with_the_specs_diff(
    kernel_images: dict[str, str | None], lang: str
) -> None:
    """The policy the jail reads in the image is the one made from base.toml + kernel.toml
    (list order aside: the jail allows what any glob matches)."""
    ref = need_image(kernel_images, lang)
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network=none", "--entrypoint=cat", ref, C.KERNEL_POLICY_PATH],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert unordered(json.loads(proc.stdout)) == unordered(dict(kernel_specs()[lang].policy))


def unordered(policy: dict[str, Any]) -> dict[str, Any]:
    """A jail policy with its lists as sets."""
    out = {k: frozenset(v) if isinstance(v, list) else v for k, v in policy.items()}
    out["path_rules"] = {k: frozenset(v) for k, v in policy["path_rules"].items()}
    return out


def test_changed_daemon_rebuilds_only_its_layer(
    kernel_images: dict[str, str | None], tmp_path: Path
) -> None:
    """Rebuild nodejs with one changed daemon file: every layer but the daemon's is reused."""
    ref = need_image(kernel_images, "nodejs")
    src = tmp_path / "nodejs"
    shutil.copytree(imagebuild.kernels_dir() / "nodejs", src)
    with (src / "run.js").open("a") as f:
        f.write(f"// changed by {__name__}\n")
    spec = kernel_specs()["nodejs"]
    tag = f"layer-test-{os.getpid()}"
    try:
        base = asyncio.run(imagebuild.ensure_base(lambda line: None))
        asyncio.run(imagebuild.build_image(spec, base, lambda line: None, src=src, tag=tag))
        old = layers(ref)
        new = layers(image_name("nodejs", tag))
    finally:
        subprocess.run(["docker", "rmi", "--force", image_name("nodejs", tag)], check=False)
    assert len(old) == len(new)
    assert old[:-1] == new[:-1]
    assert old[-1] != new[-1]


def layers(ref: str) -> list[str]:
    rootfs = inspect(ref)["RootFS"]
    assert isinstance(rootfs, dict)
    return list(rootfs["Layers"])


# -- containers ------------------------------------------------------------------------------


@pytest.fixture
async def python_kernel(
    kernel_images: dict[str, str | None], tmp_path: Path
) -> AsyncIterator[ReplClient]:
    need_image(kernel_images, "python3")
    async with docker_kernel("python3", workdir=tmp_path, image=IMAGES["python3"]) as client:
        yield client


@pytest.fixture
async def node_kernel(
    kernel_images: dict[str, str | None], tmp_path: Path
) -> AsyncIterator[ReplClient]:
    need_image(kernel_images, "nodejs")
    async with docker_kernel("nodejs", workdir=tmp_path, image=IMAGES["nodejs"]) as client:
        yield client


@pytest.fixture
def no_leaked_containers() -> Iterator[None]:
    def ours() -> set[str]:
        out = subprocess.run(
            ["docker", "ps", "-aq", "--filter", "label=io.sorna.dockerkernel"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return set(out.split())

    before = ours()
    yield
    assert ours() <= before


#: Prints what a kernel sees of its own privileges and limits, one ``key value`` per line.
PROFILE_PROBE = r"""
import os

def status(pid):
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    return {k: v.strip() for k, v in fields.items()}

for who, pid in (("code", "self"), ("jail", "1")):
    st = status(pid)
    for key in ("CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs"):
        print(who, key, st[key])
print("uid", os.getuid())
for path in ("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"):
    if os.path.exists(path):
        print("pids", open(path).read().strip())
tmp = os.statvfs("/tmp")
print("tmp", tmp.f_blocks * tmp.f_frsize)
"""


async def test_kernel_runs_with_the_agents_security_profile(python_kernel: ReplClient) -> None:
    """The test launcher's kernel holds what an agent's does: no capability at all (not even
    in its bounding set), no-new-privileges from the jail (pid 1) down, the agent's default
    pids limit and /tmp size, the work user."""
    result = await python_kernel.run_code(PROFILE_PROBE)
    assert result.stderr == ""
    seen = dict(line.rsplit(" ", 1) for line in result.stdout.splitlines())
    for who in ("code", "jail"):
        for cap in ("CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(seen[f"{who} {cap}"], 16) == 0, (who, cap, seen)
        assert seen[f"{who} NoNewPrivs"] == "1", (who, seen)
    assert seen["uid"] == str(C.KERNEL_WORK_UID)
    assert seen["pids"] == str(DEFAULT_PIDS_LIMIT)
    assert int(seen["tmp"]) == DEFAULT_TMP_SIZE_MIB << 20


async def test_python_writing_etc_passwd_is_denied_and_kernel_survives(
    python_kernel: ReplClient,
) -> None:
    result = await python_kernel.run_code("open('/etc/passwd', 'a').write('x:0:0::/:/bin/sh\\n')")
    assert "PermissionError" in result.stderr
    assert result.ops[-1] == "finished"
    after = await python_kernel.run_code("print(6 * 7)")
    assert after.stdout == "42\n"


async def test_nodejs_writing_etc_passwd_is_denied_and_kernel_survives(
    node_kernel: ReplClient,
) -> None:
    result = await node_kernel.run_code("require('fs').appendFileSync('/etc/passwd', 'x')")
    assert "EPERM" in result.stderr or "EACCES" in result.stderr
    assert result.ops[-1] == "finished"
    after = await node_kernel.run_code("console.log(6 * 7)")
    assert after.stdout == "42\n"


async def test_python_no_network_inside(python_kernel: ReplClient) -> None:
    code = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('1.1.1.1', 53), timeout=3)\n"
        "    print('connected')\n"
        "except OSError as e:\n"
        "    print('failed', type(e).__name__)\n"
    )
    result = await python_kernel.run_code(code)
    assert result.stdout.startswith("failed"), result.stdout + result.stderr


async def test_python_kernel_of_an_agent_may_not_open_network_sockets(
    python_kernel: ReplClient,
) -> None:
    """Started as the agent starts kernels (ipc addresses), the jail keeps denying AF_INET:
    only a by-hand start on tcp gets network sockets (jail -tcp-repl)."""
    code = (
        "import socket\n"
        "for family in (socket.AF_INET, socket.AF_INET6):\n"
        "    try:\n"
        "        socket.socket(family, socket.SOCK_STREAM).close()\n"
        "        print('opened')\n"
        "    except PermissionError:\n"
        "        print('denied')\n"
    )
    result = await python_kernel.run_code(code)
    assert result.stdout == "denied\ndenied\n", result.stdout + result.stderr


def test_container_without_network_cannot_connect(kernel_images: dict[str, str | None]) -> None:
    """Without the jail too: a container started like a kernel has no route out."""
    ref = need_image(kernel_images, "nodejs")
    code = (
        "const s = require('net').connect(53, '1.1.1.1');"
        "s.setTimeout(3000, () => { console.log('timeout'); process.exit(0); });"
        "s.on('connect', () => { console.log('connected'); process.exit(1); });"
        "s.on('error', (e) => { console.log(e.code); process.exit(0); });"
    )
    proc = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "node", ref, "-e", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() in {"ENETUNREACH", "timeout", "EHOSTUNREACH"}


async def test_nodejs_no_network_inside(node_kernel: ReplClient) -> None:
    code = (
        "await new Promise((resolve) => {"
        "  const s = require('net').connect(53, '1.1.1.1');"
        "  s.setTimeout(3000, () => { console.log('timeout'); s.destroy(); resolve(); });"
        "  s.on('connect', () => { console.log('connected'); s.destroy(); resolve(); });"
        "  s.on('error', (e) => { console.log('failed', e.code); resolve(); });"
        "})"
    )
    result = await node_kernel.run_code(code)
    assert "connected" not in result.stdout
    assert result.stdout.startswith(("failed", "timeout")), result.stdout + result.stderr


async def test_workdir_is_writable_and_root_fs_is_not(
    kernel_images: dict[str, str | None], tmp_path: Path
) -> None:
    need_image(kernel_images, "nodejs")
    async with docker_kernel("nodejs", workdir=tmp_path, image=IMAGES["nodejs"]) as kernel:
        result = await kernel.run_code(
            "const fs = require('fs');\n"
            "fs.writeFileSync('/home/work/out.txt', 'from the kernel');\n"
            "fs.writeFileSync('/tmp/scratch', 'tmp ok');\n"
            "console.log(fs.readFileSync('/tmp/scratch', 'utf8'));\n"
            "try { fs.writeFileSync('/home/sorna/x', 'no'); } catch (e) { console.log(e.code); }\n"
        )
        assert result.stdout.splitlines()[0] == "tmp ok"
        assert result.stdout.splitlines()[1] in {"EPERM", "EROFS", "EACCES"}
    assert (tmp_path / "out.txt").read_text() == "from the kernel"


async def test_container_and_ipc_dir_removed_on_error(
    kernel_images: dict[str, str | None], tmp_path: Path, no_leaked_containers: None
) -> None:
    need_image(kernel_images, "nodejs")
    with pytest.raises(RuntimeError, match="boom"):
        async with docker_kernel("nodejs", workdir=tmp_path, image=IMAGES["nodejs"]) as kernel:
            ipc_dir = kernel.input_addr.removeprefix("ipc://").rsplit("/", 1)[0]
            raise RuntimeError("boom")
    assert not await asyncio.to_thread(Path(ipc_dir).exists)


#: A snippet per language whose output is ``1\n`` (for the by-hand start below).
PRINT_ONE = {
    "python3": "print(1)",
    "nodejs": "console.log(1)",
    "shell": "echo 1",
    "c": '#include <stdio.h>\nint main(void) { puts("1"); return 0; }',
    "cpp": "#include <iostream>\nint main() { std::cout << 1 << std::endl; }",
}

#: Runs inside the container, beside the daemon: connects to its TCP ports on loopback.
_TCP_CLIENT = """
import asyncio, json, sys
from sorna.repl.client import ReplClient

async def main():
    async with asyncio.timeout(120):
        async with ReplClient("tcp://127.0.0.1:2000", "tcp://127.0.0.1:2001") as client:
            result = await client.run_code(sys.argv[1])
    print(json.dumps({"stdout": result.stdout, "stderr": result.stderr}))

asyncio.run(main())
"""


@pytest.mark.parametrize("lang", LANGS)
def test_image_started_by_hand_serves_on_tcp(
    kernel_images: dict[str, str | None], lang: str
) -> None:
    """`docker run IMAGE` with a network and no ipc settings serves on tcp 2000/2001."""
    ref = need_image(kernel_images, lang)
    name = f"sorna-test-byhand-{lang}-{os.getpid()}-{os.urandom(4).hex()}"
    started = subprocess.run(
        ["docker", "run", "-d", "--name", name, "--network", "bridge", ref],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        assert started.returncode == 0, started.stderr
        proc = subprocess.run(
            ["docker", "exec", name, "python3", "-c", _TCP_CLIENT, PRINT_ONE[lang]],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        logs = subprocess.run(
            ["docker", "logs", name], capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr + logs.stdout + logs.stderr
        assert json.loads(proc.stdout.splitlines()[-1]) == {"stdout": "1\n", "stderr": ""}
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60, check=False)


# -- nodejs ----------------------------------------------------------------------------------


async def test_nodejs_hello(node_kernel: ReplClient) -> None:
    result = await node_kernel.run_code("console.log('Hello, Sorna!')")
    assert result.stdout == "Hello, Sorna!\n"
    assert result.ops[-1] == "finished"


async def test_nodejs_state_kept_across_runs(node_kernel: ReplClient) -> None:
    await node_kernel.run_code("var counter = 40; function bump() { return ++counter; }")
    await node_kernel.run_code("bump()")
    result = await node_kernel.run_code("console.log(bump())")
    assert result.stdout == "42\n"


async def test_nodejs_error_on_stderr_then_finished(node_kernel: ReplClient) -> None:
    result = await node_kernel.run_code("console.log('before'); undefinedThing.call()")
    assert result.stdout == "before\n"
    assert "ReferenceError: undefinedThing is not defined" in result.stderr
    assert "<input>:1" in result.stderr
    assert "executor.js" not in result.stderr and "node:internal" not in result.stderr
    assert result.ops.count("finished") == 1 and result.ops[-1] == "finished"
    syntax = await node_kernel.run_code("let = = 1")
    assert "SyntaxError" in syntax.stderr


async def test_nodejs_unicode_in_and_out(node_kernel: ReplClient) -> None:
    result = await node_kernel.run_code(
        "const s = 'héllo wörld ✓ 日本語 🐍'; console.log(s, [...s].length)"
    )
    assert result.stdout == "héllo wörld ✓ 日本語 🐍 19\n"


async def test_nodejs_promises_awaited_before_finished(node_kernel: ReplClient) -> None:
    result = await node_kernel.run_code(
        "(async () => { await new Promise(r => setTimeout(r, 200)); console.log('late'); })()"
    )
    assert result.stdout == "late\n"
    rejected = await node_kernel.run_code("Promise.reject(new TypeError('nope'))")
    assert "TypeError: nope" in rejected.stderr


async def test_nodejs_input_answers_waiting_input(node_kernel: ReplClient) -> None:
    result = await node_kernel.run_code(
        "const name = input('name? '); console.log(`hi ${name}`)", input_answers=["Ada"]
    )
    assert result.waiting_inputs == [{"is_password": False}]
    assert result.stdout == "name? hi Ada\n"


async def test_nodejs_interrupt_stops_busy_loop(node_kernel: ReplClient) -> None:
    await node_kernel.run_code("var kept = 'still here'")
    await node_kernel.send("code", "while (true) {}")
    await asyncio.sleep(0.5)
    assert (await node_kernel.status())["busy"] is True
    await node_kernel.interrupt()
    result = await node_kernel.collect()
    assert "Interrupted" in result.stderr
    after = await node_kernel.run_code("console.log(kept)")
    assert after.stdout == "still here\n"


async def test_nodejs_completion(node_kernel: ReplClient) -> None:
    await node_kernel.run_code("var sornaThing = { alpha: 1, alphabet: 2 }")
    assert await node_kernel.complete("Math.flo") == ["Math.floor"]
    candidates = await node_kernel.complete("sornaThing.alp")
    assert candidates == ["sornaThing.alpha", "sornaThing.alphabet"]


async def test_nodejs_large_output_streamed_in_order(node_kernel: ReplClient) -> None:
    code = "for (let i = 0; i < 50000; i++) console.log(String(i).padStart(99, '.'))"
    result = await node_kernel.run_code(code)
    lines = result.stdout.splitlines()
    assert len(lines) == 50000
    assert lines == [str(i).rjust(99, ".") for i in range(50000)]
    assert result.ops.count("stdout") > 1  # streamed in chunks, not one frame at the end


async def test_nodejs_batch_exec_main_js(
    kernel_images: dict[str, str | None], tmp_path: Path
) -> None:
    need_image(kernel_images, "nodejs")
    (tmp_path / "main.js").write_text("console.log('batch', 1 + 1)\n")
    async with docker_kernel("nodejs", workdir=tmp_path, image=IMAGES["nodejs"]) as kernel:
        build = await kernel.build("*")
        assert build.ops[-1] == "build-finished"
        result = await kernel.exec("*")
        assert result.stdout == "batch 2\n"
