"""HTTP server on socketify (uWebSockets through CFFI; its own libuv loop):
``/plaintext`` answers ``Hello, World!`` (text/plain), ``/json`` the document
``{"message": "Hello, World!"}`` (application/json), as ``bench/http_app.py``
does for robyn_fast.

    python bench/peers/http_socketify.py PORT
"""

from socketify import App, AppListenOptions

from _common import HOST, port


def main() -> None:
    app = App()
    app.get("/plaintext", lambda res, req: res.send(b"Hello, World!", b"text/plain"))
    app.get("/json", lambda res, req: res.send({"message": "Hello, World!"}))  # a dict goes out as JSON
    p = port()
    app.listen(AppListenOptions(port=p, host=HOST), lambda config: print(f"socketify http on {HOST}:{p}", flush=True))
    app.run()


if __name__ == "__main__":
    main()
