"""The WebSocket protocol state machine without I/O (robyn_fast._core.protocol),
tested the way websockets tests its Protocol: literal bytes and the time in,
literal bytes and events out, no event loop and no transport.

Client frames are written with the all-zero mask ``00 00 00 00`` where the
payload should stay readable (masking with it changes nothing, RFC 6455 §5.3),
and with a real mask where the unmasking matters."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from robyn_fast import Config
from robyn_fast._core.connection import BufferedConnection, Connection
from robyn_fast._core.protocol import Settings, WSProtocol

Z = b"\x00\x00\x00\x00"  # the all-zero mask: masked payload == payload
OPEN, CLOSING, CLOSED = 0, 1, 2


def settings(**config: Any) -> Settings:
    return Settings.from_config(Config(**{"ping_interval": None, "close_timeout": 10.0, **config}))


def protocol(now: float = 100.0, **config: Any) -> WSProtocol:
    return WSProtocol(settings(**config), "t", now)


def test_there_is_no_event_loop() -> None:
    proto = protocol()
    proto.receive_data(b"\x81\x82" + Z + b"hi")
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    assert proto.events_received() == [("message", "hi")]


def test_the_server_runs_these_rules() -> None:
    """The connection the server installs is this state machine plus I/O glue."""
    assert issubclass(BufferedConnection, Connection) and issubclass(Connection, WSProtocol)


# -- data --------------------------------------------------------------------------------------


def test_text_and_binary_messages_with_a_real_mask() -> None:
    proto = protocol()
    # "Hello" masked with 37 fa 21 3d (RFC 6455 §5.7), then binary 00 00 masked with 01 02 03 04.
    proto.receive_data(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58" + b"\x82\x82\x01\x02\x03\x04\x01\x02")
    assert proto.events_received() == [("message", "Hello"), ("message", b"\x00\x00")]
    assert proto.data_to_send() == []


def test_a_fragmented_message_split_at_every_offset() -> None:
    wire = b"\x01\x83" + Z + b"Hel" + b"\x80\x82" + Z + b"lo"
    for cut in range(len(wire) + 1):
        proto = protocol()
        proto.receive_data(wire[:cut])
        proto.receive_data(wire[cut:])
        assert proto.events_received() == [("message", "Hello")], cut


def test_a_sent_frame_goes_out_as_it_is() -> None:
    proto = protocol()
    assert proto.send_frame_bytes(b"\x81\x02hi") is True
    assert proto.send_frame_bytes(b"\x82\x01\xff") is True
    assert proto.data_to_send() == [b"\x81\x02hi", b"\x82\x01\xff"]
    assert proto.data_to_send() == []


# -- closing (RFC 6455 §5.5.1, §7) -------------------------------------------------------------


def test_a_close_from_the_client_is_echoed_then_tcp_is_closed() -> None:
    proto = protocol()
    proto.receive_data(b"\x88\x85" + Z + b"\x03\xe8bye")  # 1000 "bye"
    assert proto.events_received() == [("close", 1000, "bye")]
    assert proto.data_to_send() == [b"\x88\x02\x03\xe8", b""]  # echo the code; the server closes first
    assert (proto.state, proto.close_code, proto.close_reason) == (CLOSING, 1000, "bye")


def test_an_empty_close_is_answered_with_an_empty_close() -> None:
    proto = protocol()
    proto.receive_data(b"\x88\x80" + Z)
    assert proto.events_received() == [("close", None, "")]
    assert proto.data_to_send() == [b"\x88\x00", b""]
    assert proto.close_code == 1005  # no status code received (§7.1.5)


def test_our_close_waits_for_the_clients_then_tcp_is_closed() -> None:
    proto = protocol()
    assert proto.close(1001, "bye") is True
    assert proto.data_to_send() == [b"\x88\x05\x03\xe9bye"]
    assert proto.state == CLOSING and proto.close(1000) is False
    proto.receive_data(b"\x88\x82" + Z + b"\x03\xe9")
    assert proto.events_received() == [("close", 1001, "")]
    assert proto.data_to_send() == [b""]  # no second Close frame
    assert (proto.close_code, proto.close_reason) == (1001, "bye")


def test_our_close_unanswered_is_aborted_after_close_timeout() -> None:
    proto = protocol(now=100.0, close_timeout=3.0)
    proto.close(1000)
    assert proto.data_to_send() == [b"\x88\x02\x03\xe8"]
    assert proto.next_deadline == 103.0
    assert proto.tick(102.9) == 103.0 and proto.events_received() == []
    assert proto.tick(103.0) == 0.0
    assert proto.events_received() == [("abort",)]


def test_an_echoed_close_whose_tcp_end_never_comes_is_aborted_too() -> None:
    proto = protocol(now=0.0, close_timeout=1.0)
    proto.receive_data(b"\x88\x82" + Z + b"\x03\xe8", now=5.0)
    proto.data_to_send()
    assert proto.next_deadline == 6.0
    proto.tick(6.0)
    assert proto.events_received()[-1] == ("abort",)


def test_the_tcp_end_before_any_close_is_1006() -> None:
    proto = protocol()
    proto.connection_lost()
    assert (proto.state, proto.close_code) == (CLOSED, 1006)
    assert proto.send_frame_bytes(b"\x81\x00") is False and proto.data_to_send() == []
    assert proto.tick(1e9) == 0.0 and proto.events_received() == []


def test_the_tcp_end_during_the_handshake_cancels_the_close_timeout() -> None:
    proto = protocol(close_timeout=1.0)
    proto.close(1000)
    proto.connection_lost()
    assert proto.next_deadline == 0.0 and proto.tick(1e9) == 0.0
    assert proto.events_received() == [] and proto.close_code == 1000


def test_nothing_after_the_close_frame_is_read() -> None:
    proto = protocol()
    proto.receive_data(b"\x88\x82" + Z + b"\x03\xe8" + b"\x81\x82" + Z + b"hi" + b"\xff\xff")
    assert proto.events_received() == [("close", 1000, "")]


def test_sends_after_close_are_refused() -> None:
    proto = protocol()
    proto.close(1000)
    assert proto.send_frame_bytes(b"\x81\x02hi") is False
    assert proto.data_to_send() == [b"\x88\x02\x03\xe8"]


@pytest.mark.parametrize(
    ("wire", "sent"),  # `sent`: the Close frame's first byte and code (its reason is the codec's)
    [
        # An unmasked client frame (§5.1): 1002.
        (b"\x81\x02hi", b"\x88\x02\x03\xea"),
        # RSV bits without an extension (§5.2): 1002.
        (b"\xc1\x80" + Z, b"\x88\x02\x03\xea"),
        # A reserved opcode (§5.2): 1002.
        (b"\x83\x80" + Z, b"\x88\x02\x03\xea"),
        # A fragmented control frame (§5.5): 1002.
        (b"\x09\x80" + Z, b"\x88\x02\x03\xea"),
        # A control frame over 125 bytes (§5.5): 1002.
        (b"\x89\xfe\x00\x7e" + Z + b"x" * 126, b"\x88\x02\x03\xea"),
        # A continuation with nothing to continue (§5.4): 1002.
        (b"\x80\x80" + Z, b"\x88\x02\x03\xea"),
        # A new message inside a fragmented one (§5.4): 1002.
        (b"\x01\x80" + Z + b"\x81\x80" + Z, b"\x88\x02\x03\xea"),
        # Invalid UTF-8 in a text message (§8.1): 1007.
        (b"\x81\x82" + Z + b"\xc3\x28", b"\x88\x02\x03\xef"),
        # A Close whose payload is one byte (§5.5.1): 1002.
        (b"\x88\x81" + Z + b"\x03", b"\x88\x02\x03\xea"),
        # A Close with a code no one may send (1005, §7.4.1): 1002.
        (b"\x88\x82" + Z + b"\x03\xed", b"\x88\x02\x03\xea"),
        # A Close with a code below 1000 (§7.4.2): 1002.
        (b"\x88\x82" + Z + b"\x03\xe7", b"\x88\x02\x03\xea"),
        # A Close reason that is not UTF-8 (§5.5.1): 1007.
        (b"\x88\x83" + Z + b"\x03\xe8\xff", b"\x88\x02\x03\xef"),
    ],
)
def test_a_protocol_error_sends_close_with_its_code_then_closes_tcp(wire: bytes, sent: bytes) -> None:
    proto = protocol()
    proto.receive_data(wire)
    out = proto.data_to_send()
    assert out[-1] == b"" and out[0][:1] + out[0][2:4] == sent[:1] + sent[2:4], out
    assert proto.state == CLOSING and proto.close_code == int.from_bytes(sent[2:4], "big")


def test_a_message_over_the_limit_is_1009_from_its_header() -> None:
    proto = protocol(max_message_size=4)
    proto.receive_data(b"\x82\x85" + Z)  # five bytes announced, none sent yet (§10.4)
    out = proto.data_to_send()
    assert out[0][:1] + out[0][2:4] == b"\x88\x03\xf1" and out[-1] == b""
    assert proto.close_code == 1009


def test_a_protocol_error_after_our_close_sends_no_second_close() -> None:
    proto = protocol()
    proto.close(1000)
    assert proto.data_to_send() == [b"\x88\x02\x03\xe8"]
    proto.receive_data(b"\x81\x02hi")  # unmasked
    assert proto.data_to_send() == [b""]
    assert proto.close_code == 1000


def test_a_long_reason_is_cut_to_fit_a_close_frame() -> None:
    proto = protocol()
    proto.receive_data(b"\x81\x82" + Z + b"\xc3\x28")
    frame = proto.data_to_send()[0]
    assert frame[0] == 0x88 and frame[1] <= 125


# -- Pings and Pongs (§5.5.2, §5.5.3) --------------------------------------------------------


def test_a_client_that_keeps_up_gets_every_pong() -> None:
    proto = protocol()
    proto.receive_data(b"\x89\x81" + Z + b"1" + b"\x89\x81" + Z + b"2" + b"\x89\x80" + Z)
    assert proto.events_received() == [("ping", b"1"), ("ping", b"2"), ("ping", b"")]
    assert proto.data_to_send() == [b"\x8a\x011", b"\x8a\x012", b"\x8a\x00"]


def test_a_client_behind_gets_one_pong_per_batch_for_the_latest_ping() -> None:
    proto = protocol()
    proto.set_transport_buffered(1)  # it has not read everything we sent
    proto.receive_data(b"\x89\x81" + Z + b"1" + b"\x81\x81" + Z + b"a" + b"\x89\x81" + Z + b"2")
    proto.send_frame_bytes(b"\x81\x01a")
    proto.receive_data(b"\x89\x81" + Z + b"3")
    # The latest Pong, in the place of the first one: order with data is kept.
    assert proto.data_to_send() == [b"\x8a\x013", b"\x81\x01a"]
    proto.receive_data(b"\x89\x81" + Z + b"4")
    assert proto.data_to_send() == [b"\x8a\x014"]  # a new batch gets its own


def test_no_pong_while_writing_is_paused_then_the_latest() -> None:
    proto = protocol()
    proto.pause_writing()
    proto.receive_data(b"\x89\x81" + Z + b"1" + b"\x89\x81" + Z + b"2")
    assert proto.data_to_send() == []
    proto.resume_writing()
    assert proto.data_to_send() == [b"\x8a\x012"]


def test_pongs_from_the_client_are_events_and_nothing_is_sent() -> None:
    proto = protocol()
    proto.receive_data(b"\x8a\x82" + Z + b"hi")
    assert proto.events_received() == [("pong", b"hi")]
    assert proto.data_to_send() == []


# -- keepalive ---------------------------------------------------------------------------------


def test_keepalive_ping_pong_and_the_next_ping() -> None:
    proto = protocol(now=100.0, ping_interval=20.0, ping_timeout=5.0)
    assert proto.next_deadline == 120.0
    assert proto.tick(119.0) == 120.0 and proto.data_to_send() == []
    assert proto.tick(120.0) == 125.0  # now the Pong's deadline
    (ping,) = proto.data_to_send()
    assert ping[:2] == b"\x89\x08" and len(ping) == 10  # 8 unpredictable bytes
    proto.receive_data(b"\x8a\x88" + Z + b"12345678", now=121.0)  # not our payload: ignored
    assert proto.next_deadline == 125.0
    proto.receive_data(b"\x8a\x88" + Z + ping[2:], now=122.0)
    assert proto.next_deadline == 142.0
    assert proto.tick(142.0) == 147.0 and proto.data_to_send()[0][:2] == b"\x89\x08"


def test_no_pong_within_ping_timeout_closes_with_1011() -> None:
    proto = protocol(now=0.0, ping_interval=1.0, ping_timeout=2.0, close_timeout=4.0)
    proto.tick(1.0)
    proto.data_to_send()
    assert proto.tick(3.0) == 7.0  # the close timeout's deadline
    assert proto.data_to_send() == [b"\x88\x18\x03\xf3keepalive ping timeout"]
    assert (proto.state, proto.close_code) == (CLOSING, 1011)
    proto.tick(7.0)
    assert proto.events_received() == [("abort",)]


def test_without_ping_timeout_pings_keep_going() -> None:
    proto = protocol(now=0.0, ping_interval=1.0, ping_timeout=None)
    assert proto.tick(1.0) == 2.0
    assert proto.tick(2.0) == 3.0
    assert [f[:2] for f in proto.data_to_send()] == [b"\x89\x08", b"\x89\x08"]


def test_a_client_that_drains_while_writing_is_paused_gets_more_time() -> None:
    proto = protocol(now=0.0, ping_interval=1.0, ping_timeout=2.0)
    proto.send_frame_bytes(b"\x82\x7e\x01\x00" + b"x" * 256)
    proto.data_to_send()
    proto.set_transport_buffered(260)  # nothing of it read yet
    proto.tick(1.0)
    proto.data_to_send()
    proto.set_transport_buffered(270)  # of 260 + 10 written, all waits
    proto.pause_writing()
    proto.set_transport_buffered(100)  # it took 170 bytes since the Ping
    assert proto.tick(3.0) == 5.0 and proto.state == OPEN  # more time, not a close
    assert proto.tick(5.0) > 0 and proto.state == CLOSING  # took nothing since: closed


def test_a_client_whose_input_was_stalled_since_the_ping_gets_more_time_after_writing_resumed() -> None:
    """Writes backed up after the Ping (so its Pong may sit behind input we
    did not read) and flowing again at the deadline: the client took bytes
    since, so it gets another ping_timeout; a window with no stall and no
    Pong closes it."""
    proto = protocol(now=0.0, ping_interval=1.0, ping_timeout=2.0)
    proto.tick(1.0)
    proto.data_to_send()
    proto.set_transport_buffered(10)  # the Ping waits
    proto.pause_writing()
    proto.set_transport_buffered(0)
    proto.resume_writing()  # drained: reading again, the Pong still behind
    assert proto.tick(3.0) == 5.0 and proto.state == OPEN
    proto.send_frame_bytes(b"\x81\x01x")
    proto.data_to_send()  # taken at once: no stall in this window
    assert proto.tick(5.0) > 0 and proto.state == CLOSING


def test_a_client_that_reads_freely_and_never_pongs_is_closed() -> None:
    proto = protocol(now=0.0, ping_interval=1.0, ping_timeout=2.0)
    proto.tick(1.0)
    proto.data_to_send()  # taken at once; writing never paused
    proto.send_frame_bytes(b"\x81\x01x")
    proto.data_to_send()
    assert proto.tick(3.0) > 0 and proto.state == CLOSING


def test_no_keepalive_once_closing() -> None:
    proto = protocol(now=0.0, ping_interval=1.0, ping_timeout=1.0)
    proto.close(1000)
    proto.data_to_send()
    assert proto.next_deadline == 10.0  # only the close timeout
    proto.receive_data(b"\x88\x82" + Z + b"\x03\xe8")
    proto.tick(5.0)
    assert proto.data_to_send() == [b""]


# -- backpressure ------------------------------------------------------------------------------


def test_one_message_over_the_budget_goes_to_a_client_that_read_everything() -> None:
    proto = protocol(max_backpressure=8)
    big = b"\x82\x10" + b"x" * 16
    assert proto.send_frame_bytes(big) is True
    assert proto.data_to_send() == [big]


def test_over_the_budget_the_close_policy_closes_1008() -> None:
    proto = protocol(max_backpressure=10)
    proto.set_transport_buffered(6)
    assert proto.send_frame_bytes(b"\x81\x02hi") is True  # 6 + 4: within the bound
    assert proto.send_frame_bytes(b"\x81\x02hi") is False
    assert proto.data_to_send() == [b"\x81\x02hi", b"\x88\x11\x03\xf0client too slow"]
    assert (proto.state, proto.close_code) == (CLOSING, 1008)


def test_over_the_budget_the_drop_policy_drops() -> None:
    proto = protocol(max_backpressure=10, backpressure_policy="drop")
    proto.set_transport_buffered(10)
    assert proto.send_frame_bytes(b"\x81\x02hi") is False
    assert proto.send_frame_bytes(b"\x81\x02hi") is False
    assert proto.dropped == 2 and proto.state == OPEN
    proto.set_transport_buffered(0)  # the client caught up: seen from the next batch on
    assert proto.data_to_send() == []
    assert proto.send_frame_bytes(b"\x81\x02hi") is True


def test_a_pong_over_the_budget_closes_1008() -> None:
    proto = protocol(max_backpressure=10, backpressure_policy="drop")
    proto.set_transport_buffered(10)
    proto.receive_data(b"\x89\x81" + Z + b"1")
    assert proto.data_to_send() == [b"\x88\x11\x03\xf0client too slow"]
    assert proto.close_code == 1008


def test_the_budget_counts_what_waits_in_the_transport() -> None:
    proto = protocol(max_backpressure=10)
    proto.set_transport_buffered(3)
    proto.send_frame_bytes(b"\x81\x00")
    assert proto.buffered_amount == 5
    proto.data_to_send()
    assert proto.buffered_amount == 3


def test_the_settings_are_typed_and_read_once() -> None:
    s = Settings.from_config(Config(ping_interval=8.0, close_timeout=2.0, backpressure_policy="drop"))
    assert (s.ping_interval, s.close_timeout, s.drop_policy) == (8.0, 2.0, True)
    assert s.sweep_tick == 0.5  # a close timeout is at most a quarter late
    assert Settings.from_config(Config(ping_interval=None, close_timeout=1000.0)).sweep_tick == 5.0


# -- against the reference codec -------------------------------------------------------------


def test_what_the_protocol_sends_is_what_the_reference_parser_reads_as_a_client() -> None:
    """Every frame the state machine emits, through a whole session (Pongs,
    a keepalive Ping, data, the Close), parses with the pure-Python oracle
    (robyn_fast._reference.codec) as a client must read it (unmasked)."""
    from robyn_fast._reference.codec import FrameParser as ReferenceParser

    proto = protocol(now=0.0, ping_interval=1.0, ping_timeout=5.0)
    proto.receive_data(b"\x89\x82" + Z + b"hi")
    proto.send_frame_bytes(b"\x81\x05hello")
    proto.tick(1.0)
    proto.receive_data(b"\x88\x84" + Z + b"\x03\xe8ok")
    wire = b"".join(proto.data_to_send())
    parsed = ReferenceParser(client=True).feed(wire)
    assert [(m.opcode, m.data) for m in parsed[:2]] == [(0xA, b"hi"), (0x1, "hello")]
    assert parsed[2].opcode == 0x9 and len(parsed[2].data) == 8
    assert (parsed[3].opcode, parsed[3].close_code) == (0x8, 1000)
