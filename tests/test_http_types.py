"""Tests for robyn_fast.http.types: Robyn-compatible types, render, and the wire bytes."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import re
import uuid
from typing import Any
from urllib.parse import parse_qsl

import httptools
import pytest
from hypothesis import given
from hypothesis import strategies as st

from robyn_fast.exceptions import (
    ArgumentTypeError,
    HTTPError,
    InvalidHeader,
    InvalidJSON,
    InvalidStatusCode,
    MethodNotAllowed,
    RobynFastError,
    UnsupportedResponseType,
)
from robyn_fast.http.types import (
    APPLICATION_JSON,
    OCTET_STREAM,
    TEXT_HTML,
    TEXT_PLAIN,
    Headers,
    QueryParams,
    Request,
    Response,
    Url,
    error_response,
    jsonify,
    reason_phrase,
    render,
    serialize_response,
)

# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


class _Parsed:
    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


def parse_response(data: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Parse response bytes with a real HTTP parser (httptools / llhttp)."""
    sink = _Parsed()
    parser = httptools.HttpResponseParser(sink)
    parser.feed_data(data)
    assert sink.complete, data
    return parser.get_status_code(), sink.headers, sink.body


def split_head(data: bytes) -> tuple[bytes, dict[bytes, list[bytes]], bytes]:
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep
    status_line, *lines = head.split(b"\r\n")
    fields: dict[bytes, list[bytes]] = {}
    for line in lines:
        name, _, value = line.partition(b": ")
        fields.setdefault(name, []).append(value)
    return status_line, fields, body


# --------------------------------------------------------------------------
# QueryParams
# --------------------------------------------------------------------------


class TestQueryParams:
    def test_empty(self) -> None:
        q = QueryParams()
        assert q.empty()
        assert len(q) == 0
        assert list(q) == []
        assert q.to_dict() == {}
        assert q.get("a") is None
        assert q.get_first("a") is None
        assert q.get_all("a") is None
        assert not q.contains("a")
        assert "a" not in q

    def test_set_appends_and_get_returns_last_as_robyn(self) -> None:
        q = QueryParams()
        q.set("a", "1")
        q.set("a", "2")
        q.set("b", "x")
        assert q.get("a") == "2"
        assert q.get_first("a") == "1"
        assert q.get_all("a") == ["1", "2"]
        assert q.to_dict() == {"a": ["1", "2"], "b": ["x"]}
        assert not q.empty()
        assert len(q) == 2

    def test_get_default(self) -> None:
        q = QueryParams({"a": "1"})
        assert q.get("missing", "d") == "d"
        assert q.get("a", "d") == "1"

    def test_blank_value_is_not_the_default(self) -> None:
        q = QueryParams.from_query_string("a=")
        assert q.get("a", "d") == ""

    def test_contains_and_in(self) -> None:
        q = QueryParams({"Key": "v"})
        assert q.contains("Key")
        assert "Key" in q
        assert "key" not in q  # case-sensitive
        assert 3 not in q

    def test_get_all_and_to_dict_are_copies(self) -> None:
        q = QueryParams({"a": ["1", "2"]})
        values = q.get_all("a")
        assert values is not None
        values.append("3")
        d = q.to_dict()
        d["a"].append("4")
        d["new"] = ["x"]
        assert q.get_all("a") == ["1", "2"]
        assert "new" not in q

    def test_extend(self) -> None:
        a = QueryParams({"x": "1", "y": "2"})
        b = QueryParams({"x": ["3", "4"], "z": "5"})
        a.extend(b)
        assert a.to_dict() == {"x": ["1", "3", "4"], "y": ["2"], "z": ["5"]}
        assert b.to_dict() == {"x": ["3", "4"], "z": ["5"]}
        b.set("z", "6")
        assert a.get_all("z") == ["5"]  # no list shared with b

    def test_extend_with_itself(self) -> None:
        a = QueryParams({"x": "1"})
        a.extend(a)
        assert a.get_all("x") == ["1", "1"]

    def test_extend_rejects_other_types(self) -> None:
        with pytest.raises(ArgumentTypeError):
            QueryParams().extend({"a": "1"})  # type: ignore[arg-type]

    def test_constructors(self) -> None:
        assert QueryParams([("a", "1"), ("a", "2")]).to_dict() == {"a": ["1", "2"]}
        assert QueryParams({"a": ["1", "2"], "b": "3"}).to_dict() == {"a": ["1", "2"], "b": ["3"]}
        assert QueryParams({"a": ("1", "2")}).to_dict() == {"a": ["1", "2"]}
        with pytest.raises(ArgumentTypeError):
            QueryParams({"a": 1})  # type: ignore[arg-type]
        with pytest.raises(ArgumentTypeError, match="from_query_string"):
            QueryParams("a=1")  # type: ignore[arg-type]

    def test_set_rejects_non_str(self) -> None:
        q = QueryParams()
        with pytest.raises(ArgumentTypeError):
            q.set("a", 1)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            q.set(1, "a")  # type: ignore[arg-type]

    def test_views(self) -> None:
        q = QueryParams.from_query_string("a=1&b=2&a=3")
        assert q.keys() == ["a", "b"]
        assert q.values() == ["3", "2"]
        assert q.items() == [("a", "3"), ("b", "2")]
        assert q.multi_items() == [("a", "1"), ("a", "3"), ("b", "2")]
        assert list(q) == ["a", "b"]

    def test_iteration_survives_mutation(self) -> None:
        q = QueryParams({"a": "1"})
        for key in q:
            q.set(key + "x", "2")
        assert q.keys() == ["a", "ax"]

    def test_eq_and_repr(self) -> None:
        a = QueryParams.from_query_string("a=1&b=2")
        b = QueryParams.from_query_string("b=2&a=1")
        assert a == b  # key order does not matter
        assert QueryParams.from_query_string("a=1&a=2") != QueryParams.from_query_string("a=2&a=1")
        assert a != {"a": ["1"], "b": ["2"]}
        assert repr(a) == "QueryParams({'a': ['1'], 'b': ['2']})"
        with pytest.raises(TypeError):
            hash(a)


class TestFromQueryString:
    @pytest.mark.parametrize(
        ("qs", "expected"),
        [
            ("", {}),
            ("a=1", {"a": ["1"]}),
            ("a=1&a=2", {"a": ["1", "2"]}),
            ("a", {"a": [""]}),
            ("a=", {"a": [""]}),
            ("a=&b", {"a": [""], "b": [""]}),
            ("=x", {"": ["x"]}),
            ("a=1&&b=2&", {"a": ["1"], "b": ["2"]}),
            ("a=b=c", {"a": ["b=c"]}),
            ("q=x+y", {"q": ["x y"]}),
            ("q=x%20y", {"q": ["x y"]}),
            ("q=1%2B1", {"q": ["1+1"]}),
            ("q=%26%3D", {"q": ["&="]}),
            ("k%20ey+2=v", {"k ey 2": ["v"]}),
            ("q=%C3%A9", {"q": ["é"]}),
            ("q=%c3%a9", {"q": ["é"]}),
            ("q=%E2%82%AC", {"q": ["€"]}),
            ("q=%F0%9F%98%80", {"q": ["😀"]}),
            ("q=é", {"q": ["é"]}),
            # malformed escapes are kept literally, never raise
            ("q=%", {"q": ["%"]}),
            ("q=%zz", {"q": ["%zz"]}),
            ("q=%4", {"q": ["%4"]}),
            ("q=100%", {"q": ["100%"]}),
            ("%=%", {"%": ["%"]}),
            # invalid UTF-8 after decoding becomes U+FFFD
            ("q=%FF", {"q": ["\ufffd"]}),
            ("q=%E2%82", {"q": ["\ufffd"]}),
            ("q=%C3", {"q": ["\ufffd"]}),
            # ';' is not a separator (CVE-2021-23336 behaviour)
            ("a=1;b=2", {"a": ["1;b=2"]}),
            # decoding happens once
            ("q=%2541", {"q": ["%41"]}),
        ],
    )
    def test_cases(self, qs: str, expected: dict[str, list[str]]) -> None:
        q = QueryParams.from_query_string(qs)
        assert q.to_dict() == expected
        assert QueryParams.from_query_string(qs.encode("utf-8")).to_dict() == expected

    def test_bytes_raw_utf8_and_invalid_bytes(self) -> None:
        assert QueryParams.from_query_string("q=café".encode()).get("q") == "café"
        assert QueryParams.from_query_string(b"q=\xff").get("q") == "\ufffd"
        assert QueryParams.from_query_string(bytearray(b"a=1")).get("a") == "1"
        assert QueryParams.from_query_string(memoryview(b"a=1")).get("a") == "1"

    def test_rejects_other_types(self) -> None:
        with pytest.raises(ArgumentTypeError):
            QueryParams.from_query_string(None)  # type: ignore[arg-type]

    @given(st.text())
    def test_never_raises_and_matches_parse_qsl(self, qs: str) -> None:
        expected: dict[str, list[str]] = {}
        for key, value in parse_qsl(qs, keep_blank_values=True):
            expected.setdefault(key, []).append(value)
        assert QueryParams.from_query_string(qs).to_dict() == expected

    @given(st.binary())
    def test_bytes_never_raise(self, qs: bytes) -> None:
        QueryParams.from_query_string(qs)


# --------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------


class TestHeaders:
    def test_case_insensitive(self) -> None:
        h = Headers({"Content-Type": "text/plain"})
        for name in ("content-type", "Content-Type", "CONTENT-TYPE", "cOnTeNt-TyPe"):
            assert h.get(name) == "text/plain"
            assert h[name] == "text/plain"
            assert h.contains(name)
            assert name in h
            assert h.get_all(name) == ["text/plain"]
        assert h.keys() == ["content-type"]
        assert h.get_headers() == {"content-type": ["text/plain"]}

    def test_missing(self) -> None:
        h = Headers()
        assert h.get("x") is None
        assert h.get("x", "d") == "d"
        assert h["x"] is None  # Robyn returns None, not KeyError
        assert h.get_all("x") == []
        assert not h.contains("x")
        assert "x" not in h
        assert 1 not in h
        assert h.is_empty()
        assert len(h) == 0

    def test_set_replaces_append_adds_get_returns_last(self) -> None:
        h = Headers()
        h.append("X-A", "1")
        h.append("x-a", "2")
        assert h.get("X-A") == "2"
        assert h.get_all("x-A") == ["1", "2"]
        h.set("X-a", "3")
        assert h.get_all("x-a") == ["3"]
        h["X-A"] = "4"
        assert h.get_all("x-a") == ["4"]

    def test_populate_from_dict_appends(self) -> None:
        h = Headers({"A": "1"})
        h.populate_from_dict({"a": ["2", "3"], "B": "4", "C": ("5",)})
        assert h.get_headers() == {"a": ["1", "2", "3"], "b": ["4"], "c": ["5"]}
        with pytest.raises(ArgumentTypeError):
            h.populate_from_dict([("a", "b")])  # type: ignore[arg-type]

    def test_from_raw_pairs_latin1(self) -> None:
        h = Headers([(b"Host", b"example.com"), (b"X-Name", b"caf\xe9"), ("Accept", "a"), (b"accept", "b")])
        assert h["host"] == "example.com"
        assert h["x-name"] == "café"
        assert h.get_all("ACCEPT") == ["a", "b"]
        assert h.multi_items() == [
            ("host", "example.com"),
            ("x-name", "café"),
            ("accept", "a"),
            ("accept", "b"),
        ]

    def test_from_headers_is_a_copy(self) -> None:
        a = Headers({"x": "1"})
        b = Headers(a)
        b.append("x", "2")
        assert a.get_all("x") == ["1"]
        assert a == Headers({"X": "1"})

    def test_value_types(self) -> None:
        values: dict[str, int | bytes] = {"content-length": 5, "x-b": b"\xe9"}
        h = Headers(values)
        assert h["content-length"] == "5"
        assert h["x-b"] == "é"
        with pytest.raises(ArgumentTypeError, match="x-c"):
            Headers({"x-c": None})  # type: ignore[arg-type]
        with pytest.raises(ArgumentTypeError):
            Headers({"x-c": True})
        with pytest.raises(ArgumentTypeError):
            Headers({1: "x"})  # type: ignore[arg-type]
        with pytest.raises(ArgumentTypeError):
            Headers({"x-c": [None]})  # type: ignore[arg-type]
        with pytest.raises(ArgumentTypeError):
            Headers([("x", None)])  # type: ignore[list-item]
        with pytest.raises(ArgumentTypeError):
            Headers([(None, "x")])  # type: ignore[list-item]
        with pytest.raises(ArgumentTypeError):
            Headers("a: b")  # type: ignore[arg-type]
        with pytest.raises(ArgumentTypeError):
            h.set("x", 1.5)  # type: ignore[arg-type]

    def test_value_forms(self) -> None:
        h = Headers({"a": bytearray(b"xy"), "b": ("1", "2"), "c": [b"3", 4], "d": "solo"})  # type: ignore[arg-type]
        assert h.get_headers() == {"a": ["xy"], "b": ["1", "2"], "c": ["3", "4"], "d": ["solo"]}
        h = Headers(((b"A", "1"), ("a", b"2")))
        assert h.get_all("a") == ["1", "2"]
        h = Headers(iter([("A", "1")]))
        assert h["a"] == "1"

    def test_mapping_that_is_not_a_dict(self) -> None:
        from types import MappingProxyType

        h = Headers(MappingProxyType({"A": "1"}))
        assert h["a"] == "1"

    def test_remove(self) -> None:
        h = Headers({"A": ["1", "2"], "B": "3"})
        h.remove("a")
        h.remove("missing")
        assert h.keys() == ["b"]

    def test_views(self) -> None:
        h = Headers([("A", "1"), ("B", "2"), ("a", "3")])
        assert list(h) == ["a", "b"]
        assert len(h) == 2
        assert h.values() == ["3", "2"]
        assert h.items() == [("a", "3"), ("b", "2")]
        assert h.multi_items() == [("a", "1"), ("a", "3"), ("b", "2")]
        assert dict(h.items()) == {"a": "3", "b": "2"}

    def test_eq(self) -> None:
        assert Headers() == Headers()
        assert Headers({"A": ["1", "2"]}) == Headers({"a": ["2", "1"]})  # value order ignored, as Robyn
        assert Headers({"A": ["1", "1"]}) != Headers({"a": ["1"]})
        assert Headers({"A": "1"}) != Headers({"B": "1"})
        assert Headers({"A": "1"}) != Headers({"A": "2"})
        assert Headers({"A": "1"}) != {"a": "1"}
        with pytest.raises(TypeError):
            hash(Headers())

    def test_repr(self) -> None:
        assert repr(Headers({"A": "1"})) == "Headers({'a': ['1']})"

    def test_get_headers_is_a_copy(self) -> None:
        h = Headers({"a": "1"})
        h.get_headers()["a"].append("2")
        h.get_all("a").append("3")
        assert h.get_all("a") == ["1"]


# --------------------------------------------------------------------------
# Request
# --------------------------------------------------------------------------


def make_request(body: bytes | bytearray | memoryview | str = b"", **kw: Any) -> Request:
    return Request("POST", Url("http", "localhost:8080", "/items"), body=body, **kw)


class TestRequest:
    def test_attributes(self) -> None:
        headers = Headers({"Host": "localhost:8080"})
        req = Request(
            "GET",
            Url("https", "localhost:8080", "/a%20b"),
            headers,
            b"",
            QueryParams({"q": "1"}),
            {"id": "7"},
            "127.0.0.1",
        )
        assert req.method == "GET"
        assert req.url.scheme == "https"
        assert req.url.host == "localhost:8080"
        assert req.url.path == "/a%20b"
        assert req.path == "/a%20b"
        assert req.headers is headers
        assert req.query_params.get("q") == "1"
        assert req.path_params == {"id": "7"}
        assert req.ip_addr == "127.0.0.1"
        assert req.identity is None
        assert "GET" in repr(req)

    def test_defaults(self) -> None:
        req = Request("GET", Url("http", "", "/"))
        assert req.headers.is_empty()
        assert req.query_params.empty()
        assert req.path_params == {}
        assert req.ip_addr is None
        assert req.body == ""
        assert req.raw_body == b""

    def test_defaults_not_shared(self) -> None:
        a = Request("GET", Url("http", "", "/"))
        b = Request("GET", Url("http", "", "/"))
        a.path_params["x"] = "1"
        a.headers.set("x", "1")
        assert b.path_params == {}
        assert b.headers.is_empty()

    def test_url_is_read_only(self) -> None:
        url = Url("http", "h", "/")
        with pytest.raises(dataclasses.FrozenInstanceError):
            url.path = "/x"  # type: ignore[misc]
        assert url == Url("http", "h", "/")

    def test_body_is_str_when_utf8_as_robyn(self) -> None:
        req = make_request("héllo".encode())
        assert req.body == "héllo"
        assert req.raw_body == "héllo".encode()

    def test_body_is_bytes_when_not_utf8(self) -> None:
        req = make_request(b"\xff\x00")
        assert req.body == b"\xff\x00"
        assert req.raw_body == b"\xff\x00"

    def test_body_setter(self) -> None:
        req = make_request(b"a")
        assert req.body == "a"
        req.body = "é"
        assert req.body == "é"
        assert req.raw_body == "é".encode()
        req.body = b"\xfe"
        assert req.body == b"\xfe"
        with pytest.raises(ArgumentTypeError):
            req.body = 3  # type: ignore[assignment]

    def test_body_input_types(self) -> None:
        assert make_request(bytearray(b"x")).raw_body == b"x"
        assert make_request(memoryview(b"x")).raw_body == b"x"
        assert make_request("x").raw_body == b"x"
        with pytest.raises(ArgumentTypeError):
            make_request(None)  # type: ignore[arg-type]

    def test_constructor_validation(self) -> None:
        with pytest.raises(ArgumentTypeError):
            Request(b"GET", Url("http", "", "/"))  # type: ignore[arg-type]
        with pytest.raises(ArgumentTypeError):
            Request("GET", "/")  # type: ignore[arg-type]
        with pytest.raises(ArgumentTypeError):
            Request("GET", Url("http", "", "/"), query_params={"a": "1"})  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("body", "expected"),
        [
            (b'{"a": 1, "b": [true, null], "c": "\\u00e9"}', {"a": 1, "b": [True, None], "c": "é"}),
            (b"[1, 2]", [1, 2]),
            (b"3.5", 3.5),
            (b'"s"', "s"),
            (b"  {}  \n", {}),
            ('{"é": "ü"}'.encode(), {"é": "ü"}),
            ('{"a": 1}'.encode("utf-16"), {"a": 1}),
        ],
    )
    def test_json(self, body: bytes, expected: Any) -> None:
        assert make_request(body).json() == expected

    @pytest.mark.parametrize(
        ("body", "fragment"),
        [
            (b"", "empty"),
            (b"   ", "empty"),
            (b"{", "not valid JSON"),
            (b"{'a': 1}", "not valid JSON"),
            (b"nope", "not valid JSON"),
            (b'{"a": 1} x', "not valid JSON"),
            (b'{"a": "\xff"}', "not valid JSON"),
            (b"NaN-ish", "not valid JSON"),
        ],
    )
    def test_json_invalid(self, body: bytes, fragment: str) -> None:
        with pytest.raises(InvalidJSON, match=fragment) as info:
            make_request(body).json()
        assert isinstance(info.value, ValueError)
        assert isinstance(info.value, RobynFastError)

    def test_json_error_mentions_position(self) -> None:
        with pytest.raises(InvalidJSON, match=r"line 1, column 7"):
            make_request(b'{"a": }').json()

    def test_query_string_parsed_lazily(self) -> None:
        req = make_request(query_params="a=1&a=2&b=%20")
        assert req._query_params is None
        assert req.query_params.get_all("a") == ["1", "2"]
        assert req.query_params.get("b") == " "
        assert req.query_params is req.query_params

    def test_query_params_setter(self) -> None:
        req = make_request()
        q = QueryParams({"x": "1"})
        req.query_params = q
        assert req.query_params is q
        with pytest.raises(ArgumentTypeError):
            req.query_params = {"x": "1"}  # type: ignore[assignment]

    def test_mutable_fields_like_robyn(self) -> None:
        req = make_request()
        req.path_params = {"a": "b"}
        req.headers = Headers({"x": "y"})
        req.identity = {"user": "u"}
        assert req.path_params == {"a": "b"}
        assert req.headers["X"] == "y"
        assert req.identity == {"user": "u"}


class TestRequestFromTarget:
    def test_origin_form(self) -> None:
        headers = Headers([(b"Host", b"example.com:8080")])
        req = Request.from_target("GET", "/a/b%20c?x=1&y=%C3%A9", headers, b"hi", ip_addr="::1")
        assert req.url == Url("http", "example.com:8080", "/a/b%20c")
        assert req.path == "/a/b%20c"
        assert req.query_params.to_dict() == {"x": ["1"], "y": ["é"]}
        assert req.body == "hi"
        assert req.ip_addr == "::1"
        assert req.headers is headers

    def test_no_query_no_host(self) -> None:
        req = Request.from_target("GET", "/", scheme="https")
        assert req.url == Url("https", "", "/")
        assert req.query_params.empty()

    def test_question_mark_in_query(self) -> None:
        req = Request.from_target("GET", "/p?a=b?c")
        assert req.path == "/p"
        assert req.query_params.get("a") == "b?c"

    def test_fragment_dropped(self) -> None:
        req = Request.from_target("GET", "/p?a=1#frag")
        assert req.path == "/p"
        assert req.query_params.to_dict() == {"a": ["1"]}
        assert Request.from_target("GET", "/p#x?y").path == "/p"

    def test_absolute_form_takes_host_from_target(self) -> None:
        headers = Headers({"host": "ignored"})
        req = Request.from_target("GET", "https://example.org:8443/x?y=1", headers)
        assert req.url == Url("https", "example.org:8443", "/x")
        assert req.query_params.get("y") == "1"
        assert Request.from_target("GET", "http://example.org").path == "/"

    def test_asterisk_form(self) -> None:
        req = Request.from_target("OPTIONS", "*", Headers({"host": "h"}))
        assert req.url == Url("http", "h", "*")


# --------------------------------------------------------------------------
# Response and jsonify
# --------------------------------------------------------------------------


class TestResponse:
    def test_dict_headers_become_headers(self) -> None:
        r = Response(201, {"Content-Type": "text/csv", "X-List": ["1", "2"]}, "a,b")
        assert isinstance(r.headers, Headers)
        assert r.headers["content-type"] == "text/csv"
        assert r.headers.get_all("x-list") == ["1", "2"]
        assert r.status_code == 201
        assert r.description == "a,b"

    def test_headers_instance_used_as_is(self) -> None:
        h = Headers()
        r = Response(200, h, b"x")
        assert r.headers is h

    def test_defaults(self) -> None:
        r = Response(204)
        assert r.headers.is_empty()
        assert r.description == b""
        assert Response(200).headers is not Response(200).headers

    def test_keyword_arguments_as_robyn(self) -> None:
        r = Response(status_code=200, headers={}, description="ok")
        assert (r.status_code, r.description) == (200, "ok")

    @pytest.mark.parametrize("status", [99, 600, 0, -1, True, "200", 200.0, None])
    def test_invalid_status(self, status: Any) -> None:
        with pytest.raises(InvalidStatusCode) as info:
            Response(status, {}, "")
        assert isinstance(info.value, ValueError)
        r = Response(200)
        with pytest.raises(InvalidStatusCode):
            r.status_code = status

    @pytest.mark.parametrize("status", [100, 200, 299, 599])
    def test_valid_status_bounds(self, status: int) -> None:
        assert Response(status).status_code == status

    @pytest.mark.parametrize("description", [{"a": 1}, [1], 3, None, object()])
    def test_invalid_description(self, description: Any) -> None:
        with pytest.raises(UnsupportedResponseType, match="str or bytes") as info:
            Response(200, {}, description)
        assert isinstance(info.value, TypeError)
        r = Response(200)
        with pytest.raises(UnsupportedResponseType):
            r.description = description

    def test_description_bytes_like(self) -> None:
        assert Response(200, {}, bytearray(b"ab")).description == b"ab"  # type: ignore[arg-type]
        r = Response(200)
        r.description = "x"
        assert r.description == "x"

    def test_invalid_headers_type(self) -> None:
        with pytest.raises(ArgumentTypeError, match="Headers instance or a dict"):
            Response(200, [("a", "b")], "")  # type: ignore[arg-type]

    def test_repr(self) -> None:
        assert repr(Response(200, {"a": "b"}, "x")) == "Response(200, Headers({'a': ['b']}), 'x')"


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: list[int]


class TestJsonify:
    def test_compact_like_orjson(self) -> None:
        assert jsonify({"a": [1, 2, {"b": None}], "c": True}) == '{"a":[1,2,{"b":null}],"c":true}'
        assert isinstance(jsonify([]), str)

    def test_non_ascii_kept(self) -> None:
        assert jsonify({"k": "é€😀"}) == '{"k":"é€😀"}'

    def test_roundtrip(self) -> None:
        data = {"x": [1, 2.5, "s", None, False], "nested": {"a": {}}}
        assert json.loads(jsonify(data)) == data

    def test_extra_types_like_orjson(self) -> None:
        u = uuid.UUID("12345678-1234-5678-1234-567812345678")
        data = {
            "dt": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
            "d": datetime.date(2024, 1, 2),
            "t": datetime.time(3, 4),
            "u": u,
            "e": Color.RED,
            "p": Point(1, [2]),
        }
        assert json.loads(jsonify(data)) == {
            "dt": "2024-01-02T03:04:05+00:00",
            "d": "2024-01-02",
            "t": "03:04:00",
            "u": str(u),
            "e": "red",
            "p": {"x": 1, "y": [2]},
        }

    def test_unserialisable(self) -> None:
        with pytest.raises(TypeError, match="set"):
            jsonify({"a": {1, 2}})
        with pytest.raises(TypeError):
            jsonify(Point)  # the class, not an instance

    @pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
    def test_nan_is_refused(self, value: float) -> None:
        with pytest.raises(ValueError):
            jsonify([value])


# --------------------------------------------------------------------------
# render
# --------------------------------------------------------------------------


class TestRender:
    def test_str(self) -> None:
        assert render("héllo") == (200, [("content-type", TEXT_PLAIN)], "héllo".encode())
        assert render("") == (200, [("content-type", TEXT_PLAIN)], b"")

    @pytest.mark.parametrize(
        "text",
        [
            "<!DOCTYPE html><html></html>",
            "<!doctype html>",
            "<!DocType HTML>",
            "<!DOCTYPE html PUBLIC \"-//W3C//DTD HTML 4.01//EN\">",
            "<!DOCTYPE\thtml>",
            "  \n\t<!DOCTYPE html>",
            "<html>",
            "<HTML lang='en'>",
            "<html/>",
            "<html",
            "\ufeff<html>",
            "\r\n<html>\n<body>x</body></html>",
        ],
    )
    def test_html_detected(self, text: str) -> None:
        status, headers, body = render(text)
        assert (status, headers, body) == (200, [("content-type", TEXT_HTML)], text.encode())

    @pytest.mark.parametrize(
        "text",
        [
            "hello <html>",
            "<htmlx>",
            "<!doctypehtml>",
            "<!DOCTYPE xml>",
            "<head></head>",
            "<p>hi</p>",
            "html",
            "x<!DOCTYPE html>",
        ],
    )
    def test_not_html(self, text: str) -> None:
        assert render(text)[1] == [("content-type", TEXT_PLAIN)]

    def test_html_detection_is_cheap_on_huge_prefix(self) -> None:
        assert render(" " * 1_000_000 + "<html>")[1] == [("content-type", TEXT_HTML)]

    def test_dict_and_list(self) -> None:
        assert render({"a": "é"}) == (200, [("content-type", APPLICATION_JSON)], '{"a":"é"}'.encode())
        assert render([1, None]) == (200, [("content-type", APPLICATION_JSON)], b"[1,null]")
        assert render({}) == (200, [("content-type", APPLICATION_JSON)], b"{}")

    @pytest.mark.parametrize("value", [b"\x00\xff", bytearray(b"\x00\xff"), memoryview(b"\x00\xff")])
    def test_bytes_like(self, value: Any) -> None:
        status, headers, body = render(value)
        assert (status, headers, body) == (200, [("content-type", OCTET_STREAM)], b"\x00\xff")
        assert type(body) is bytes

    def test_none_is_empty_200(self) -> None:
        assert render(None) == (200, [("content-type", TEXT_PLAIN)], b"")

    def test_response_with_content_type(self) -> None:
        r = Response(201, {"Content-Type": "text/csv", "X-A": ["1", "2"]}, "a,b")
        assert render(r) == (201, [("content-type", "text/csv"), ("x-a", "1"), ("x-a", "2")], b"a,b")

    @pytest.mark.parametrize(
        ("description", "ctype", "body"),
        [
            ("plain", TEXT_PLAIN, b"plain"),
            ("  <!DOCTYPE html>", TEXT_HTML, b"  <!DOCTYPE html>"),
            ("é", TEXT_PLAIN, "é".encode()),
            (b"\x01", OCTET_STREAM, b"\x01"),
            (b"<html>", OCTET_STREAM, b"<html>"),
        ],
    )
    def test_response_without_content_type(self, description: str | bytes, ctype: str, body: bytes) -> None:
        status, headers, out = render(Response(404, {"X-A": "1"}, description))
        assert status == 404
        assert headers == [("x-a", "1"), ("content-type", ctype)]
        assert out == body

    def test_response_does_not_gain_content_type(self) -> None:
        r = Response(200, {}, "x")
        render(r)
        assert "content-type" not in r.headers

    def test_robyn_tuple_form(self) -> None:
        status, headers, body = render(("created", {"X-Id": "7"}, 201))
        assert status == 201
        assert headers == [("content-type", TEXT_PLAIN), ("x-id", "7")]
        assert body == b"created"

    def test_tuple_headers_override_content_type(self) -> None:
        status, headers, body = render(({"a": 1}, {"Content-Type": "application/vnd.x+json"}, 200))
        assert headers == [("content-type", "application/vnd.x+json")]
        assert body == b'{"a":1}'

    @pytest.mark.parametrize("value", [(), ("a",), ("a", {}), ("a", {}, 200, 1)])
    def test_tuple_wrong_length(self, value: tuple[Any, ...]) -> None:
        with pytest.raises(UnsupportedResponseType, match="description, headers, status_code"):
            render(value)

    def test_tuple_bad_status_and_nested(self) -> None:
        with pytest.raises(InvalidStatusCode):
            render(("a", {}, 700))
        with pytest.raises(UnsupportedResponseType):
            render((("a", {}, 200), {}, 200))

    @pytest.mark.parametrize(
        ("value", "name"),
        [(3, "int"), (2.5, "float"), (True, "bool"), ({1}, "set"), (object(), "object"), (Point(1, []), "Point")],
    )
    def test_other_types_raise(self, value: object, name: str) -> None:
        with pytest.raises(UnsupportedResponseType, match=name) as info:
            render(value)
        assert isinstance(info.value, TypeError)
        assert info.value.value_type is type(value)

    def test_str_subclass(self) -> None:
        class S(str):
            pass

        assert render(S("x")) == (200, [("content-type", TEXT_PLAIN)], b"x")


# --------------------------------------------------------------------------
# serialize_response
# --------------------------------------------------------------------------

DATE_RE = re.compile(rb"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$")


class TestSerializeResponse:
    def test_basic_bytes(self) -> None:
        data = serialize_response(200, [("Content-Type", "text/plain"), ("X-A", "1")], b"hello", keep_alive=True)
        status_line, fields, body = split_head(data)
        assert status_line == b"HTTP/1.1 200 OK"
        assert fields[b"content-type"] == [b"text/plain"]
        assert fields[b"x-a"] == [b"1"]
        assert fields[b"content-length"] == [b"5"]
        assert b"connection" not in fields
        assert DATE_RE.match(fields[b"date"][0])
        assert body == b"hello"
        assert data.startswith(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-a: 1\r\n")
        assert data.endswith(b"content-length: 5\r\n\r\nhello")

    def test_parses_with_real_parser(self) -> None:
        status, headers, body = render({"k": "é"})
        data = serialize_response(status, headers, body, keep_alive=True)
        code, fields, parsed_body = parse_response(data)
        assert code == 200
        assert (b"content-type", b"application/json") in fields
        assert json.loads(parsed_body) == {"k": "é"}

    @pytest.mark.parametrize(
        ("status", "line"),
        [
            (200, b"HTTP/1.1 200 OK"),
            (201, b"HTTP/1.1 201 Created"),
            (301, b"HTTP/1.1 301 Moved Permanently"),
            (404, b"HTTP/1.1 404 Not Found"),
            (418, b"HTTP/1.1 418 I'm a Teapot"),
            (500, b"HTTP/1.1 500 Internal Server Error"),
            (299, b"HTTP/1.1 299 "),  # unregistered: empty reason, SP kept (RFC 9112 §4)
            (599, b"HTTP/1.1 599 "),
        ],
    )
    def test_status_line(self, status: int, line: bytes) -> None:
        data = serialize_response(status, [], b"", keep_alive=True)
        assert data.split(b"\r\n", 1)[0] == line

    @pytest.mark.parametrize("status", [99, 600, -200, True, "200", None])
    def test_invalid_status(self, status: Any) -> None:
        with pytest.raises(InvalidStatusCode):
            serialize_response(status, [], b"", keep_alive=True)

    def test_content_length_always_even_empty(self) -> None:
        _, fields, body = split_head(serialize_response(200, [], b"", keep_alive=True))
        assert fields[b"content-length"] == [b"0"]
        assert body == b""

    def test_connection_close_when_not_keep_alive(self) -> None:
        _, fields, _ = split_head(serialize_response(200, [], b"x", keep_alive=False))
        assert fields[b"connection"] == [b"close"]

    def test_connection_merged_not_duplicated(self) -> None:
        _, fields, _ = split_head(serialize_response(426, [("Connection", "Upgrade")], b"", keep_alive=False))
        assert fields[b"connection"] == [b"Upgrade, close"]
        _, fields, _ = split_head(serialize_response(200, [("Connection", "Close")], b"", keep_alive=False))
        assert fields[b"connection"] == [b"Close"]
        _, fields, _ = split_head(serialize_response(101, [("connection", "upgrade")], b"", keep_alive=True))
        assert fields[b"connection"] == [b"upgrade"]

    def test_head_keeps_length_drops_body(self) -> None:
        data = serialize_response(200, [("content-type", "text/plain")], b"hello", keep_alive=True, head=True)
        _, fields, body = split_head(data)
        assert fields[b"content-length"] == [b"5"]
        assert body == b""
        assert data.endswith(b"\r\n\r\n")

    @pytest.mark.parametrize("status", [100, 101, 103, 204, 304])
    @pytest.mark.parametrize("head", [False, True])
    def test_no_body_no_length(self, status: int, head: bool) -> None:
        data = serialize_response(status, [("Content-Length", "9")], b"ignored", keep_alive=True, head=head)
        _, fields, body = split_head(data)
        assert b"content-length" not in fields
        assert body == b""
        assert data.endswith(b"\r\n\r\n")

    def test_204_parses(self) -> None:
        code, _, body = parse_response(serialize_response(204, [], b"x", keep_alive=True))
        assert (code, body) == (204, b"")

    def test_framing_headers_from_caller_are_dropped(self) -> None:
        data = serialize_response(
            200,
            [("Content-Length", "999"), ("Transfer-Encoding", "chunked"), ("X-A", "1")],
            b"abc",
            keep_alive=True,
        )
        _, fields, body = split_head(data)
        assert fields[b"content-length"] == [b"3"]
        assert b"transfer-encoding" not in fields
        assert body == b"abc"

    def test_date_given_is_kept(self) -> None:
        _, fields, _ = split_head(
            serialize_response(200, [("Date", "Mon, 01 Jan 2024 00:00:00 GMT")], b"", keep_alive=True)
        )
        assert fields[b"date"] == [b"Mon, 01 Jan 2024 00:00:00 GMT"]

    def test_repeated_fields_written_once_each(self) -> None:
        _, fields, _ = split_head(
            serialize_response(200, [("Set-Cookie", "a=1"), ("set-cookie", "b=2")], b"", keep_alive=True)
        )
        assert fields[b"set-cookie"] == [b"a=1", b"b=2"]

    def test_headers_and_mapping_accepted(self) -> None:
        h = Headers({"X-Ab": ["1", "2"]})
        _, fields, _ = split_head(serialize_response(200, h, b"", keep_alive=True))
        assert fields[b"x-ab"] == [b"1", b"2"]
        _, fields, _ = split_head(serialize_response(200, {"X-Ab": "3"}, b"", keep_alive=True))
        assert fields[b"x-ab"] == [b"3"]

    def test_latin1_value_and_htab(self) -> None:
        _, fields, _ = split_head(serialize_response(200, [("X-A", "caf\xe9\tx")], b"", keep_alive=True))
        assert fields[b"x-a"] == [b"caf\xe9\tx"]

    def test_cached_fields_stay_correct(self) -> None:
        # the same fields twice: the second call is served from the line cache
        for _ in range(2):
            _, fields, _ = split_head(
                serialize_response(
                    426,
                    [("Connection", "Upgrade"), ("Content-Length", "1"), ("X-A", "1")],
                    b"ab",
                    keep_alive=False,
                )
            )
            assert fields[b"connection"] == [b"Upgrade, close"]
            assert fields[b"content-length"] == [b"2"]
            assert fields[b"x-a"] == [b"1"]
        for _ in range(2):
            _, fields, _ = split_head(
                serialize_response(200, [("Date", "Mon, 01 Jan 2024 00:00:00 GMT")], b"", keep_alive=True)
            )
            assert fields[b"date"] == [b"Mon, 01 Jan 2024 00:00:00 GMT"]
        with pytest.raises(InvalidHeader):
            serialize_response(200, [("X-A", "1"), ("X-A", "1\r\n")], b"", keep_alive=True)

    def test_field_cache_is_bounded(self) -> None:
        from robyn_fast.http import types as http_types

        for i in range(http_types._FIELD_CACHE_MAX * 3):
            serialize_response(200, [("X-N", str(i))], b"", keep_alive=True)
        assert len(http_types._FIELD_CACHE) <= http_types._FIELD_CACHE_MAX

    def test_malformed_fields(self) -> None:
        with pytest.raises(InvalidHeader):
            serialize_response(200, [("X-A", ["1"])], b"", keep_alive=True)  # type: ignore[list-item]
        data = serialize_response(200, [["X-A", "1"]], b"", keep_alive=True)  # type: ignore[list-item]
        assert b"x-a: 1\r\n" in data
        with pytest.raises(ValueError):
            serialize_response(200, [("X-A", "1", "2")], b"", keep_alive=True)  # type: ignore[list-item]

    def test_body_types(self) -> None:
        assert serialize_response(200, [], bytearray(b"ab"), keep_alive=True).endswith(b"\r\n\r\nab")  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        "value",
        [
            "a\r\nSet-Cookie: evil=1",
            "a\nx",
            "a\rx",
            "a\x00x",
            "\r\n",
            "x\x01",
            "x\x1f",
            "x\x7f",
            "x\x0b",
        ],
    )
    def test_value_injection_refused(self, value: str) -> None:
        with pytest.raises(InvalidHeader) as info:
            serialize_response(200, [("X-A", value)], b"", keep_alive=True)
        assert isinstance(info.value, ValueError)
        assert isinstance(info.value, RobynFastError)

    @pytest.mark.parametrize(
        "name",
        ["", "X A", "X:A", "X-A\r\nEvil", "X\x00", "Ü", "a(b)", "a/b", "a\t", "x@y", 'a"b', "a,b"],
    )
    def test_name_refused(self, name: str) -> None:
        with pytest.raises(InvalidHeader):
            serialize_response(200, [(name, "v")], b"", keep_alive=True)

    def test_connection_value_injection_refused(self) -> None:
        with pytest.raises(InvalidHeader):
            serialize_response(200, [("Connection", "close\r\nX: y")], b"", keep_alive=False)

    def test_non_latin1_value_refused(self) -> None:
        with pytest.raises(InvalidHeader, match="latin-1"):
            serialize_response(200, [("X-A", "€")], b"", keep_alive=True)

    def test_non_str_refused(self) -> None:
        with pytest.raises(InvalidHeader):
            serialize_response(200, [("X-A", 3)], b"", keep_alive=True)  # type: ignore[list-item]
        with pytest.raises(InvalidHeader):
            serialize_response(200, [(b"X-A", "3")], b"", keep_alive=True)  # type: ignore[list-item]

    @pytest.mark.parametrize("name", ["!#$%&'*+-.^_`|~", "X-Custom-1", "a"])
    def test_token_names_accepted(self, name: str) -> None:
        assert f"{name.lower()}: v\r\n".encode() in serialize_response(200, [(name, "v")], b"", keep_alive=True)

    def test_render_response_roundtrip(self) -> None:
        r = Response(404, {"Content-Type": "text/html; charset=utf-8"}, "<p>nope</p>")
        data = serialize_response(*render(r), keep_alive=True)
        code, fields, body = parse_response(data)
        assert code == 404
        assert (b"content-type", b"text/html; charset=utf-8") in fields
        assert body == b"<p>nope</p>"

    def test_injection_through_response_object_refused(self) -> None:
        r = Response(200, {"Location": "/x\r\nSet-Cookie: a=b"}, "")
        with pytest.raises(InvalidHeader):
            serialize_response(*render(r), keep_alive=True)

    def test_reason_phrase(self) -> None:
        assert reason_phrase(404) == "Not Found"
        assert reason_phrase(299) == ""


class TestErrorResponse:
    def test_default_body_and_close(self) -> None:
        data = error_response(404)
        status_line, fields, body = split_head(data)
        assert status_line == b"HTTP/1.1 404 Not Found"
        assert fields[b"content-type"] == [TEXT_PLAIN.encode()]
        assert fields[b"connection"] == [b"close"]
        assert fields[b"content-length"] == [b"9"]
        assert body == b"Not Found"

    def test_message_and_keep_alive(self) -> None:
        _, fields, body = split_head(error_response(400, "bad header: é", keep_alive=True))
        assert b"connection" not in fields
        assert body == "bad header: é".encode()
        assert fields[b"content-length"] == [str(len(body)).encode()]

    def test_405_with_allow_from_exception(self) -> None:
        exc = MethodNotAllowed(["POST", "GET", "HEAD"])
        data = error_response(exc.status_code, exc.message, exc.headers)
        status_line, fields, body = split_head(data)
        assert status_line == b"HTTP/1.1 405 Method Not Allowed"
        assert fields[b"allow"] == [b"GET, HEAD, POST"]
        assert body == b"Method Not Allowed"

    def test_head(self) -> None:
        _, fields, body = split_head(error_response(404, head=True))
        assert fields[b"content-length"] == [b"9"]
        assert body == b""

    def test_426_upgrade(self) -> None:
        data = error_response(
            426,
            extra_headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Version", "13")],
        )
        _, fields, _ = split_head(data)
        assert fields[b"upgrade"] == [b"websocket"]
        assert fields[b"connection"] == [b"Upgrade, close"]
        assert fields[b"sec-websocket-version"] == [b"13"]

    @pytest.mark.parametrize("status", [400, 404, 405, 413, 414, 426, 431, 500, 503])
    def test_parses(self, status: int) -> None:
        code, fields, body = parse_response(error_response(status))
        assert code == status
        assert body == reason_phrase(status).encode()
        assert (b"connection", b"close") in fields

    def test_invalid(self) -> None:
        with pytest.raises(InvalidStatusCode):
            error_response(1000)
        with pytest.raises(InvalidHeader):
            error_response(400, extra_headers=[("X", "a\nb")])


class TestHTTPErrorExceptions:
    def test_http_error(self) -> None:
        exc = HTTPError(413)
        assert exc.status_code == 413
        assert exc.message == "Content Too Large"  # RFC 9110's name, on every Python
        assert exc.headers == []
        assert str(exc) == "413 Content Too Large"
        assert HTTPError(414).message == "URI Too Long" and HTTPError(422).message == "Unprocessable Content"
        assert isinstance(exc, RobynFastError)
        assert HTTPError().status_code == 500
        assert HTTPError(299).message == "HTTP 299"
        with pytest.raises(InvalidStatusCode):
            HTTPError(99)

    def test_method_not_allowed(self) -> None:
        exc = MethodNotAllowed(["POST", "GET", "POST"])
        assert exc.allow == ["GET", "POST"]
        assert exc.headers == [("allow", "GET, POST")]
        assert exc.status_code == 405
        assert isinstance(exc, LookupError)
