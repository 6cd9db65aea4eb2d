"""Tests for robyn_fast.http.router: patterns, matching, precedence, 404/405."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from robyn_fast.http import router as router_module
from robyn_fast.exceptions import (
    ArgumentTypeError,
    DuplicateRoute,
    HTTPError,
    InvalidRoute,
    MethodNotAllowed,
    NotFound,
    RobynFastError,
)
from robyn_fast.http.router import PathPattern, Router, Segment, compile_path

P = Segment.PARAM
C = Segment.CATCH_ALL


# --------------------------------------------------------------------------
# compile_path
# --------------------------------------------------------------------------


class TestCompilePath:
    @pytest.mark.parametrize(
        ("path", "key", "names"),
        [
            ("/", (), ()),
            ("/a", ("a",), ()),
            ("/a/", ("a",), ()),
            ("/a/b/c", ("a", "b", "c"), ()),
            ("/room/<room_id>", ("room", P), ("room_id",)),
            ("/room/:room_id", ("room", P), ("room_id",)),
            ("/room/:room_id/", ("room", P), ("room_id",)),
            ("/<a>/:b/c/<_d1>", (P, P, "c", P), ("a", "b", "_d1")),
            ("/static/*path", ("static", C), ("path",)),
            ("/*all", (C,), ("all",)),
            ("/café/ü", ("café", "ü"), ()),
            ("/a:b/c.json", ("a:b", "c.json"), ()),
            ("/v1.0/~x/@y", ("v1.0", "~x", "@y"), ()),
        ],
    )
    def test_valid(self, path: str, key: tuple[object, ...], names: tuple[str, ...]) -> None:
        pattern = compile_path(path)
        assert pattern == PathPattern(key, names)  # type: ignore[arg-type]
        assert pattern.key == key
        assert pattern.param_names == names
        assert pattern.is_literal == (not names)
        # it is the (key, param_names) tuple the brief asks for
        k, n = pattern
        assert (k, n) == (key, names)

    def test_both_syntaxes_same_key(self) -> None:
        assert compile_path("/a/<x>/b").key == compile_path("/a/:y/b").key

    def test_path_property(self) -> None:
        assert compile_path("/a/:x/<y>/*z").path == "/a/<x>/<y>/*z"
        assert compile_path("/").path == "/"
        assert compile_path("/a/").path == "/a"

    @pytest.mark.parametrize(
        "path",
        [
            "",
            "a",
            "a/b",
            "//",
            "/a//b",
            "//a",
            "/a?b",
            "/a#b",
            "/<>",
            "/<1x>",
            "/<a-b>",
            "/<a",
            "/a>",
            "/x<a>",
            "/<a>x",
            "/a<b",
            "/:",
            "/:1",
            "/:a-b",
            "/*",
            "/*a/b",
            "/<a>/<a>",
            "/<a>/:a",
            "/:a/*a",
            "/< a>",
        ],
    )
    def test_invalid(self, path: str) -> None:
        with pytest.raises(InvalidRoute) as info:
            compile_path(path)
        assert isinstance(info.value, ValueError)
        assert isinstance(info.value, RobynFastError)

    def test_not_str(self) -> None:
        with pytest.raises(ArgumentTypeError):
            compile_path(b"/a")  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("pattern", "path", "expected"),
        [
            ("/room/<room_id>", "/room/42", {"room_id": "42"}),
            ("/room/<room_id>", "/room/42/", {"room_id": "42"}),
            ("/room/<room_id>", "/room/a%20b", {"room_id": "a b"}),
            ("/room/<room_id>", "/room/a%2Fb", {"room_id": "a/b"}),
            ("/room/<room_id>", "/room/", None),
            ("/room/<room_id>", "/room", None),
            ("/room/<room_id>", "/room/1/2", None),
            ("/room/<room_id>", "/hall/1", None),
            ("/room/<room_id>", "room/1", None),
            ("/chat", "/chat", {}),
            ("/chat", "/chat/", {}),
            ("/chat", "/chats", None),
            ("/", "/", {}),
            ("/", "/x", None),
            ("/f/*rest", "/f/a/b", {"rest": "a/b"}),
            ("/f/*rest", "/f", None),
            ("/café", "/caf%C3%A9", {}),
        ],
    )
    def test_pattern_match(self, pattern: str, path: str, expected: dict[str, str] | None) -> None:
        assert compile_path(pattern).match(path) == expected


# --------------------------------------------------------------------------
# Router
# --------------------------------------------------------------------------


def make(*routes: tuple[str, str]) -> Router[str]:
    r: Router[str] = Router()
    for method, path in routes:
        r.add(method, path, f"{method} {path}")
    return r


class TestMatching:
    def test_literal(self) -> None:
        r = make(("GET", "/"), ("GET", "/a"), ("GET", "/a/b"))
        assert r.match("GET", "/") == ("GET /", {})
        assert r.match("GET", "/a") == ("GET /a", {})
        assert r.match("GET", "/a/b") == ("GET /a/b", {})

    @pytest.mark.parametrize("pattern", ["/users/<id>", "/users/:id"])
    def test_param_both_syntaxes(self, pattern: str) -> None:
        r = make(("GET", pattern))
        assert r.match("GET", "/users/42") == (f"GET {pattern}", {"id": "42"})

    def test_several_params(self) -> None:
        r = make(("GET", "/u/<uid>/posts/:pid"))
        assert r.match("GET", "/u/7/posts/9") == ("GET /u/<uid>/posts/:pid", {"uid": "7", "pid": "9"})

    def test_params_dict_is_fresh(self) -> None:
        r = make(("GET", "/a"), ("GET", "/b/<x>"))
        first = r.match("GET", "/a")[1]
        first["mutated"] = "1"
        assert r.match("GET", "/a")[1] == {}
        second = r.match("GET", "/b/1")[1]
        second["x"] = "changed"
        assert r.match("GET", "/b/1")[1] == {"x": "1"}

    @pytest.mark.parametrize(
        ("path", "value"),
        [
            ("/f/a%20b", "a b"),
            ("/f/a+b", "a+b"),  # '+' is not a space in a path
            ("/f/a%2Bb", "a+b"),
            ("/f/a%2Fb", "a/b"),  # %2F stays inside its segment
            ("/f/a%2fb", "a/b"),
            ("/f/%C3%A9t%C3%A9", "été"),
            ("/f/été", "été"),  # already-decoded text
            ("/f/%E2%82%AC", "€"),
            ("/f/%F0%9F%98%80", "😀"),
            ("/f/%zz", "%zz"),  # malformed escape kept
            ("/f/100%", "100%"),
            ("/f/%", "%"),
            ("/f/%FF", "\ufffd"),  # invalid UTF-8
            ("/f/%2541", "%41"),  # decoded once
            ("/f/%2E%2E", ".."),  # decoded but not resolved: the handler must check
            ("/f/a%3Fb", "a?b"),
            ("/f/%20", " "),
        ],
    )
    def test_param_decoding(self, path: str, value: str) -> None:
        r = make(("GET", "/f/<name>"))
        assert r.match("GET", path) == ("GET /f/<name>", {"name": value})

    def test_unicode_literal_routes(self) -> None:
        r = make(("GET", "/café/menü"), ("GET", "/日本/<x>"))
        assert r.match("GET", "/caf%C3%A9/men%C3%BC")[0] == "GET /café/menü"
        assert r.match("GET", "/café/menü")[0] == "GET /café/menü"
        assert r.match("GET", "/caf%c3%a9/men%c3%bc/")[0] == "GET /café/menü"
        assert r.match("GET", "/%E6%97%A5%E6%9C%AC/%E8%AA%9E") == ("GET /日本/<x>", {"x": "語"})
        with pytest.raises(NotFound):
            r.match("GET", "/cafe/menu")

    def test_encoded_slash_does_not_reach_literal_route(self) -> None:
        r = make(("GET", "/a/b"))
        with pytest.raises(NotFound):
            r.match("GET", "/a%2Fb")

    def test_encoded_literal_segment(self) -> None:
        r = make(("GET", "/a b"), ("GET", "/100%"))
        assert r.match("GET", "/a%20b")[0] == "GET /a b"
        assert r.match("GET", "/100%25")[0] == "GET /100%"

    def test_case_sensitive_paths(self) -> None:
        r = make(("GET", "/About"))
        with pytest.raises(NotFound):
            r.match("GET", "/about")

    @pytest.mark.parametrize(
        ("registered", "requested"),
        [("/a", "/a/"), ("/a/", "/a"), ("/a/", "/a/"), ("/a/<x>", "/a/1/"), ("/a/<x>/", "/a/1")],
    )
    def test_trailing_slash_insensitive(self, registered: str, requested: str) -> None:
        r = make(("GET", registered))
        assert r.match("GET", requested)[0] == f"GET {registered}"

    def test_only_one_trailing_slash_ignored(self) -> None:
        r = make(("GET", "/a"), ("GET", "/b/<x>"))
        with pytest.raises(NotFound):
            r.match("GET", "/a//")
        with pytest.raises(NotFound):
            r.match("GET", "/b/1//")

    def test_root(self) -> None:
        r = make(("GET", "/"))
        assert r.match("GET", "/")[0] == "GET /"
        # one trailing slash is ignored, so "//" is the root too
        assert r.match("GET", "//")[0] == "GET /"
        with pytest.raises(NotFound):
            r.match("GET", "///")
        with pytest.raises(NotFound):
            r.match("GET", "")

    def test_param_needs_a_non_empty_segment(self) -> None:
        r = make(("GET", "/a/<x>"), ("GET", "/b/<x>/c"))
        for path in ("/a", "/a/", "/b//c", "/a//"):
            with pytest.raises(NotFound):
                r.match("GET", path)

    def test_param_takes_one_segment(self) -> None:
        r = make(("GET", "/a/<x>"))
        with pytest.raises(NotFound):
            r.match("GET", "/a/1/2")

    def test_catch_all(self) -> None:
        r = make(("GET", "/static/*path"), ("GET", "/static/index.html"), ("GET", "/static/<file>/raw"))
        assert r.match("GET", "/static/css/site.css") == ("GET /static/*path", {"path": "css/site.css"})
        assert r.match("GET", "/static/x") == ("GET /static/*path", {"path": "x"})
        assert r.match("GET", "/static/a%20b/c%2Fd") == ("GET /static/*path", {"path": "a b/c/d"})
        assert r.match("GET", "/static/index.html") == ("GET /static/index.html", {})
        assert r.match("GET", "/static/f/raw") == ("GET /static/<file>/raw", {"file": "f"})
        # back-tracks from the parameter branch to the catch-all
        assert r.match("GET", "/static/f/other") == ("GET /static/*path", {"path": "f/other"})
        assert r.match("GET", "/static/a//b") == ("GET /static/*path", {"path": "a//b"})
        for path in ("/static", "/static/", "/static//"):
            with pytest.raises(NotFound):
                r.match("GET", path)
        assert compile_path("/static/*path").match("/static//") is None

    def test_catch_all_with_param_before(self) -> None:
        r = make(("GET", "/u/<uid>/files/*rest"))
        assert r.match("GET", "/u/1/files/a/b") == ("GET /u/<uid>/files/*rest", {"uid": "1", "rest": "a/b"})

    def test_root_catch_all(self) -> None:
        r = make(("GET", "/*any"), ("GET", "/"))
        assert r.match("GET", "/") == ("GET /", {})
        assert r.match("GET", "/x/y") == ("GET /*any", {"any": "x/y"})

    @pytest.mark.parametrize("path", ["*", "a", "http://h/a", "", "?x"])
    def test_path_without_slash_never_matches(self, path: str) -> None:
        r = make(("GET", "/"), ("GET", "/*any"), ("GET", "/a"))
        with pytest.raises(NotFound):
            r.match("GET", path)

    @given(st.text(min_size=1), st.text(min_size=1))
    def test_any_value_round_trips(self, a: str, b: str) -> None:
        r = make(("GET", "/x/<a>/y/:b"))
        path = f"/x/{quote(a, safe='')}/y/{quote(b, safe='')}"
        assert r.match("GET", path) == ("GET /x/<a>/y/:b", {"a": a, "b": b})


class TestPrecedence:
    def test_literal_beats_param_regardless_of_order(self) -> None:
        for routes in (
            [("GET", "/users/me"), ("GET", "/users/<id>")],
            [("GET", "/users/<id>"), ("GET", "/users/me")],
        ):
            r = make(*routes)
            assert r.match("GET", "/users/me") == ("GET /users/me", {})
            assert r.match("GET", "/users/42") == ("GET /users/<id>", {"id": "42"})

    def test_literal_segment_beats_param_segment(self) -> None:
        r = make(("GET", "/a/<x>/c"), ("GET", "/a/b/<y>"))
        assert r.match("GET", "/a/b/c") == ("GET /a/b/<y>", {"y": "c"})
        assert r.match("GET", "/a/z/c") == ("GET /a/<x>/c", {"x": "z"})

    def test_backtracks_when_literal_branch_fails(self) -> None:
        r = make(("GET", "/a/b/c"), ("GET", "/a/<x>/d"))
        assert r.match("GET", "/a/b/d") == ("GET /a/<x>/d", {"x": "b"})
        assert r.match("GET", "/a/b/c") == ("GET /a/b/c", {})

    def test_deep_backtracking_keeps_values_consistent(self) -> None:
        r = make(("GET", "/<a>/b/<c>/d"), ("GET", "/x/<p>/<q>/e"))
        assert r.match("GET", "/x/b/y/d") == ("GET /<a>/b/<c>/d", {"a": "x", "c": "y"})
        assert r.match("GET", "/x/b/y/e") == ("GET /x/<p>/<q>/e", {"p": "b", "q": "y"})

    def test_param_beats_catch_all(self) -> None:
        r = make(("GET", "/f/*rest"), ("GET", "/f/<name>"))
        assert r.match("GET", "/f/x") == ("GET /f/<name>", {"name": "x"})
        assert r.match("GET", "/f/x/y") == ("GET /f/*rest", {"rest": "x/y"})

    def test_tables_are_per_method_as_robyn(self) -> None:
        r = make(("GET", "/users/me"), ("POST", "/users/<id>"))
        assert r.match("POST", "/users/me") == ("POST /users/<id>", {"id": "me"})
        assert r.match("GET", "/users/me") == ("GET /users/me", {})


class TestRegistration:
    @pytest.mark.parametrize(
        ("first", "second"),
        [
            ("/a", "/a"),
            ("/a", "/a/"),
            ("/", "/"),
            ("/a/<x>", "/a/<x>"),
            ("/a/<x>", "/a/:y"),
            ("/a/:x/", "/a/<y>"),
            ("/s/*p", "/s/*q"),
        ],
    )
    def test_duplicate(self, first: str, second: str) -> None:
        r = make(("GET", first))
        with pytest.raises(DuplicateRoute) as info:
            r.add("GET", second, "again")
        assert isinstance(info.value, ValueError)
        assert isinstance(info.value, InvalidRoute)
        assert r.match("GET", second.replace("<y>", "1").replace(":y", "1").replace("<x>", "1").replace("*q", "z"))[
            0
        ] == f"GET {first}"

    def test_same_path_other_method_is_not_duplicate(self) -> None:
        r = make(("GET", "/a"), ("POST", "/a"), ("GET", "/b/<x>"), ("PUT", "/b/<x>"))
        assert r.match("POST", "/a")[0] == "POST /a"
        assert r.match("PUT", "/b/1")[0] == "PUT /b/<x>"

    def test_different_shapes_are_not_duplicates(self) -> None:
        make(("GET", "/a/<x>"), ("GET", "/a/b"), ("GET", "/a/*r"), ("GET", "/a/<x>/c"), ("GET", "/a"))

    def test_method_upper_cased_at_registration(self) -> None:
        r: Router[str] = Router()
        r.add("get", "/a", "h")
        assert r.match("GET", "/a") == ("h", {})
        # request methods are case-sensitive (RFC 9110 §9.1)
        with pytest.raises(MethodNotAllowed):
            r.match("get", "/a")

    @pytest.mark.parametrize("method", ["", "GE T", "GET\r\n", "G(E)T", "GÉT"])
    def test_invalid_method(self, method: str) -> None:
        r: Router[str] = Router()
        with pytest.raises(InvalidRoute):
            r.add(method, "/a", "h")

    def test_none_handler_refused(self) -> None:
        r: Router[object] = Router()
        with pytest.raises(ArgumentTypeError):
            r.add("GET", "/a", None)

    def test_falsy_handlers_work(self) -> None:
        r: Router[int] = Router()
        r.add("GET", "/a", 0)
        r.add("GET", "/b/<x>", 0)
        assert r.match("GET", "/a") == (0, {})
        assert r.match("GET", "/b/1") == (0, {"x": "1"})

    def test_method_type(self) -> None:
        r: Router[str] = Router()
        with pytest.raises(ArgumentTypeError):
            r.add(None, "/a", "h")  # type: ignore[arg-type]

    def test_invalid_path_rejected_and_nothing_added(self) -> None:
        r: Router[str] = Router()
        with pytest.raises(InvalidRoute):
            r.add("GET", "a", "h")
        assert len(r) == 0
        assert r.routes() == []

    def test_custom_method(self) -> None:
        r = make(("PURGE", "/cache"))
        assert r.match("PURGE", "/cache")[0] == "PURGE /cache"

    def test_routes_listing_and_return_value(self) -> None:
        r: Router[int] = Router()
        pattern = r.add("GET", "/a/:x/", 1)
        r.add("post", "/b", 2)
        assert pattern == compile_path("/a/<x>")
        assert r.routes() == [("GET", "/a/:x/", 1), ("POST", "/b", 2)]
        assert len(r) == 2
        assert "2 routes" in repr(r)

    def test_handler_can_be_any_object(self) -> None:
        r: Router[object] = Router()
        sentinel = object()
        r.add("GET", "/ws/<room>", sentinel)
        assert r.match("GET", "/ws/lobby") == (sentinel, {"room": "lobby"})


class TestErrors:
    def test_not_found(self) -> None:
        r = make(("GET", "/a"))
        with pytest.raises(NotFound) as info:
            r.match("GET", "/b")
        exc = info.value
        assert exc.status_code == 404
        assert exc.message == "Not Found"
        assert isinstance(exc, HTTPError)
        assert isinstance(exc, LookupError)
        assert isinstance(exc, RobynFastError)

    def test_empty_router(self) -> None:
        with pytest.raises(NotFound):
            Router().match("GET", "/")

    def test_method_not_allowed_sorted_allow(self) -> None:
        r = make(("PUT", "/a"), ("DELETE", "/a"), ("POST", "/a/<x>"), ("GET", "/a/b"))
        with pytest.raises(MethodNotAllowed) as info:
            r.match("PATCH", "/a")
        exc = info.value
        assert exc.status_code == 405
        assert exc.allow == ["DELETE", "PUT"]
        assert exc.headers == [("allow", "DELETE, PUT")]
        assert isinstance(exc, HTTPError)

    def test_allow_collects_param_routes_of_other_methods(self) -> None:
        r = make(("GET", "/a/b"), ("POST", "/a/<x>"), ("DELETE", "/*all"))
        with pytest.raises(MethodNotAllowed) as info:
            r.match("PUT", "/a/b")
        assert info.value.allow == ["DELETE", "GET", "HEAD", "POST"]

    def test_head_allowed_wherever_get_is(self) -> None:
        r = make(("GET", "/a"), ("GET", "/p/<x>"))
        assert r.match("HEAD", "/a") == ("GET /a", {})
        assert r.match("HEAD", "/p/1") == ("GET /p/<x>", {"x": "1"})
        with pytest.raises(MethodNotAllowed) as info:
            r.match("POST", "/a")
        assert info.value.allow == ["GET", "HEAD"]

    def test_explicit_head_route_wins(self) -> None:
        r = make(("GET", "/a"), ("HEAD", "/a"))
        assert r.match("HEAD", "/a") == ("HEAD /a", {})

    def test_head_falls_back_to_get_when_head_route_elsewhere(self) -> None:
        r = make(("GET", "/a"), ("HEAD", "/b"))
        assert r.match("HEAD", "/a") == ("GET /a", {})
        assert r.match("HEAD", "/b") == ("HEAD /b", {})

    def test_head_without_get_is_405(self) -> None:
        r = make(("POST", "/a"))
        with pytest.raises(MethodNotAllowed) as info:
            r.match("HEAD", "/a")
        assert info.value.allow == ["POST"]

    def test_options_only_where_registered(self) -> None:
        r = make(("GET", "/a"), ("OPTIONS", "/b"), ("GET", "/b"))
        with pytest.raises(MethodNotAllowed) as info:
            r.match("OPTIONS", "/a")
        assert info.value.allow == ["GET", "HEAD"]
        assert r.match("OPTIONS", "/b") == ("OPTIONS /b", {})
        with pytest.raises(MethodNotAllowed) as info:
            r.match("POST", "/b")
        assert info.value.allow == ["GET", "HEAD", "OPTIONS"]

    def test_allowed_methods(self) -> None:
        r = make(("GET", "/a"), ("POST", "/a/"), ("PUT", "/<x>"))
        assert r.allowed_methods("/a") == ["GET", "HEAD", "POST", "PUT"]
        assert r.allowed_methods("/zzz/y") == []

    def test_unknown_method_on_known_path_is_405(self) -> None:
        r = make(("GET", "/a"))
        with pytest.raises(MethodNotAllowed):
            r.match("BREW", "/a")


class TestCost:
    def test_literal_lookup_does_not_walk_the_trie(self, monkeypatch: pytest.MonkeyPatch) -> None:
        r = make(("GET", "/a/b"), ("GET", "/a/<x>"))
        calls = []
        original = router_module._Node.find

        def counting(self: object, *args: object) -> object:
            calls.append(1)
            return original(self, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(router_module._Node, "find", counting)
        assert r.match("GET", "/a/b") == ("GET /a/b", {})
        assert calls == []

    def test_nodes_visited_bounded_by_segments(self, monkeypatch: pytest.MonkeyPatch) -> None:
        r: Router[int] = Router()
        for i in range(2000):
            r.add("GET", f"/r{i}/<x>/s{i}/<y>", i)
            r.add("GET", f"/r{i}/lit/s{i}", -i)
        calls = []
        original = router_module._Node.find

        def counting(self: object, *args: object) -> object:
            calls.append(1)
            return original(self, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(router_module._Node, "find", counting)
        assert r.match("GET", "/r1999/v/s1999/w") == (1999, {"x": "v", "y": "w"})
        assert len(calls) <= 5  # root + one node per segment
        calls.clear()
        with pytest.raises(NotFound):
            r.match("GET", "/r5/v/s6/w")
        assert len(calls) <= 10  # plus the 405 probe of the other tables

    def test_long_request_path_does_not_recurse_deeply(self) -> None:
        r = make(("GET", "/<a>/<b>"))
        with pytest.raises(NotFound):
            r.match("GET", "/x" * 50_000)
        with pytest.raises(NotFound):
            r.match("GET", "/%41" * 50_000)
