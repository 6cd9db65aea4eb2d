"""Build rfload's compiled core, ``bench/loadgen/_rfload.pyx``, in place.

    .venv/bin/python bench/setup_loadgen.py        # what `make bench-loadgen` runs

The module cimports ``robyn_fast._core.codec`` (the codec's ``.pxd`` contract,
shipped inside the installed package), so it is compiled against the codec
that is installed in the running interpreter and must be rebuilt whenever that
codec's ``.pxd`` changes (the Makefile rule depends on it). Cython finds a
cimported module's ``.pxd`` by its package path; an editable install keeps the
``.pxd`` in ``_core/`` rather than ``robyn_fast/_core/``, so the ``.pxd`` files
of the installed package are mirrored into ``bench/loadgen/build/pxd/`` first.
The C header the contract names (``wsutil.h``) is taken from the installed
package or, failing that, from the repository's ``_core/``.

Output: ``bench/loadgen/_rfload.<abi>.so``; intermediate files go to
``bench/loadgen/build/`` (ignored by git).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOADGEN = HERE / "loadgen"
REPO = HERE.parent


def installed_core() -> Path:
    spec = importlib.util.find_spec("robyn_fast._core")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("setup_loadgen: robyn_fast is not installed in this interpreter (run `make install` first)")
    core = Path(list(spec.submodule_search_locations)[0])
    if not (core / "codec.pxd").is_file():
        sys.exit(f"setup_loadgen: {core} has no codec.pxd; the installed robyn_fast does not ship its contract")
    return core


def mirror_pxd(core: Path) -> Path:
    tree = LOADGEN / "build" / "pxd"
    pkg = tree / "robyn_fast" / "_core"
    pkg.mkdir(parents=True, exist_ok=True)
    (tree / "robyn_fast" / "__init__.pxd").touch()
    (pkg / "__init__.pxd").touch()
    for pxd in core.glob("*.pxd"):
        target = pkg / pxd.name
        if not target.exists() or target.read_bytes() != pxd.read_bytes():
            shutil.copy2(pxd, target)
    return tree


def main() -> None:
    from Cython.Build import cythonize
    from setuptools import Extension, setup

    core = installed_core()
    tree = mirror_pxd(core)
    headers = list(dict.fromkeys(str(d) for d in (core, REPO / "_core") if (d / "wsutil.h").is_file()))
    if not headers:
        sys.exit("setup_loadgen: wsutil.h (named by codec.pxd) is neither in the installed package nor in _core/")
    os.chdir(LOADGEN)  # build_ext --inplace puts a top-level module in the current directory
    ext = Extension(
        "_rfload",
        sources=["_rfload.pyx"],
        include_dirs=headers,
        extra_compile_args=["-O2"],
    )
    setup(
        name="rfload",
        ext_modules=cythonize(
            [ext],
            compiler_directives={
                "language_level": 3,
                "boundscheck": False,
                "wraparound": False,
                "cdivision": True,
                "initializedcheck": False,
            },
            include_path=[str(tree)],
            build_dir="build/cython",
            quiet=True,
        ),
        script_args=["build_ext", "--inplace", "--build-temp", "build/temp"] + sys.argv[1:],
    )


if __name__ == "__main__":
    main()
