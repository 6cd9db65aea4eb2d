"""Counters of the WebSocket server and their Prometheus text exposition.

The counters live in the compiled core (:mod:`robyn_fast._core.metrics`): one
block of C integers per process that every connection table (Hub) bumps in
place, so counting costs no Python object per message. A supervisor that forks
worker processes puts every worker's block in one shared-memory mapping made
before the first fork (:func:`new_block`, :func:`attach`); whichever worker
serves the metrics path sums all the slots itself, with no message to the
others.

Definitions (for :func:`exposition` and ``app.stats()["counters"]``):

- bytes are *wire* bytes: what was read from or handed to the transport after
  the WebSocket handshake, frame headers, masks, control frames and
  compressed payloads included (the 101 response is not counted);
- a message is a data message (text or binary), counted once when received
  complete, and once per client it was queued for (a broadcast to 100 clients
  counts 100); control frames are counted apart (pings and pongs);
- a connection is counted closed by its final close code: the code received
  or sent in the closing handshake, 1006 when TCP ended without one.
"""

from __future__ import annotations

from typing import Any

from ._core import metrics as _counters

__all__ = ["CONTENT_TYPE", "counters", "totals", "new_block", "attach", "record_broker", "exposition"]

#: The Content-Type of the Prometheus text format (version 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Close codes whose series are always exposed (others appear once counted).
COMMON_CLOSE_CODES = (1000, 1001, 1006, 1008, 1009, 1011)

new_block = _counters.new_block
attach = _counters.attach


def counters() -> dict[str, Any]:
    """This process's counters (``closed`` is a dict by close code and ``"other"``)."""
    return _counters.counters()


def totals() -> dict[str, Any]:
    """The counters summed over every worker process of this server (this
    process's own when it runs alone), with ``workers``: how many were summed."""
    out = _counters.totals()
    out["workers"] = max(1, _counters.slots())
    return out


def record_broker(stats: dict[str, Any]) -> None:
    """Copy a broker's ``stats()`` into this process's counters, so that the
    other workers' scrapes sum them too."""
    if "connected" in stats:  # Redis
        up = bool(stats["connected"])
    else:  # the local bus: linked to every other worker
        up = stats.get("peers", 0) >= max(1, _counters.slots()) - 1
    _counters.set_broker(up, int(stats.get("outages", 0)), int(stats.get("published", 0)),
                         int(stats.get("received", 0)), int(stats.get("dropped", 0)))


def _family(out: list[str], name: str, kind: str, help_text: str, samples: list[tuple[str, int]]) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")
    for labels, value in samples:
        out.append(f"{name}{labels} {value}")


def exposition(values: dict[str, Any], broker: bool) -> str:
    """The Prometheus text format (0.0.4) of ``values`` (from :func:`totals`);
    the broker's families only when the server has a broker."""
    out: list[str] = []
    closed = values["closed"]
    ended = sum(closed.values())
    _family(out, "robyn_fast_workers", "gauge", "Worker processes whose counters are summed here.",
            [("", values["workers"])])
    _family(out, "robyn_fast_ws_connections", "gauge", "WebSocket connections open now.",
            [("", max(0, values["opened"] - ended))])
    _family(out, "robyn_fast_ws_connections_opened_total", "counter",
            "WebSocket connections opened (after the 101 response).", [("", values["opened"])])
    samples = [(f'{{code="{code}"}}', n) for code, n in closed.items()
               if code != "other" and (n or code in COMMON_CLOSE_CODES)]
    if closed["other"]:
        samples.append(('{code="other"}', closed["other"]))
    _family(out, "robyn_fast_ws_connections_closed_total", "counter",
            "WebSocket connections closed, by final close code (1006: no closing handshake).", samples)
    _family(out, "robyn_fast_ws_messages_received_total", "counter", "WebSocket data messages received.",
            [("", values["messages_in"])])
    _family(out, "robyn_fast_ws_messages_sent_total", "counter",
            "WebSocket data messages queued to clients (a broadcast counts once per client).",
            [("", values["messages_out"])])
    _family(out, "robyn_fast_ws_received_bytes_total", "counter",
            "WebSocket wire bytes read (frame headers, masks and control frames included).",
            [("", values["bytes_in"])])
    _family(out, "robyn_fast_ws_sent_bytes_total", "counter",
            "WebSocket wire bytes written (frame headers, control frames and compressed payloads included).",
            [("", values["bytes_out"])])
    _family(out, "robyn_fast_ws_backpressure_total", "counter",
            "Sends refused because a client's buffer was over max_backpressure, by the policy applied "
            "(drop: the message was dropped; close: the connection was closed with 1008).",
            [('{policy="drop"}', values["backpressure_drops"]), ('{policy="close"}', values["backpressure_closes"])])
    _family(out, "robyn_fast_ws_pings_sent_total", "counter", "Keepalive pings sent.", [("", values["pings_sent"])])
    _family(out, "robyn_fast_ws_pings_received_total", "counter", "Pings received from clients.",
            [("", values["pings_received"])])
    _family(out, "robyn_fast_ws_pongs_sent_total", "counter", "Pongs sent in answer to pings.",
            [("", values["pongs_sent"])])
    _family(out, "robyn_fast_ws_pongs_received_total", "counter", "Pongs received from clients.",
            [("", values["pongs_received"])])
    _family(out, "robyn_fast_ws_handler_errors_total", "counter",
            "WebSocket handler calls that raised or returned a value that cannot be sent.",
            [("", values["handler_errors"])])
    if broker:
        _family(out, "robyn_fast_broker_up", "gauge",
                "Workers whose broker is connected (Redis) or linked to every other worker (local bus).",
                [("", values["broker_up"])])
        _family(out, "robyn_fast_broker_reconnects_total", "counter", "Broker connections lost and made again.",
                [("", values["broker_reconnects"])])
        _family(out, "robyn_fast_broker_published_total", "counter", "Messages sent to other nodes.",
                [("", values["broker_published"])])
        _family(out, "robyn_fast_broker_received_total", "counter", "Messages received from other nodes.",
                [("", values["broker_received"])])
        _family(out, "robyn_fast_broker_dropped_total", "counter", "Messages dropped on the way between nodes.",
                [("", values["broker_dropped"])])
    return "\n".join(out) + "\n"
