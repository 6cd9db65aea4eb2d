"""socketify (uWebSockets via CFFI) serving bench/http_app.py's two routes, for bench/http_wrk.py.

    python bench/peers/http_socketify.py PORT [none]
"""

import sys

from socketify import App, AppListenOptions


def plaintext(res, req) -> None:
    res.write_header("Content-Type", "text/plain; charset=utf-8")
    res.end("Hello, World!")


def json(res, req) -> None:
    res.end({"message": "Hello, World!"})  # socketify serialises a dict as application/json


def main() -> None:
    port = int(sys.argv[1])
    app = App()
    app.get("/plaintext", plaintext)
    app.get("/json", json)
    app.listen(AppListenOptions(port=port, host="127.0.0.1"), lambda config: None)
    app.run()


if __name__ == "__main__":
    main()
