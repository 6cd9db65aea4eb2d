"""`pip install .` produces compiled modules inside robyn_fast, with stubs
that match them (checked with mypy.stubtest against the built wheel)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def unpacked_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel the way `pip install .` does (isolated build, Cython
    fetched as a build requirement) and unpack it."""
    out = tmp_path_factory.mktemp("wheel")
    # From a copy of the sources, as a fresh clone has them: setuptools keeps
    # build/lib/ between builds, which would let a module deleted from the
    # tree live on in the wheel.
    source = out / "source"
    shutil.copytree(
        ROOT, source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "*.so", ".hypothesis",
            ".pytest_cache", ".mypy_cache", ".benchmarks", "results", "node_modules",
        ),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(out)],
        check=True,
        timeout=600,
    )
    (wheel,) = out.glob("robyn_fast-*.whl")
    target = out / "unpacked"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)
    return target


def test_wheel_contains_compiled_modules_stubs_and_marker(unpacked_wheel: Path) -> None:
    core = unpacked_wheel / "robyn_fast" / "_core"
    for module in ("codec", "connection"):
        assert list(core.glob(f"{module}.*.so")), f"{module} extension missing from the wheel"
        assert (core / f"{module}.pyi").is_file()
        assert (core / f"{module}.pxd").is_file()
    assert (core / "wsutil.h").is_file()  # codec.pxd declares it: cimporters need it
    assert (unpacked_wheel / "robyn_fast" / "py.typed").is_file()
    assert not list(core.glob("*.pyx")) and not list(core.glob("*.c"))


def _env(unpacked: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(unpacked)
    env["MYPYPATH"] = str(unpacked)
    return env


def test_installed_package_uses_the_compiled_codec(unpacked_wheel: Path) -> None:
    code = (
        "import robyn_fast, robyn_fast._core.codec as c; "
        "print(robyn_fast.implementation()); print(c.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd="/", env=_env(unpacked_wheel), capture_output=True, text=True, check=True
    )
    impl, path = result.stdout.split()
    assert impl == "compiled"
    assert path.startswith(str(unpacked_wheel))


def test_stubs_match_the_compiled_modules(unpacked_wheel: Path) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "mypy.stubtest",
            "--allowlist", str(ROOT / "_core" / "stubtest-allowlist.txt"),
            "robyn_fast._core.codec",
            "robyn_fast._core.connection",
        ],
        cwd="/",
        env=_env(unpacked_wheel),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_installed_package_type_checks_strictly(unpacked_wheel: Path) -> None:
    """The public API is typed: mypy --strict over the installed package,
    with the compiled modules seen through their stubs."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "-p", "robyn_fast"],
        cwd=str(unpacked_wheel),
        env=_env(unpacked_wheel),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
