"""Turn a pytest-benchmark JSON file into a Markdown table of ratios.

    python bench/ratios.py bench/results/micro.json [OUT.md]

For every benchmark group: each entry's median, its throughput and its speed
relative to the ``compiled`` entry of the same group, then the two target
figures of the codec:

(a) compiled ``apply_mask`` on 1 MiB, as a fraction of the memcpy baseline's
    throughput (target >= 0.8x);
(b) compiled ``FrameParser.feed`` on 1000 small text frames, as a multiple of
    the speed of websockets' sans-I/O parser (target >= 5x).

Only ratios within one run mean much on a shared machine; absolute times move
from run to run. The table is printed and written to OUT.md (default:
``bench/results/micro.md``). Standard library only.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "micro.md"

# Groups in reading order; any other group follows, sorted by name.
GROUP_ORDER = [
    "parse-1000-small",
    "parse-1000-small-binary",
    "unmask-1KiB",
    "unmask-64KiB",
    "unmask-1MiB",
    "build-frame-32B-text",
    "build-frame-64KiB-binary",
]

# (label, group, numerator impl, denominator impl, target, what the ratio is)
# ratio = median[numerator] / median[denominator]
TARGETS = [
    (
        "(a) compiled unmask 1 MiB throughput / memcpy throughput",
        "unmask-1MiB",
        "memcpy",
        "compiled",
        0.8,
    ),
    (
        "(b) compiled parse-1000-small speed / websockets parser speed",
        "parse-1000-small",
        "websockets",
        "compiled",
        5.0,
    ),
]


def impl_of(bench: dict) -> str:
    """The implementation an entry measures: extra_info['impl'] as set by the
    benchmarks, else the last part of its parametrize id."""
    impl = bench.get("extra_info", {}).get("impl")
    if impl:
        return impl
    param = bench.get("param") or bench["name"]
    return str(param).rsplit("-", 1)[-1].rstrip("]")


def fmt_time(seconds: float) -> str:
    """Three significant digits in the largest unit that keeps the value >= 1."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            v = seconds / scale
            return f"{v:.0f} {unit}" if v >= 100 else f"{v:.1f} {unit}" if v >= 10 else f"{v:.2f} {unit}"
    raise AssertionError  # pragma: no cover


def fmt_throughput(bench: dict, median: float) -> str:
    info = bench.get("extra_info", {})
    if "messages" in info:
        return f"{info['messages'] / median / 1e6:.2f} M msg/s"
    if "bytes" in info:
        rate = info["bytes"] / median
        return f"{rate / 1e9:.2f} GB/s" if rate >= 1e9 else f"{rate / 1e6:.1f} MB/s"
    return ""


def load(path: str) -> tuple[dict, dict[str, dict[str, dict]]]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    groups: dict[str, dict[str, dict]] = {}
    for bench in data.get("benchmarks", []):
        groups.setdefault(bench.get("group") or "(no group)", {})[impl_of(bench)] = bench
    return data, groups


def header(data: dict) -> list[str]:
    mi = data.get("machine_info", {})
    ci = data.get("commit_info", {})
    cpu = mi.get("cpu", {}).get("brand_raw") or mi.get("processor") or "?"
    commit = (ci.get("id") or "?")[:12] + (" (dirty tree)" if ci.get("dirty") else "")
    lines = [
        "# Codec micro-benchmarks: ratios",
        "",
        f"- run: {data.get('datetime', '?')}, commit {commit}",
        f"- machine: {cpu}, {mi.get('os_cpu_count', '?')} CPUs, pinned to CPUs {mi.get('cpu_affinity', '?')}",
        f"- Python {mi.get('python_version', '?')} ({mi.get('python_implementation', '?')}), "
        f"websockets {mi.get('websockets_version', '?')}",
        "- statistic: the median of each entry's rounds; ratios are taken within this run.",
        "",
    ]
    return lines


def group_table(name: str, entries: dict[str, dict]) -> list[str]:
    base = entries.get("compiled")
    base_median = base["stats"]["median"] if base else None
    lines = [
        f"## {name}",
        "",
        "| implementation | median | throughput | speed vs compiled | compiled is N× faster | rounds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for impl, bench in sorted(entries.items(), key=lambda kv: kv[1]["stats"]["median"]):
        median = bench["stats"]["median"]
        if base_median:
            rel = f"{base_median / median:.3f}×"
            slower = f"{median / base_median:.2f}×"
        else:
            rel = slower = "n/a"
        label = f"**{impl}**" if impl == "compiled" else impl
        lines.append(
            f"| {label} | {fmt_time(median)} | {fmt_throughput(bench, median)} | {rel} | {slower} "
            f"| {bench['stats']['rounds']}×{bench['stats'].get('iterations', 1)} |"
        )
    lines.append("")
    return lines


def target_lines(groups: dict[str, dict[str, dict]]) -> list[str]:
    lines = ["## Targets", "", "| figure | measured | target | met? |", "|---|---:|---:|---|"]
    for label, group, num, den, target in TARGETS:
        entries = groups.get(group, {})
        if num in entries and den in entries:
            ratio = entries[num]["stats"]["median"] / entries[den]["stats"]["median"]
            verdict = "yes" if ratio >= target else f"**NO** (short by {target - ratio:.2f}×)"
            lines.append(f"| {label} | {ratio:.2f}× | ≥ {target:g}× | {verdict} |")
        else:
            lines.append(f"| {label} | n/a (group {group!r} lacks {num!r} or {den!r}) | ≥ {target:g}× | ? |")
    lines.append("")
    return lines


def render(data: dict, groups: dict[str, dict[str, dict]]) -> str:
    lines = header(data)
    lines += target_lines(groups)
    order = [g for g in GROUP_ORDER if g in groups] + sorted(g for g in groups if g not in GROUP_ORDER)
    for name in order:
        lines += group_table(name, groups[name])
    lines.append(
        "`speed vs compiled` = compiled median / entry median (above 1: faster than compiled). "
        "`memcpy` is `bytes(bytearray)` of the same size: a new bytes object and a copy."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    data, groups = load(argv[1])
    if not groups:
        print(f"{argv[1]}: no benchmarks (was --benchmark-enable given?)", file=sys.stderr)
        return 1
    text = render(data, groups)
    out = Path(argv[2]) if len(argv) == 3 else DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    print(f"\n(written to {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
