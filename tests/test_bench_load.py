"""The load tests' reporting (bench/run.py, bench/http_wrk.py): wrk's output
parsed, the generator-bound rule, the summary's per-row figures (throughput,
latency, server CPU per operation, load generator CPU), the Markdown table and
the chart, the open-files check, and that every row of issue 22's table is
wired to robyn_fast and its peers. No server and no load generator is started."""

from __future__ import annotations

import importlib.util
import resource
import sys
from pathlib import Path
from typing import Any

import pytest

_BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str) -> Any:
    # bench/run.py imports its neighbours (http_wrk, rfload) as a script would.
    sys.path.insert(0, str(_BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", _BENCH / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module   # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(_BENCH))


run = _load("run")
http_wrk = _load("http_wrk")

# Real wrk 4 output (`wrk -t1 -c4 -d1s --latency`).
WRK_OK = """Running 1s test @ http://127.0.0.1:19990/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   305.39ms   87.84ms 461.27ms   64.29%
    Req/Sec    13.14      6.54    20.00     71.43%
  Latency Distribution
     50%  307.82ms
     75%  361.45ms
     90%  415.73ms
     99%     1.46s
  14 requests in 1.15s, 699.61KB read
Requests/sec:     12.18
Transfer/sec:    608.43KB
"""

WRK_ERRORS = """Running 1s test @ http://127.0.0.1:19990/nonexistent
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   801.00us   29.53us   1.03ms   85.54%
    Req/Sec    70.70k     1.15k    72.00k    70.00%
  Latency Distribution
     50%  798.00us
     75%  850.00us
     90%  900.00us
     99%    1.02ms
  70000 requests in 1.00s, 117.81KB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 232
Requests/sec:  70012.50
Transfer/sec:    111.33KB
"""


def test_parse_wrk_reads_the_counts_the_rate_and_the_latency_distribution_in_microseconds() -> None:
    parsed = http_wrk.parse_wrk(WRK_OK)
    assert parsed == {
        "requests": 14, "seconds": pytest.approx(1.15), "requests_per_s": 12.18,
        "latency_us": {"50%": 307820.0, "75%": 361450.0, "90%": 415730.0, "99%": 1460000.0},
        "non_2xx": 0, "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0},
    }
    parsed = http_wrk.parse_wrk(WRK_ERRORS)
    assert parsed["latency_us"]["50%"] == 798.0 and parsed["latency_us"]["99%"] == 1020.0
    assert parsed["non_2xx"] == 232
    assert parsed["socket_errors"] == {"connect": 0, "read": 3, "write": 0, "timeout": 2}


def test_parse_wrk_without_a_result_is_none() -> None:
    assert http_wrk.parse_wrk("unable to connect to 127.0.0.1:19990 Connection refused\n") is None
    assert http_wrk.parse_wrk("") is None


def test_wrk_record_speaks_rfloads_vocabulary() -> None:
    record = run.wrk_record(http_wrk.parse_wrk(WRK_ERRORS), server_cpu_s=0.7, wrk_cpu_s=0.95, elapsed_s=1.0)
    assert record["msgs_per_s"] == 70012.5 and record["requests"] == 70000
    assert (record["p50_us"], record["p99_us"]) == (798.0, 1020.0)
    assert record["server_cpu_us_per_msg"] == 10.0           # 0.7 s over 70,000 requests
    assert record["server_cpu_pct"] == 70.0 and record["loadgen_cpu_pct"] == 95.0
    assert record["errors"] == 237
    assert record["error_detail"] == {"read": 3, "timeout": 2, "non_2xx_3xx": 232}
    # The server's CPU unreadable: no per-request figure rather than a wrong one.
    record = run.wrk_record(http_wrk.parse_wrk(WRK_OK), server_cpu_s=None, wrk_cpu_s=0.1, elapsed_s=1.0)
    assert "server_cpu_us_per_msg" not in record and record["errors"] == 0


def test_whole_seconds_for_wrk() -> None:
    assert [run.whole_seconds(v) for v in (0.2, 0.5, 1.0, 1.2, 3.0)] == [1, 1, 1, 2, 3]


@pytest.mark.parametrize(("pct", "bound"), [(None, False), (0.0, False), (89.9, False), (90.0, True), (99.5, True)])
def test_generator_bound_is_the_load_generator_at_90_percent_of_its_core(pct: float | None, bound: bool) -> None:
    assert run.GENERATOR_BOUND == 90.0
    assert run.generator_bound({"loadgen_cpu_pct": pct}) is bound
    assert run.generator_bound({}) is False


def test_option_reads_separate_and_joined_values_last_one_winning() -> None:
    assert run.option(("echo", "-c", "64", "-p", "1"), "-c") == "64"
    assert run.option(("-t1", "-c64", "/json"), "-c") == "64"
    assert run.option(("fanout", "-c", "2000", "-T", "2", "-T", "10"), "-T") == "10"
    assert run.option(("idle", "--conns", "5"), "-c") is None
    assert run.option(("echo",), "-c") is None


def _workload(name: str) -> Any:
    return next(w for w in run.WORKLOADS if w.name == name)


def test_fd_shortfall_names_the_limit_and_how_to_raise_it() -> None:
    idle = _workload("idle-10000")
    assert idle.conns() == 10000
    why = run.fd_shortfall(idle, hard=4096)
    assert why is not None and "10064" in why and "4096" in why and "ulimit -Hn" in why
    assert run.fd_shortfall(idle, hard=20000) is None
    assert run.fd_shortfall(idle, hard=resource.RLIM_INFINITY) is None
    assert run.fd_shortfall(_workload("http-json"), hard=1024) is None   # wrk -c64


# -- the rows ---------------------------------------------------------------------------------------------

# Issue 22's table, row by row, and the rows that measure it.
ISSUE_ROWS = {
    "connect + handshake + close, 16 at a time": ["connect-16"],
    "1 connection, 256 B round trip": ["latency-1x256B"],
    "TLS echo, 64 x 1 x 32 B and 8 x 16 x 1 KiB": ["tls-echo-64x1-32B", "tls-echo-8x16-1KiB"],
    "fan-out 2000 x 64 B, 10 s timeout": ["fanout-2000-64B"],
    "binary echo 4 x 64 KiB": ["binary-echo-4x64KiB"],
    "HTTP plaintext / JSON (wrk -c64)": ["http-plaintext", "http-json"],
    "idle memory per connection (10k)": ["idle-10000"],
}
PEERS = ("picows", "aiohttp", "websockets", "socketify")


@pytest.mark.parametrize("row", sorted(ISSUE_ROWS))
def test_every_row_of_the_issue_runs_against_robyn_fast_and_its_peers(row: str) -> None:
    servers = {s.name: s for s in run.all_servers()}
    for name in ISSUE_ROWS[row]:
        w = _workload(name)
        assert w.kind in servers["robyn_fast"].scripts
        peers = [p for p in PEERS if w.kind in servers[p].scripts]
        # picows and websockets have no HTTP server; every other row has all four.
        assert peers == (["aiohttp", "socketify"] if w.kind == "http" else list(PEERS)), name


def test_the_rows_say_what_they_run() -> None:
    assert _workload("latency-1x256B").args == ("echo", "-c", "1", "-p", "1", "-s", "256")
    assert _workload("binary-echo-4x64KiB").args == ("echo", "-c", "4", "-p", "1", "-s", "65536", "-b")
    fanout = _workload("fanout-2000-64B")
    assert run.option(fanout.args, "-c") == "2000" and run.option(fanout.args, "-T") == "10"
    assert {w.driver for w in run.WORKLOADS if w.name.startswith("tls-")} == {"tls"}
    assert {w.driver for w in run.WORKLOADS if w.name.startswith("http-")} == {"wrk"}
    assert all(w.args[-1].startswith("/") and run.option(w.args, "-c") == "64"
               for w in run.WORKLOADS if w.driver == "wrk")
    # Every rate row has a throughput; the latency row's is round trips/s; memory has none.
    assert _workload("latency-1x256B").throughput() == ("msgs_per_s", "round trips/s")
    assert _workload("connect-16").throughput() == ("cycles_per_s", "cycles/s")
    assert _workload("idle-10000").throughput() is None
    assert len({w.name for w in run.WORKLOADS}) == len(run.WORKLOADS)


def test_idle_rows_run_at_most_two_rounds() -> None:
    idle, echo = _workload("idle-10000"), _workload("echo-64x1-32B")
    assert [run.rounds_of(idle, n) for n in (1, 2, 5)] == [1, 2, 2]
    assert [run.rounds_of(echo, n) for n in (1, 2, 5)] == [1, 2, 5]


def test_every_servers_scripts_exist() -> None:
    for s in run.all_servers():
        for kind, script in s.scripts.items():
            assert script.is_file(), (s.name, kind, script)


def test_tls_servers_get_the_runs_certificate() -> None:
    servers = {s.name: s for s in run.all_servers()}
    tls = (Path("/c/cert.pem"), Path("/c/key.pem"))
    # robyn_fast: its command line's options; the peers: $PEER_TLS_CERT (start_server sets it).
    assert servers["robyn_fast"].command("echo-tls", 1234, "uvloop", tls)[-4:] == [
        "--ssl-certfile", "/c/cert.pem", "--ssl-keyfile", "/c/key.pem"]
    assert "--ssl-certfile" not in servers["robyn_fast"].command("echo", 1234, "uvloop", tls)
    assert servers["picows"].command("echo-tls", 1234, "uvloop", tls)[-3:] == ["1234", "--loop", "uvloop"]
    assert dict(servers["picows-looptls"].env) == {"PICOWS_AIOFASTNET": "0"}
    assert set(servers["picows-looptls"].scripts) == {"echo-tls"}


# -- the summary, the table and the chart -------------------------------------------------------------------


def _runs(workload: str, server: str, values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"round": i + 1, "workload": workload, "server": server, **v} for i, v in enumerate(values)]


def _summary() -> dict[str, Any]:
    servers = [s for s in run.all_servers() if s.name in ("robyn_fast", "socketify", "picows")]
    runs = (
        _runs("connect-16", "robyn_fast", [
            {"cycles_per_s": 5000.0, "cycle_p50_us": 3000, "cycle_p99_us": 5000, "server_cpu_us_per_msg": 170.0,
             "loadgen_cpu_pct": 40.0},
            {"cycles_per_s": 6000.0, "cycle_p50_us": 2500, "cycle_p99_us": 4000, "server_cpu_us_per_msg": 160.0,
             "loadgen_cpu_pct": 45.0}])
        + _runs("connect-16", "socketify", [
            {"cycles_per_s": 16000.0, "cycle_p50_us": 900, "cycle_p99_us": 1500, "server_cpu_us_per_msg": 50.0,
             "loadgen_cpu_pct": 96.0},
            {"cycles_per_s": 17000.0, "cycle_p50_us": 800, "cycle_p99_us": 1400, "server_cpu_us_per_msg": 52.0,
             "loadgen_cpu_pct": 97.0}])
        + _runs("connect-16", "picows", [{"failed": True, "failure": "server start: exited with 1 before serving"}])
        + _runs("latency-1x256B", "robyn_fast", [
            {"p50_us": 96.0, "p99_us": 150.0, "msgs_per_s": 9800.0, "server_cpu_us_per_msg": 30.0,
             "loadgen_cpu_pct": 40.0}])
        + _runs("latency-1x256B", "socketify", [
            {"p50_us": 59.0, "p99_us": 90.0, "msgs_per_s": 15000.0, "server_cpu_us_per_msg": 12.0,
             "loadgen_cpu_pct": 93.0}])
        + _runs("idle-10000", "robyn_fast", [{"rss_per_conn_bytes": 4432.0, "server_cpu_pct": 7.0}])
        + _runs("idle-10000", "socketify", [{"rss_per_conn_bytes": 512.0, "server_cpu_pct": 6.0}])
    )
    workloads = [_workload(n) for n in ("connect-16", "latency-1x256B", "idle-10000")]
    return run.summarize(runs, servers, workloads)


def test_summary_carries_throughput_latency_cpu_per_op_generator_cpu_and_the_flag() -> None:
    summary = _summary()
    connect = summary["connect-16"]
    assert connect["generator"] == "rfload" and connect["throughput_unit"] == "cycles/s"
    ours, theirs = connect["servers"]["robyn_fast"], connect["servers"]["socketify"]
    assert ours["throughput"] == ours["median"] == 5500.0
    assert (ours["cycle_p50_us"], ours["cycle_p99_us"]) == (2750, 4500)
    assert ours["server_cpu_us_per_op"] == 165.0 and ours["loadgen_cpu_pct"] == 42.5
    assert ours["generator_bound"] is False and ours["generator_bound_runs"] == 0
    assert theirs["generator_bound"] is True and theirs["generator_bound_runs"] == 2
    assert theirs["ratio_reference_over_server"] == round(5500 / 16500, 3)
    assert theirs["cpu_ratio_server_over_reference"] == round(51 / 165, 3)
    failed = connect["servers"]["picows"]
    assert failed["median"] is None and failed["ok_runs"] == 0 and failed["generator_bound"] is False
    assert failed["failures"] == ["server start: exited with 1 before serving"]

    latency = summary["latency-1x256B"]
    assert latency["throughput_unit"] == "round trips/s" and latency["higher_is_better"] is False
    row = latency["servers"]["robyn_fast"]
    assert (row["median"], row["p50_us"], row["p99_us"], row["throughput"]) == (96.0, 96.0, 150.0, 9800.0)
    assert latency["servers"]["socketify"]["ratio_reference_over_server"] == round(96 / 59, 3)

    idle = summary["idle-10000"]["servers"]["robyn_fast"]
    assert idle["throughput"] is None and idle["generator_bound"] is False and idle["median"] == 4432.0


def _table_line(md: str, workload: str, server: str) -> str:
    return next(line for line in md.splitlines() if line.startswith(f"| {workload} ") and f"| {server} |" in line)


META = {"date": "2026-12-07", "preset": "quick", "rounds": 2, "warmup_s": 0.5, "duration_s": 1.0,
        "server_core": "0", "loadgen_core": "1", "loop": "uvloop", "reference": "robyn_fast"}


def test_markdown_marks_generator_bound_figures_as_bounds() -> None:
    md = run.markdown(_summary(), META)
    bound = _table_line(md, "connect-16", "socketify")
    assert "| ≥ 16,500 |" in bound
    assert "generator-bound (rfload at 96 % of its core): the server's capacity is at least this" in bound
    assert "| 51.00 (0.31×) |" in bound             # server CPU µs per cycle, and over robyn_fast's
    free = _table_line(md, "connect-16", "**robyn_fast**")
    assert "| 5,500 |" in free and "generator-bound" not in free and "| 165.00 (1.00×) |" in free
    latency = _table_line(md, "latency-1x256B", "socketify")
    assert "| ≤ 59 |" in latency and "the server's latency is at most this" in latency
    assert "15,000 round trips/s" in latency and "| 59 / 90 |" in latency
    assert "FAILED: server start" in _table_line(md, "connect-16", "picows")
    assert "| 0.5 KiB |" in _table_line(md, "idle-10000", "socketify")
    assert "lower bound of the server's capacity" in md


def test_markdown_reads_results_files_from_before_the_per_op_name() -> None:
    summary = _summary()
    row = summary["connect-16"]["servers"]["robyn_fast"]
    row["server_cpu_us_per_msg"] = row.pop("server_cpu_us_per_op")
    assert "| 165.00 (1.00×) |" in _table_line(run.markdown(summary, META), "connect-16", "**robyn_fast**")


def test_plot_draws_every_row(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "load.png"
    run.plot(_summary(), META, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
