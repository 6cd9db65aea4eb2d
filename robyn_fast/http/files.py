"""Files as responses: :func:`serve_file`, :func:`serve_html`, and the
routes of a served directory (``app.serve_directory``).

The file is read when the response is built (whole, into memory: meant for
pages and assets, not for multi-gigabyte downloads). ``Content-Type`` comes
from the file name (:mod:`mimetypes`, ``application/octet-stream`` when it
says nothing).
"""

from __future__ import annotations

import html
import mimetypes
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from .types import Headers, Request, Response

__all__ = ["serve_file", "serve_html", "directory_handler", "FileResponse"]


class FileResponse(Response):
    """A :class:`Response` whose body is the content of ``file_path``."""

    __slots__ = ("file_path",)

    def __init__(self, file_path: str, status_code: int = 200, headers: Headers | None = None) -> None:
        if not isinstance(file_path, (str, os.PathLike)):
            raise TypeError(f"a file path must be a str or a path, not {type(file_path).__name__}")
        with open(file_path, "rb") as f:
            content = f.read()
        super().__init__(status_code, headers if headers is not None else Headers(), content)
        self.file_path = os.fspath(file_path)


def _content_type(name: str) -> str:
    kind = mimetypes.guess_type(name)[0]
    return kind or "application/octet-stream"


def serve_file(file_path: str, file_name: str | None = None) -> FileResponse:
    """The file as a download: ``Content-Disposition: attachment;
    filename=<file_name>`` (the file's own name by default), as Robyn sends it.
    ``FileNotFoundError`` (a 500, or the app's exception handler) when it
    does not exist."""
    name = file_name or os.path.basename(os.fspath(file_path))
    headers = Headers({"Content-Type": _content_type(name)})
    headers.append("Content-Disposition", f"attachment; filename={name}")
    return FileResponse(file_path, headers=headers)


def serve_html(file_path: str) -> FileResponse:
    """An HTML file as the page: ``Content-Type: text/html``."""
    return FileResponse(file_path, headers=Headers({"Content-Type": "text/html"}))


def _listing(url_path: str, directory: str) -> Response:
    entries = sorted(os.listdir(directory))
    base = url_path.rstrip("/")
    items = []
    for entry in entries:
        slash = "/" if os.path.isdir(os.path.join(directory, entry)) else ""
        items.append(f'<li><a href="{html.escape(base + "/" + quote(entry) + slash)}">'
                     f"{html.escape(entry + slash)}</a></li>")
    page = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Index of {html.escape(url_path)}"
            f"</title></head><body><h1>Index of {html.escape(url_path)}</h1><ul>{''.join(items)}</ul>"
            "</body></html>")
    return Response(200, Headers({"Content-Type": "text/html; charset=utf-8"}), page)


def directory_handler(directory_path: str, index_file: str | None,
                      show_files_listing: bool) -> Callable[[Request], Any]:
    """The handler of ``route`` and ``route/*path`` for a served directory.

    A path that leaves the directory (``..``, a symbolic link pointing out)
    is answered 404, as is a missing file; a directory gets its
    ``index_file`` if it has one, else the listing when
    ``show_files_listing``, else 404.
    """
    if not isinstance(directory_path, (str, os.PathLike)):
        raise TypeError("directory_path must be a str or a path")
    root = os.path.realpath(os.fspath(directory_path))
    if not os.path.isdir(root):
        raise ValueError(f"serve_directory: {directory_path!r} is not a directory")

    def handler(request: Request) -> Response:
        rel = request.path_params.get("path", "")
        target = os.path.realpath(os.path.join(root, rel))
        if target != root and not target.startswith(root + os.sep):
            return Response(404, Headers({"Content-Type": "text/plain; charset=utf-8"}), "Not Found")
        if os.path.isdir(target):
            if index_file:
                index = os.path.join(target, index_file)
                if os.path.isfile(index):
                    return FileResponse(index, headers=Headers({"Content-Type": _content_type(index_file)}))
            if show_files_listing:
                return _listing(request.url.path, target)
            return Response(404, Headers({"Content-Type": "text/plain; charset=utf-8"}), "Not Found")
        if not os.path.isfile(target):
            return Response(404, Headers({"Content-Type": "text/plain; charset=utf-8"}), "Not Found")
        return FileResponse(target, headers=Headers({"Content-Type": _content_type(target)}))

    return handler
