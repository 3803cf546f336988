"""
Helpers shared by the protocol tests.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from twisted_reqresp import Call, Router


def echo_and_wait_router() -> tuple[Router, list[Deferred[Any]]]:
    """
    :returns: a router with ``echo`` (answers the body) and ``wait``
        (answers when the test fires the Deferred it appended to the list),
        and that list.
    """
    router = Router()
    waiting: list[Deferred[Any]] = []
    router.add("echo", lambda call: call.body)

    @router.method("wait")
    def wait(call: Call) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        waiting.append(d)
        return d

    return router, waiting
