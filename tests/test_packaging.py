"""`pip install .` produces compiled modules inside robyn_fast, with stubs
that match them (checked with mypy.stubtest against the built wheel); the
sdist builds that wheel and, like it, carries the MIT LICENSE."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Building the sdist and a wheel from it takes ~100 s and checks the packaging, not the
# interpreter: CI runs it on one Python (tests/scope.py). test_typing checks the types of
# the installed package on every Python.
pytestmark = pytest.mark.full_scope


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the sources, as a fresh clone has them: setuptools keeps
    build/lib/ between builds, which would let a module deleted from the
    tree live on in the wheel."""
    source = tmp_path_factory.mktemp("copy") / "source"
    shutil.copytree(
        ROOT, source, symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "*.so", ".hypothesis",
            ".pytest_cache", ".mypy_cache", ".benchmarks", "results", "node_modules",
        ),
    )
    return source


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, source_copy: Path) -> Path:
    """The sdist, and the wheel built from that sdist (so the sdist must hold every
    source a build needs), by `python -m build`: isolated, as `pip install .` builds,
    Cython fetched as a build requirement."""
    out = tmp_path_factory.mktemp("dist")
    # Byte-compiling on (setuptools says it is skipped, with a warning, when it is off).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(source_copy)],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (out / "build.log").write_text(result.stdout + result.stderr)
    return out


def test_the_build_prints_no_warning(built: Path) -> None:
    """Neither setuptools (a stray file, a package given as data) nor the C compiler warns,
    building the sdist and the wheel from it."""
    log = (built / "build.log").read_text()
    warnings = [line for line in log.splitlines() if "warning" in line.lower()]
    assert not warnings, "\n".join(warnings[:40])


@pytest.fixture(scope="module")
def unpacked_wheel(built: Path) -> Path:
    (wheel,) = built.glob("robyn_fast-*.whl")
    target = built / "unpacked"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)
    return target


@pytest.fixture(scope="module")
def sdist_names(built: Path) -> dict[str, bytes]:
    """The files of the sdist, by path inside it."""
    (sdist,) = built.glob("robyn_fast-*.tar.gz")
    with tarfile.open(sdist) as tf:
        return {
            member.name.split("/", 1)[1]: tf.extractfile(member).read()  # type: ignore[union-attr]
            for member in tf.getmembers()
            if member.isfile() and "/" in member.name
        }


def _license_ok(text: str) -> None:
    assert text.startswith("MIT License\n\nCopyright (c) 2026 The robyn_fast authors\n")
    assert "Permission is hereby granted, free of charge" in text


def test_the_license_is_mit_and_ships_in_the_wheel(unpacked_wheel: Path) -> None:
    _license_ok((ROOT / "LICENSE").read_text())
    (info,) = unpacked_wheel.glob("robyn_fast-*.dist-info")
    assert (info / "licenses" / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
    metadata = (info / "METADATA").read_text()
    assert "License-Expression: MIT" in metadata.splitlines()
    assert "License-File: LICENSE" in metadata.splitlines()


def test_the_sdist_has_the_license_and_what_a_build_needs(sdist_names: dict[str, bytes]) -> None:
    _license_ok(sdist_names["LICENSE"].decode())
    pkg_info = sdist_names["PKG-INFO"].decode().splitlines()
    assert "License-Expression: MIT" in pkg_info and "License-File: LICENSE" in pkg_info
    for needed in ("pyproject.toml", "setup.py", "README.md", "_core/codec.pyx", "_core/connection.pyx",
                   "_core/protocol.pyx", "_core/protocol.pxd",
                   "_core/wsutil.c", "_core/wsutil.h", "robyn_fast/logs.py", "robyn_fast/py.typed"):
        assert needed in sdist_names, needed
    assert not [name for name in sdist_names if name.endswith(".so") or name in ("_core/codec.c", "_core/connection.c")]
    # No test files: the suite needs the checkout (helpers, apps, examples, servers), not a part of it.
    assert not [name for name in sdist_names if name.startswith("tests/")]
    assert "_core/stubtest-allowlist.txt" not in sdist_names


def test_the_metadata(sdist_names: dict[str, bytes]) -> None:
    """The version comes from robyn_fast/version.py (its one place), with the project's URLs and
    classifiers."""
    namespace: dict[str, object] = {}
    exec((ROOT / "robyn_fast" / "version.py").read_text(), namespace)
    pkg_info = sdist_names["PKG-INFO"].decode().splitlines()
    assert f"Version: {namespace['__version__']}" in pkg_info
    urls = {line.split(": ", 1)[1].split(",")[0] for line in pkg_info if line.startswith("Project-URL: ")}
    assert {"Homepage", "Documentation", "Changelog", "Issues"} <= urls, urls
    classifiers = {line.split(": ", 1)[1] for line in pkg_info if line.startswith("Classifier: ")}
    for needed in ("Typing :: Typed", "Operating System :: POSIX :: Linux", "Framework :: AsyncIO"):
        assert needed in classifiers, needed
    assert any(c.startswith("Development Status :: ") for c in classifiers), classifiers
    assert '__version__ = "' not in (ROOT / "robyn_fast" / "__init__.py").read_text()
    assert "\nversion = \"" not in (ROOT / "pyproject.toml").read_text()  # dynamic, from version.py
    assert (ROOT / "CHANGELOG.md").read_text().startswith("# Changelog\n")


def test_building_without_a_compiler_names_what_is_missing(source_copy: Path, tmp_path: Path) -> None:
    """What a user without gcc gets from `pip install robyn_fast` when no wheel fits: one
    message naming the compiler it tried and what to install, not the compiler's exit status."""
    source = tmp_path / "source"
    shutil.copytree(source_copy, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    env = dict(os.environ, CC="/nonexistent/cc", LDSHARED="/nonexistent/cc -shared")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "out"),
         str(source)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "robyn_fast: building from source needs a C compiler (gcc or clang" in output, output[-3000:]
    assert "/nonexistent/cc" in output and "pip install --only-binary robyn_fast robyn_fast" in output, output[-3000:]
    assert "returned non-zero exit status" not in output and "Traceback" not in output, output[-3000:]
    assert not list((source / "build").glob("cython/**/*.c"))  # it stopped before translating anything


def test_wheel_contains_compiled_modules_stubs_and_marker(unpacked_wheel: Path) -> None:
    core = unpacked_wheel / "robyn_fast" / "_core"
    for module in ("codec", "connection", "protocol"):
        assert list(core.glob(f"{module}.*.so")), f"{module} extension missing from the wheel"
        assert (core / f"{module}.pyi").is_file()
        assert (core / f"{module}.pxd").is_file()
    assert (core / "wsutil.h").is_file()  # codec.pxd declares it: cimporters need it
    assert (unpacked_wheel / "robyn_fast" / "py.typed").is_file()
    assert not list(core.glob("*.pyx")) and not list(core.glob("*.c"))
    assert not list(core.glob("*.txt"))  # the stubtest allowlist is the tests', not the package's


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
            "robyn_fast._core.protocol",
            "robyn_fast._core.handshake",
            "robyn_fast._core.http1",
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
