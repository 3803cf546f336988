"""
End to end: failover.  A :class:`~twisted_reqresp.Channel` in a client
process keeps calls going over three real ``twistd -n reqresp`` backends
while backend A is SIGKILLed and later restarted on its port, and backend
B is SIGTERMed (it drains).  The scenario is ``benchmarks/failover.py``'s
:func:`run_scenario`; this test checks what it reports:

- no call hangs: every call's Deferred fires before the bounded end;
- the only failures are the calls A had in flight when it died, each a
  ``ConnectionClosed`` "connection lost before the answer" that is not
  retry-safe (``echo`` is not declared idempotent, and the client cannot
  know whether A ran it), and no more than A had in flight;
- no retry-safe call is lost while another backend could take it;
- B drains: what it accepted is answered, it refuses nothing it accepted,
  and it exits cleanly;
- the restarted A serves calls again.

The backends log every call (``--access-log``), which is how the test
counts the calls each one answered.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
from typing import Any

from e2e import (
    COMMAND_TIMEOUT,
    TESTS,
    ReactorMixin,
    Server,
    clean_env,
    kill,
    read_line,
    start,
)
from twisted.trial.unittest import SynchronousTestCase

#: The client process: argv[1] is a JSON object with the reactor to
#: install, the three endpoints, A's and B's processes, and the timeline.
#: It prints "restart" when A should be started again, reads a line on
#: stdin once A listens, and prints the scenario's result as one JSON line.
LOAD = textwrap.dedent(
    """
    import json, sys, threading
    config = json.loads(sys.argv[1])
    if config["reactor"] == "asyncio":
        from twisted.internet import asyncioreactor
        asyncioreactor.install()
    sys.path.insert(0, config["benchmarks"])
    from failover import Timing, run_scenario
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react
    from twisted_reqresp import Backoff, Channel

    async def main(reactor):
        def restart():
            listening = Deferred()
            def wait():
                sys.stdin.readline()
                reactor.callFromThread(listening.callback, None)
            print("restart", flush=True)
            threading.Thread(target=wait, daemon=True).start()
            return listening

        a, b, c = config["endpoints"]
        channel = Channel(
            reactor,
            [a, b, c],
            timeout=10.0,
            # Reconnect within half a second of A's restart: the default
            # backoff (tested with a Clock in test_channel.py) would retry
            # a backend down for 2 s only 2-3 s later, past the test's end.
            reconnect=Backoff(initial=0.1, maximum=0.5),
        )
        result = await run_scenario(
            reactor,
            channel,
            a=a,
            kill_pid=config["kill_pid"],
            term_pid=config["term_pid"],
            restart=restart,
            timing=Timing(**config["timing"]),
            callers=config["callers"],
        )
        print(json.dumps(result), flush=True)

    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
    """
)

#: The calls one backend answered, from its access log.
ECHO_OK = re.compile(r" echo OK ")
#: The calls one backend answered with an error.
ECHO_NOT_OK = re.compile(r" echo (?!OK )[A-Z_]+ ")

#: The only way a call may fail.
LOST = "ConnectionClosed: connection lost before the answer"


class FailoverTests(ReactorMixin, SynchronousTestCase):
    """A Channel over three backends rides out a SIGKILL, a SIGTERM and a restart."""

    #: How many calls are in flight at once.
    callers = 16

    def run_failover(self) -> tuple[dict[str, Any], list[Server]]:
        """
        Start three backends, run the scenario against them, restarting A
        when asked.

        :returns: the scenario's result, and the backends A, B, C and the
            restarted A.
        """
        args = ("--access-log", "--grace", "10")
        servers = [Server(*args, reactor=self.reactor) for _ in range(3)]
        for server in servers:
            self.addCleanup(server.stop)
        for server in servers:
            server.wait_ready()
        a, b, c = servers
        config = {
            "reactor": self.reactor,
            "benchmarks": str(TESTS.parent / "benchmarks"),
            "endpoints": [s.endpoint for s in servers],
            "kill_pid": a.process.pid,
            "term_pid": b.process.pid,
            "callers": self.callers,
            "timing": {"kill_at": 1.5, "term_at": 2.5, "restart_at": 3.5, "after_restart": 2.0},
        }
        load = subprocess.Popen(
            [sys.executable, "-c", LOAD, json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        self.addCleanup(kill, load)
        self.addCleanup(lambda: load.stdin and load.stdin.close())
        self.assertEqual(read_line(load), "restart")
        # The scenario killed A; its port is free once it is gone.
        self.assertEqual(a.wait_exit(), -signal.SIGKILL)
        a2 = start(self, *args, reactor=self.reactor, port=a.port)
        assert load.stdin is not None
        load.stdin.write("listening\n")
        load.stdin.flush()
        try:
            out, err = load.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail("the client process did not finish")
        self.assertEqual(load.returncode, 0, err)
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        print(
            f"\nfailover ({self.reactor or 'default'} reactor): "
            + json.dumps({k: v for k, v in result.items() if k not in ("samples", "buckets")}),
            file=sys.stderr,
        )
        return result, [a, b, c, a2]

    def test_failover(self) -> None:
        """Only A's in-flight calls fail, as lost; nothing hangs; B drains; A serves again."""
        result, (a, b, c, a2) = self.run_failover()
        diagnostics = json.dumps(result, indent=1)

        # Nothing hangs, and the channel closes.
        self.assertEqual(result["hung"], 0, diagnostics)
        self.assertEqual(result["close"], "closed", diagnostics)
        self.assertEqual(result["started"], result["ok"] + result["failed"], diagnostics)
        self.assertGreater(result["ok"], 500, diagnostics)

        # What failed was in flight on A when it died, and nothing else.
        self.assertLessEqual(set(result["failures_by_reason"]), {LOST}, diagnostics)
        self.assertLessEqual(result["failed"], result["in_flight_on_a"], diagnostics)
        for failure in result["failures"]:
            self.assertFalse(failure["retry_safe"], diagnostics)
            self.assertEqual(failure["attempts"], 1, diagnostics)
            # Lost when A died: before B was stopped.
            self.assertGreaterEqual(failure["at"], result["kill_at"], diagnostics)
            self.assertLess(failure["at"], result["term_at"], diagnostics)
        self.assertEqual(result["lost_retry_safe"], 0, diagnostics)

        # The channel counted the calls its callers saw.
        stats = result["stats"]
        self.assertEqual(stats["calls"], result["started"], diagnostics)
        self.assertEqual(stats["succeeded"], result["ok"], diagnostics)
        self.assertEqual(stats["failed"], result["failed"], diagnostics)
        self.assertGreaterEqual(stats["attempts"], stats["calls"] + stats["retries"], diagnostics)

        # B drained: it answered every call it accepted, without error, and exited.
        self.assertIn(b.wait_exit(), (0, -signal.SIGTERM), b.log())
        b_log = b.log()
        self.assertIn("draining", b_log)
        self.assertEqual(ECHO_NOT_OK.findall(b_log), [], b_log)
        self.assertNotIn("Traceback", b_log)
        self.assertGreater(len(ECHO_OK.findall(b_log)), 0, b_log)

        # The restarted A answered calls, and the channel saw it ready.
        served_by_a2 = len(ECHO_OK.findall(a2.log()))
        self.assertGreater(served_by_a2, 0, diagnostics)
        after = [s for s in result["samples"] if s["at"] >= result["restarted_at"]]
        self.assertIn("ready", {s["backends"][a.endpoint]["state"] for s in after}, diagnostics)
        # C served all along.
        self.assertGreater(len(ECHO_OK.findall(c.log())), 0)
        self.assertNotIn("Traceback", c.log() + a2.log())
        print(
            f"answered: A before the kill {len(ECHO_OK.findall(a.log()))}, "
            f"B {len(ECHO_OK.findall(b_log))}, C {len(ECHO_OK.findall(c.log()))}, "
            f"A after the restart {served_by_a2}",
            file=sys.stderr,
        )


class FailoverAsyncioTests(FailoverTests):
    """The failover scenario, with the backends and the client on the asyncio reactor."""

    reactor = "asyncio"
