"""Sec-WebSocket-Extensions parsing and permessage-deflate negotiation
(RFC 6455 §9.1, RFC 7692 §5-7): literal header values in, literal response
out, for both modes."""

from __future__ import annotations

import pytest

from robyn_fast.websocket.extensions import (
    Extension,
    ExtensionsError,
    is_broken_safari,
    negotiate_deflate,
    parse_extensions,
)

CHROME = "permessage-deflate; client_max_window_bits"
FIREFOX = "permessage-deflate"
SAFARI_15_2 = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
               "Version/15.2 Safari/605.1.15")
SAFARI_15_2_IOS = ("Mozilla/5.0 (iPhone; CPU iPhone OS 15_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                   "Version/15.2 Mobile/15E148 Safari/604.1")
SAFARI_15_4 = SAFARI_15_2.replace("Version/15.2", "Version/15.4")
CHROME_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 "
             "Safari/537.36")


def test_the_grammar() -> None:
    assert parse_extensions(['foo, bar; baz=2;QUX, permessage-deflate; a="b"']) == [
        Extension("foo", ()),
        Extension("bar", (("baz", "2"), ("qux", None))),
        Extension("permessage-deflate", (("a", "b"),)),
    ]
    # Several header lines, empty list elements, spaces and tabs around separators.
    assert parse_extensions(["x", " ,\ty ;\tz = 1 , "]) == [Extension("x", ()), Extension("y", (("z", "1"),))]
    assert parse_extensions([""]) == []
    assert parse_extensions(['e; p="a\\bc"']) == [Extension("e", (("p", "abc"),))]


@pytest.mark.parametrize("value", ["foo bar", "foo;", "foo; =1", 'foo; a="unterminated', 'foo; a="not a token"',
                                   "foo; a=", "f(o)o", "foo; a=1 b", '"foo"'])
def test_values_outside_the_grammar(value: str) -> None:
    with pytest.raises(ExtensionsError):
        parse_extensions([value])


# -- shared mode (the default): no context takeover either way ---------------------------------------------


@pytest.mark.parametrize(
    ("offer", "response"),
    [
        (FIREFOX, "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        (CHROME, "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ("permessage-deflate; server_max_window_bits=10",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"),
        ("permessage-deflate; server_no_context_takeover; client_no_context_takeover",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ('permessage-deflate; client_max_window_bits="9"',
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
    ],
)
def test_shared_mode_answers(offer: str, response: str) -> None:
    params = negotiate_deflate([offer], "shared")
    assert params is not None and params.response == response and params.shared


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; server_max_window_bits=8",  # zlib's raw deflate cannot make an 8-bit window
        "permessage-deflate; server_max_window_bits",  # a value is required
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",  # no leading zeros
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; server_no_context_takeover=1",  # takes no value
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",  # repeated
        "permessage-deflate; mystery",  # unknown
        "x-webkit-deflate-frame",
        "",
    ],
)
def test_unacceptable_offers_are_declined(offer: str) -> None:
    assert negotiate_deflate([offer], "shared") is None
    assert negotiate_deflate([offer], "dedicated") is None


def test_the_first_acceptable_offer_wins() -> None:
    params = negotiate_deflate(["permessage-deflate; server_max_window_bits=8, permessage-deflate; "
                                "server_max_window_bits=11", "permessage-deflate"], "shared")
    assert params is not None and params.server_max_window_bits == 11
    assert params.response.endswith("server_max_window_bits=11")


def test_safari_15_0_to_15_3_is_declined() -> None:
    assert is_broken_safari(SAFARI_15_2) and is_broken_safari(SAFARI_15_2_IOS)
    assert not is_broken_safari(SAFARI_15_4) and not is_broken_safari(CHROME_UA) and not is_broken_safari(None)
    assert negotiate_deflate([FIREFOX], "shared", user_agent=SAFARI_15_2) is None
    assert negotiate_deflate([FIREFOX], "shared", user_agent=SAFARI_15_4) is not None


# -- dedicated mode: contexts kept per connection ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("offer", "response", "server_bits", "client_bits", "server_nct", "client_nct"),
    [
        (FIREFOX, "permessage-deflate; server_max_window_bits=12", 12, 15, False, False),
        (CHROME, "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12", 12, 12, False, False),
        ("permessage-deflate; client_max_window_bits=9",
         "permessage-deflate; server_max_window_bits=12; client_max_window_bits=9", 12, 9, False, False),
        ("permessage-deflate; server_max_window_bits=10", "permessage-deflate; server_max_window_bits=10",
         10, 15, False, False),
        ("permessage-deflate; server_max_window_bits=15", "permessage-deflate; server_max_window_bits=12",
         12, 15, False, False),
        ("permessage-deflate; server_no_context_takeover",
         "permessage-deflate; server_no_context_takeover; server_max_window_bits=12", 12, 15, True, False),
        ("permessage-deflate; client_no_context_takeover; client_max_window_bits=15",
         "permessage-deflate; client_no_context_takeover; server_max_window_bits=12; client_max_window_bits=12",
         12, 12, False, True),
    ],
)
def test_dedicated_mode_answers(offer: str, response: str, server_bits: int, client_bits: int,
                                server_nct: bool, client_nct: bool) -> None:
    params = negotiate_deflate([offer], "dedicated", window_bits=12, client_window_bits=12)
    assert params is not None
    assert params.response == response
    assert (params.server_max_window_bits, params.client_max_window_bits) == (server_bits, client_bits)
    assert (params.server_no_context_takeover, params.client_no_context_takeover) == (server_nct, client_nct)


def test_bad_settings_are_value_errors() -> None:
    with pytest.raises(ValueError, match="mode"):
        negotiate_deflate([FIREFOX], "sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="window_bits"):
        negotiate_deflate([FIREFOX], "dedicated", window_bits=8)


def test_connections_that_agree_alike_share_one_params_object() -> None:
    # One DeflateParams per distinct agreement, not one per connection (memory per connection).
    first = negotiate_deflate(["permessage-deflate; client_max_window_bits"], "shared")
    again = negotiate_deflate(["permessage-deflate; client_max_window_bits"], "shared")
    other = negotiate_deflate(["permessage-deflate; server_max_window_bits=10"], "shared")
    assert first is not None and first is again
    assert other is not None and other is not first and other.server_max_window_bits == 10
    assert not hasattr(first, "__dict__")
