"""The whole Autobahn TestSuite, 517 cases, run once and written down:
``docs/autobahn.md``'s table of every case's verdict is this script's output.

    .venv/bin/python -m tests.autobahn_report              # = make autobahn-table, ~15-25 min
    .venv/bin/python -m tests.autobahn_report --loop asyncio --mode dedicated --json results.json

It runs what ``tests/test_autobahn.py`` runs, through kosoku against
``examples/echo.py`` on one loop: the 301 core cases (categories 1-10) with
the server's defaults, then the 216 permessage-deflate cases (categories 12
and 13) in full in one compression mode, with the same server settings as
the test (every reply compressed, keepalive off). It replaces the text
between the two ``autobahn-table`` markers of the document with the summary
and the table (the date, commit, Python, loop and mode included), and exits
1 if any case ended outside what the test allows (the table is written all
the same, so a failure is on record).
"""

from __future__ import annotations

import argparse
import collections
import datetime as _dt
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .process_helpers import ROOT
from .test_autobahn import ALLOWED, ALLOWED_CLOSE, CORE_CASES, run_cases

DOC = ROOT / "docs" / "autobahn.md"
BEGIN = "<!-- autobahn-table: written by tests/autobahn_report.py (make autobahn-table); do not edit by hand -->"
END = "<!-- /autobahn-table -->"
CATEGORIES = {
    "1": "framing: text and binary messages of every length class",
    "2": "Pings and Pongs",
    "3": "reserved bits",
    "4": "reserved opcodes",
    "5": "fragmentation",
    "6": "UTF-8 handling",
    "7": "the closing handshake",
    "9": "limits and performance: large messages and many frames",
    "10": "miscellaneous (auto-fragmentation)",
    "12": "permessage-deflate: the server compresses (echo of compressible payloads)",
    "13": "permessage-deflate: offers and window sizes",
}


def _case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(p) for p in case_id.split("."))


def _commit() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return rev + (" (with uncommitted changes)" if dirty else "")


def record(r: Any) -> dict[str, Any]:
    return {"case": r.case_id, "behavior": r.behavior.value, "close": r.behavior_close.value,
            "duration_ms": r.duration, "remote_close_code": r.remote_close_code,
            "description": re.sub(r"<[^>]+>", "", r.description).strip()}


def table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    rows = sorted(rows, key=lambda r: _case_key(r["case"]))
    by_cat: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for r in rows:
        by_cat[r["case"].split(".")[0]][f"{r['behavior']} / {r['close']}"] += 1
    verdicts = collections.Counter(f"{r['behavior']} / {r['close']}" for r in rows)
    out = [
        BEGIN,
        "",
        f"Run on {meta['date']} at commit `{meta['commit']}`, Python {meta['python']}, {meta['loop']}, "
        f"compression mode `{meta['mode']}` for categories 12 and 13; kosoku {meta['kosoku']}, "
        f"{meta['elapsed_s']:.0f} s. {len(rows)} cases: "
        + ", ".join(f"{n} {v}" for v, n in verdicts.most_common()) + ".",
        "",
        "| category | what it tests | cases | verdicts (message exchange / closing handshake) |",
        "| --- | --- | ---: | --- |",
    ]
    for cat in sorted(by_cat, key=int):
        counts = by_cat[cat]
        out.append(f"| {cat} | {CATEGORIES.get(cat, '')} | {sum(counts.values())} | "
                   + ", ".join(f"{n} {v}" for v, n in sorted(counts.items())) + " |")
    out += [
        "",
        "Every case (duration in ms; the close code the server sent):",
        "",
        "| case | verdict | closing handshake | ms | close code |",
        "| --- | --- | --- | ---: | ---: |",
    ]
    for r in rows:
        code = "" if r["remote_close_code"] is None else str(r["remote_close_code"])
        out.append(f"| {r['case']} | {r['behavior']} | {r['close']} | {r['duration_ms']} | {code} |")
    out += ["", END]
    return "\n".join(out)


def write_doc(doc: Path, block: str) -> None:
    text = doc.read_text(encoding="utf-8")
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{doc}: no {BEGIN!r} ... {END!r} markers to write the table between")
    doc.write_text(text[:start] + block + text[end + len(END):], encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    p.add_argument("--mode", choices=["shared", "dedicated"], default="shared",
                   help="the server's compression mode for categories 12 and 13")
    p.add_argument("--doc", type=Path, default=DOC, help="the document whose table is replaced")
    p.add_argument("--json", type=Path, help="also write every case's record here")
    a = p.parse_args(argv)
    import kosoku  # noqa: F401  (its version goes into the table)
    from importlib.metadata import version

    commit = _commit()  # the tree that runs, not whatever it is once the run is over
    t0 = time.monotonic()
    results = run_cases(a.loop, CORE_CASES, {}, timeout=1800)
    results += run_cases(a.loop, ["12.*", "13.*"], {"ECHO_COMPRESSION": a.mode, "ECHO_COMPRESSION_THRESHOLD": "0",
                                                     "ECHO_KEEPALIVE": "0"}, timeout=3600)
    rows = [record(r) for r in results]
    meta = {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit,
            "python": platform.python_version(), "loop": a.loop, "mode": a.mode, "kosoku": version("kosoku"),
            "elapsed_s": time.monotonic() - t0}
    write_doc(a.doc, table(rows, meta))
    if a.json:
        a.json.write_text(json.dumps({"meta": meta, "cases": rows}, indent=1) + "\n", encoding="utf-8")
    bad = [r for r in rows if r["behavior"] not in ALLOWED or r["close"] not in ALLOWED_CLOSE]
    print(f"{len(rows)} cases in {meta['elapsed_s']:.0f} s; {len(bad)} outside the allowed verdicts; "
          f"written {a.doc}", file=sys.stderr)
    for r in bad:
        print(f"  {r['case']}: {r['behavior']} / {r['close']} {r['description'][:100]}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
