"""What must keep working under the jail, and the CLI's own behaviour."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from sorna.repl.jailbin import JAIL_SRC, go_tool

from .conftest import HOST_PYTHON, JailBox

pytestmark = pytest.mark.jail

STDLIB_50 = [
    "abc", "argparse", "array", "ast", "asyncio", "base64", "bisect", "calendar", "collections",
    "concurrent.futures", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal",
    "difflib", "email", "enum", "fractions", "functools", "gzip", "hashlib", "heapq", "hmac",
    "html", "http.client", "inspect", "io", "itertools", "json", "logging", "math", "operator",
    "pathlib", "pickle", "queue", "random", "re", "shutil", "sqlite3", "statistics", "string",
    "struct", "subprocess", "tempfile", "textwrap", "threading", "typing", "unittest",
    "urllib.parse", "uuid", "xml.etree.ElementTree", "zipfile", "zlib",
]  # fmt: skip


def test_python_with_stdlib_threads_and_files(jail_box: JailBox) -> None:
    code = f"""
import importlib
mods = {STDLIB_50!r}
for m in mods:
    importlib.import_module(m)
import threading, tempfile, os, sqlite3
out = []
def work(i):
    p = os.path.join({str(jail_box.work)!r}, f"t{{i}}.txt")
    with open(p, "w") as f:
        f.write(str(i * i))
    with open(p) as f:
        out.append(int(f.read()))
ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
for t in ts: t.start()
for t in ts: t.join()
with tempfile.NamedTemporaryFile("w+", dir={str(jail_box.scratch)!r}) as f:
    f.write("tmp ok"); f.flush(); f.seek(0); tmp = f.read()
db = sqlite3.connect(os.path.join({str(jail_box.work)!r}, "db.sqlite"))
db.execute("create table t (x)"); db.commit(); db.close()
d = {str(jail_box.work / "d")!r}
os.mkdir(d)
os.rename(d, d + "e")
print(len(mods), sorted(out), tmp)
"""
    res = jail_box.python(code)
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"{len(STDLIB_50)} [0, 1, 4, 9, 16, 25, 36, 49] tmp ok\n"
    assert len(STDLIB_50) >= 50


def test_shell_pipeline_when_exec_allowed(jail_box: JailBox) -> None:
    res = jail_box.run(
        "/bin/sh",
        "-c",
        "printf 'b\\na\\nc\\n' | sort | tr a-z A-Z > out.txt && cat out.txt | wc -l",
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "3"
    assert (jail_box.work / "out.txt").read_text() == "A\nB\nC\n"


def test_compiled_c_program(jail_box: JailBox) -> None:
    prog = jail_box.cc(
        "hello",
        r"""
#include <stdio.h>
#include <pthread.h>
static void *run(void *p) { return p; }
int main(void) {
    pthread_t t; pthread_create(&t, NULL, run, NULL); pthread_join(t, NULL);
    FILE *f = fopen("c.txt", "w"); fputs("from c", f); fclose(f);
    puts("hello from c");
    return 5;
}
""",
    )
    res = jail_box.run(str(prog))
    assert res.returncode == 5, res.stderr
    assert res.stdout == "hello from c\n"
    assert (jail_box.work / "c.txt").read_text() == "from c"


ZMQ_CODE = """
import sys, threading, zmq
addr = "ipc://" + sys.argv[1]
c = zmq.Context(io_threads=2)
push = c.socket(zmq.PUSH)
push.bind(addr)
pull = c.socket(zmq.PULL)
pull.connect(addr)
push.send(b"through the jail")
print(pull.recv().decode())
push.close(); pull.close(); c.term()
"""


def test_pyzmq_io_threads_under_the_default_policy(jail_bin: Path) -> None:
    """libzmq sets its I/O threads' scheduling policy by tid: allowed in the tree."""
    pytest.importorskip("zmq")
    sock = Path("/tmp") / f"sorna-jail-zmq-{uuid.uuid4().hex[:12]}.sock"
    try:
        res = subprocess.run(
            [str(jail_bin), "-policy", str(JAIL_SRC / "policies" / "default.json"), "--",
             sys.executable, "-c", ZMQ_CODE, str(sock)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        sock.unlink(missing_ok=True)
    assert (res.returncode, res.stdout) == (0, "through the jail\n"), res.stderr


def test_scheduling_calls_on_own_threads_only(jail_box: JailBox) -> None:
    res = jail_box.python(
        """
import os, threading
tid = threading.get_native_id()
os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
os.sched_setaffinity(tid, os.sched_getaffinity(0))
os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, 0))
def other():
    os.sched_setscheduler(threading.get_native_id(), os.SCHED_OTHER, os.sched_param(0))
t = threading.Thread(target=other); t.start(); t.join()
print("own ok")
for f in (lambda: os.sched_setscheduler(1, os.SCHED_OTHER, os.sched_param(0)),
          lambda: os.sched_setaffinity(os.getppid(), {0}),
          lambda: os.setpriority(os.PRIO_PROCESS, 1, 19),
          lambda: os.setpriority(os.PRIO_USER, 0, 19)):
    try:
        f()
    except PermissionError:
        print("EPERM")
"""
    )
    assert res.stdout == "own ok\n" + "EPERM\n" * 4, res.stderr


def test_policy_allowed_syscalls_override_the_built_in_check(jail_box: JailBox) -> None:
    code = "import os; os.sched_setaffinity(os.getppid(), os.sched_getaffinity(os.getppid()))"
    assert "PermissionError" in jail_box.python(code).stderr
    policy = {"allowed_syscalls": ["sched_setaffinity"]}
    res = jail_box.python(code + "; print('ok')", policy=policy)
    assert res.stdout == "ok\n", res.stderr


def test_watch_logs_but_allows(jail_box: JailBox) -> None:
    target = jail_box.outside / "f"
    res = jail_box.python(f"open({str(target)!r}, 'w').write('x')", flags=("-watch",))
    assert res.returncode == 0, res.stderr
    assert target.read_text() == "x"
    assert f"would deny openat {target}" in res.stderr


def test_watch_reports_calls_the_filter_denies(jail_box: JailBox) -> None:
    res = jail_box.python("import os; os.setuid(0); print('ok')", flags=("-watch",))
    assert res.stdout == "ok\n", res.stderr
    assert "would deny setuid" in res.stderr


def test_debug_logs_each_decision(jail_box: JailBox) -> None:
    ok = jail_box.work / "ok"
    bad = jail_box.outside / "bad"
    res = jail_box.run("/bin/sh", "-c", f"echo > {ok}; echo > {bad}", flags=("-debug",))
    if jail_box.mode == "landlock":
        # The kernel decides these opens: the tracer never sees them.
        assert "landlock ABI" in res.stderr
        assert f"openat {ok}" not in res.stderr
        assert f"{bad}: Permission denied" in res.stderr
    else:
        assert "landlock: off (-no-landlock)" in res.stderr
        assert f"allow openat {ok}" in res.stderr
        assert f"deny openat {bad}" in res.stderr
    assert ok.exists()
    assert not bad.exists()
    assert "allow execve /usr/bin/dash" in res.stderr or "allow execve /bin/" in res.stderr


def test_without_debug_the_jail_is_quiet(jail_box: JailBox) -> None:
    res = jail_box.run("/bin/sh", "-c", "echo hi")
    assert (res.stdout, res.stderr, res.returncode) == ("hi\n", "", 0)


def test_exit_status_mirrors_the_program(jail_box: JailBox) -> None:
    assert jail_box.run("/bin/sh", "-c", "exit 7").returncode == 7
    assert jail_box.run("/bin/sh", "-c", "kill -SEGV $$").returncode == 128 + signal.SIGSEGV


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 20
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_sigterm_is_forwarded_to_the_program(jail_box: JailBox) -> None:
    ready = jail_box.work / "ready"
    proc = subprocess.Popen(
        [str(jail_box.jail), "-policy", str(jail_box.policy()), "--", "/bin/sh", "-c",
         f"touch {ready}; sleep 30 & wait"],
        cwd=jail_box.work,
    )  # fmt: skip
    try:
        wait_for(ready)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()


def test_second_signal_kills_the_group(jail_box: JailBox) -> None:
    ready = jail_box.work / "ready"
    proc = subprocess.Popen(
        [str(jail_box.jail), "-policy", str(jail_box.policy()), "--", "/bin/sh", "-c",
         f"trap '' TERM INT; touch {ready}; while :; do sleep 0.1; done"],
        cwd=jail_box.work,
    )  # fmt: skip
    try:
        wait_for(ready)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        assert proc.poll() is None, "the shell ignores the first signal"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 128 + signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()


def test_policy_with_unknown_key_is_a_clear_error(jail_box: JailBox) -> None:
    bad = jail_box.root / "bad.json"
    bad.write_text('{"max_child_proc": 3}')
    res = subprocess.run(
        [str(jail_box.jail), "-policy", str(bad), "--", "/bin/true"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert res.returncode == 2
    assert 'unknown field "max_child_proc"' in res.stderr


def test_shipped_default_policy_runs_python(jail_box: JailBox) -> None:
    res = subprocess.run(
        [str(jail_box.jail), "-policy", str(JAIL_SRC / "policies" / "default.json"), "--",
         HOST_PYTHON, "-I", "-c", "import json; print(json.dumps([1]))"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert (res.returncode, res.stdout) == (0, "[1]\n"), res.stderr


def test_go_unit_tests_pass() -> None:
    env = {**os.environ, "CGO_ENABLED": "0", "GOPROXY": "off", "GOFLAGS": "-mod=mod"}
    res = subprocess.run(
        [str(go_tool()), "test", "-count=1", "./..."],
        cwd=JAIL_SRC,
        capture_output=True,
        text=True,
        timeout=110,
        env=env,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert sys.platform == "linux"
