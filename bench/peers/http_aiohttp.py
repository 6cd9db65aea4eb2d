"""HTTP server on aiohttp.web: ``/plaintext`` answers ``Hello, World!``
(text/plain), ``/json`` the document ``{"message": "Hello, World!"}``
(application/json), as ``bench/http_app.py`` does for robyn_fast.

    python bench/peers/http_aiohttp.py PORT [--loop uvloop|asyncio]
"""

from aiohttp import web

from _common import run, serve_aiohttp


async def plaintext(request: web.Request) -> web.Response:
    return web.Response(text="Hello, World!")


async def json_route(request: web.Request) -> web.Response:
    return web.json_response({"message": "Hello, World!"})


async def main() -> None:
    app = web.Application()
    app.router.add_get("/plaintext", plaintext)
    app.router.add_get("/json", json_route)
    await serve_aiohttp(app)


if __name__ == "__main__":
    run(main)
