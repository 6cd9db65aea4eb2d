"""``robyn.session``: signed-cookie sessions (:mod:`robyn_fast.sessions`;
``app.configure_sessions(secret_key=...)`` and ``request.session``)."""

from robyn_fast.compat import module_getattr
from robyn_fast.sessions import Session, SessionManager

__all__ = ["Session", "SessionManager"]

__getattr__ = module_getattr("robyn.session")
