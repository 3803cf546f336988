"""
End to end, two hops (issue 9, item 4): two real ``twistd -n reqresp``
processes, a backend serving ``examples.twohop:backend`` and a frontend
serving ``examples.twohop:frontend``, whose ``work`` calls the backend with
``parent=call``.  A client script calls the frontend:

- with a short timeout: the backend's call arrives with what is left of
  that deadline, and is given up on (its ``on_cancel`` ran) well before the
  work would have finished;
- without a timeout, cancelled by the client: the backend sees the CANCEL
  (the access log says CANCELLED);
- with a call that finishes: answered, not cancelled;

and every ``traceparent`` arrives at the backend.

Every wait is bounded in time, and every process is killed at cleanup.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from e2e import ReactorMixin, Server, clean_env, run_script, start
from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent

#: Seconds the backend is asked to work in the calls given up on: far
#: longer than the test waits, so that only a cancellation ends them.
LONG = 20

CLIENT = textwrap.dedent(
    """
    import json, sys, time
    from twisted.internet.defer import CancelledError, Deferred
    from twisted.internet.task import deferLater, react
    from twisted_reqresp import DeadlineExceeded, connect
    from twisted_reqresp.codecs import JSON

    async def main(reactor, frontend, backend, long):
        long = float(long)
        results = {}
        client = await connect(reactor, frontend, codec=JSON)
        started = time.monotonic()
        try:
            await client.call(
                "work", long, timeout=0.5, metadata={"traceparent": "00-deadline-01"}
            )
            results["deadline"] = "answered"
        except DeadlineExceeded as e:
            results["deadline"] = ["DeadlineExceeded", time.monotonic() - started]
        d = client.call("work", long, metadata={"traceparent": "00-cancel-01"})
        await deferLater(reactor, 0.3)
        d.cancel()
        try:
            await d
            results["cancel"] = "answered"
        except CancelledError:
            results["cancel"] = "CancelledError"
        reply = await client.call(
            "work", 0, timeout=10, metadata={"traceparent": "00-answer-01"}
        )
        results["answer"] = reply.body
        # The backend's records, once both long calls are no longer "working"
        # (bounded: 100 polls, 5 seconds).
        other = await connect(reactor, backend, codec=JSON, timeout=5)
        for _ in range(100):
            seen = (await other.call("seen")).body
            if [r["outcome"] for r in seen].count("cancelled") >= 2:
                break
            await deferLater(reactor, 0.05)
        results["seen"] = seen
        results["seconds"] = time.monotonic() - started
        client.abort()
        other.abort()
        print(json.dumps(results))

    react(lambda reactor: Deferred.fromCoroutine(main(reactor, *sys.argv[1:])))
    """
)


class TwoHopTests(ReactorMixin, SynchronousTestCase):
    """A frontend process calling a backend process on behalf of its calls."""

    def _env(self, **extra: str) -> dict[str, str]:
        # The repository's root on the path, for examples.twohop.
        path = [str(ROOT), os.environ.get("PYTHONPATH", "")]
        return clean_env(PYTHONPATH=os.pathsep.join(filter(None, path)), **extra)

    def _start(self) -> tuple[Server, Server]:
        backend = start(
            self,
            "--responder",
            "examples.twohop:backend",
            "--access-log",
            reactor=self.reactor,
            env=self._env(),
        )
        frontend = start(
            self,
            "--responder",
            "examples.twohop:frontend",
            reactor=self.reactor,
            env=self._env(TWOHOP_BACKEND=backend.endpoint),
        )
        return frontend, backend

    def test_deadline_cancel_and_metadata_travel(self) -> None:
        """The backend gets the remaining deadline, the CANCEL and the traceparent."""
        frontend, backend = self._start()
        results = run_script(CLIENT, frontend.endpoint, backend.endpoint, str(LONG))
        kind, waited = results["deadline"]
        self.assertEqual(kind, "DeadlineExceeded")
        self.assertLess(waited, 5.0)
        self.assertEqual(results["cancel"], "CancelledError")
        self.assertEqual(results["answer"], "done")
        self.assertLess(results["seconds"], LONG / 2)
        by_trace = {r["traceparent"]: r for r in results["seen"]}
        self.assertEqual(
            sorted(by_trace), ["00-answer-01", "00-cancel-01", "00-deadline-01"], results
        )
        deadline = by_trace["00-deadline-01"]
        self.assertEqual(deadline["outcome"], "cancelled", results)
        # What was left of the client's 0.5 s when the backend read it.
        self.assertIsNotNone(deadline["time_remaining"])
        self.assertLessEqual(deadline["time_remaining"], 0.5)
        cancel = by_trace["00-cancel-01"]
        self.assertEqual(cancel["outcome"], "cancelled", results)
        # No deadline on that one: only the CANCEL can have ended it.
        self.assertIsNone(cancel["time_remaining"])
        answered = by_trace["00-answer-01"]
        self.assertEqual(answered["outcome"], "answered")
        self.assertLessEqual(answered["time_remaining"], 10.0)
        # The access log: the call without a deadline ended CANCELLED; the
        # one with a deadline ended either way (the frontend's CANCEL and
        # the backend's own copy of the deadline race).
        log = backend.wait_for_log(" work OK ")
        ended = [line for line in log.splitlines() if " work " in line]
        self.assertEqual(len(ended), 3, log)
        self.assertIn(" work CANCELLED ", ended[1])
        self.assertRegex(ended[0], " work (CANCELLED|DEADLINE_EXCEEDED) ")
        self.assertNotIn("Traceback", log + frontend.log())


class AsyncioTwoHopTests(TwoHopTests):
    """The same on the asyncio reactor."""

    reactor = "asyncio"
