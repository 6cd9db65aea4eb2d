"""CPU time of one plain GET through ``Routes.handle`` (no sockets, no loop):
the cost of the middleware chain, measured where wrk on a shared machine
cannot resolve it.

    python bench/http_chain_cost.py [--repeat 7] [--number 20000]

Scenarios as in ``http_app.py``: ``none``, ``after`` (one global
after-request middleware), ``auth`` (an ``auth_required`` route, Bearer
token), ``session`` (sessions configured; the request carries a valid
session cookie the handler does not look at), ``session-read`` (the same,
the handler reads a key: the cookie is verified and decoded). Each is timed ``--repeat`` times, interleaved; the minimum process
time per request is reported (the least disturbed run).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from robyn_fast import Robyn
from robyn_fast.auth import AuthenticationHandler, BearerGetter
from robyn_fast.http.params import Identity
from robyn_fast.sessions import SessionManager


class Tokens(AuthenticationHandler):
    def authenticate(self, request: Any) -> Identity | None:
        token = self.token_getter.get_token(request)
        return Identity({"user": "bench"}) if token == "secret" else None


def make(scenario: str) -> Any:
    app = Robyn(__file__)
    if scenario == "session-read":
        app.add_route("GET", "/plaintext", lambda request: f"Hello, {request.session.get('user')}!")
    else:
        app.add_route("GET", "/plaintext", lambda: "Hello, World!", auth_required=scenario == "auth")
    if scenario == "after":
        def stamp(response: Any) -> Any:
            response.headers.set("x-after", "1")
            return response

        app.after_request()(stamp)
    elif scenario == "auth":
        app.configure_authentication(Tokens(BearerGetter()))
    elif scenario.startswith("session"):
        app.configure_sessions("bench-secret")
    app.routes.resolve()
    return app.routes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=20000)
    args = parser.parse_args()
    routes = {s: make(s) for s in ("none", "after", "auth", "session", "session-read")}
    cookie = SessionManager("bench-secret").dumps({"user": "bench", "cart": [1, 2, 3]})
    headers = [(b"host", b"x"), (b"authorization", b"Bearer secret"), (b"cookie", b"session=" + cookie.encode())]
    for name, r in routes.items():
        out = r.handle("GET", "/plaintext", headers, b"", True, "127.0.0.1")
        assert isinstance(out, bytes) and out.startswith(b"HTTP/1.1 200 "), (name, out)
    best = {name: float("inf") for name in routes}
    for _ in range(args.repeat):
        for name, r in routes.items():
            handle = r.handle
            start = time.process_time()
            for _ in range(args.number):
                handle("GET", "/plaintext", headers, b"", True, "127.0.0.1")
            best[name] = min(best[name], (time.process_time() - start) / args.number)
    base = best["none"]
    for name, t in best.items():
        print(f"{name:>12}: {t * 1e6:6.2f} µs per request ({t / base:.2f}x none)")


if __name__ == "__main__":
    main()
