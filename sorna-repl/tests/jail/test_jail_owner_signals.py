"""Signals by proxy: a file's owner (F_SETOWN & co.) gets SIGIO or the F_SETSIG signal.

The program may only make itself, a process of the traced tree, or a group of traced
processes the owner of a descriptor: otherwise F_SETSIG(SIGKILL) + O_ASYNC + some I/O
would kill the jail or a stranger. Also: ``kill`` on a child that has already exited
fails with ESRCH (reaped) or succeeds (zombie), as without the jail.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import JailBox

pytestmark = pytest.mark.jail

OWNER_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t got;
static pid_t parent;

static void on_sig(int s) {
    (void)s;
    if (getpid() != parent) _exit(7); /* the child target: it got the signal */
    got++;
}

static void report(const char *what, long rc) {
    printf("%s rc=%ld errno=%d\n", what, rc, rc < 0 ? errno : 0);
    fflush(stdout);
}

/* Make `who` the owner of fd the way `how` says. Group targets: the caller passes a
   positive group id; F_SETOWN and the ioctls take it negated. */
static int set_owner(int fd, const char *how, long who, int group) {
    struct f_owner_ex ex;
    int v = group ? -(int)who : (int)who;
    if (!strcmp(how, "setown")) return fcntl(fd, F_SETOWN, v);
    if (!strcmp(how, "fiosetown")) return ioctl(fd, FIOSETOWN, &v);
    if (!strcmp(how, "siocspgrp")) return ioctl(fd, SIOCSPGRP, &v);
    ex.pid = (pid_t)who;
    if (!strcmp(how, "ex-tid")) ex.type = F_OWNER_TID;
    else if (!strcmp(how, "ex-pid")) ex.type = F_OWNER_PID;
    else if (!strcmp(how, "ex-pgrp")) ex.type = F_OWNER_PGRP;
    else { errno = EINVAL; return -2; }
    return fcntl(fd, F_SETOWN_EX, &ex);
}

static pid_t gone_child(int reap) {
    pid_t c = fork();
    if (c == 0) _exit(0);
    siginfo_t si;
    waitid(P_PID, c, &si, WEXITED | (reap ? 0 : WNOWAIT));
    return c;
}

int main(int argc, char **argv) {
    const char *how = argv[1];
    parent = getpid();
    signal(SIGUSR1, on_sig);
    if (!strcmp(how, "killgone")) {
        pid_t zombie = gone_child(0);
        report("kill-zombie", kill(zombie, 0));
        report("tgkill-zombie", syscall(234, zombie, zombie, 0));
        waitpid(zombie, NULL, 0);
        report("kill-reaped", kill(zombie, 0));
        report("tkill-reaped", syscall(200, zombie, 0));
        report("tgkill-reaped", syscall(234, zombie, zombie, 0));
        return 0;
    }
    /* argv: how target signal; target is jail, jailgroup, self, zero, group, child,
       gone, N (a pid) or gN (a process group). */
    const char *target = argv[2];
    int sig = atoi(argv[3]);
    long who = 0;
    int group = 0;
    pid_t child = 0;
    if (!strcmp(target, "jail")) who = getppid();
    else if (!strcmp(target, "jailgroup")) { who = getpgid(getppid()); group = 1; }
    else if (!strcmp(target, "self")) who = getpid();
    else if (!strcmp(target, "zero")) who = 0;
    else if (!strcmp(target, "group")) { who = getpgrp(); group = 1; }
    else if (!strcmp(target, "gone")) who = gone_child(1);
    else if (!strcmp(target, "child")) {
        child = fork();
        if (child == 0) { for (;;) pause(); }
        who = child;
    }
    else if (target[0] == 'g') { who = atol(target + 1); group = 1; }
    else who = atol(target);
    int pgrp_call = !strcmp(how, "ex-pgrp"), ex_call = !strncmp(how, "ex-", 3);
    if (who && (pgrp_call ? !group : group && ex_call)) {
        if (child) kill(child, SIGKILL);
        printf("bad target %s for %s\n", target, how);
        return 2;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return 3;
    report("owner", set_owner(sv[0], how, who, group));
    /* Arm it either way: if the owner call got through, the owner gets `sig`. */
    fcntl(sv[0], F_SETSIG, sig);
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_ASYNC | O_NONBLOCK);
    if (write(sv[1], "x", 1) != 1) return 4;
    usleep(300000);
    if (child) {
        int st;
        kill(child, SIGTERM);
        waitpid(child, &st, 0);
        printf("child %s\n", WIFEXITED(st) && WEXITSTATUS(st) == 7 ? "signalled" : "untouched");
    }
    printf("got %d\n", (int)got);
    return 0;
}
"""

SETTERS = ["setown", "ex-tid", "ex-pid", "ex-pgrp", "fiosetown", "siocspgrp"]


@pytest.fixture
def owner_probe(jail_box: JailBox) -> Path:
    return jail_box.cc("owner", OWNER_C)


@pytest.fixture
def outsider() -> Iterator[subprocess.Popen[bytes]]:
    """A process outside the jail, leading a process group of its own."""
    proc = subprocess.Popen(["sleep", "60"], process_group=0)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def run_apart(box: JailBox, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run under the jail in a session of its own: were the jail's group signalled, the
    signal must not reach pytest."""
    flags = ("-no-landlock",) if box.mode == "ptrace" else ()
    return subprocess.run(
        [str(box.jail), "-policy", str(box.policy()), *flags, "--", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=box.work,
        check=False,
        start_new_session=True,
    )


def is_group(how: str) -> bool:
    return how == "ex-pgrp"


@pytest.mark.parametrize("how", SETTERS)
def test_cannot_make_the_jail_the_owner(jail_box: JailBox, owner_probe: Path, how: str) -> None:
    """Before the fix the jail died of the SIGKILL (and its program with it)."""
    target = "jailgroup" if is_group(how) else "jail"
    res = run_apart(jail_box, str(owner_probe), how, target, str(int(signal.SIGKILL)))
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    assert res.stdout == "owner rc=-1 errno=1\ngot 0\n", res.stderr


STRANGER_CASES = [
    *((how, False) for how in SETTERS if how != "ex-pgrp"),
    *((how, True) for how in SETTERS if how in ("setown", "ex-pgrp", "fiosetown", "siocspgrp")),
]


@pytest.mark.parametrize(("how", "group"), STRANGER_CASES)
def test_cannot_make_a_stranger_the_owner(
    jail_box: JailBox,
    owner_probe: Path,
    outsider: subprocess.Popen[bytes],
    how: str,
    group: bool,
) -> None:
    target = f"g{outsider.pid}" if group else str(outsider.pid)
    res = run_apart(jail_box, str(owner_probe), how, target, str(int(signal.SIGKILL)))
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    assert res.stdout == "owner rc=-1 errno=1\ngot 0\n", res.stderr
    assert outsider.poll() is None, "the stranger was killed"


@pytest.mark.parametrize("how", SETTERS)
def test_owner_inside_the_tree_works(jail_box: JailBox, owner_probe: Path, how: str) -> None:
    """Self, 0 (no owner), a child, the program's own group: allowed, and signals arrive."""
    usr1 = str(int(signal.SIGUSR1))
    if is_group(how):
        targets = {"group": "got 1\n", "zero": "got 0\n"}
    else:
        targets = {"self": "got 1\n", "zero": "got 0\n", "child": "child signalled\ngot 0\n"}
        if not how.startswith("ex-"):
            targets["group"] = "got 1\n"
    for target, tail in targets.items():
        res = run_apart(jail_box, str(owner_probe), how, target, usr1)
        assert res.returncode == 0, (target, res.stdout, res.stderr)
        assert res.stdout == "owner rc=0 errno=0\n" + tail, (target, res.stderr)


@pytest.mark.parametrize("how", ["setown", "ex-pid", "fiosetown"])
def test_owner_that_no_longer_exists_is_esrch(
    jail_box: JailBox, owner_probe: Path, how: str
) -> None:
    """As without the jail: F_SETOWN to a reaped child fails with ESRCH."""
    native = subprocess.run(
        [str(owner_probe), how, "gone", str(int(signal.SIGUSR1))],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    res = jail_box.run(str(owner_probe), how, "gone", str(int(signal.SIGUSR1)))
    assert res.returncode == 0, res.stderr
    assert res.stdout == native.stdout == "owner rc=-1 errno=3\ngot 0\n", res.stderr


def test_kill_on_an_exited_child_behaves_as_without_the_jail(
    jail_box: JailBox, owner_probe: Path
) -> None:
    native = subprocess.run(
        [str(owner_probe), "killgone"], capture_output=True, text=True, timeout=30, check=False
    )
    res = jail_box.run(str(owner_probe), "killgone")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "kill-zombie rc=0 errno=0",
        "tgkill-zombie rc=0 errno=0",
        "kill-reaped rc=-1 errno=3",
        "tkill-reaped rc=-1 errno=3",
        "tgkill-reaped rc=-1 errno=3",
    ]
    assert res.stdout == native.stdout
