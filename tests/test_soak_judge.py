"""The soak test's verdicts (bench/soak_judge.py) on synthetic series: a
growing RSS fails "flat memory", noise and warm-up growth do not, and every
kind of error fails "no error". No server is started."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

_PATH = Path(__file__).resolve().parent.parent / "bench" / "soak_judge.py"
_spec = importlib.util.spec_from_file_location("soak_judge", _PATH)
assert _spec is not None and _spec.loader is not None
soak_judge = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(soak_judge)

MiB = soak_judge.MiB


def samples(rss_of_t: dict[str, Any], n: int = 40, step: float = 5.0, pids: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """``n`` samples every ``step`` s; ``rss_of_t[role](i, t)`` gives the RSS
    (None: the process is missing from that sample)."""
    out = []
    for i in range(n):
        t = i * step
        procs = {}
        for k, (role, fn) in enumerate(rss_of_t.items()):
            rss = fn(i, t)
            pid = pids[role](i) if pids and role in pids else 100 + k
            procs[role] = None if rss is None else {"pid": pid, "rss": rss, "fds": 20}
        out.append({"t": t, "processes": procs})
    return out


CLEAN: dict[str, Any] = {"errors": {}, "unexpected_closes": {}, "log": {"tracebacks": 0, "errors": 0},
                         "exit_code": 0, "drained": True}


def run(series: list[dict[str, Any]], warmup_s: float = 30.0, **overrides: Any) -> dict[str, Any]:
    kw = dict(CLEAN, **overrides)
    return soak_judge.judge(series, warmup_s=warmup_s, **kw)


def flat(i: int, t: float) -> float:
    # +-1 MiB of noise around 40 MiB
    return 40 * MiB + (MiB if i % 2 else -MiB)


def test_flat_series_passes() -> None:
    v = run(samples({"master": flat, "worker-0": flat, "worker-1": flat}))
    assert v["ok"], v
    assert v["flat_memory"]["processes"]["worker-0"]["growth"] == pytest.approx(0, abs=MiB)


def test_steady_leak_in_one_worker_fails() -> None:
    # 0.25 MiB per 5 s sample (3 MiB a minute): ~7 MiB between the first and last quarter after warm-up
    def leak(i: int, t: float) -> float:
        return 40 * MiB + i * MiB // 4

    v = run(samples({"master": flat, "worker-0": flat, "worker-1": leak}))
    assert not v["ok"]
    assert not v["flat_memory"]["ok"]
    assert v["no_error"]["ok"]
    w1 = v["flat_memory"]["processes"]["worker-1"]
    assert not w1["ok"] and w1["growth"] > w1["limit"]
    assert v["flat_memory"]["processes"]["worker-0"]["ok"]


def test_growth_during_warmup_only_passes() -> None:
    def warm(i: int, t: float) -> float:
        return (20 + min(t, 60) / 3) * MiB  # grows 20 MiB in the first minute, then flat

    v = run(samples({"worker-0": warm}), warmup_s=60.0)
    assert v["flat_memory"]["ok"], v
    # ... and the same series judged without a warm-up fails: the growth is counted.
    assert not run(samples({"worker-0": warm}), warmup_s=0.0)["flat_memory"]["ok"]


def test_relative_limit_scales_with_size() -> None:
    def big(i: int, t: float) -> float:
        return 400 * MiB + (30 * MiB if i >= 30 else 0)  # +30 MiB on 400 MiB: under 10 %

    assert run(samples({"worker-0": big}))["flat_memory"]["ok"]
    assert not run(samples({"worker-0": big}), rel_limit=0.05)["flat_memory"]["ok"]


def test_too_few_samples_after_warmup_fails() -> None:
    v = run(samples({"worker-0": flat}, n=8), warmup_s=30.0)  # t = 0..35: only t=30, 35 remain
    assert not v["flat_memory"]["ok"]
    assert "need 4" in v["flat_memory"]["processes"]["worker-0"]["reason"]
    assert not run([])["ok"]


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"errors": {"echo: wrong reply": 1}}, "echo: wrong reply"),
        ({"unexpected_closes": {"subscriber": 2}}, "unexpected close"),
        ({"log": {"tracebacks": 1, "errors": 0}}, "traceback"),
        ({"log": {"tracebacks": 0, "errors": 3}}, "ERROR/CRITICAL"),
        ({"exit_code": 1}, "status 1"),
        ({"exit_code": None}, "status None"),
        ({"drained": False}, "still open"),
    ],
)
def test_each_error_kind_fails_no_error(override: dict[str, Any], needle: str) -> None:
    v = run(samples({"worker-0": flat}), **override)
    assert not v["ok"]
    assert v["flat_memory"]["ok"]
    assert not v["no_error"]["ok"]
    assert any(needle in r for r in v["no_error"]["reasons"]), v["no_error"]["reasons"]


def test_zero_counts_are_not_errors() -> None:
    assert run(samples({"worker-0": flat}), errors={"echo: wrong reply": 0}, unexpected_closes={"echo": 0})["ok"]


def test_restarted_or_missing_worker_fails() -> None:
    restarted = run(samples({"worker-0": flat}, pids={"worker-0": lambda i: 200 if i < 20 else 300}))
    assert not restarted["no_error"]["ok"]
    assert any("changed pid" in r for r in restarted["no_error"]["reasons"])

    gone = run(samples({"worker-0": flat, "worker-1": lambda i, t: None if i == 25 else flat(i, t)}))
    assert any("worker-1 was missing from 1 sample" in r for r in gone["no_error"]["reasons"])


def test_scan_log_counts_bad_lines() -> None:
    lines = [
        "2026-12-06 20:00:00,123 INFO [11] robyn_fast.server: serving on http://127.0.0.1:1234",
        "2026-12-06 20:00:01,000 WARNING [12] robyn_fast.connection: websocket 1: client reads too slowly",
        "2026-12-06 20:00:02,000 ERROR [12] robyn_fast.websocket: handler on_echo failed",
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "2026-12-06 20:00:03,000 CRITICAL [11] robyn_fast.workers: worker died",
        "a message mentioning ERROR in the middle is not a level",
    ]
    got = soak_judge.scan_log(lines)
    assert (got["tracebacks"], got["errors"], got["warnings"]) == (1, 2, 1)
    assert len(got["examples"]) == 3
