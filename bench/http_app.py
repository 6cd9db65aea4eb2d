"""The app `http_wrk.py` loads: plaintext at /plaintext, JSON at /json.

``python http_app.py PORT SCENARIO``: ``none`` (nothing but the routes; the
default, and what bench/run.py's HTTP rows serve), ``after`` (one global
after-request middleware that sets a header), ``auth`` (both routes
``auth_required`` with a Bearer-token handler). Any robyn_fast version serves
``none``; the others need issue 18's middlewares and auth. Without arguments
the port comes from ``$ROBYN_PORT``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from robyn_fast import Robyn

port = int(sys.argv[1] if len(sys.argv) > 1 else os.environ["ROBYN_PORT"])
scenario = sys.argv[2] if len(sys.argv) > 2 else "none"
app = Robyn(__file__)
auth = scenario == "auth"


@app.get("/plaintext", auth_required=auth)
def plaintext() -> str:
    return "Hello, World!"


@app.get("/json", auth_required=auth)
def json() -> dict[str, str]:
    return {"message": "Hello, World!"}


if scenario == "after":
    @app.after_request()
    def stamp(response: Any) -> Any:
        response.headers.set("x-after", "1")
        return response
elif auth:
    from robyn_fast.auth import AuthenticationHandler, BearerGetter
    from robyn_fast.http.params import Identity

    class Tokens(AuthenticationHandler):
        def authenticate(self, request: Any) -> Identity | None:
            token = self.token_getter.get_token(request)
            return Identity({"user": "bench"}) if token == "secret" else None

    app.configure_authentication(Tokens(BearerGetter()))
elif scenario != "none":
    raise SystemExit(f"unknown scenario {scenario!r}: none, after or auth")

app.start("127.0.0.1", port, argv=[])
