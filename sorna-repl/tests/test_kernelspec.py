"""The language specs: every folder's kernel.toml loads, a bad one is a one-line error, the
policy diff applies to the base, and the specs agree with what the daemons do."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from sorna.common import constants as C
from sorna.repl import imagebuild, kernelspec, paths
from sorna.repl.kernelspec import KernelSpecError, kernel_specs, load_specs


def test_the_languages_are_the_folders() -> None:
    folders = sorted(p.name for p in paths.KERNELS_DIR.iterdir() if p.is_dir())
    assert sorted(kernel_specs()) == folders
    for lang, spec in kernel_specs().items():
        assert spec.folder == paths.KERNELS_DIR / lang
        assert (spec.folder / spec.daemon).is_file()
        assert (spec.folder / "examples").is_dir()
        assert "query" in spec.features and set(spec.features) <= kernelspec.FEATURES
        # One template builds every image and the policy is made from the base: no copies.
        assert not (spec.folder / "Dockerfile").exists()
        assert not (spec.folder / "policy.json").exists()


def test_names_and_aliases_resolve_to_their_language() -> None:
    specs = kernel_specs()
    for lang, spec in specs.items():
        for name in (lang, *spec.aliases, lang.upper(), f" {lang} "):
            assert kernelspec.resolve(name, specs) == lang
    assert kernelspec.resolve("no-such-language", specs) is None


def test_labels_carry_aliases_and_features() -> None:
    for spec in kernel_specs().values():
        labels = spec.labels()
        assert labels[C.LABEL_LANG] == spec.lang
        assert labels[C.LABEL_ALIASES].split() == list(spec.aliases)
        assert labels[C.LABEL_FEATURES].split() == list(spec.features)
        assert labels[C.LABEL_DISPLAY_NAME] == spec.display_name


def test_base_image_package_list_is_todays() -> None:
    """The base digest is unchanged, so sorna/base:bookworm is not rebuilt."""
    assert imagebuild.base_packages() == sorted(
        {"python3", "python3-zmq", "nodejs", "gcc", "libc6-dev", "make", "g++", "bash", "git"}
        | {"procps"}
    )


# -- the policy diff ---------------------------------------------------------------------


@pytest.fixture
def kernels(tmp_path: Path) -> Path:
    """A copy of the kernel folders to break."""
    dest = tmp_path / "kernels"
    shutil.copytree(paths.KERNELS_DIR, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_policy_diff_adds_removes_and_overrides(kernels: Path) -> None:
    (kernels / "c" / "kernel.toml").write_text(
        (kernels / "c" / "kernel.toml").read_text()
        + "\n[policy]\nmax_child_procs = 7\nallow_network = true\n"
        + 'extra_envs = { GOPATH = "/tmp/go" }\n'
        + '[policy.add]\nexec = ["/opt/x/**"]\n'
        + '[policy.remove]\nexec = ["/bin/**"]\nextra_envs = ["PYTHONPATH"]\n'
    )
    base = kernelspec.load_base(kernels).policy
    policy = load_specs(kernels)["c"].policy
    assert policy["max_child_procs"] == 7 and policy["allow_network"] is True
    assert policy["path_rules"]["exec"] == ["/usr/**", "/home/work/**", "/opt/x/**"]
    assert policy["extra_envs"]["GOPATH"] == "/tmp/go" and "PYTHONPATH" not in policy["extra_envs"]
    assert policy["path_rules"]["write"] == base["path_rules"]["write"]
    # the base itself is untouched by a language's diff
    assert "/bin/**" in base["path_rules"]["exec"] and "PYTHONPATH" in base["extra_envs"]


def test_a_spec_without_policy_gets_the_base_policy() -> None:
    base = kernelspec.base_spec().policy
    assert kernel_specs()["c"].policy == base


# -- bad specs: one line naming the file and the key ---------------------------------------


BAD_SPECS = [
    ('name = "c"', 'name = "cc"', "name is 'cc' but the folder is 'c'"),
    ('extension = "c"\n', "", "extension is missing"),
    ("cores = 1", 'cores = "one"', "limits.cores must be a number, not 'one'"),
    ("cores = 1", "cores = true", "limits.cores must be a number, not True"),
    ('features = ["query",', 'features = ["fly", "query",', "features has 'fly'"),
    ('features = ["query", ', "features = [", "features must include 'query'"),
    ('mode = "program"', 'mode = "magic"', "query.mode is 'magic'"),
    ('run = ["{binary}"]', "", "query.run is needed when mode is 'program'"),
    ('name = "c"', 'name = "c"\ncolour = "blue"', "colour is not a known key"),
    ('daemon = "run.py"', 'daemon = "nope.py"', "image.daemon 'nope.py' is not a file"),
    ('aliases = ["gcc"]', 'aliases = ["g++"]', "cpp/kernel.toml: 'g++' is also a name of 'c'"),
    ('aliases = ["gcc"]', "aliases = [1]", "aliases must be a list of strings"),
    ('name = "c"', 'name = "c', "not valid TOML"),
    (
        'interpreter = "/usr/bin/python3"',
        'interpreter = "/usr/bin/python3"\n[policy.remove]\nexec = ["/opt/**"]',
        "policy.remove.exec names '/opt/**', which the base does not have",
    ),
    (
        'interpreter = "/usr/bin/python3"',
        'interpreter = "/usr/bin/python3"\n[policy]\nmax_child_procs = "many"',
        "policy.max_child_procs must be a number",
    ),
    (
        'interpreter = "/usr/bin/python3"',
        'interpreter = "/usr/bin/python3"\n[policy.add]\nexecs = ["/opt/**"]',
        "policy.add.execs is not a known key",
    ),
]


@pytest.mark.parametrize(("old", "new", "message"), BAD_SPECS)
def test_a_bad_spec_is_a_one_line_error(kernels: Path, old: str, new: str, message: str) -> None:
    path = kernels / "c" / "kernel.toml"
    _edit(path, old, new)
    with pytest.raises(KernelSpecError) as err:
        load_specs(kernels)
    text = str(err.value)
    assert "\n" not in text
    assert message in text
    assert text.startswith(str(path) if "/" not in message else str(kernels))


def test_a_missing_base_is_a_one_line_error(kernels: Path) -> None:
    (kernels / "base.toml").unlink()
    with pytest.raises(KernelSpecError, match=r"base\.toml: no such file$"):
        load_specs(kernels)


def test_the_build_tool_reports_a_bad_spec_in_one_line(
    kernels: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(kernels / "c" / "kernel.toml", "cores = 1", 'cores = "one"')
    monkeypatch.setattr(paths, "KERNELS_DIR", kernels)
    assert imagebuild.main(["c"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: ") and "limits.cores must be a number" in err


# -- the specs agree with the daemons ------------------------------------------------------


def _daemon(lang: str) -> ModuleType:
    path = paths.KERNELS_DIR / lang / "run.py"
    module_spec = importlib.util.spec_from_file_location(f"sorna_kernel_{lang}", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "lang", [lang for lang, spec in kernel_specs().items() if spec.query.mode == "program"]
)
def test_program_query_commands_are_the_daemons(lang: str, tmp_path: Path) -> None:
    """The spec's build + run argv of a query snippet are what the daemon runs today."""
    spec = kernel_specs()[lang]
    backends = [
        v
        for v in vars(_daemon(lang)).values()
        if isinstance(v, type) and getattr(v, "lang", None) == lang
    ]
    assert len(backends) == 1
    backend = backends[0]()
    assert backend.source_name == spec.source_name
    assert spec.source_name.endswith(f".{spec.extension}")
    source = tmp_path / ".sorna" / spec.source_name
    build, run = backend.query_commands(source)
    want_build, want_run = spec.query.commands(source)
    assert build == want_build
    # the daemon runs the interpreter by its full path
    assert [Path(run[0]).name, *run[1:]] == [Path(want_run[0]).name, *want_run[1:]]
