"""The OpenAPI document of an app's routes (sub-routers included) and the
/docs page, served by a real server on both loops."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, TypedDict

import pytest

from robyn_fast import Robyn
from robyn_fast.http.params import Body
from robyn_fast.http.types import QueryParams
from robyn_fast.openapi import json_schema, local_swagger_ui
from robyn_fast.subrouter import SubRouter

from .server_helpers import LOOPS, running
from .test_middlewares import fetch


class Inner(Body):
    flag: bool
    note: Optional[str]


class Item(Body):
    name: str
    price: float
    inner: Inner


class Page(QueryParams):
    limit: int


class Created(TypedDict):
    ok: bool
    count: int


def make_app() -> Robyn:
    app = Robyn(__file__)
    app.set_response_header("server", "rf")

    @app.post("/items/:shop", openapi_name="Create", openapi_tags=["items"])
    def create(request, body: Item, page: Page) -> Created:  # type: ignore[no-untyped-def]
        """Create an item."""
        return Created(ok=True, count=1)

    sub = SubRouter(__file__, "/sub")

    @sub.get("/ping")
    def ping() -> str:
        """Ping."""
        return "pong"

    app.include_router(sub)
    app.serve_openapi()
    return app


@pytest.mark.parametrize("loop", LOOPS)
def test_document_and_docs_page(loop: str) -> None:
    with running(make_app(), loop) as srv:
        status, headers, body = fetch(srv.port, "GET", "/openapi.json")
        assert status == 200 and headers["content-type"] == "application/json"
        assert "server" not in headers  # global headers left off, as Robyn does
        spec = json.loads(body)
        assert spec["openapi"] == "3.1.0" and set(spec) >= {"info", "paths", "components", "servers"}
        op = spec["paths"]["/items/{shop}"]["post"]
        assert (op["summary"], op["description"], op["tags"]) == ("Create", "Create an item.", ["items"])
        assert op["parameters"] == [
            {"name": "shop", "in": "path", "required": True, "schema": {"type": "string"}},
            {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer"}},
        ]
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        assert schema["properties"]["price"] == {"type": "number"}
        assert schema["properties"]["inner"]["properties"]["note"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
        assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
            "type": "object", "properties": {"ok": {"type": "boolean"}, "count": {"type": "integer"}}}
        assert spec["paths"]["/sub/ping"]["get"]["description"] == "Ping."
        assert "/openapi.json" not in spec["paths"]
        status, headers, page = fetch(srv.port, "GET", "/docs")
        assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
        assert b"SwaggerUIBundle" in page and b'"/openapi.json"' in page


def test_json_schema() -> None:
    assert json_schema(list[int]) == {"type": "array", "items": {"type": "integer"}}
    assert json_schema(dict) == {"type": "object"}
    assert json_schema(Optional[int]) == {"anyOf": [{"type": "integer"}, {"type": "null"}]}


def test_docs_page_renders_the_operations_in_headless_chromium(tmp_path: Path) -> None:
    """Swagger UI's files come from the app (the docs extra), so the page
    works with no network: every request the browser makes goes to the app."""
    from .test_examples import CHROMIUM, CHROMIUM_ARGS

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: `make browser` installs Debian's chromium"
    assert local_swagger_ui() is not None, "swagger-ui-py (the docs extra) is in the test extras"
    import playwright.sync_api as playwright_api

    with running(make_app(), "uvloop") as srv, playwright_api.sync_playwright() as pw:
        origin = f"http://127.0.0.1:{srv.port}"
        elsewhere: list[str] = []
        context = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                        headless=True, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            context.on("request", lambda req: None if req.url.startswith(origin) else elsewhere.append(req.url))
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(f"{origin}/docs", wait_until="load")
            operations = page.locator(".opblock-summary-path")
            playwright_api.expect(operations).to_have_count(2, timeout=15_000)
            assert sorted(t.strip() for t in operations.all_text_contents()) == ["/items/{shop}", "/sub/ping"]
            playwright_api.expect(page.locator(".opblock-summary-method").first).to_be_visible()
            assert sorted(page.locator(".opblock-summary-method").all_text_contents()) == ["GET", "POST"]
            assert page.locator(".info .title").first.text_content().startswith("Robyn API")
        finally:
            context.close()
        assert elsewhere == []
        status, headers, _ = fetch(srv.port, "GET", "/docs/swagger-ui-bundle.js")
        assert status == 200 and headers["content-type"].startswith("application/javascript")
        assert "server" not in headers
