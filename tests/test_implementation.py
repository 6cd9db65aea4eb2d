"""The compiled core is what runs; without it, `import robyn_fast` fails at
once with one message that names the fix (no silent pure-Python fallback)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import robyn_fast
from robyn_fast import codec

ROOT = Path(__file__).resolve().parent.parent


def test_compiled_codec_is_active_in_the_normal_install() -> None:
    assert robyn_fast.implementation() == "compiled"
    assert codec.FrameParser.__module__ == "robyn_fast._core.codec"
    from robyn_fast._core import codec as compiled
    from robyn_fast._core import connection

    assert Path(compiled.__file__).suffix in (".so", ".pyd")
    assert Path(connection.__file__).suffix in (".so", ".pyd")
    assert codec.build_text is compiled.build_text


def test_import_without_the_compiled_core_fails_at_once_naming_the_fix(tmp_path: Path) -> None:
    # A source tree whose extensions were never built: the package, and
    # _core/ with its .pyx/.pxd sources but no compiled module.
    package = tmp_path / "robyn_fast"
    shutil.copytree(ROOT / "robyn_fast", package, ignore=shutil.ignore_patterns("__pycache__", "_core"))
    shutil.copytree(ROOT / "_core", package / "_core", ignore=shutil.ignore_patterns("*.so", "*.pyd", "*.c"))
    assert not list(package.rglob("*.so"))
    # -S: no site-packages, so the editable install of the real tree is not found.
    result = subprocess.run(
        [sys.executable, "-S", "-c", "import robyn_fast"],
        cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: robyn_fast: the compiled core (robyn_fast._core.codec and "
                           "robyn_fast._core.connection) is not built or does not load")
    assert "pip install ." in last and "make install" in last
    assert "pure-Python" not in result.stderr and "Warning" not in result.stderr
