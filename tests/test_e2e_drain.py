"""
End to end: graceful drain under load.  A client process keeps a steady
stream of calls going on several connections to a real ``twistd -n
reqresp``; the test sends SIGTERM in the middle, and every call the server
accepted must have been answered.  Calls it did not accept must have failed
marked retry-safe, so a client could resend them without doing anything
twice.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

from e2e import COMMAND_TIMEOUT, STOP_TIMEOUT, ReactorMixin, Server, clean_env, kill, start
from twisted.trial.unittest import SynchronousTestCase

#: The load generator: CONNECTIONS connections, each keeping DEPTH calls in
#: flight (sleep calls of 20 ms, so requests are always running when the
#: signal arrives), until every connection is closed by the server.  It
#: prints one JSON line with what happened to every call.
LOAD = textwrap.dedent(
    """
    import json, sys
    from twisted.internet.defer import DeferredList
    from twisted.internet.task import react
    from twisted_reqresp import ConnectionClosed, RemoteError, connect
    from twisted_reqresp.codecs import JSON

    CONNECTIONS, DEPTH, LIMIT = 4, 8, 20000
    outcome = {"ok": 0, "refused_retry_safe": 0, "closed_retry_safe": 0, "lost": [], "other": []}
    started = {"n": 0}

    def worker(client):
        def one(_=None):
            if started["n"] >= LIMIT:
                return
            started["n"] += 1
            d = client.call("sleep", 0.02, codec=JSON, timeout=30)
            d.addCallbacks(ok, failed)
        def ok(reply):
            outcome["ok"] += 1
            one()
        def failed(f):
            e = f.value
            if isinstance(e, RemoteError) and e.retry_safe:
                outcome["refused_retry_safe"] += 1
            elif isinstance(e, ConnectionClosed) and e.retry_safe:
                outcome["closed_retry_safe"] += 1
            elif isinstance(e, ConnectionClosed):
                outcome["lost"].append(str(e))
            else:
                outcome["other"].append(repr(e))
        for _ in range(DEPTH):
            one()

    async def main(reactor):
        clients = [await connect(reactor, sys.argv[1]) for _ in range(CONNECTIONS)]
        print("ready", flush=True)
        for client in clients:
            worker(client)
        # Each connection ends when the server closes it after draining.
        await DeferredList([client.when_closed() for client in clients])
        print(json.dumps(outcome), flush=True)

    react(main)
    """
)


def sigterm_under_load(test: SynchronousTestCase, server: Server) -> dict[str, Any]:
    """
    Keep :data:`LOAD` running against ``server`` for a second, send SIGTERM,
    and check that no accepted call was lost and that the process exits
    cleanly.

    :returns: the load generator's outcome.
    """
    load = subprocess.Popen(
        [sys.executable, "-c", LOAD, server.endpoint],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    test.addCleanup(kill, load)
    assert load.stdout is not None
    test.assertEqual(load.stdout.readline().strip(), "ready", server.log())
    time.sleep(1.0)  # a second of steady load
    server.process.send_signal(signal.SIGTERM)
    try:
        out, err = load.communicate(timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        test.fail(f"the load generator did not finish:\n{server.log()}")
    test.assertEqual(load.returncode, 0, err)
    outcome: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    test.assertEqual(outcome["lost"], [], server.log())
    test.assertEqual(outcome["other"], [])
    test.assertGreater(outcome["ok"], 100)
    # The signal came mid-stream: the calls made after the GOAWAY were
    # refused, each marked safe to retry.
    test.assertGreater(outcome["refused_retry_safe"] + outcome["closed_retry_safe"], 0)
    try:
        code = server.process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        test.fail(f"twistd still running {STOP_TIMEOUT} s after SIGTERM:\n{server.log()}")
    test.assertIn(code, (0, -signal.SIGTERM), server.log())
    test.assertNotIn("Traceback", server.log())
    return outcome


class DrainUnderLoadTests(ReactorMixin, SynchronousTestCase):
    """SIGTERM under a steady stream of calls loses no accepted call."""

    def test_no_accepted_call_is_lost(self) -> None:
        """Every call the server accepted before SIGTERM gets its answer."""
        sigterm_under_load(self, start(self, "--grace", "10", reactor=self.reactor))


class DrainUnderLoadAsyncioTests(DrainUnderLoadTests):
    """SIGTERM under a steady stream of calls loses no accepted call, on the asyncio reactor."""

    reactor = "asyncio"
