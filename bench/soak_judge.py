"""The verdicts of `bench/soak.py`, kept free of I/O and third-party imports
so that `tests/test_soak_judge.py` can check them on synthetic series.

Two verdicts, both required for a passing soak:

* **flat memory**: for every server process, the mean RSS of the last quarter
  of the samples taken after the warm-up is at most ``limit`` above the mean
  of the first quarter, where ``limit = max(abs_limit, rel_limit * first)``;
  too few samples after the warm-up to form quarters is a failure, not a pass.
* **no error**: no error counted by the load generator, no unexpected close,
  no traceback and no ERROR/CRITICAL line in the server's log, no worker
  restarted (a worker's pid changed or disappeared), the server drained (no
  connection left once every client had gone) and exited with status 0.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MiB = 1024 * 1024

_LEVEL = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (ERROR|CRITICAL|WARNING) ")


def scan_log(lines: Iterable[str]) -> dict[str, Any]:
    """Counts tracebacks, ERROR/CRITICAL and WARNING lines of a server's log
    (robyn_fast's format: ``asctime levelname ...``), with the first few of
    the bad ones as examples."""
    tracebacks = errors = warnings = 0
    examples: list[str] = []
    for line in lines:
        m = _LEVEL.match(line)
        bad = False
        if line.startswith("Traceback (most recent call last)"):
            tracebacks += 1
            bad = True
        elif m and m.group(1) in ("ERROR", "CRITICAL"):
            errors += 1
            bad = True
        elif m:
            warnings += 1
        if bad and len(examples) < 10:
            examples.append(line.rstrip()[:300])
    return {"tracebacks": tracebacks, "errors": errors, "warnings": warnings, "examples": examples}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def memory_growth(
    series: Sequence[tuple[float, float]],
    warmup_s: float,
    abs_limit: float = 4 * MiB,
    rel_limit: float = 0.10,
) -> dict[str, Any]:
    """The flat-memory verdict for one process: ``series`` is ``(t, rss_bytes)``
    with ``t`` in seconds from the start of the load."""
    kept = [rss for t, rss in series if t >= warmup_s]
    if len(kept) < 4:
        return {"ok": False, "reason": f"{len(kept)} sample(s) after the {warmup_s:.0f} s warm-up; need 4 or more",
                "first": None, "last": None, "growth": None, "limit": None}
    quarter = math.ceil(len(kept) / 4)
    first, last = _mean(kept[:quarter]), _mean(kept[-quarter:])
    growth = last - first
    limit = max(abs_limit, rel_limit * first)
    ok = growth <= limit
    reason = (f"RSS {first / MiB:.1f} -> {last / MiB:.1f} MiB ({growth / MiB:+.1f} MiB; "
              f"limit {limit / MiB:.1f} MiB)")
    return {"ok": ok, "reason": reason, "first": first, "last": last, "growth": growth, "limit": limit}


def judge(
    samples: Sequence[Mapping[str, Any]],
    *,
    warmup_s: float,
    errors: Mapping[str, int],
    unexpected_closes: Mapping[str, int],
    log: Mapping[str, Any],
    exit_code: int | None,
    drained: bool,
    abs_limit: float = 4 * MiB,
    rel_limit: float = 0.10,
) -> dict[str, Any]:
    """Both verdicts over a soak's ``samples`` (each ``{"t": seconds,
    "processes": {role: {"pid": int, "rss": bytes, ...}}}``). Returns
    ``{"ok", "flat_memory": {"ok", "processes": {role: verdict}},
    "no_error": {"ok", "reasons": [...]}}``."""
    series: dict[str, list[tuple[float, float]]] = {}
    pids: dict[str, set[int]] = {}
    missing: dict[str, int] = {}
    roles = {role for s in samples for role in s["processes"]}
    for s in samples:
        for role in roles:
            proc = s["processes"].get(role)
            if proc is None or proc.get("rss") is None:
                missing[role] = missing.get(role, 0) + 1
                continue
            series.setdefault(role, []).append((s["t"], proc["rss"]))
            pids.setdefault(role, set()).add(proc["pid"])
    per_process = {role: memory_growth(series.get(role, []), warmup_s, abs_limit, rel_limit) for role in sorted(roles)}
    flat_ok = bool(per_process) and all(v["ok"] for v in per_process.values())

    reasons: list[str] = []
    if not samples:
        reasons.append("no samples were taken")
    for kind, n in sorted(errors.items()):
        if n:
            reasons.append(f"{n} error(s): {kind}")
    for kind, n in sorted(unexpected_closes.items()):
        if n:
            reasons.append(f"{n} unexpected close(s): {kind}")
    if log.get("tracebacks"):
        reasons.append(f"{log['tracebacks']} traceback(s) in the server's log")
    if log.get("errors"):
        reasons.append(f"{log['errors']} ERROR/CRITICAL line(s) in the server's log")
    for role in sorted(roles):
        if len(pids.get(role, ())) > 1:
            reasons.append(f"{role} changed pid ({sorted(pids[role])}): a process was restarted")
        if missing.get(role):
            reasons.append(f"{role} was missing from {missing[role]} sample(s)")
    if not drained:
        reasons.append("connections were still open on the server after every client had gone")
    if exit_code != 0:
        reasons.append(f"the server exited with status {exit_code}")
    return {
        "ok": flat_ok and not reasons,
        "flat_memory": {"ok": flat_ok, "warmup_s": warmup_s, "processes": per_process},
        "no_error": {"ok": not reasons, "reasons": reasons},
    }
