"""``robyn.jsonify``: compact JSON text, as Robyn's (orjson) produces."""

from robyn_fast.compat import module_getattr
from robyn_fast.encoding import jsonify

__all__ = ["jsonify"]

__getattr__ = module_getattr("robyn.jsonify")
