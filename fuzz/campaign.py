"""Run every harness of fuzz/checks.py under atheris against the ASan/UBSan
build, each for a fixed time; ``make fuzz`` calls this after building.

    python fuzz/campaign.py --build build/fuzz-asan --seconds 40 [harness ...]

Fails (exit 1) on any crash: an uncaught exception or a failed check in a
harness, an ASan or UBSan report, an input that runs longer than
``--timeout`` seconds (a hang), or an allocation past libFuzzer's limit. The
reproducer's path is printed with the command that replays it. Each harness
starts from its seeds in fuzz/corpus/<name>/; what it finds is kept in
build/fuzz/corpus/<name>/ (never in the repository), crash files in
build/fuzz/artifacts/<name>/, full logs in build/fuzz/logs/.

The sanitizer settings, and why:

- ``detect_leaks=0``: CPython does not free everything at exit (interned
  strings, static types, module state, caches made on purpose), so
  LeakSanitizer's report at exit would list thousands of "leaks" that are
  not ours and say nothing about the code under test; a leak that grows per
  input shows up instead as libFuzzer's ``-rss_limit_mb``/``-malloc_limit_mb``.
- ``PYTHONMALLOC=malloc``: Python objects come from ASan's allocator instead
  of pymalloc's arenas, so an overflow from C into a ``bytes`` or
  ``bytearray`` buffer is caught at the first byte.
- UBSan ``halt_on_error=1``, with the extension built ``-fno-sanitize-recover=all``:
  every undefined behaviour report ends the run as a crash.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "fuzz"
sys.path.insert(0, str(FUZZ))


def _harness_names() -> list[str]:
    # checks.py imports robyn_fast, which this process may not have: read the names from the source.
    text = (FUZZ / "checks.py").read_text()
    block = text[text.index("HARNESSES: dict") :]
    return [line.split('"')[1] for line in block.splitlines()[1:] if line.strip().startswith('"')]


def assemble(build: Path) -> Path:
    """A package tree of robyn_fast with the sanitized _core: the current
    Python sources plus the .so files the fuzz build made."""
    pkg = build / "pkg"
    shutil.rmtree(pkg, ignore_errors=True)
    # The core's sources sit in the top-level _core/ (with the normal build's .so files):
    # robyn_fast/_core is made here from the sanitized build, so robyn_fast/__init__.py
    # finds a real subpackage and maps nothing.
    shutil.copytree(ROOT / "robyn_fast", pkg / "robyn_fast", ignore=shutil.ignore_patterns("__pycache__"))
    core = pkg / "robyn_fast" / "_core"
    core.mkdir()
    shutil.copy2(ROOT / "_core" / "__init__.py", core / "__init__.py")
    sos = sorted((build / "lib" / "robyn_fast" / "_core").glob("*.so"))
    if not sos:
        sys.exit(f"no sanitizer build in {build}/lib: run `make fuzz-build` first")
    for so in sos:
        shutil.copy2(so, core / so.name)
    return pkg


def environment(pkg: Path) -> dict[str, str]:
    import atheris

    env = dict(os.environ)
    env["PYTHONPATH"] = str(pkg)
    env["LD_PRELOAD"] = str(Path(atheris.path()) / "asan_with_fuzzer.so")
    env["PYTHONMALLOC"] = "malloc"
    env["ASAN_OPTIONS"] = "detect_leaks=0:halt_on_error=1:handle_abort=1:symbolize=1"
    env["UBSAN_OPTIONS"] = "halt_on_error=1:print_stacktrace=1:symbolize=1"
    symbolizer = shutil.which("llvm-symbolizer")
    if symbolizer:
        env["ASAN_SYMBOLIZER_PATH"] = env["UBSAN_SYMBOLIZER_PATH"] = symbolizer
    env.pop("PYTHONSAFEPATH", None)
    return env


def run_one(name: str, seconds: int, timeout: int, env: dict[str, str], out: Path) -> tuple[bool, str]:
    work = out / "corpus" / name
    artifacts = out / "artifacts" / name
    log_path = out / "logs" / f"{name}.log"
    for d in (work, artifacts, log_path.parent):
        d.mkdir(parents=True, exist_ok=True)
    for old in artifacts.iterdir():
        old.unlink()
    cmd = [
        sys.executable, str(FUZZ / "run.py"), name,
        f"-max_total_time={seconds}", f"-timeout={timeout}", "-rss_limit_mb=2048",
        f"-artifact_prefix={artifacts}/", "-print_final_stats=1",
        str(work), str(FUZZ / "corpus" / name),
    ]
    start = time.monotonic()
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=seconds + 120,
                                  cwd=ROOT)
            code: int | str = proc.returncode
        except subprocess.TimeoutExpired:
            code = "killed (the whole run hung)"
    elapsed = time.monotonic() - start
    text = log_path.read_text(errors="replace")
    sanitizer = "runtime error:" in text or "Sanitizer" in text and "ERROR" in text
    found = sorted(artifacts.iterdir())
    ok = code == 0 and not sanitizer and not found
    runs = [line for line in text.splitlines() if line.startswith("stat::number_of_executed_units")]
    summary = f"{name}: {'ok' if ok else 'FAILED'} in {elapsed:.0f} s" + (
        f", {runs[-1].split(':')[-1].strip()} inputs" if runs else ""
    )
    if not ok:
        tail = "\n".join(text.splitlines()[-60:])
        print(f"---- {name}: exit {code}; the end of {log_path}:\n{tail}\n----")
        for f in found:
            print(f"reproducer: {f}\n  replay: make fuzz-build && {sys.executable} fuzz/campaign.py --replay {name} {f}")
    return ok, summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build/fuzz-asan", type=Path, help="the sanitizer build (make fuzz-build)")
    ap.add_argument("--seconds", default=20, type=int, help="fuzzing time per harness")
    ap.add_argument("--timeout", default=10, type=int, help="seconds one input may take before it is a hang")
    ap.add_argument("--replay", nargs=2, metavar=("HARNESS", "FILE"), help="run one input under the sanitizers")
    ap.add_argument("harnesses", nargs="*", help="names (default: all)")
    args = ap.parse_args()
    build = args.build if args.build.is_absolute() else ROOT / args.build
    env = environment(assemble(build))
    if args.replay:
        name, path = args.replay
        return subprocess.run([sys.executable, str(FUZZ / "run.py"), name, path], env=env, cwd=ROOT).returncode
    names = args.harnesses or _harness_names()
    out = ROOT / "build" / "fuzz"
    results = [run_one(name, args.seconds, args.timeout, env, out) for name in names]
    for _, summary in results:
        print(f"== fuzz {summary}")
    failed = sum(not ok for ok, _ in results)
    print(f"fuzz: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
