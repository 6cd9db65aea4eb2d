"""The manylinux wheels `make wheels` writes to wheelhouse/ install and run where there is no C
compiler: each goes into a fresh venv inside a Debian root without one (.ci/nocc-root, cached
under /var/cache/robyn_fast/nocc-sid), with its dependencies as wheels, and
tests/wheel_smoke.py checks there that the compiled core is the one loaded and that a server
answers an HTTP route and echoes a WebSocket message on 127.0.0.1.

`make wheels-test` runs it with ROBYN_FAST_REQUIRE_WHEELS=1 (a missing wheel fails); `make test`
does not collect it (tests/conftest.py). Run by hand without that variable, a missing wheel skips."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WHEELHOUSE = ROOT / "wheelhouse"
VERSIONS = ("3.11", "3.12", "3.13", "3.14", "3.15")
REQUIRED = os.environ.get("ROBYN_FAST_REQUIRE_WHEELS", "") not in ("", "0")
# The newest manylinux policy a wheel may claim (glibc 2.28, the bound).
NEWEST = (2, 28)
# What the root's glibc runs (pip download does not widen a --platform to older policies).
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux2010_x86_64")


CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"


def _wheel(version: str) -> Path:
    tag = "cp" + version.replace(".", "")
    found = sorted(WHEELHOUSE.glob(f"robyn_fast-*-{tag}-{tag}-*.whl"))
    if not found:
        if REQUIRED:
            pytest.fail(f"no wheel for Python {version} in {WHEELHOUSE} (make wheels)")
        pytest.skip(f"no wheel for Python {version} in {WHEELHOUSE}: run `make wheels` first")
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def nocc_root() -> Path:
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        if REQUIRED:
            pytest.fail("the wheel smoke test needs root and debootstrap (chroot into a root without a compiler)")
        pytest.skip("needs root and debootstrap (chroot into a root without a compiler)")
    made = subprocess.run([str(ROOT / ".ci" / "nocc-root")], capture_output=True, text=True, timeout=1800)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    root = Path(made.stdout.strip().splitlines()[-1])
    for compiler in ("cc", "gcc", "clang"):
        probe = subprocess.run([CHROOT, str(root), "sh", "-c", f"command -v {compiler}"], capture_output=True)
        assert probe.returncode != 0, f"{compiler} is in {root}"
    return root


def _interpreter(root: Path, version: str) -> str:
    """The root's python3.X: Debian's for 3.14/3.15, pyenv's copied build for 3.11-3.13."""
    debian = Path(f"/usr/bin/python{version}")
    if (root / debian.relative_to("/")).exists():
        return str(debian)
    copies = sorted(root.glob(f"root/.pyenv/versions/{version}.*/bin/python{version}"))
    assert copies, f"no Python {version} in {root}"
    return "/" + str(copies[-1].relative_to(root))


@pytest.fixture
def scratch(nocc_root: Path) -> Iterator[tuple[Path, str]]:
    """A fresh folder inside the root: (its path on the host, its path in the root)."""
    inside = f"/tmp/wheel-smoke-{uuid.uuid4().hex[:12]}"
    host = nocc_root / inside.lstrip("/")
    host.mkdir(parents=True)
    yield host, inside
    shutil.rmtree(host, ignore_errors=True)


def _in_root(root: Path, *cmd: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return subprocess.run([CHROOT, str(root), *cmd], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_wheel_installs_and_serves_without_a_compiler(
    version: str, nocc_root: Path, scratch: tuple[Path, str]
) -> None:
    wheel = _wheel(version)
    platforms = re.findall(r"manylinux_(\d+)_(\d+)_x86_64", wheel.name)
    assert platforms and all((int(a), int(b)) <= NEWEST for a, b in platforms), wheel.name
    host, inside = scratch
    # The wheel and its dependencies' wheels for that Python (binary only: nothing may build).
    shutil.copy2(wheel, host / wheel.name)
    download = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version", version,
         "--implementation", "cp", *(f"--platform={p}" for p in PLATFORMS), "-d", str(host / "deps"),
         str(host / wheel.name)],
        capture_output=True, text=True, timeout=300,
    )
    assert download.returncode == 0, download.stdout + download.stderr
    shutil.copy2(Path(__file__).parent / "wheel_smoke.py", host / "wheel_smoke.py")

    made = _in_root(nocc_root, _interpreter(nocc_root, version), "-m", "venv", f"{inside}/venv")
    assert made.returncode == 0, made.stdout + made.stderr
    pip = _in_root(nocc_root, f"{inside}/venv/bin/python", "-m", "pip", "install", "--no-index",
                   "--find-links", f"{inside}/deps", f"{inside}/{wheel.name}")
    assert pip.returncode == 0, pip.stdout + pip.stderr
    smoke = _in_root(nocc_root, f"{inside}/venv/bin/python", f"{inside}/wheel_smoke.py", timeout=120)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert f"smoke test passed: robyn_fast" in smoke.stdout and f"on Python {version}." in smoke.stdout, smoke.stdout
    assert "event loop: uvloop" in smoke.stdout, smoke.stdout
