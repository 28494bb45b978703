"""``make dist`` wheels in a fresh venv: ``sorna up -d``, a run, ``sorna down``, nothing left.

The wheels are built once per session into a temporary folder (``make dist DIST=...``) and
installed with ``pip install <wheels>`` (explicit files: public indexes hold unrelated older
packages named ``sorna`` and ``sorna-client``).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def dist_venv() -> Iterator[Path]:
    """The bin folder of a fresh venv holding only the ``make dist`` wheels and their deps."""
    tmp = Path(tempfile.mkdtemp(prefix="sorna-dist-"))
    tmp.chmod(0o755)  # as root, the embedded PostgreSQL runs as nobody from this venv
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
        venv.create(tmp / "venv", with_pip=True)
        pip = subprocess.run(
            [
                str(tmp / "venv" / "bin" / "pip"),
                "install",
                "--quiet",
                "sorna",
                "--find-links",
                str(wheels),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert pip.returncode == 0, pip.stderr[-2000:]
        yield tmp / "venv" / "bin"
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
