"""HTTP server on Robyn (0.77 or 0.88: actix-web in Rust, handlers in Python):
``/plaintext`` answers ``Hello, World!``, ``/json`` the document
``{"message": "Hello, World!"}`` (a returned dict is sent as JSON), as
``bench/http_app.py`` does for robyn_fast. Runs in bench/.venv-robyn077 or
bench/.venv-robyn088 (created by bench/run.py).

    bench/.venv-robyn088/bin/python bench/peers/http_robyn.py PORT
"""

from _common import robyn_argv

HOST, PORT = robyn_argv()

from robyn import Robyn  # noqa: E402

app = Robyn(__file__)


@app.get("/plaintext")
def plaintext():
    return "Hello, World!"


@app.get("/json")
def json_route():
    return {"message": "Hello, World!"}


if __name__ == "__main__":
    app.start(host=HOST, port=PORT)
