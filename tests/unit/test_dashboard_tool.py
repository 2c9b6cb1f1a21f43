"""tools/dashboard.py: how the test and the renderer read queries out of the dashboard
and the rules. If this misreads a query, the observability test checks the wrong thing."""

from __future__ import annotations

import pytest

from tools import dashboard as dash


@pytest.mark.parametrize(
    ("expr", "parts"),
    [
        ('up{job=~"synctec-.+"} == 0', ['up{job=~"synctec-.+"}']),
        ("a:b < 0.9 and c:d > 0.1", ["a:b", "c:d"]),
        (
            'sum by (g) (x{g!~".+[.]retry"}) > 1000 and deriv(y[10m]) > 0',
            ['sum by (g) (x{g!~".+[.]retry"})', "deriv(y[10m])"],
        ),
        ("sum(rate(x[5m])) > bool 1e3 unless z", ["sum(rate(x[5m]))", "z"]),
        ("sum(a and b) > 1", ["sum(a and b)"]),  # only top-level operators split
        (
            "histogram_quantile(0.99, sum by (le) (rate(h[5m]))) >= 300",
            ["histogram_quantile(0.99, sum by (le) (rate(h[5m])))"],
        ),
    ],
)
def test_measures(expr: str, parts: list[str]) -> None:
    assert dash.measures(expr) == parts


def test_metric_names_ignore_label_values_and_recorded_series() -> None:
    expr = (
        'sum(rate(synctec_deliveries_total{outcome="synctec_fake_total"}[1m])) '
        '/ synctec:deliveries:rate5m + count(up{job="x"}) + synctec_delivery_e2e_seconds_bucket'
    )
    assert dash.metric_names(expr) == {
        "synctec_deliveries_total",
        "synctec_delivery_e2e_seconds_bucket",
        "up",
    }
    assert dash.recorded_names(expr) == {"synctec:deliveries:rate5m"}


def test_substitute_fills_every_variable_or_refuses() -> None:
    expr = 'rate(x{job=~"$job", event_type=~"${event_type}"}[$__rate_interval])'
    assert (
        dash.substitute(expr, {"job": "a|b", "event_type": ".+"})
        == 'rate(x{job=~"a|b", event_type=~".+"}[1m])'
    )
    with pytest.raises(ValueError, match="unsubstituted"):
        dash.substitute(expr, {"job": "a"})


def test_the_real_dashboard_and_rules_yield_queries() -> None:
    board = dash.load_dashboard()
    queries = dash.dashboard_queries(board, dash.all_values(board))
    assert len(queries) >= 20 and all("$" not in q.expr for q in queries)
    measured = dash.rule_queries(dash.load_rules())
    assert {q.source.split()[1] for q in measured if q.source.startswith("alert")} == {
        "SynctecDeadLettersGrowing",
        "SynctecDeliverySuccessRatioLow",
        "SynctecEndToEndLatencyHigh",
        "SynctecConsumerLagGrowing",
        "SynctecWorkerDown",
        "SynctecWebhookSecretUnavailable",
    }
    assert dash.variable_query(dash.variables(board)["job"]) == ("job", 'up{job=~"synctec-.+"}')
