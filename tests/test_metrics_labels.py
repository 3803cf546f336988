"""
Metric labels cannot be filled by calls nobody answered: a name gets its own
``method`` label only once a call of it succeeded (a hostile review found
that an authorization interceptor's refusals used to take all of them).
"""

from __future__ import annotations

import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from twisted_reqresp import ServerMetrics
from twisted_reqresp.testing import connected_pair

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from examples.authorize import Authorize, router


class MetricsLabelPoisoningTests(SynchronousTestCase):
    """Refused invented names do not take the bounded method labels."""

    def test_refused_invented_names_do_not_take_labels(self) -> None:
        """100 invented names refused by an interceptor stay 'other'; a real one is labelled."""
        authorize = Authorize(tokens={"operator-token": {"shutdown"}})
        metrics = ServerMetrics()
        pair = connected_pair(router, interceptors=[metrics, authorize])
        metrics.watch(pair.factory)
        # A client with no credentials makes up 100 method names.
        refused = [pair.client.call(f"junk{i}", b"") for i in range(100)]
        pair.pump()
        for d in refused:
            d.addErrback(lambda f: None)
        # Then the operator calls a real method.
        d = pair.client.call("shutdown", b'""', metadata={"authorization": "operator-token"})
        pair.pump()
        self.successResultOf(d)
        self.assertEqual(
            metrics.registry.get_sample_value(
                "reqresp_requests_total", {"method": "shutdown", "status": "OK"}
            ),
            1.0,
            f"labels taken by refused invented names: {len(metrics._labelled)}",
        )
