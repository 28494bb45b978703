"""Every call the jail must refuse, run for real under the built binary."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import JailBox

pytestmark = pytest.mark.jail

PROBE_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

static int report(const char *what, long rc) {
    printf("%s rc=%ld errno=%d\n", what, rc, rc < 0 ? errno : 0);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    const char *a = argv[1];
    if (!strcmp(a, "kill1")) return report(a, kill(1, SIGKILL));
    if (!strcmp(a, "killjail")) return report(a, kill(getppid(), SIGKILL));
    if (!strcmp(a, "killall")) return report(a, kill(-1, SIGKILL));
    if (!strcmp(a, "mount")) return report(a, mount("none", argv[2], "tmpfs", 0, NULL));
    if (!strcmp(a, "setuid")) return report(a, setuid(0));
    if (!strcmp(a, "raw")) return report(a, socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    if (!strcmp(a, "netlink")) return report(a, socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE));
    if (!strcmp(a, "unshare")) return report(a, unshare(CLONE_NEWNS));
    if (!strcmp(a, "iouring")) {
        char params[120];
        memset(params, 0, sizeof params);
        return report(a, syscall(425, 8, params));
    }
    if (!strcmp(a, "ptrace")) {
        pid_t victim = fork();
        if (victim == 0) { pause(); _exit(0); }
        pid_t attacker = fork();
        if (attacker == 0) { report(a, ptrace(PTRACE_ATTACH, victim, 0, 0)); _exit(0); }
        waitpid(attacker, NULL, 0);
        kill(victim, SIGKILL);
        waitpid(victim, NULL, 0);
        return 0;
    }
    if (!strcmp(a, "forkbomb")) {
        int fd = open(argv[2], O_WRONLY | O_APPEND | O_CREAT, 0644);
        for (;;) {
            if (fork() == 0) write(fd, "c\n", 2);
        }
    }
    return 2;
}
"""


@pytest.fixture
def jail_probe(jail_box: JailBox) -> Path:
    return jail_box.cc("probe", PROBE_C)


def assert_eperm(box: JailBox, *argv: str) -> None:
    res = box.run(*argv)
    assert res.returncode == 0, res.stderr
    assert "errno=1\n" in res.stdout, res.stdout + res.stderr


# Writes outside the writable globs


def test_open_for_write_outside_is_denied(jail_box: JailBox) -> None:
    target = jail_box.outside / "f"
    res = jail_box.python(
        f"""
try:
    open({str(target)!r}, "w")
except PermissionError:
    print("EPERM")
"""
    )
    assert res.stdout == "EPERM\n", res.stderr
    assert res.returncode == 0
    assert not target.exists()


def test_openat_with_dirfd_outside_is_denied(jail_box: JailBox) -> None:
    res = jail_box.python(
        f"""
import os
d = os.open({str(jail_box.outside)!r}, os.O_RDONLY | os.O_DIRECTORY)
try:
    os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=d)
except PermissionError:
    print("EPERM")
"""
    )
    assert res.stdout == "EPERM\n", res.stderr
    assert not (jail_box.outside / "f").exists()


def test_write_through_symlink_in_tmp_is_denied(jail_box: JailBox) -> None:
    target = jail_box.outside / "f"
    link = jail_box.scratch / "link"
    res = jail_box.python(
        f"""
import os
os.symlink({str(target)!r}, {str(link)!r})
try:
    open({str(link)!r}, "w")
except PermissionError:
    print("EPERM")
"""
    )
    assert res.stdout == "EPERM\n", res.stderr
    assert link.is_symlink()
    assert not target.exists()


def test_write_through_symlinked_dir_and_dotdot_is_denied(jail_box: JailBox) -> None:
    """`tmp/dirlink/../x` resolves through the link, not lexically."""
    (jail_box.outside / "sub").mkdir()
    (jail_box.scratch / "dirlink").symlink_to(jail_box.outside / "sub")
    res = jail_box.python(
        f"""
try:
    open({str(jail_box.scratch)!r} + "/dirlink/../f", "w")
except PermissionError:
    print("EPERM")
"""
    )
    assert res.stdout == "EPERM\n", res.stderr
    assert not (jail_box.outside / "f").exists()


@pytest.mark.parametrize("reader", ["procmem", "peek"])
def test_path_checks_with_each_memory_reader(jail_box: JailBox, reader: str) -> None:
    """The fallbacks for when process_vm_readv is denied (Docker without CAP_SYS_PTRACE)."""
    link = jail_box.scratch / "link"
    res = jail_box.python(
        f"""
import os
os.symlink({str(jail_box.outside / "f")!r}, {str(link)!r})
open({str(jail_box.scratch / ("long" * 60))!r}, "w").close()
try:
    open({str(link)!r}, "w")
except PermissionError:
    print("denied")
""",
        env={"SORNA_JAIL_MEM_READER": reader},
    )
    assert res.stdout == "denied\n", res.stderr
    assert (jail_box.scratch / ("long" * 60)).exists()
    assert not (jail_box.outside / "f").exists()


def test_rename_outside_is_denied(jail_box: JailBox) -> None:
    victim = jail_box.outside / "victim"
    victim.write_text("keep")
    res = jail_box.python(
        f"""
import os
open({str(jail_box.scratch / "a")!r}, "w").close()
for src, dst in [({str(jail_box.scratch / "a")!r}, {str(jail_box.outside / "a")!r}),
                 ({str(victim)!r}, {str(jail_box.scratch / "stolen")!r})]:
    try:
        os.rename(src, dst)
    except PermissionError:
        print("EPERM")
"""
    )
    assert res.stdout == "EPERM\nEPERM\n", res.stderr
    assert victim.read_text() == "keep"
    assert not (jail_box.outside / "a").exists()


def test_link_outside_is_denied(jail_box: JailBox) -> None:
    victim = jail_box.outside / "victim"
    victim.write_text("keep")
    res = jail_box.python(
        f"""
import os
for src, dst in [({str(victim)!r}, {str(jail_box.scratch / "hard")!r}),
                 ({str(jail_box.scratch)!r} + "/x", {str(jail_box.outside / "x")!r})]:
    if src.endswith("/x"):
        open(src, "w").close()
    try:
        os.link(src, dst)
    except PermissionError:
        print("EPERM")
"""
    )
    assert res.stdout == "EPERM\nEPERM\n", res.stderr
    assert not (jail_box.scratch / "hard").exists()
    assert not (jail_box.outside / "x").exists()


def test_unlink_and_chmod_outside_are_denied(jail_box: JailBox) -> None:
    victim = jail_box.outside / "victim"
    victim.write_text("keep")
    victim.chmod(0o644)
    res = jail_box.python(
        f"""
import os
for f in (lambda: os.unlink({str(victim)!r}), lambda: os.chmod({str(victim)!r}, 0o777),
          lambda: os.mkdir({str(jail_box.outside / "d")!r})):
    try:
        f()
    except PermissionError:
        print("EPERM")
"""
    )
    assert res.stdout == "EPERM\n" * 3, res.stderr
    assert victim.exists()
    assert victim.stat().st_mode & 0o777 == 0o644


def test_every_write_call_outside_is_denied_and_inside_allowed(jail_box: JailBox) -> None:
    """The calls Landlock takes over from the tracer, each both ways."""
    (jail_box.outside / "victim").write_text("keep")
    (jail_box.outside / "dir").mkdir()
    (jail_box.scratch / "victim").write_text("drop")
    (jail_box.scratch / "dir").mkdir()
    res = jail_box.python(
        f"""
import os
def calls(d):
    return [lambda: os.truncate(d + "/victim", 0), lambda: os.symlink("x", d + "/sym"),
            lambda: os.mkfifo(d + "/fifo"), lambda: os.rmdir(d + "/dir"),
            lambda: os.open(d + "/creat", os.O_CREAT | os.O_EXCL | os.O_WRONLY),
            lambda: os.open(d + "/victim", os.O_RDWR), lambda: os.unlink(d + "/victim")]
for d in ({str(jail_box.outside)!r}, {str(jail_box.scratch)!r}):
    out = []
    for f in calls(d):
        try:
            f()
            out.append("ok")
        except PermissionError:
            out.append("denied")
    print(" ".join(out))
"""
    )
    assert res.stdout == "denied " * 6 + "denied\n" + "ok " * 6 + "ok\n", res.stderr
    assert (jail_box.outside / "victim").read_text() == "keep"
    assert sorted(p.name for p in jail_box.outside.iterdir()) == ["dir", "victim"]


# Exec, processes, signals


def test_execve_denied_when_exec_not_allowed(jail_box: JailBox) -> None:
    res = jail_box.run(
        "/usr/bin/python3",
        "-I",
        "-c",
        """
import os
try:
    os.execv("/bin/sh", ["sh", "-c", "echo escaped"])
except PermissionError:
    print("EPERM")
""",
        policy={"exec_allowance": 0},
    )
    assert res.stdout == "EPERM\n", res.stderr
    assert res.returncode == 0


def test_execve_checks_the_target_not_the_caller(jail_box: JailBox) -> None:
    # /bin/sh may exec, but only targets inside the exec globs.
    res = jail_box.run(
        "/bin/sh",
        "-c",
        f"cp /bin/true {jail_box.scratch}/t; {jail_box.scratch}/t; echo rc=$?",
        policy={"exec_allowance": -1},
    )
    assert "rc=126" in res.stdout, res.stdout + res.stderr


def test_fork_bomb_is_bounded_and_ended(jail_box: JailBox, jail_probe: Path) -> None:
    log = jail_box.scratch / "forks"
    res = jail_box.run(str(jail_probe), "forkbomb", str(log), policy={"max_child_procs": 16})
    assert res.returncode == 128 + 9, res.stderr
    assert "process limit" in res.stderr
    forks = log.read_text().count("c")
    assert 0 < forks <= 16, res.stderr
    # Nothing of the bomb survives the jail.
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                continue
            assert exe != str(jail_probe), f"pid {pid} survived"


@pytest.mark.parametrize("action", ["kill1", "killjail", "killall"])
def test_kill_outside_the_tree_is_denied(jail_box: JailBox, jail_probe: Path, action: str) -> None:
    assert_eperm(jail_box, str(jail_probe), action)


def test_ptrace_attach_on_sibling_is_denied(jail_box: JailBox, jail_probe: Path) -> None:
    assert_eperm(jail_box, str(jail_probe), "ptrace")


def test_mount_is_denied(jail_box: JailBox, jail_probe: Path) -> None:
    assert_eperm(jail_box, str(jail_probe), "mount", str(jail_box.scratch))


def test_setuid_is_denied_even_as_root(jail_box: JailBox, jail_probe: Path) -> None:
    assert_eperm(jail_box, str(jail_probe), "setuid")


@pytest.mark.parametrize("action", ["raw", "netlink"])
def test_raw_and_netlink_sockets_are_denied(
    jail_box: JailBox, jail_probe: Path, action: str
) -> None:
    assert_eperm(jail_box, str(jail_probe), action)


def test_raw_socket_denied_even_with_network(jail_box: JailBox, jail_probe: Path) -> None:
    res = jail_box.run(str(jail_probe), "raw", policy={"allow_network": True})
    assert "errno=1\n" in res.stdout, res.stdout + res.stderr


def test_inet_socket_follows_allow_network(jail_box: JailBox) -> None:
    code = """
import socket
try:
    socket.socket().close()
    print("ok")
except PermissionError:
    print("EPERM")
"""
    assert jail_box.python(code).stdout == "EPERM\n"
    assert jail_box.python(code, policy={"allow_network": True}).stdout == "ok\n"


def test_unshare_is_denied(jail_box: JailBox, jail_probe: Path) -> None:
    assert_eperm(jail_box, str(jail_probe), "unshare")


def test_io_uring_setup_is_denied(jail_box: JailBox, jail_probe: Path) -> None:
    assert_eperm(jail_box, str(jail_probe), "iouring")
