"""The HTTP side: request/response types with Robyn's API, the router, route
binding and dispatch, and the HTTP/1.1 protocol on a transport."""

from .types import Headers, QueryParams, Request, Response, Url, jsonify

__all__ = ["Headers", "QueryParams", "Request", "Response", "Url", "jsonify"]
