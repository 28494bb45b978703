"""Spawning children (vfork, posix_spawn, make), PATH searches and process groups."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import HOST_PYTHON, JailBox

pytestmark = pytest.mark.jail

SPAWN_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int wait_ok(pid_t pid) {
    int st;
    return waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* posix_spawn (absolute path: PATH searches have their own test), optionally
   with POSIX_SPAWN_RESETIDS (GNU make sets it: the child calls seteuid(getuid())
   and setegid(getgid()) before its execve). */
static int spawn(int flags) {
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, flags);
    char *args[] = {"true", NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, "/usr/bin/true", NULL, &attr, args, environ);
    posix_spawnattr_destroy(&attr);
    if (rc) { printf("posix_spawn flags=%#x: %s\n", flags, strerror(rc)); return 0; }
    return wait_ok(pid);
}

static int do_vfork(void) {
    pid_t pid = vfork();
    if (pid == 0) {
        char *args[] = {"true", NULL};
        execv("/usr/bin/true", args);
        _exit(errno);
    }
    return wait_ok(pid);
}

static void *spawner(void *arg) {
    long ok = 1;
    for (int i = 0; i < 10; i++) ok &= spawn(i % 2 ? POSIX_SPAWN_RESETIDS : 0) & do_vfork();
    return (void *)ok;
}

int main(int argc, char **argv) {
    if (!strcmp(argv[1], "spawn")) printf("spawn %s\n", spawn(0) ? "ok" : "failed");
    if (!strcmp(argv[1], "resetids")) {
        int ok = spawn(POSIX_SPAWN_RESETIDS);
        printf("resetids %s\n", ok ? "ok" : "failed");
    }
    if (!strcmp(argv[1], "vfork")) printf("vfork %s\n", do_vfork() ? "ok" : "failed");
    if (!strcmp(argv[1], "threads")) {
        /* Several threads spawning at once: new children race their parents' events. */
        pthread_t t[4];
        long all = 1;
        for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, spawner, NULL);
        for (int i = 0; i < 4; i++) { void *r; pthread_join(t[i], &r); all &= (long)r; }
        printf("threads %s\n", all ? "ok" : "failed");
    }
    if (!strcmp(argv[1], "ids")) {
        /* A no-op id change passes; a real one stays denied, even for root. */
        uid_t u = getuid(); gid_t g = getgid();
        printf("noop setresuid rc=%d\n", setresuid(-1, u, -1));
        printf("noop setresgid rc=%d\n", setresgid(-1, g, -1));
        int rc = setresuid(-1, u + 4242, -1);
        printf("change setresuid rc=%d errno=%d\n", rc, rc ? errno : 0);
        rc = setresgid(u + 4242, -1, -1);
        printf("change setresgid rc=%d errno=%d\n", rc, rc ? errno : 0);
        printf("still uid=%d\n", geteuid() == u);
    }
    return 0;
}
"""


@pytest.fixture
def spawn_probe(jail_box: JailBox) -> Path:
    return jail_box.cc("spawn", SPAWN_C)


@pytest.mark.parametrize("how", ["spawn", "resetids", "vfork", "threads"])
def test_vfork_and_posix_spawn_children_can_exec(
    jail_box: JailBox, spawn_probe: Path, how: str
) -> None:
    res = jail_box.run(str(spawn_probe), how)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{how} ok\n", res.stdout + res.stderr


def test_only_no_op_id_changes_pass(jail_box: JailBox, spawn_probe: Path) -> None:
    res = jail_box.run(str(spawn_probe), "ids")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "noop setresuid rc=0",
        "noop setresgid rc=0",
        "change setresuid rc=-1 errno=1",
        "change setresgid rc=-1 errno=1",
        "still uid=1",
    ]


@pytest.mark.skipif(not shutil.which("make"), reason="make not installed")
def test_make_runs_gcc(jail_box: JailBox) -> None:
    (jail_box.work / "main.c").write_text('#include <stdio.h>\nint main(void) { puts("made"); }\n')
    (jail_box.work / "Makefile").write_text("main: main.c\n\tgcc -o main main.c\n")
    res = jail_box.run(
        "/usr/bin/make",
        policy={"extra_envs": {"HOME": str(jail_box.work), "TMPDIR": str(jail_box.scratch)}},
        env={"PATH": "/usr/local/bin:/usr/bin:/bin"},  # as the kernels have it
    )
    assert res.returncode == 0, res.stdout + res.stderr
    done = subprocess.run([str(jail_box.work / "main")], capture_output=True, text=True, check=True)
    assert done.stdout == "made\n"


# PATH searches: a missing exec target is ENOENT, not EPERM


def exec_only_usr_bin(box: JailBox) -> dict[str, object]:
    return {"path_rules": {"read": ["/**"], "write": [f"{box.work}/**"], "exec": ["/usr/bin/**"]}}


def test_path_search_skips_missing_directories(jail_box: JailBox) -> None:
    # env uses execvp, which gives up at the first entry failing with anything but
    # ENOENT/EACCES/ENOTDIR.
    res = jail_box.run(
        "/bin/sh",
        "-c",
        "env true && echo env-ok; exec env echo exec-ok",
        policy=exec_only_usr_bin(jail_box),
        env={"PATH": f"{jail_box.root}/nonexistent:/nonexistent/bin:/usr/bin"},
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == "env-ok\nexec-ok\n", res.stderr


def test_exec_errno_for_missing_and_denied_targets(jail_box: JailBox) -> None:
    denied = jail_box.outside / "prog"
    shutil.copy("/usr/bin/true", denied)
    res = jail_box.python(
        f"""
import errno, os
for target in [{str(jail_box.outside / "missing")!r}, "/nonexistent/dir/prog",
               "/usr/bin/true/sub", {str(denied)!r}]:
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(target, [target])
        except OSError as e:
            os._exit(e.errno)
        os._exit(0)
    print(errno.errorcode.get(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])))
""",
        policy=exec_only_usr_bin(jail_box),
    )
    assert res.returncode == 0, res.stderr
    # Under Landlock the kernel may refuse the existing target itself (EACCES).
    assert res.stdout.splitlines()[:3] == ["ENOENT", "ENOENT", "ENOTDIR"], res.stderr
    assert res.stdout.splitlines()[3] in ("EPERM", "EACCES"), res.stdout


# Process groups: the program cannot join the jail's group nor signal a mixed one

GROUP_C = r"""
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *what, int rc) {
    printf("%s rc=%d errno=%d\n", what, rc, rc < 0 ? errno : 0);
    fflush(stdout);
}

int main(int argc, char **argv) {
    signal(SIGUSR1, SIG_IGN);
    if (!strcmp(argv[1], "join-jail")) {
        /* Signal 0: before the fix this reached the jail's launcher too. */
        report("join", setpgid(0, getpgid(getppid())));
        report("kill0", kill(0, 0));
    }
    if (!strcmp(argv[1], "own")) {
        /* What shells do: children in their own groups, a sibling joining one. */
        report("setpgid00", setpgid(0, 0));
        report("kill0", kill(0, SIGUSR1));
        pid_t a = fork();
        if (a == 0) { pause(); _exit(0); }
        report("parent-sets-child", setpgid(a, a));
        pid_t b = fork();
        if (b == 0) { report("join-sibling", setpgid(0, a)); _exit(0); }
        waitpid(b, NULL, 0);
        report("killpg-child", kill(-a, SIGUSR1));
        report("killpg-self", kill(-getpgrp(), SIGUSR1));
        kill(a, SIGKILL);
        waitpid(a, NULL, 0);
        /* The group is gone: ESRCH, as without the jail (killpg cleanups expect it). */
        report("killpg-gone", kill(-a, SIGUSR1));
    }
    if (!strcmp(argv[1], "mixed")) {
        /* An outsider joins our group; then we try to signal the group. */
        printf("pgid %d\n", getpgrp());
        fflush(stdout);
        char line[16];
        if (!fgets(line, sizeof line, stdin)) return 3;
        report("kill0", kill(0, SIGUSR1));
        report("killpg", kill(-getpgrp(), SIGUSR1));
    }
    return 0;
}
"""


@pytest.fixture
def group_probe(jail_box: JailBox) -> Path:
    return jail_box.cc("group", GROUP_C)


def test_cannot_join_the_jails_process_group(jail_box: JailBox, group_probe: Path) -> None:
    res = jail_box.run(str(group_probe), "join-jail")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "join rc=-1 errno=1\nkill0 rc=0 errno=0\n", res.stderr


def test_process_groups_inside_the_tree_work(jail_box: JailBox, group_probe: Path) -> None:
    res = jail_box.run(str(group_probe), "own")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "setpgid00 rc=0 errno=0",
        "kill0 rc=0 errno=0",
        "parent-sets-child rc=0 errno=0",
        "join-sibling rc=0 errno=0",
        "killpg-child rc=0 errno=0",
        "killpg-self rc=0 errno=0",
        "killpg-gone rc=-1 errno=3",
    ]


OUTSIDER = """
import os, signal, sys, time
got = []
signal.signal(signal.SIGUSR1, lambda *a: got.append(1))
os.setpgid(0, int(sys.argv[1]))
print("joined", flush=True)
sys.stdin.readline()
time.sleep(0.2)
print("signalled" if got else "untouched", flush=True)
"""


def test_group_signals_need_a_group_of_traced_processes(
    jail_box: JailBox, group_probe: Path
) -> None:
    """kill(0)/kill(-pgid) fail once a process outside the tree is in the group."""
    policy = jail_box.policy()
    flags = ("-no-landlock",) if jail_box.mode == "ptrace" else ()
    jail = subprocess.Popen(
        [str(jail_box.jail), "-policy", str(policy), *flags, "--", str(group_probe), "mixed"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=jail_box.work,
    )
    outsider = None
    try:
        assert jail.stdout is not None and jail.stdin is not None
        pgid = jail.stdout.readline().split()[1]
        outsider = subprocess.Popen(
            [HOST_PYTHON, "-c", OUTSIDER, pgid],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert outsider.stdout is not None and outsider.stdin is not None
        assert outsider.stdout.readline() == "joined\n"
        jail.stdin.write("go\n")
        jail.stdin.flush()
        out, err = jail.communicate(timeout=30)
        outsider.stdin.write("done\n")
        outsider.stdin.flush()
        verdict = outsider.communicate(timeout=30)[0]
    finally:
        for p in (jail, outsider):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert jail.returncode == 0, err
    assert out == "kill0 rc=-1 errno=1\nkillpg rc=-1 errno=1\n", err
    assert verdict == "untouched\n"
