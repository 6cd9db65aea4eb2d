"""``robyn.events``: the lifecycle events an app's ``event_handlers`` are keyed by."""

from enum import Enum

from robyn_fast.compat import module_getattr

__all__ = ["Events"]


class Events(Enum):
    STARTUP = "startup"
    SHUTDOWN = "shutdown"


__getattr__ = module_getattr("robyn.events")
