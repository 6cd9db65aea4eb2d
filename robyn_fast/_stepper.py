"""Continue an async handler inside a Task after it suspended.

The compiled connection runs an async handler's first step inline
(``coro.send(None)``), so a handler that never suspends costs no Task. Only
when it yields a future does it need a Task; :func:`resume` is that Task's
coroutine: it hands the pending future to the Task, then keeps stepping the
original coroutine, forwarding cancellation into it.
"""

from __future__ import annotations

import types
from collections.abc import Coroutine, Generator
from typing import Any


@types.coroutine
def resume(coro: Coroutine[Any, Any, Any], pending: Any) -> Generator[Any, Any, Any]:
    while True:
        try:
            yield pending
        except BaseException as exc:  # noqa: BLE001 - Task.cancel() and throw() land here
            try:
                pending = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            pending = coro.send(None)
        except StopIteration as stop:
            return stop.value
