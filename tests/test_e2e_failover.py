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

The scenario runs once per class (in ``setUpClass``, about 7 s); each test
checks one of these on what it reported.  The backends log every call
(``--access-log``), which is how the tests count the calls each one
answered.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from typing import Any, ClassVar

from e2e import COMMAND_TIMEOUT, TESTS, ReactorMixin, Server, clean_env, kill, read_line
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

#: How the calls A had in flight fail.
LOST = "ConnectionClosed: connection lost before the answer"
#: The backends' options: every call logged, and time for B to drain.
BACKEND_ARGS = ("--access-log", "--grace", "10")
#: The scenario's timeline (``failover.Timing``), in seconds after the load starts.
TIMING = {"kill_at": 1.5, "term_at": 2.5, "restart_at": 3.5, "after_restart": 2.0}


@dataclass(frozen=True, kw_only=True)
class Run:
    """What one run of the scenario left behind."""

    #: The scenario's report (``failover.run_scenario``).
    result: dict[str, Any]
    #: A's endpoint (the restarted A has the same).
    a: str
    #: The logs of A, B, C and the restarted A.
    logs: dict[str, str]
    #: B's exit status after SIGTERM.
    b_exit: int | None
    #: The client process's stderr.
    stderr: str

    def diagnostics(self) -> str:
        """:returns: the report, for failure messages."""
        return json.dumps(self.result, indent=1)


def run_failover(reactor: str | None, callers: int = 16) -> Run:
    """
    Start three backends on ``reactor``, run the scenario against them in a
    client process on the same reactor, restarting A on its port when
    asked; stop everything, whatever fails.

    :raises AssertionError: if a backend or the client process fails.
    """
    servers: list[Server] = []
    load: subprocess.Popen[str] | None = None
    try:
        servers = [Server(*BACKEND_ARGS, reactor=reactor) for _ in range(3)]
        for server in servers:
            server.wait_ready()
        a, b, _ = servers
        config = {
            "reactor": reactor,
            "benchmarks": str(TESTS.parent / "benchmarks"),
            "endpoints": [s.endpoint for s in servers],
            "kill_pid": a.process.pid,
            "term_pid": b.process.pid,
            "callers": callers,
            "timing": TIMING,
        }
        load = subprocess.Popen(
            [sys.executable, "-c", LOAD, json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        if read_line(load) != "restart":
            raise AssertionError("the client process did not ask for the restart")
        # The scenario killed A: its port is free once it is gone.
        if (code := a.wait_exit()) != -signal.SIGKILL:
            raise AssertionError(f"A exited {code}, not by SIGKILL:\n{a.log()}")
        a2 = Server(*BACKEND_ARGS, reactor=reactor, port=a.port)
        servers.append(a2)
        a2.wait_ready()
        assert load.stdin is not None
        load.stdin.write("listening\n")
        load.stdin.flush()
        try:
            out, err = load.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError("the client process did not finish") from None
        if load.returncode != 0:
            raise AssertionError(f"the client process exited {load.returncode}:\n{err}")
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        b_exit = b.wait_exit()
        logs = dict(zip(("A", "B", "C", "A2"), (s.log() for s in servers), strict=True))
        answered = {name: len(ECHO_OK.findall(log)) for name, log in logs.items()}
        # The counts, for whoever reads the test output (-s).
        summary = {k: v for k, v in result.items() if k not in ("samples", "buckets", "failures")}
        print(
            f"\nfailover ({reactor or 'default'} reactor): {json.dumps(summary)}\n"
            f"answered by each backend: {answered}",
            file=sys.stderr,
        )
        return Run(result=result, a=a.endpoint, logs=logs, b_exit=b_exit, stderr=err)
    finally:
        if load is not None:
            kill(load)
            if load.stdin is not None and not load.stdin.closed:
                load.stdin.close()
        for server in servers:
            server.stop()


class FailoverTests(ReactorMixin, SynchronousTestCase):
    """A Channel over three backends rides out a SIGKILL, a SIGTERM and a restart."""

    failover: ClassVar[Run]

    @classmethod
    def setUpClass(cls) -> None:
        cls.failover = run_failover(cls.reactor)

    def test_no_call_hangs(self) -> None:
        """Every call fires before the bounded end, and the channel then closes."""
        result = self.failover.result
        self.assertEqual(result["hung"], 0, self.failover.diagnostics())
        self.assertEqual(result["close"], "closed", self.failover.diagnostics())
        self.assertEqual(result["started"], result["ok"] + result["failed"])
        self.assertGreater(result["ok"], 500, self.failover.diagnostics())

    def test_only_calls_in_flight_on_the_killed_backend_fail(self) -> None:
        """
        The calls that fail without being retry-safe are the ones A had in
        flight when it died, lost, and no more than that.
        """
        result, diagnostics = self.failover.result, self.failover.diagnostics()
        lost = [f for f in result["failures"] if not f["retry_safe"]]
        self.assertLessEqual(len(lost), result["in_flight_on_a"], diagnostics)
        for failure in lost:
            self.assertEqual(failure["reason"], LOST, diagnostics)
            self.assertEqual(failure["attempts"], 1, diagnostics)
            # Lost when A died, before B was stopped.
            self.assertGreaterEqual(failure["at"], result["kill_at"], diagnostics)
            self.assertLess(failure["at"], result["term_at"], diagnostics)

    def test_no_retry_safe_call_is_lost(self) -> None:
        """
        No call fails retry-safe while another backend is ready: the only
        failures are A's lost calls.
        """
        result, diagnostics = self.failover.result, self.failover.diagnostics()
        self.assertEqual(result["lost_retry_safe"], 0, diagnostics)
        self.assertLessEqual(set(result["failures_by_reason"]), {LOST}, diagnostics)
        self.assertEqual(result["stats"]["retries_throttled"], 0, diagnostics)

    def test_channel_counts_what_its_callers_saw(self) -> None:
        """The channel's counters agree with what the callers got."""
        result, stats = self.failover.result, self.failover.result["stats"]
        self.assertEqual(
            (stats["calls"], stats["succeeded"], stats["failed"]),
            (result["started"], result["ok"], result["failed"]),
        )
        self.assertEqual(stats["attempts"], stats["calls"] + stats["retries"])

    def test_draining_backend_answers_what_it_accepted(self) -> None:
        """B, stopped with SIGTERM, answers every call it accepted, without error, and exits."""
        log = self.failover.logs["B"]
        self.assertIn(self.failover.b_exit, (0, -signal.SIGTERM), log)
        self.assertIn("draining", log)
        self.assertNotIn("Traceback", log)
        self.assertGreater(len(ECHO_OK.findall(log)), 0, log)
        self.assertEqual(ECHO_NOT_OK.findall(log), [])
        # And no call failed at the client after B was stopped but as retry-safe.
        result = self.failover.result
        late = [f for f in result["failures"] if f["at"] >= result["term_at"]]
        self.assertEqual([f for f in late if not f["retry_safe"]], [], self.failover.diagnostics())

    def test_restarted_backend_serves_again(self) -> None:
        """A, started again on its port, is ready again in the channel and answers calls."""
        result = self.failover.result
        self.assertIsNotNone(result["recovered_at"], self.failover.diagnostics())
        self.assertGreater(
            len(ECHO_OK.findall(self.failover.logs["A2"])), 0, self.failover.logs["A2"]
        )
        # The backend that stayed up served all along.
        self.assertGreater(len(ECHO_OK.findall(self.failover.logs["C"])), 0)
        for name in ("A2", "C"):
            self.assertNotIn("Traceback", self.failover.logs[name])


class FailoverAsyncioTests(FailoverTests):
    """The failover scenario, with the backends and the client on the asyncio reactor."""

    reactor = "asyncio"
