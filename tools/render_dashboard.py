"""Draw the Grafana dashboard's panels from a live Prometheus, as one PNG.

Grafana itself is not needed: every panel of deploy/grafana/dashboards/*.json is drawn
with matplotlib at its grid position, from its own queries (variables substituted),
over a time range of real data. docs/dashboard.png is made this way by the
observability test (see docs/operations.md, "The dashboard"):

    python tools/render_dashboard.py --prometheus http://127.0.0.1:9090 \\
        --minutes 10 --var job=synctec-.+ --out docs/dashboard.png
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: render straight to a file

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools import dashboard as dash

BACKGROUND, PANEL, TEXT, GRID = "#111217", "#181b1f", "#ccccdc", "#2c3235"
COLOURS = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#705da0"]
ROW_UNIT = 0.42  # inches per Grafana grid row


def fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "NaN"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    if unit == "s":
        if value >= 60:
            return f"{value / 60:.1f} min"
        return f"{value:.3g} s" if value >= 1 else f"{value * 1000:.3g} ms"
    suffix = {"reqps": "/s", "ops": "/s"}.get(unit, "")
    return f"{value:.3g}{suffix}"


def legend(template: str, metric: Mapping[str, str]) -> str:
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), template)
    text = text.strip() or ",".join(f"{k}={v}" for k, v in metric.items()) or "value"
    # matplotlib leaves labels starting with "_" out of legends; "_other" is a real value.
    return " " + text if text.startswith("_") else text


def series(
    prom: dash.Prometheus, expr: str, start: float, end: float, step: float
) -> list[tuple[dict[str, str], list[dt.datetime], list[float]]]:
    out = []
    for result in prom.query_range(expr, start, end, step):
        times = [dt.datetime.fromtimestamp(float(t)) for t, _ in result["values"]]
        values = [float(v) for _, v in result["values"]]
        out.append((result["metric"], times, values))
    return out


def draw_timeseries(
    ax: Axes, panel: Mapping[str, Any], queries: Sequence[dash.Query], data: list[Any]
) -> None:
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
    n = 0
    for query, found in zip(queries, data, strict=True):
        for metric, times, values in found:
            ax.plot(
                times, values, color=COLOURS[n % len(COLOURS)], lw=1.4,
                label=legend(query.legend, metric),
            )  # fmt: skip
            n += 1
    if n == 0:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", color=TEXT, transform=ax.transAxes)
    ax.yaxis.set_major_formatter(lambda v, _pos: fmt(v, unit))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    ax.grid(color=GRID, lw=0.6)
    ax.tick_params(colors=TEXT, labelsize=7)
    if 0 < n <= 10:
        ax.legend(fontsize=6.5, loc="upper left", facecolor=PANEL, labelcolor=TEXT, framealpha=0.6)


def draw_stat(ax: Axes, panel: Mapping[str, Any], data: list[Any]) -> None:
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
    values = [v for found in data for _m, _t, vs in found for v in vs if not math.isnan(v)]
    last = [vs[-1] for found in data for _m, _t, vs in found if vs]
    text = fmt(sum(last), unit) if last else "no data"
    if values:
        times = next(t for found in data for _m, t, _v in found)
        spark = next(vs for found in data for _m, _t, vs in found)
        ax.fill_between(times, spark, color="#73bf69", alpha=0.15)
    ax.text(0.5, 0.45, text, ha="center", va="center", color="#73bf69", fontsize=20,
            fontweight="bold", transform=ax.transAxes)  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])


def render(
    prom: dash.Prometheus,
    values: Mapping[str, str],
    start: float,
    end: float,
    out: Path,
    board: Mapping[str, Any] | None = None,
) -> int:
    """Draw every panel; returns how many panels had data."""
    board = board or dash.load_dashboard()
    rows = [p for p in board["panels"] if p["type"] == "row"]
    drawn = list(dash.panels(board))
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in board["panels"])
    fig = plt.figure(figsize=(20, height * ROW_UNIT), facecolor=BACKGROUND)
    step = max(1.0, (end - start) / 240)
    with_data = 0
    for row in rows:
        y = 1 - (row["gridPos"]["y"] + 0.7) / height
        fig.text(0.01, y, row["title"], color=TEXT, fontsize=12, fontweight="bold")
    for panel in drawn:
        g = panel["gridPos"]
        # Grafana's grid: 24 columns, rows from the top; matplotlib's axes from the bottom.
        # Room on the left for the y tick labels, on top for the title.
        left = 0.004 if panel["type"] == "stat" else 0.034
        rect = (
            g["x"] / 24 + left,
            1 - (g["y"] + g["h"]) / height + 0.008,
            g["w"] / 24 - left - 0.004,
            g["h"] / height - 0.024,
        )
        ax = fig.add_axes(rect, facecolor=PANEL)
        ax.set_title(panel["title"], color=TEXT, fontsize=9, loc="left")
        for spine in ax.spines.values():
            spine.set_color(GRID)
        queries = dash.panel_queries(panel, values)
        data = [series(prom, q.expr, start, end, step) for q in queries]
        with_data += any(found for found in data)
        if panel["type"] == "stat":
            draw_stat(ax, panel, data)
        else:
            draw_timeseries(ax, panel, queries, data)
    stamp = dt.datetime.fromtimestamp(end).strftime("%Y-%m-%d %H:%M:%S")
    fig.text(0.99, 0.998, f"{board['title']}  ·  data until {stamp}  ·  drawn from Prometheus",
             color=TEXT, fontsize=9, ha="right", va="top")  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, facecolor=BACKGROUND)
    plt.close(fig)
    return with_data


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--prometheus", required=True, help="base URL of the Prometheus server")
    p.add_argument("--minutes", type=float, default=15.0, help="time range ending now")
    p.add_argument("--start", type=float, help="range start (unix seconds), instead of --minutes")
    p.add_argument("--end", type=float, help="range end (unix seconds; default now)")
    p.add_argument("--var", action="append", default=[], help="NAME=VALUE for a variable")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    board = dash.load_dashboard()
    values = dash.all_values(board)
    for item in args.var:
        name, _, value = item.partition("=")
        values[name] = value
    end = args.end or time.time()
    start = args.start or end - args.minutes * 60
    drawn = render(dash.Prometheus(args.prometheus), values, start, end, args.out, board)
    print(f"{args.out}: {drawn} of {len(list(dash.panels(board)))} panels with data")
    return 0


if __name__ == "__main__":
    sys.exit(main())
