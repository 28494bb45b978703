"""Signals through descriptors: pidfd_send_signal on a pidfd or a /proc/<pid> directory.

``open("/proc/<pid>", O_DIRECTORY)`` needs no check (reads are free), and a pidfd can
arrive over a Unix socket (SCM_RIGHTS) however ``pidfd_open`` is checked: so
``pidfd_send_signal`` itself must allow only targets of the traced tree, signal 0 (a probe)
included, with the scope its flags give (thread, process, or process group); else EPERM
(ESRCH for a process that no longer exists, as without the jail).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import JailBox

pytestmark = pytest.mark.jail

PIDFD_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif

static volatile sig_atomic_t got, thread_got;
static pid_t parent, worker_tid;

static void on_sig(int s) {
    (void)s;
    if (getpid() != parent) _exit(7); /* a child target: it got the signal */
    if (gettid() == worker_tid) thread_got++;
    got++;
}

static void *worker(void *arg) {
    (void)arg;
    worker_tid = gettid();
    for (;;) pause();
    return NULL;
}

/* Receive one descriptor over the Unix socket at path. */
static int recv_fd(const char *path) {
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    if (connect(s, (struct sockaddr *)&a, sizeof a)) return -1;
    char b;
    struct iovec io = {&b, 1};
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } u;
    struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1,
                       .msg_control = u.buf, .msg_controllen = sizeof u.buf};
    if (recvmsg(s, &m, 0) != 1) return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (!c || c->cmsg_type != SCM_RIGHTS) return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    close(s);
    return fd;
}

/* argv: how target sig flags [socket]
   how: procdir (open /proc/<pid>), pidfd (pidfd_open), tpidfd (pidfd_open PIDFD_THREAD),
        recv (a descriptor sent by the test over the Unix socket argv[5]);
   target: jail, self, child, thread, zombie, gone or a pid. */
int main(int argc, char **argv) {
    if (argc < 5) return 2;
    const char *how = argv[1], *target = argv[2];
    int sig = atoi(argv[3]);
    unsigned flags = (unsigned)strtoul(argv[4], NULL, 0);
    parent = getpid();
    signal(SIGUSR1, on_sig);
    pid_t who = 0, child = 0;
    int reap = 0;
    int hold[2] = {-1, -1};
    if (!strcmp(target, "jail")) who = getppid();
    else if (!strcmp(target, "self")) who = getpid();
    else if (!strcmp(target, "thread")) {
        pthread_t th;
        pthread_create(&th, NULL, worker, NULL);
        while (!worker_tid) usleep(1000);
        who = worker_tid;
    } else if (!strcmp(target, "child")) {
        child = fork();
        if (child == 0) { for (;;) pause(); }
        who = child;
    } else if (!strcmp(target, "zombie") || !strcmp(target, "gone")) {
        /* The child lives until the descriptor is taken, then exits: no race with the open. */
        if (pipe(hold) != 0) return 4;
        child = fork();
        if (child == 0) { char c; close(hold[1]); (void)!read(hold[0], &c, 1); _exit(0); }
        close(hold[0]);
        who = child;
        reap = !strcmp(target, "gone");
    } else who = atoi(target);
    int fd = -1;
    if (!strcmp(how, "procdir")) {
        char p[64];
        snprintf(p, sizeof p, "/proc/%d", (int)who);
        fd = open(p, O_RDONLY | O_DIRECTORY);
    } else if (!strcmp(how, "pidfd")) fd = syscall(SYS_pidfd_open, who, 0);
    else if (!strcmp(how, "tpidfd")) fd = syscall(SYS_pidfd_open, who, PIDFD_THREAD);
    else if (!strcmp(how, "recv")) fd = recv_fd(argv[5]);
    if (fd < 0) { printf("no fd: errno=%d\n", errno); return 3; }
    if (hold[1] >= 0) close(hold[1]);
    if (!strcmp(target, "zombie") || reap) {
        siginfo_t si;
        waitid(P_PID, child, &si, WEXITED | (reap ? 0 : WNOWAIT));
    }
    long rc = syscall(SYS_pidfd_send_signal, fd, sig, NULL, flags);
    printf("send rc=%ld errno=%d\n", rc, rc < 0 ? errno : 0);
    fflush(stdout);
    usleep(200000);
    if (child && strcmp(target, "gone")) {
        int st;
        kill(child, SIGTERM);
        waitpid(child, &st, 0);
        if (strcmp(target, "zombie"))
            printf("child %s\n", WIFEXITED(st) && WEXITSTATUS(st) == 7 ? "signalled" : "untouched");
    }
    printf("got %d thread %d\n", (int)got, (int)thread_got);
    return 0;
}
"""

THREAD, THREAD_GROUP, PROCESS_GROUP = 1, 2, 4
KILL, USR1 = str(int(signal.SIGKILL)), str(int(signal.SIGUSR1))
DENIED = "send rc=-1 errno=1\ngot 0 thread 0\n"


@pytest.fixture
def probe(jail_box: JailBox) -> Path:
    return jail_box.cc("pidfd", PIDFD_C)


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


class FdServer:
    """A Unix socket in the box that hands the first client a pidfd of `pid`."""

    def __init__(self, path: Path, pid: int) -> None:
        self.path = path
        self.pidfd = os.pidfd_open(pid)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(1)
        self.sock.settimeout(30)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            socket.send_fds(conn, [b"x"], [self.pidfd])

    def close(self) -> None:
        self.sock.close()
        self.thread.join(timeout=5)
        os.close(self.pidfd)


@pytest.mark.parametrize("flags", [0, THREAD, THREAD_GROUP, PROCESS_GROUP])
@pytest.mark.parametrize("sig", [KILL, "0"])
def test_cannot_signal_the_jail_through_its_proc_dir(
    jail_box: JailBox, probe: Path, flags: int, sig: str
) -> None:
    """Before the fix the jail died of the SIGKILL (the jail leads its own group here)."""
    res = run_apart(jail_box, str(probe), "procdir", "jail", sig, str(flags))
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    assert res.stdout == DENIED, res.stderr


@pytest.mark.parametrize("how", ["procdir", "recv"])
@pytest.mark.parametrize("flags", [0, THREAD, THREAD_GROUP, PROCESS_GROUP])
@pytest.mark.parametrize("sig", [KILL, "0"])
def test_cannot_signal_a_stranger(
    jail_box: JailBox,
    probe: Path,
    outsider: subprocess.Popen[bytes],
    how: str,
    flags: int,
    sig: str,
) -> None:
    """A /proc/<pid> directory, or a pidfd passed in over a Unix socket."""
    extra: list[str] = []
    server = None
    if how == "recv":
        server = FdServer(jail_box.work / "fd.sock", outsider.pid)
        extra = [str(server.path)]
    try:
        res = run_apart(jail_box, str(probe), how, str(outsider.pid), sig, str(flags), *extra)
    finally:
        if server:
            server.close()
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    assert res.stdout == DENIED, res.stderr
    assert outsider.poll() is None, "the stranger was killed"


@pytest.mark.parametrize("how", ["procdir", "pidfd"])
def test_signals_inside_the_tree_work(jail_box: JailBox, probe: Path, how: str) -> None:
    cases = {
        ("self", 0): "got 1 thread 0",
        ("self", THREAD_GROUP): "got 1 thread 0",
        ("self", PROCESS_GROUP): "got 1 thread 0",
        ("self", THREAD): "got 1 thread 0",
        ("child", 0): "child signalled\ngot 0 thread 0",
        ("child", THREAD): "child signalled\ngot 0 thread 0",
    }
    for (target, flags), tail in cases.items():
        res = run_apart(jail_box, str(probe), how, target, USR1, str(flags))
        assert res.returncode == 0, (target, flags, res.stdout, res.stderr)
        assert res.stdout == f"send rc=0 errno=0\n{tail}\n", (target, flags, res.stderr)
    # A probe (signal 0) of the program itself.
    res = run_apart(jail_box, str(probe), how, "self", "0", "0")
    assert res.stdout == "send rc=0 errno=0\ngot 0 thread 0\n", res.stderr


def test_thread_pidfd_inside_the_tree(jail_box: JailBox, probe: Path) -> None:
    """pidfd_open(tid, PIDFD_THREAD) of the program's own thread: the signal reaches that
    thread (the tracer reads PIDFD_THREAD from fdinfo)."""
    res = run_apart(jail_box, str(probe), "tpidfd", "thread", USR1, "0")
    assert res.returncode == 0, (res.stdout, res.stderr)
    assert res.stdout == "send rc=0 errno=0\ngot 1 thread 1\n", res.stderr


@pytest.mark.parametrize("how", ["procdir", "pidfd"])
@pytest.mark.parametrize("target", ["gone", "zombie"])
def test_exited_targets_behave_as_without_the_jail(
    jail_box: JailBox, probe: Path, how: str, target: str
) -> None:
    """A reaped child: ESRCH; a zombie child: the signal is taken (and dropped)."""
    native = subprocess.run(
        [str(probe), how, target, USR1, "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    res = jail_box.run(str(probe), how, target, USR1, "0")
    assert res.returncode == 0, res.stderr
    want = "send rc=-1 errno=3\n" if target == "gone" else "send rc=0 errno=0\n"
    assert res.stdout == native.stdout == want + "got 0 thread 0\n", res.stderr
