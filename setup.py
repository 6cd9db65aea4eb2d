"""Build script for the compiled core.

The Cython and C sources live in the top-level ``_core/`` folder and are
installed as the ``robyn_fast._core`` package. Cython compiler directives are
set here, once. ``ROBYN_FAST_DEBUG=1`` gives a debug build: line tracing,
bounds checks, C assertions and no optimisation.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent
CORE = ROOT / "_core"
DEBUG = os.environ.get("ROBYN_FAST_DEBUG", "") not in ("", "0")

# Every extension module: name inside robyn_fast._core -> extra C sources.
MODULES: dict[str, list[str]] = {
    "codec": ["wsutil.c"],
    "connection": [],
    "protocol": [],
    "metrics": [],
    "http1": [],
    "handshake": ["wsutil.c"],
}
# C libraries each links: zlib for permessage-deflate (the system's, as Python's own zlib module uses).
LIBRARIES: dict[str, list[str]] = {"codec": ["z"]}
# ZLIB_CONST: zlib.h declares z_stream.next_in const, as codec.pxd does (without it every build
# warned of a discarded const qualifier where the codec points next_in at a read-only buffer).
MACROS: dict[str, list[tuple[str, str | None]]] = {"codec": [("ZLIB_CONST", None)]}

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
    """The extension modules, from their .pyx sources (Cython translates them when they are built)."""
    macros = [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")] if DEBUG else [("NDEBUG", "1")]
    cflags = ["-O0", "-g", "-UNDEBUG"] if DEBUG else ["-O3"]
    return [
        Extension(
            f"robyn_fast._core.{name}",
            sources=[f"_core/{name}.pyx", *(f"_core/{c}" for c in csources)],
            include_dirs=["_core"],
            define_macros=[*macros, *MACROS.get(name, [])],
            extra_compile_args=cflags,
            libraries=LIBRARIES.get(name, []),
        )
        for name, csources in MODULES.items()
    ]


PROBES = {
    # what is probed -> (the C file, what to install when it does not compile)
    "compiler": ("int main(void) { return 0; }\n", "a C compiler (gcc or clang: apt-get install gcc)"),
    "python": (
        "#include <Python.h>\nint main(void) { return 0; }\n",
        f"Python {sys.version_info.major}.{sys.version_info.minor}'s headers (Python.h; on Debian and Ubuntu "
        f"python{sys.version_info.major}.{sys.version_info.minor}-dev, on Fedora python3-devel)",
    ),
    "zlib": ("#include <zlib.h>\nint main(void) { return 0; }\n", "zlib's headers (zlib1g-dev, zlib-devel)"),
}


class BuildCore(build_ext):
    """build_ext that first checks that the compiler and the headers the core needs are there
    (a missing one gets a message naming it, not the compiler's raw exit status), then has
    Cython translate the .pyx sources, then compiles."""

    def build_extensions(self) -> None:
        self._probe()
        translated = cythonize(
            self.extensions,
            compiler_directives=DIRECTIVES,
            include_path=[_pxd_include_tree(), "_core"],
            build_dir="build/cython-debug" if DEBUG else "build/cython",
            force=DEBUG,
        )
        # The C sources into the Extensions setuptools prepared (cythonize returns new objects
        # without what build_ext's finalize_options set on them).
        c_sources = {ext.name: ext.sources for ext in translated}
        for ext in self.extensions:
            ext.sources = c_sources[ext.name]
        super().build_extensions()

    def _probe(self) -> None:
        include_dirs = [*self.include_dirs, sysconfig.get_paths()["include"]]
        with tempfile.TemporaryDirectory(prefix="robyn_fast-probe-") as tmp:
            for what, (source, needed) in PROBES.items():
                path = Path(tmp) / f"{what}.c"
                path.write_text(source)
                try:
                    self.compiler.compile([str(path)], output_dir=tmp, include_dirs=include_dirs)
                except Exception as exc:  # CompileError, or OSError when the compiler is not there
                    compiler = (getattr(self.compiler, "compiler_so", None) or ["the C compiler"])[0]
                    raise SystemExit(
                        f"robyn_fast: building from source needs {needed}; the probe failed ({compiler}: {exc}).\n"
                        "robyn_fast needs a C compiler and the headers of Python and zlib to build its compiled "
                        "core. Or install a prebuilt wheel: pip install --only-binary robyn_fast robyn_fast "
                        "(manylinux wheels for CPython 3.11-3.15 on x86_64)."
                    ) from None


setup(
    # Every package under robyn_fast/, and the compiled core from _core/.
    packages=[
        ".".join(init.parent.relative_to(ROOT).parts) for init in sorted((ROOT / "robyn_fast").rglob("__init__.py"))
    ] + ["robyn_fast._core"],
    package_dir={"robyn_fast": "robyn_fast", "robyn_fast._core": "_core"},
    # .pxd contracts and the header they declare ship so other Cython code can cimport the core.
    package_data={"robyn_fast": ["py.typed", "*.pyi"], "robyn_fast._core": ["*.pyi", "*.pxd", "*.h"]},
    exclude_package_data={"robyn_fast._core": ["*.c", "*.pyx", "*.txt"]},
    ext_modules=_extensions(),
    cmdclass={"build_ext": BuildCore},
    zip_safe=False,
)
