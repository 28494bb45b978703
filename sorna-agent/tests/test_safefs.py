"""Opening beneath a folder without following links: openat2 and the one-component walk.

Both ways of resolving are tried on the same folder, with links at every place of a path and
against a process swapping a folder and a link to a host folder as fast as it can. Also the
writes of :class:`~sorna.agent.files.Scratch` on a full disk and onto a hard link.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sorna.agent import safefs
from sorna.agent.errors import InvalidApiParams, PayloadTooLarge
from sorna.agent.files import Scratch

Opener = Callable[[int, bytes, int], int]
OPENERS: dict[str, Opener] = {
    "openat2": lambda fd, rel, flags: safefs.open_beneath(fd, rel, flags),
    "walk": lambda fd, rel, flags: safefs.walk_open(fd, rel, flags),
}

#: Swaps two names of the folder in argv[1] with renameat2(RENAME_EXCHANGE) until killed.
SWAPPER = """
import ctypes, os, sys
os.chdir(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
print("ready", flush=True)
while True:
    libc.renameat2(-100, b"d", -100, b"ld", 2)
"""


@pytest.fixture
def tree() -> Iterator[tuple[Path, Path]]:
    """A kernel-like folder with links leading out, and the host folder they lead to."""
    base = Path(tempfile.mkdtemp(prefix="sorna-safefs-"))
    root, host = base / "root", base / "host"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"inside")
    host.mkdir()
    (host / "f").write_bytes(b"HOST")
    (root / "ld").symlink_to(host)
    (root / "lf").symlink_to(host / "f")
    (root / "inner").symlink_to("d")
    try:
        yield root, host
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("how", sorted(OPENERS))
def test_no_link_is_followed_anywhere(tree, how) -> None:
    root, _ = tree
    opener = OPENERS[how]
    fd = safefs.open_root(root)
    try:
        got = opener(fd, b"d/f", os.O_RDONLY)
        assert os.read(got, 100) == b"inside"
        os.close(got)
        for rel, flags in (
            (b"ld/f", os.O_RDONLY),  # a link to a host folder on the way
            (b"lf", os.O_RDONLY),  # a link to a host file at the end
            (b"inner/f", os.O_RDONLY),  # even a link that stays inside
            (b"ld", safefs.DIR_FLAGS),
        ):
            with pytest.raises(OSError) as info:
                os.close(opener(fd, rel, flags))
            assert info.value.errno in (errno.ELOOP, errno.ENOTDIR, errno.EXDEV), rel
        link = opener(fd, b"lf", os.O_PATH)  # O_PATH: the link itself, to fstat it
        assert safefs.kind(os.fstat(link).st_mode) == "link"
        os.close(link)
        with pytest.raises(OSError):
            opener(fd, b"d/../ld/f", os.O_RDONLY)
    finally:
        os.close(fd)


@pytest.mark.parametrize("how", sorted(OPENERS))
def test_a_swapping_process_never_leads_out(tree, how) -> None:
    root, host = tree
    opener = OPENERS[how]
    swapper = subprocess.Popen(
        [sys.executable, "-c", SWAPPER, str(root)], stdout=subprocess.PIPE, text=True
    )
    fd = safefs.open_root(root)
    inside = outside = refused = 0
    try:
        assert swapper.stdout is not None and swapper.stdout.readline() == "ready\n"
        for _ in range(20_000):
            try:
                got = opener(fd, b"d/f", os.O_RDONLY)
            except OSError:
                refused += 1
                continue
            data = os.read(got, 100)
            os.close(got)
            if data == b"HOST":
                outside += 1
            else:
                inside += 1
    finally:
        os.close(fd)
        swapper.kill()
        swapper.communicate()
    assert outside == 0, (inside, outside, refused)
    assert inside and refused, "the swap did not race with the opens"
    assert (host / "f").read_bytes() == b"HOST"


@pytest.fixture
def tiny_disk() -> Iterator[Path]:
    """A 64 KiB tmpfs as a kernel's folder (the agent tests run as root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder = Path(tempfile.mkdtemp(prefix="sorna-full-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)
        folder.rmdir()


def test_a_full_disk_is_payload_too_large_and_leaves_nothing(tiny_disk) -> None:
    scratch = Scratch(tiny_disk)
    with pytest.raises(PayloadTooLarge, match="no space left in /home/work"):
        scratch.write("sub/big.bin", b"x" * (256 << 10), owner_uid=None)
    assert os.listdir(tiny_disk / "sub") == []
    scratch.write("small.txt", b"fits", owner_uid=None)
    assert (tiny_disk / "small.txt").read_bytes() == b"fits"


def test_a_file_with_other_hard_links_is_not_written(tree) -> None:
    root, _ = tree
    os.link(root / "d" / "f", root / "twin")
    with pytest.raises(InvalidApiParams, match="hard links"):
        Scratch(root).write("twin", b"overwritten", owner_uid=None)
    assert (root / "d" / "f").read_bytes() == b"inside"


def test_a_pinned_repl_socket_stays_the_one_it_was(tmp_path: Path) -> None:
    """The agent connects to a kernel's REPL socket through a descriptor: once pinned, the name
    swapped for a link to another socket still reaches the kernel's own, and a name that is a
    link (or no socket) is refused at once."""
    import zmq

    ctx = zmq.Context()
    try:
        own, other = ctx.socket(zmq.PULL), ctx.socket(zmq.PULL)
        own.bind(f"ipc://{tmp_path / 'repl-in.sock'}")
        other.bind(f"ipc://{tmp_path / 'host.sock'}")
        fd = safefs.pin_socket(str(tmp_path / "repl-in.sock"))
        try:
            # The kernel swaps its socket's name for a link to a host socket.
            os.rename(tmp_path / "repl-in.sock", tmp_path / "moved.sock")
            os.symlink(tmp_path / "host.sock", tmp_path / "repl-in.sock")
            push = ctx.socket(zmq.PUSH)
            push.connect(f"ipc:///proc/self/fd/{fd}")
            push.send(b"code")
            assert own.poll(5000) and own.recv() == b"code"
            assert not other.poll(100)
            push.close(linger=0)
        finally:
            os.close(fd)
        with pytest.raises(OSError) as linked:
            safefs.pin_socket(str(tmp_path / "repl-in.sock"))
        assert linked.value.errno == errno.ENOTSOCK  # O_PATH|O_NOFOLLOW holds the link itself
        (tmp_path / "plain").write_bytes(b"")
        with pytest.raises(OSError) as plain:
            safefs.pin_socket(str(tmp_path / "plain"))
        assert plain.value.errno == errno.ENOTSOCK
    finally:
        ctx.destroy(linger=0)
