"""``make dist`` wheels in a fresh venv: ``sorna up -d``, a run, ``sorna down``, nothing left.

The wheels are built once per session into a temporary folder (``make dist DIST=...``) and
installed with ``pip install <wheels>`` (explicit files: public indexes hold unrelated older
packages named ``sorna`` and ``sorna-client``).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from sorna.common.servers import PG_INSTALL_CACHE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def dist_wheels() -> Iterator[Path]:
    """A folder holding the ``make dist`` wheels of this checkout."""
    tmp = Path(tempfile.mkdtemp(prefix="sorna-wheels-"))
    try:
        wheels = tmp / "dist"
        make = subprocess.run(
            ["make", "-C", str(ROOT), "dist", f"DIST={wheels}"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert make.returncode == 0, make.stdout + make.stderr
        built = sorted(p.name for p in wheels.glob("*.whl"))
        names = {n.split("-")[0] for n in built}
        assert names == {
            "sorna",
            *(f"sorna_{p}" for p in ("common", "manager", "agent", "client", "repl", "media")),
        }
        assert any(n.startswith("sorna_repl-") and "linux_" in n for n in built), built
        yield wheels
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _install(wheels: Path, where: Path) -> Path:
    """Make a venv at ``where`` with the wheels and their deps; return its bin folder."""
    venv.create(where, with_pip=True)
    pip = subprocess.run(
        [str(where / "bin" / "pip"), "install", "--quiet", "sorna", "--find-links", str(wheels)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert pip.returncode == 0, pip.stderr[-2000:]
    return where / "bin"


@pytest.fixture(scope="session")
def dist_venv(dist_wheels: Path) -> Iterator[Path]:
    """The bin folder of a fresh venv holding only the ``make dist`` wheels and their deps."""
    tmp = Path(tempfile.mkdtemp(prefix="sorna-dist-"))
    tmp.chmod(0o755)  # other users may reach it (the private case has a test of its own)
    try:
        yield _install(dist_wheels, tmp / "venv")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_dist_wheels_give_every_command_and_a_working_sorna_up(
    dist_venv: Path, stack_factory: type
) -> None:
    for script in ("sorna", "sorna-manager", "sorna-agent", "lcc", "lpython"):
        assert (dist_venv / script).exists(), script
    # The installed sorna-repl carries its kernels and the prebuilt jail, not the checkout's.
    where = subprocess.run(
        [
            str(dist_venv / "python"),
            "-c",
            "from sorna.repl import paths, jailbin; "
            "print(paths.INSTALLED, paths.KERNELS_DIR, jailbin.jail_path())",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert where[0] == "True"
    assert str(dist_venv.parent) in where[1] and str(dist_venv.parent) in where[2]
    assert str(ROOT) not in " ".join(where)

    stack = stack_factory(dist_venv)
    up = stack.up()
    assert "Sorna is up." in up.stdout
    assert "backend: " in up.stdout
    ran = stack.sorna("run", "python3", "-c", "print(6*7)")
    assert (ran.returncode, ran.stdout) == (0, "42\n"), ran.stderr
    down = stack.down()
    assert down.returncode == 0, down.stderr
    assert stack.leftovers() == []


@pytest.fixture
def private_venv(dist_wheels: Path) -> Iterator[Path]:
    """A venv of the wheels in a 0700 folder (as under /root); removed with root's copy of
    its PostgreSQL programs once its stacks are down (ask for it before ``stack_factory``)."""
    private = Path(tempfile.mkdtemp(prefix="sorna-private-"))
    before = _cache()
    try:
        yield _install(dist_wheels, private / "venv")
    finally:
        for copy in _cache() - before:  # made for this venv, which is going away
            shutil.rmtree(copy, ignore_errors=True)
        shutil.rmtree(private, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs PostgreSQL as nobody")
def test_root_runs_sorna_up_from_a_venv_in_a_private_folder(
    private_venv: Path, stack_factory: type
) -> None:
    # As root, the embedded PostgreSQL runs as nobody, who cannot reach a venv under /root
    # (or any 0700 folder): its programs run from root's copy in the documented cache.
    assert stat.S_IMODE(private_venv.parents[1].stat().st_mode) == 0o700
    before = _cache()
    stack = stack_factory(private_venv)
    up = stack.up()
    assert "Sorna is up." in up.stdout
    made = _cache() - before
    assert len(made) == 1, made  # one copy of this venv's programs, no staging folder left
    (copy,) = made
    assert copy.stat().st_uid == 0 and stat.S_IMODE(copy.stat().st_mode) == 0o755
    programs = {_exe(pid) for pid in stack.pids}
    postgres = {exe for exe in programs if exe.name == "postgres"}
    assert postgres and all(exe.is_relative_to(copy) for exe in postgres), programs
    ran = stack.sorna("run", "python3", "-c", "print(6*7)")
    assert (ran.returncode, ran.stdout) == (0, "42\n"), ran.stderr
    assert stack.down().returncode == 0
    assert stack.leftovers() == []
    # A second start reuses the copy.
    stack.up()
    assert _cache() - before == made
    assert stack.down().returncode == 0
    assert stack.leftovers() == []


def _cache() -> set[Path]:
    """What is in the cache of PostgreSQL programs root runs as nobody."""
    return set(PG_INSTALL_CACHE.iterdir()) if PG_INSTALL_CACHE.is_dir() else set()


def _exe(pid: int) -> Path:
    try:
        return Path(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return Path("/")
