"""The short fault suite, run by `make test`: every scenario at the short scale.

Missing must be 0 and fan-out duplicates must be 0 in every scenario; duplicate POSTs
are allowed only where a worker was killed (and then carry the same delivery id, which
tests/integration/test_pipeline.py checks).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.scenarios import SCENARIOS, SHORT

pytestmark = pytest.mark.broker

# Where duplicate POSTs are expected: a SIGKILLed worker redoes what it had finished
# since its last commit; a broker outage longer than the session timeout takes the
# partitions away the same way.
CRASHES = {
    "delivery_sigkill",
    "everything",
    "broker_restart",
    "cluster_node_killed",
    "delivery_scale_out",
    "retry_rebalance",
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_fault_scenario(name: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    report = SCENARIOS[name](kafka_bootstrap, tmp_path, SHORT)
    print(report)
    assert report.expected > 0
    assert report.missing == 0, report
    assert report.fanout_duplicates == 0, report
    assert report.delivered + report.dead_lettered == report.expected, report
    assert not report.notes, report
    if name not in CRASHES:
        assert report.duplicate_posts == 0, report
