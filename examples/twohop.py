"""
Two hops: a *frontend* whose responder calls a *backend* on behalf of each
call it serves, passing the call as ``parent=``.  The backend call then

- waits no longer than the frontend's caller still waits (what is left of
  the frontend call's deadline),
- is cancelled (a CANCEL goes to the backend) when the frontend gives up on
  its call: its client cancelled it, its deadline passed, its connection
  closed,
- carries the caller's ``traceparent`` and ``tracestate`` metadata.

The backend records what it saw of each ``work`` call, and answers
``seen`` with those records.  Serve both (the frontend finds the backend in
``TWOHOP_BACKEND``)::

    twistd -n --pidfile=backend.pid reqresp --port tcp:9001 \\
        --responder examples.twohop:backend
    TWOHOP_BACKEND=tcp:127.0.0.1:9001 twistd -n --pidfile=frontend.pid reqresp \\
        --port tcp:9000 --responder examples.twohop:frontend

``tests/test_e2e_twohop.py`` runs exactly that.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.task import deferLater

from twisted_reqresp import Call, Client, Router, StatusCode, connect
from twisted_reqresp.codecs import JSON

__all__ = ["Frontend", "backend", "frontend"]

#: The longest ``work`` the backend accepts, in seconds.
MAX_WORK = 30.0


def _reactor() -> Any:
    # Looked up when first needed, never at import: twistd installs its
    # reactor after importing the responder.
    from twisted.internet import reactor

    return reactor


def backend(clock: Any = None) -> Router:
    """
    The backend: ``work`` (a JSON number of seconds to work, then answers
    ``"done"``) and ``seen`` (what it saw of every ``work`` call: its
    ``traceparent``, the deadline it had on arrival, and how it ended,
    ``"answered"`` or ``"cancelled"``).

    :param clock: the clock to work by (the reactor if omitted).
    """
    seen: list[dict[str, Any]] = []
    router = Router()

    def work(call: Call) -> Deferred[str]:
        seconds = call.body
        if not isinstance(seconds, (int, float)) or not 0 <= seconds <= MAX_WORK:
            raise ValueError(f"work takes 0 to {MAX_WORK} seconds")
        record = {
            "traceparent": call.metadata.get("traceparent"),
            "time_remaining": call.time_remaining(),
            "outcome": "working",
        }
        seen.append(record)

        def cancelled() -> None:
            record["outcome"] = "cancelled"

        # The server gave up on the call: the work it was doing is wasted.
        unsubscribe = call.on_cancel(cancelled)

        def answered(result: str) -> str:
            record["outcome"] = "answered"
            unsubscribe()
            return result

        done = deferLater(clock or _reactor(), seconds, lambda: "done")
        return done.addCallback(answered)

    router.add("work", work, codec=JSON, errors={ValueError: StatusCode.INVALID_ARGUMENT})
    router.add("seen", lambda call: seen, codec=JSON)
    return router


class Frontend:
    """
    The frontend's state: one client connection to the backend, made at
    the first call.

    :param endpoint: the backend's client endpoint string.
    :param reactor: the reactor (the global one if omitted).
    """

    def __init__(self, endpoint: str, reactor: Any = None) -> None:
        self.endpoint = endpoint
        self.reactor = reactor
        self._client: Client | None = None
        # Calls that arrive while the first connects wait for that one.
        self._connecting = DeferredLock()

    async def client(self) -> Client:
        """:returns: the connection to the backend, connecting if need be."""
        async with self._connecting:
            if self._client is None:
                reactor = self.reactor or _reactor()
                self._client = await connect(reactor, self.endpoint, codec=JSON)
        return self._client

    async def work(self, call: Call) -> Any:
        """Pass the work on to the backend, on behalf of ``call``."""
        backend = await self.client()
        reply = await backend.call("work", call.body, parent=call)
        return reply.body


def frontend() -> Router:
    """
    The frontend: ``work`` passes its call on to the backend named by the
    ``TWOHOP_BACKEND`` environment variable (a client endpoint string).
    """
    state = Frontend(os.environ.get("TWOHOP_BACKEND", "tcp:127.0.0.1:9001"))
    router = Router()
    router.add("work", state.work, codec=JSON)
    return router
