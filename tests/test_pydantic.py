"""Pydantic models as request bodies and responses (robyn_fast.models),
against a real server on both loops; their OpenAPI schemas; and an app that
does not use pydantic never imports it."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

pydantic = pytest.importorskip("pydantic")

from robyn_fast import Robyn  # noqa: E402
from robyn_fast.exceptions import ArgumentTypeError  # noqa: E402
from robyn_fast.http.types import Request  # noqa: E402
from robyn_fast.inprocess import InProcessClient  # noqa: E402

from .server_helpers import LOOPS, running  # noqa: E402


class Address(pydantic.BaseModel):
    street: str
    city: str


class User(pydantic.BaseModel):
    name: str
    age: int
    active: bool = True
    nickname: str | None = None
    address: Address | None = None
    tags: list[str] = []


def make_app() -> Robyn:
    app = Robyn(__file__)

    @app.post("/sync/user")
    def sync_user(user: User) -> dict[str, Any]:
        """Create a user."""
        return {"name": user.name, "age": user.age, "active": user.active, "nickname": user.nickname,
                "city": user.address.city if user.address else None, "tags": user.tags}

    @app.post("/async/user")
    async def async_user(user: User) -> dict[str, Any]:
        return {"name": user.name, "age": user.age, "active": user.active}

    @app.put("/with_request/:id")
    def with_request(request: Request, id: str, user: User) -> dict[str, Any]:  # noqa: A002
        return {"method": request.method, "id": id, "name": user.name}

    @app.post("/return_model")
    def return_model(user: User) -> User:
        return user

    @app.post("/return_list")
    async def return_list(user: User) -> list[User]:
        return [user, user.model_copy(update={"name": "twin"})]

    @app.get("/in_dict")
    def in_dict() -> dict[str, Any]:
        return {"owner": User(name="o", age=1, address=Address(street="s", city="c"))}

    @app.after_request("/chained")
    def stamp(response: Any) -> Any:
        response.headers.set("x-after", "1")
        return response

    @app.post("/chained")
    def chained(user: User) -> User:
        return user

    app.serve_openapi()
    return app


@pytest.fixture(scope="module", params=LOOPS)
def server(request: pytest.FixtureRequest) -> Iterator[Any]:
    with running(make_app(), request.param) as srv:
        yield srv


def call(port: int, method: str, path: str, body: bytes | str | None = None,
         content_type: str = "application/json") -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": content_type} if body is not None else {})
        resp = conn.getresponse()
        raw = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        return resp.status, headers, json.loads(raw) if raw and "json" in headers.get("content-type", "") else raw
    finally:
        conn.close()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_valid_body_reaches_the_handler_validated(server: Any, kind: str) -> None:
    status, _, body = call(server.port, "POST", f"/{kind}/user", json.dumps({"name": "A", "age": "30"}))
    assert status == 200
    assert body["name"] == "A" and body["age"] == 30 and body["active"] is True  # lax coercion, default


def test_nested_optional_and_list_fields(server: Any) -> None:
    payload = {"name": "G", "age": 1, "address": {"street": "1 Main", "city": "Springfield"}, "tags": ["x", "y"],
               "extra": "ignored"}
    status, _, body = call(server.port, "POST", "/sync/user", json.dumps(payload))
    assert status == 200
    assert body == {"name": "G", "age": 1, "active": True, "nickname": None, "city": "Springfield", "tags": ["x", "y"]}


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_missing_field_is_422_with_pydantics_errors(server: Any, kind: str) -> None:
    status, headers, body = call(server.port, "POST", f"/{kind}/user", json.dumps({"name": "C"}))
    assert status == 422 and headers["content-type"] == "application/json"
    assert body["error"] == "Validation Error"
    assert [(e["loc"], e["type"]) for e in body["detail"]] == [(["age"], "missing")]


def test_wrong_types_and_nested_errors_each_have_their_location(server: Any) -> None:
    payload = {"name": 5, "age": "old", "address": {"street": "s"}}
    status, _, body = call(server.port, "POST", "/sync/user", json.dumps(payload))
    assert status == 422
    errors = {tuple(e["loc"]): e for e in body["detail"]}
    assert set(errors) == {("name",), ("age",), ("address", "city")}
    assert errors[("age",)]["input"] == "old" and "int" in errors[("age",)]["type"]
    assert errors[("address", "city")]["type"] == "missing"


@pytest.mark.parametrize("raw", [b"", b"not json {{{", b"null", b"[1, 2]", b"\xff\xfe"])
def test_a_body_that_is_no_object_is_422_never_500(server: Any, raw: bytes) -> None:
    status, _, body = call(server.port, "POST", "/sync/user", raw)
    assert status == 422
    assert body["error"] == "Validation Error" and body["detail"]


def test_the_model_binds_beside_the_request_and_a_path_parameter(server: Any) -> None:
    status, _, body = call(server.port, "PUT", "/with_request/7", json.dumps({"name": "F", "age": 3}))
    assert (status, body) == (200, {"method": "PUT", "id": "7", "name": "F"})
    status, _, body = call(server.port, "PUT", "/with_request/7", json.dumps({"name": "F"}))
    assert status == 422


def test_returned_models_are_json(server: Any) -> None:
    user = {"name": "J", "age": 32, "address": {"street": "s", "city": "c"}}
    status, headers, body = call(server.port, "POST", "/return_model", json.dumps(user))
    assert status == 200 and headers["content-type"] == "application/json"
    assert body == {**user, "active": True, "nickname": None, "tags": []}
    status, _, body = call(server.port, "POST", "/return_list", json.dumps(user))
    assert status == 200 and [u["name"] for u in body] == ["J", "twin"]
    status, _, body = call(server.port, "GET", "/in_dict")
    assert status == 200 and body["owner"]["address"] == {"street": "s", "city": "c"}


def test_through_a_middleware_chain(server: Any) -> None:
    status, headers, body = call(server.port, "POST", "/chained", json.dumps({"name": "M", "age": 1}))
    assert status == 200 and headers["x-after"] == "1" and body["name"] == "M"
    status, headers, body = call(server.port, "POST", "/chained", json.dumps({}))
    assert status == 422 and headers["x-after"] == "1" and body["error"] == "Validation Error"


def test_the_openapi_document_has_the_models_schemas(server: Any) -> None:
    status, _, spec = call(server.port, "GET", "/openapi.json")
    assert status == 200
    op = spec["paths"]["/sync/user"]["post"]
    assert op["description"] == "Create a user."
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    assert schema["title"] == "User" and schema["type"] == "object"
    assert set(schema["required"]) == {"name", "age"}
    assert schema["properties"]["age"] == {"title": "Age", "type": "integer"}
    assert {"$ref": "#/components/schemas/Address"} in schema["properties"]["address"]["anyOf"]
    assert spec["components"]["schemas"]["Address"]["required"] == ["street", "city"]
    returned = spec["paths"]["/return_model"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert returned["title"] == "User"
    listed = spec["paths"]["/return_list"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listed["type"] == "array" and listed["items"]["title"] == "User"


def test_two_model_parameters_are_refused_at_registration() -> None:
    app = Robyn(__file__)
    with pytest.raises(ArgumentTypeError, match="2 pydantic body parameters"):
        @app.post("/two")
        def two(a: User, b: Address) -> None: ...


def test_the_compat_app_validates_too() -> None:
    from robyn_fast.compat.robyn import Robyn as CompatRobyn

    app = CompatRobyn(__file__)

    @app.post("/u")
    def create(user: User) -> User:
        return user

    with InProcessClient(app) as client:
        assert client.post("/u", json={"name": "R", "age": 1}).json()["name"] == "R"
        refused = client.post("/u", json={"name": "R"})
        assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["age"]


def test_an_app_without_models_never_imports_pydantic() -> None:
    code = (
        "import sys\n"
        "from robyn_fast import Robyn\n"
        "from robyn_fast.inprocess import InProcessClient\n"
        "app = Robyn('app.py')\n"
        "@app.post('/x')\n"
        "def x(body: str, request=None) -> dict:\n"
        "    return {'a': [1, object.__name__]}\n"
        "app.serve_openapi()\n"
        "c = InProcessClient(app)\n"
        "assert c.post('/x', body='b').json() == {'a': [1, 'object']}\n"
        "assert c.get('/openapi.json').ok\n"
        "assert c.get('/nothing').status_code == 404\n"
        "print('pydantic' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
