"""Per-kernel disk caps: a sparse ext4 image, loop-mounted on the kernel's work folder.

Each capped kernel gets ``<scratch_root>/disk/<kernel_id>.img``, a sparse file formatted as
ext4 without a journal, attached to a loop device and mounted ``nosuid,nodev`` on its work
folder (``<scratch_root>/work/<kernel_id>``, bind-mounted as ``/home/work`` in a container, or
used directly by the local backend) before the kernel starts. Writes past the cap fail with
``ENOSPC`` inside the kernel and for the agent's uploads alike, and the host's filesystem never
holds more than the image's size. Unlike a size-capped tmpfs, the pages are not charged to the
kernel's memory, so a 1 GiB cap with a 256 MiB memory limit ends in ENOSPC, not an OOM kill.

The loop device is attached with ``LO_FLAGS_AUTOCLEAR``: it detaches itself once the mount is
gone, so unmounting is all a release needs besides removing the image. Paths are opened with
``O_NOFOLLOW`` under folders only the agent can change, and mount calls go through the
resulting descriptors, so nothing a kernel plants inside its folder is ever followed.

These functions block (``mkfs.ext4`` runs as a child process): call them in a thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import shutil
import struct
import subprocess
from collections.abc import Collection, Iterator
from pathlib import Path

from sorna.common.errors import ConfigError

log = logging.getLogger(__name__)

#: The folder under the scratch root that holds the images.
DISK_DIR = "disk"
#: Suffix of an image file; the rest of the name is the kernel id.
IMAGE_SUFFIX = ".img"
#: Smallest cap (KiB) a kernel gets: room for ext4's own structures and a little work.
MIN_DISK_KIB = 8 * 1024

# <linux/loop.h>, <sys/mount.h>
_LOOP_CTL_GET_FREE = 0x4C82
_LOOP_CONFIGURE = 0x4C0A
_LOOP_CLR_FD = 0x4C01
_LO_FLAGS_AUTOCLEAR = 4
_LO_FLAGS_DIRECT_IO = 16
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOATIME = 1024
_MNT_DETACH = 2
#: struct loop_config: fd, block_size, struct loop_info64, 8 reserved u64.
_LOOP_CONFIG = struct.Struct("=II5Q4I64s64s32s2Q8Q")

#: Image layout options: no journal (nothing to replay; the image dies with the kernel), no
#: reserve for root (the agent writes uploads as root: one budget for everyone), the default
#: usage type whatever the size (4 KiB blocks, one inode per 16 KiB), no discard pass.
_MKFS_OPTIONS = ("-q", "-F", "-O", "^has_journal,^resize_inode", "-m", "0", "-T", "default")
#: Inode tables of a sparse image read as zeroes already: skip the background zeroing.
_MOUNT_DATA = b"noinit_itable"
#: The probe's folder under the images' folder (no kernel's image is a folder).
_PROBE_DIR = "probe"
#: Attempts at a free loop device when another process takes the one offered meanwhile.
_LOOP_ATTEMPTS = 32
#: Mounts stacked on one folder that a release undoes at most (one is the norm).
_MAX_STACKED = 8


class DiskCapsUnavailable(ConfigError):
    """This host cannot give kernels a disk cap (not root, no loop devices, no mkfs.ext4)."""


def image_bytes(cap_kib: int) -> int:
    """The image size whose ext4 offers ``cap_kib`` KiB of free space (a little more).

    ext4 keeps for itself its inode tables (a 256-byte inode per 16 KiB: 1/64 of the size),
    2% of the blocks up to 16 MiB reserved against delayed-allocation ENOSPC, and per
    128 MiB block group a few blocks of bitmaps and superblock copies (about 12 KiB). The
    256 KiB of slack covers the root folder and rounding; measured from 8 MiB to 20 GiB, the
    free space is the cap plus 64 to 240 KiB.
    """
    cap = cap_kib * 1024
    slack = 256 * 1024
    per_group = 3 / 32768
    size = (cap + slack) / (1 - 1 / 64 - 1 / 50 - per_group)
    if size / 50 >= 16 << 20:
        size = (cap + (16 << 20) + slack) / (1 - 1 / 64 - per_group)
    return (int(size) + 4095) // 4096 * 4096


class DiskCaps:
    """The disk images of one agent's kernels: attach, release, and clean up leftovers."""

    def __init__(self, *, scratch_root: Path, work_root: Path) -> None:
        self.image_root = scratch_root / DISK_DIR
        self.work_root = work_root
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
        self._libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

    # -- start-up ------------------------------------------------------------------------

    def probe(self) -> None:
        """Check that this host can cap disks, by mounting a small image; raise if not."""
        hint = "set caps.max_disk_mib = 0 (SORNA_CAPS_MAX_DISK_MIB=0) to run without disk caps"
        if os.geteuid() != 0:
            raise DiskCapsUnavailable(f"disk caps need the agent to run as root; {hint}")
        if shutil.which("mkfs.ext4") is None:
            raise DiskCapsUnavailable(f"disk caps need mkfs.ext4 (e2fsprogs); {hint}")
        try:
            os.close(os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC))
        except OSError as e:
            raise DiskCapsUnavailable(f"no loop devices (/dev/loop-control: {e}); {hint}") from None
        self._ensure_root()
        self._remove_probe()  # one an agent killed while it probed may have left
        probe = self.image_root / _PROBE_DIR
        (probe / "mnt").mkdir(mode=0o700, parents=True)
        try:
            self._attach(probe, "probe" + IMAGE_SUFFIX, probe / "mnt", MIN_DISK_KIB, None)
        except OSError as e:
            raise DiskCapsUnavailable(f"cannot mount a disk image: {e}; {hint}") from None
        finally:
            self._remove_probe()

    def _remove_probe(self) -> None:
        probe = self.image_root / _PROBE_DIR
        if probe.is_dir():
            self._release(probe, "probe" + IMAGE_SUFFIX, probe / "mnt")  # unmounted first
            shutil.rmtree(probe, ignore_errors=True)

    def _ensure_root(self) -> None:
        self.image_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.image_root, 0o700, follow_symlinks=False)

    # -- attach and release --------------------------------------------------------------

    def attach(self, kernel_id: str, folder: Path, cap_kib: int, uid: int | None) -> None:
        """Mount a fresh ``cap_kib`` image on ``folder`` (made by the agent, still empty).

        The image's root folder is given to ``uid`` (None: left to root). Anything made on
        the way is removed again if a step fails.
        """
        self._ensure_root()
        self._attach(self.image_root, kernel_id + IMAGE_SUFFIX, folder, cap_kib, uid)

    def release(self, kernel_id: str, folder: Path) -> None:
        """Unmount ``folder`` (detached lazily if busy) and remove the kernel's image."""
        self._release(self.image_root, kernel_id + IMAGE_SUFFIX, folder)

    def _attach(self, images: Path, name: str, folder: Path, cap_kib: int, uid: int | None) -> None:
        try:
            with _dir_fd(images) as images_fd:
                fd = os.open(
                    name,
                    os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600,
                    dir_fd=images_fd,
                )
            try:
                os.ftruncate(fd, image_bytes(max(cap_kib, MIN_DISK_KIB)))
                self._mkfs(fd, uid)
                loop, device = self._loop_attach(fd)
            finally:
                os.close(fd)
            try:
                with _dir_fd(folder.parent) as parent:
                    self._mount(device, parent, folder.name)
            finally:
                os.close(loop)
            with _dir_fd(folder) as root:
                # e2fsck's folder is of no use on a throw-away image, and would show in the
                # kernel's file listings.
                os.rmdir("lost+found", dir_fd=root)
        except BaseException:
            self._release(images, name, folder)
            raise

    def _release(self, images: Path, name: str, folder: Path) -> None:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            with _dir_fd(folder.parent) as parent:
                self._unmount(parent, folder.name)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            with _dir_fd(images) as images_fd:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=images_fd)

    def clean(self, keep: Collection[str]) -> list[str]:
        """Release every kernel's disk but those in ``keep``; return the ids released.

        For the start-up after an agent that was killed: its mounts and images remain (and
        their loop devices while mounted).
        """
        found: set[str] = set()
        if self.work_root.is_dir():
            found.update(p.name for p in self.work_root.iterdir() if self._is_mounted(p))
        if self.image_root.is_dir():
            found.update(
                p.name[: -len(IMAGE_SUFFIX)]
                for p in self.image_root.iterdir()
                if p.name.endswith(IMAGE_SUFFIX)
            )
            self._remove_probe()
        gone = sorted(found - set(keep))
        for kernel_id in gone:
            self.release(kernel_id, self.work_root / kernel_id)
        self._detach_loops(set(keep))
        return gone

    # -- steps ---------------------------------------------------------------------------

    def _mkfs(self, image_fd: int, uid: int | None) -> None:
        owner = f"{uid}:{uid}" if uid is not None else "0:0"
        image = f"/proc/self/fd/{image_fd}"  # the child's own copy of the descriptor
        args = ["mkfs.ext4", *_MKFS_OPTIONS, "-E", f"nodiscard,root_owner={owner}", image]
        done = subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            pass_fds=(image_fd,),
        )
        if done.returncode != 0:
            why = (done.stderr or done.stdout).strip().splitlines()
            raise OSError(errno.EIO, f"mkfs.ext4 failed: {why[-1] if why else done.returncode}")

    def _loop_attach(self, image_fd: int) -> tuple[int, str]:
        """Attach the image to a free loop device; return the device's descriptor and path.

        The descriptor keeps the device bound until the mount holds it (autoclear).
        """
        ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
        try:
            for _ in range(_LOOP_ATTEMPTS):
                path = f"/dev/loop{fcntl.ioctl(ctl, _LOOP_CTL_GET_FREE)}"
                try:
                    dev = os.open(path, os.O_RDWR | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue  # not yet in /dev; ask again
                try:
                    self._configure(dev, image_fd)
                except OSError as e:
                    os.close(dev)
                    if e.errno == errno.EBUSY:
                        continue  # taken by another process since GET_FREE
                    raise
                return dev, path
        finally:
            os.close(ctl)
        raise OSError(errno.EBUSY, "no free loop device")

    def _configure(self, dev: int, image_fd: int) -> None:
        for flags in (_LO_FLAGS_AUTOCLEAR | _LO_FLAGS_DIRECT_IO, _LO_FLAGS_AUTOCLEAR):
            config = _LOOP_CONFIG.pack(
                image_fd, 0, 0, 0, 0, 0, 0, 0, 0, 0, flags, b"", b"", b"", 0, 0, *[0] * 8
            )
            try:
                fcntl.ioctl(dev, _LOOP_CONFIGURE, config)
                return
            except OSError as e:
                # Direct I/O (no second copy in the page cache) needs the host filesystem's
                # support; without it the device works buffered.
                if e.errno != errno.EINVAL or not flags & _LO_FLAGS_DIRECT_IO:
                    raise

    def _mount(self, device: str, parent: int, name: str) -> None:
        target = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
        try:
            source = device.encode()  # bound to our image until we close its descriptor
            where = f"/proc/self/fd/{target}".encode()
            flags = _MS_NOSUID | _MS_NODEV | _MS_NOATIME
            if self._libc.mount(source, where, b"ext4", flags, _MOUNT_DATA):
                code = ctypes.get_errno()
                raise OSError(code, f"mount ext4: {os.strerror(code)}")
        finally:
            os.close(target)

    def _unmount(self, parent: int, name: str) -> None:
        parent_dev = os.fstat(parent).st_dev
        for _ in range(_MAX_STACKED):
            try:
                target = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
            except OSError:
                return  # gone, or not a folder: nothing of ours is mounted there
            try:
                if os.fstat(target).st_dev == parent_dev:
                    return  # the folder itself: nothing mounted on it
                where = f"/proc/self/fd/{target}".encode()
                if self._libc.umount2(where, 0) == 0:
                    continue
                code = ctypes.get_errno()
                if code == errno.EBUSY and self._libc.umount2(where, _MNT_DETACH) == 0:
                    log.info("disk of %s busy: detached lazily", name)
                    continue
                code = ctypes.get_errno()
                raise OSError(code, f"unmount {name}: {os.strerror(code)}")
            finally:
                os.close(target)

    def _is_mounted(self, folder: Path) -> bool:
        try:
            return folder.lstat().st_dev != folder.parent.lstat().st_dev and folder.is_dir()
        except OSError:
            return False

    def _detach_loops(self, keep: set[str]) -> None:
        """Detach loop devices still bound to images of kernels that are gone."""
        images = str(self.image_root.resolve()) + "/"
        for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
            try:
                path = backing.read_text().strip().removesuffix(" (deleted)")
            except OSError:
                continue
            if not path.startswith(images):
                continue
            if path[len(images) :].removesuffix(IMAGE_SUFFIX) in keep:
                continue
            dev = f"/dev/{backing.parent.parent.name}"
            try:
                fd = os.open(dev, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                # A device still held elsewhere is marked to detach when let go.
                with contextlib.suppress(OSError):
                    fcntl.ioctl(fd, _LOOP_CLR_FD)
            finally:
                os.close(fd)


@contextlib.contextmanager
def _dir_fd(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


__all__ = ["DISK_DIR", "MIN_DISK_KIB", "DiskCaps", "DiskCapsUnavailable", "image_bytes"]
