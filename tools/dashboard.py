"""The Grafana dashboard and the Prometheus rules as data: their queries, ready to run.

Used by the observability test (every query must return data from a live pipeline)
and by `tools/render_dashboard.py` (draws the panels from the same queries). Grafana
variables are substituted the way Grafana does for a multi-value "All": with the
variable's `allValue` regex, or with the values given.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "synctec-webhooks.json"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"

# What Grafana puts in for its built-in interval variables; the test's Prometheus
# scrapes every second, so a minute holds plenty of samples for rate().
BUILTINS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}
_METRIC = re.compile(r"\bsynctec_[a-z0-9_]+\b|\bup\b(?=\s*\{)")
_LABEL_VALUES = re.compile(r"^label_values\((?P<match>.+),\s*(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\)$")
_RECORDED = re.compile(r"\bsynctec:[a-z0-9_:]+")
_COMPARISON = re.compile(r"\s*(?:==|!=|>=|<=|>|<)\s*(?:bool\s+)?[-+]?[0-9.eE+]+\s*$")


@dataclass(frozen=True)
class Query:
    source: str  # "panel 'Delivery rate' A", "rule SynctecWorkerDown", ...
    expr: str
    legend: str = ""


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def load_rules(path: Path = RULES) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel with queries, rows' nested panels included."""
    for panel in dashboard.get("panels", []):
        yield from (p for p in panel.get("panels", []) if p.get("targets"))
        if panel.get("targets"):
            yield panel


def variables(dashboard: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace $name and ${name} (longest names first, so $job does not eat $jobs)."""
    merged = {**BUILTINS, **{f"${k}": v for k, v in values.items()}}
    for name in sorted(merged, key=len, reverse=True):
        expr = expr.replace("${" + name[1:] + "}", merged[name]).replace(name, merged[name])
    if "$" in expr:
        raise ValueError(f"unsubstituted variable left in {expr!r}")
    return expr


def all_values(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """Each query variable set to "All", as Grafana sends it (its allValue regex)."""
    return {
        name: v.get("allValue") or ".*"
        for name, v in variables(dashboard).items()
        if v.get("type") == "query"
    }


def variable_query(variable: Mapping[str, Any]) -> tuple[str, str]:
    """(label, series selector) of a `label_values(selector, label)` variable."""
    query = variable["query"]
    text = query["query"] if isinstance(query, dict) else str(query)
    found = _LABEL_VALUES.match(text.strip())
    if found is None:
        raise ValueError(f"variable {variable['name']}: not a label_values() query: {text!r}")
    return found["label"], found["match"]


def panel_queries(panel: Mapping[str, Any], values: Mapping[str, str]) -> list[Query]:
    return [
        Query(
            f"panel {panel['title']!r} {t.get('refId', '')}",
            substitute(t["expr"], values),
            t.get("legendFormat") or "",
        )
        for t in panel["targets"]
    ]


def dashboard_queries(dashboard: Mapping[str, Any], values: Mapping[str, str]) -> list[Query]:
    return [q for p in panels(dashboard) for q in panel_queries(p, values)]


def rule_queries(rules: Mapping[str, Any]) -> list[Query]:
    """Recording rules as they are; each alert split into the measures it compares.

    An alert returns data only while it fires; its measures ("the success ratio",
    "the lag") must return data all the time, or the alert could never fire.
    """
    out: list[Query] = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            expr = " ".join(str(rule["expr"]).split())
            if "record" in rule:
                out.append(Query(f"record {rule['record']}", expr))
                continue
            for i, part in enumerate(measures(expr)):
                out.append(Query(f"alert {rule['alert']} measure {i + 1}", part))
    return out


def measures(expr: str) -> list[str]:
    """`a > 1 and b < 2` -> [a, b]: top-level and/or/unless parts, comparisons dropped."""
    parts: list[str] = []
    depth, start, i = 0, 0, 0
    while i < len(expr):
        ch = expr[i]
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0:
            match = re.match(r"\s+(and|or|unless)\s+", expr[i:])
            if match:
                parts.append(expr[start:i])
                i += match.end()
                start = i
                continue
        i += 1
    parts.append(expr[start:])
    return [_COMPARISON.sub("", p).strip() for p in parts]


def metric_names(expr: str) -> set[str]:
    """Exported metric names a query reads (recording rules' names excluded)."""
    stripped = _RECORDED.sub(" ", expr)
    stripped = re.sub(r'"[^"]*"', '""', stripped)  # label values are not metric names
    return set(_METRIC.findall(stripped))


def recorded_names(expr: str) -> set[str]:
    return set(_RECORDED.findall(expr))


# --- a small Prometheus HTTP API client ------------------------------------------


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def get(self, path: str, **params: str | float) -> Any:
        query = urllib.parse.urlencode({k: str(v) for k, v in params.items()})
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=30) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, str | float] = {"query": expr}
        if at is not None:
            params["time"] = at
        return list(self.get("/api/v1/query", **params)["result"])

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query_range", query=expr, start=start, end=end, step=step)
        return list(data["result"])

    def label_values(self, label: str, match: str) -> list[str]:
        return list(self.get(f"/api/v1/label/{label}/values", **{"match[]": match}))
