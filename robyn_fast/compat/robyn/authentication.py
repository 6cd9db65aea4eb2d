"""``robyn.authentication``: authentication handlers and token getters."""

from robyn_fast.auth import AuthenticationHandler, BearerGetter, TokenGetter
from robyn_fast.compat import module_getattr
from robyn_fast.exceptions import AuthenticationNotConfigured as AuthenticationNotConfiguredError
from robyn_fast.http.params import Identity

__all__ = ["AuthenticationHandler", "BearerGetter", "TokenGetter", "Identity", "AuthenticationNotConfiguredError"]

__getattr__ = module_getattr("robyn.authentication")
