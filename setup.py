"""Build script for the compiled core.

The Cython and C sources live in the top-level ``_core/`` folder and are
installed as the ``robyn_fast._core`` package. Cython compiler directives are
set here, once. ``ROBYN_FAST_DEBUG=1`` gives a debug build: line tracing,
bounds checks, C assertions and no optimisation.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

ROOT = Path(__file__).resolve().parent
CORE = ROOT / "_core"
DEBUG = os.environ.get("ROBYN_FAST_DEBUG", "") not in ("", "0")

# Every extension module: name inside robyn_fast._core -> extra C sources.
MODULES: dict[str, list[str]] = {
    "codec": ["wsutil.c"],
    "connection": [],
    "protocol": [],
    "metrics": [],
}
# C libraries each links: zlib for permessage-deflate (the system's, as Python's own zlib module uses).
LIBRARIES: dict[str, list[str]] = {"codec": ["z"]}

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": DEBUG,
    "cdivision": not DEBUG,
    "initializedcheck": DEBUG,
    "embedsignature": True,
    "auto_pickle": False,
    "autotestdict": False,
    "linetrace": DEBUG,
    "profile": DEBUG,
}


def _pxd_include_tree() -> str:
    """Cython finds a cimported module's .pxd by its package path
    (robyn_fast/_core/codec.pxd), but the sources sit in _core/. Mirror the
    .pxd contracts into build/pxd/robyn_fast/_core/ so cross-module cimports
    resolve to the installed module names."""
    tree = ROOT / "build" / "pxd"
    pkg = tree / "robyn_fast" / "_core"
    pkg.mkdir(parents=True, exist_ok=True)
    (tree / "robyn_fast" / "__init__.pxd").touch()
    (pkg / "__init__.pxd").touch()
    for pxd in CORE.glob("*.pxd"):
        target = pkg / pxd.name
        if not target.exists() or target.read_bytes() != pxd.read_bytes():
            shutil.copy2(pxd, target)
    return str(tree)


def _extensions() -> list[Extension]:
    macros = [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")] if DEBUG else [("NDEBUG", "1")]
    cflags = ["-O0", "-g", "-UNDEBUG"] if DEBUG else ["-O3"]
    exts = [
        Extension(
            f"robyn_fast._core.{name}",
            sources=[f"_core/{name}.pyx", *(f"_core/{c}" for c in csources)],
            include_dirs=["_core"],
            define_macros=macros,
            extra_compile_args=cflags,
            libraries=LIBRARIES.get(name, []),
        )
        for name, csources in MODULES.items()
    ]
    return cythonize(
        exts,
        compiler_directives=DIRECTIVES,
        include_path=[_pxd_include_tree(), "_core"],
        build_dir="build/cython-debug" if DEBUG else "build/cython",
        force=DEBUG,
    )


setup(
    # Every package under robyn_fast/, and the compiled core from _core/.
    packages=[
        ".".join(init.parent.relative_to(ROOT).parts) for init in sorted((ROOT / "robyn_fast").rglob("__init__.py"))
    ] + ["robyn_fast._core"],
    package_dir={"robyn_fast": "robyn_fast", "robyn_fast._core": "_core"},
    # .pxd contracts and the header they declare ship so other Cython code can cimport the core.
    package_data={"robyn_fast": ["py.typed", "*.pyi"], "robyn_fast._core": ["*.pyi", "*.pxd", "*.h"]},
    exclude_package_data={"robyn_fast._core": ["*.c", "*.pyx"]},
    ext_modules=_extensions(),
    zip_safe=False,
)
