"""One module picks the codec; the compiled one is what a normal install uses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import robyn_fast
from robyn_fast import codec


def test_compiled_codec_is_active_in_the_normal_install() -> None:
    assert robyn_fast.implementation() == "compiled"
    assert codec.FrameParser.__module__ == "robyn_fast._core.codec"
    from robyn_fast._core import codec as compiled

    assert Path(compiled.__file__).suffix in (".so", ".pyd")
    assert codec.build_text is compiled.build_text


def _implementation_in_subprocess(env_value: str | None) -> str:
    env = dict(os.environ)
    env.pop("ROBYN_FAST_NO_EXTENSIONS", None)
    if env_value is not None:
        env["ROBYN_FAST_NO_EXTENSIONS"] = env_value
    code = "import robyn_fast, robyn_fast.codec as c; print(robyn_fast.implementation(), c.FrameParser.__module__)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_environment_variable_forces_the_reference() -> None:
    assert _implementation_in_subprocess("1") == "reference robyn_fast._reference.codec"
    assert _implementation_in_subprocess("0") == "compiled robyn_fast._core.codec"
    assert _implementation_in_subprocess(None) == "compiled robyn_fast._core.codec"
