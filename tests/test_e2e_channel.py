"""
A Channel over two real ``twistd reqresp`` servers on loopback: it balances
calls over both, and when one is killed every later call still succeeds,
on the other.  The client runs in its own process (``run_script``), as the
other end-to-end tests do, so no test runs the global reactor in-process.
"""

from __future__ import annotations

import textwrap

from e2e import ReactorMixin, run_script, start
from twisted.trial.unittest import SynchronousTestCase

#: Phase one: 40 calls, noting which server (its pid, from reqresp.stats)
#: answered each.  Then the script kills the server that answered first
#: and makes 40 more calls.  Bounded: a 5 s timeout per call, 80 calls.
FAILOVER = textwrap.dedent(
    """
    import json, os, signal, sys
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react
    from twisted_reqresp import Backoff, Channel, RetryPolicy

    async def main(reactor, *endpoints):
        channel = Channel(
            reactor, list(endpoints), timeout=5.0,
            retry=RetryPolicy(idempotent_methods={"reqresp.stats"}),
            reconnect=Backoff(initial=0.05, maximum=0.5),
        )
        await channel.when_ready()
        async def pids(count):
            out = []
            for _ in range(count):
                reply = await channel.call("reqresp.stats")
                out.append(json.loads(reply.body)["pid"])
            return out
        before = await pids(40)
        os.kill(before[0], signal.SIGKILL)
        after = await pids(40)
        states = sorted(b.state for b in channel.backends)
        stats = channel.stats
        await channel.close()
        print(json.dumps({
            "before": before, "after": after, "killed": before[0], "states": states,
            "failed": stats.failed, "succeeded": stats.succeeded,
        }))

    react(lambda reactor: Deferred.fromCoroutine(main(reactor, *sys.argv[1:])))
    """
)


class ChannelFailoverTests(ReactorMixin, SynchronousTestCase):
    """A Channel over real servers balances and survives losing one."""

    def test_balances_and_survives_a_kill(self) -> None:
        """Calls spread over both servers; after one is killed all calls succeed on the other."""
        one = start(self, reactor=self.reactor)
        two = start(self, reactor=self.reactor)
        results = run_script(FAILOVER, one.endpoint, two.endpoint)
        pids = {one.process.pid, two.process.pid}
        self.assertEqual(set(results["before"]), pids)
        counts = [results["before"].count(pid) for pid in pids]
        self.assertGreaterEqual(min(counts), 5, counts)  # both took a share
        survivor = (pids - {results["killed"]}).pop()
        self.assertEqual(results["after"], [survivor] * 40)
        self.assertEqual((results["succeeded"], results["failed"]), (80, 0))
        self.assertIn("ready", results["states"])


class ChannelFailoverAsyncioTests(ChannelFailoverTests):
    """The same on twistd's asyncio reactor."""

    reactor = "asyncio"
