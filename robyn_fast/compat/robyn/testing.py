"""``robyn.testing``: Robyn 0.88's ``TestClient``, requests to an app
without a server, on :class:`robyn_fast.inprocess.InProcessClient`.

As Robyn's: ``TestClient(app)``; ``get``/``head``/``options(path, **kw)``
and ``post``/``put``/``patch``/``delete(path, json_data=None, **kw)``, with
``body``, ``headers``, ``query_params``, ``form_data`` and ``files`` as
keywords; each returns a :class:`TestResponse` (``status_code``,
``headers``, ``text``, ``content``, ``json()``, ``ok``); ``with
TestClient(app) as client:`` closes its event loop at the end. Cookies are
not kept between requests and the startup handlers do not run, as in
Robyn; robyn_fast's own :class:`~robyn_fast.inprocess.InProcessClient`
does both. Unlike Robyn's, each request goes through the app's real
pipeline (the one the server runs: global request headers, the
authentication of ``auth_required`` routes, sessions, the exception handler,
a route's own status for an error, streamed bodies joined), not a copy of it.
"""

from __future__ import annotations

from typing import Any

from robyn_fast.compat import module_getattr
from robyn_fast.inprocess import InProcessClient, InProcessResponse

__all__ = ["TestClient", "TestResponse"]

TestResponse = InProcessResponse


class TestClient(InProcessClient):
    """Robyn's in-process test client (see the module docstring)."""

    __test__ = False  # not a test class, for pytest

    def __init__(self, app: Any) -> None:
        super().__init__(app, keep_cookies=False)

    def __enter__(self) -> TestClient:
        return self  # Robyn's runs no startup handler

    def _with_json(self, method: str, path: str, json_data: Any, kw: dict[str, Any]) -> InProcessResponse:
        if json_data is not None and "body" not in kw:
            kw["json"] = json_data
        return self.request(method, path, **kw)

    def post(self, path: str, json_data: Any = None, **kw: Any) -> InProcessResponse:
        return self._with_json("POST", path, json_data, kw)

    def put(self, path: str, json_data: Any = None, **kw: Any) -> InProcessResponse:
        return self._with_json("PUT", path, json_data, kw)

    def patch(self, path: str, json_data: Any = None, **kw: Any) -> InProcessResponse:
        return self._with_json("PATCH", path, json_data, kw)

    def delete(self, path: str, json_data: Any = None, **kw: Any) -> InProcessResponse:
        return self._with_json("DELETE", path, json_data, kw)


__getattr__ = module_getattr("robyn.testing")
