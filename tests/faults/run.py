"""`make faults`: every fault scenario at a chosen scale, printed as a table.

    python -m tests.faults.run [--scale short|long] [--only NAME ...] [--write-doc FILE]

Uses KAFKA_BOOTSTRAP_SERVERS when set, else starts a local broker (the broker and
cluster scenarios start their own). With --write-doc the table replaces the part of
FILE between the fault-suite markers, with the date and the machine it ran on.
Exits 1 when any scenario lost a pair or the fan-out wrote a duplicate.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from synctec_webhooks.localkafka import LocalBroker
from tests.faults.oracle import HEADER, Report
from tests.faults.scenarios import LONG, SCENARIOS, SHORT

START, END = "<!-- fault-suite:start -->", "<!-- fault-suite:end -->"


@contextlib.contextmanager
def broker() -> Iterator[str]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    with LocalBroker() as b:
        yield b.bootstrap_servers


def machine() -> str:
    cpus = os.cpu_count()
    mem = ""
    with contextlib.suppress(OSError):
        kb = int(re.findall(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[0])
        mem = f", {kb / 2**20:.0f} GiB"
    return f"{platform.machine()}, {cpus} cores{mem}, Python {platform.python_version()}"


def write_doc(path: Path, reports: list[Report], scale: str, seconds: float) -> None:
    text = path.read_text()
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = "\n".join([HEADER, *(r.row() for r in reports)])
    block = (
        f"{START}\nLast run: {when}, `{scale}` scale, {seconds / 60:.1f} min, on {machine()}.\n\n"
        f"{table}\n{END}"
    )
    path.write_text(re.sub(re.escape(START) + ".*?" + re.escape(END), block, text, flags=re.S))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scale", choices=["short", "long"], default="long")
    p.add_argument("--only", nargs="*", choices=list(SCENARIOS), default=list(SCENARIOS))
    p.add_argument("--write-doc", type=Path)
    args = p.parse_args(argv)
    scale = LONG if args.scale == "long" else SHORT
    reports: list[Report] = []
    started = time.monotonic()
    print(HEADER, flush=True)
    with broker() as bootstrap, tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        for name in args.only:
            report = SCENARIOS[name](bootstrap, Path(tmp) / name, scale)
            reports.append(report)
            print(report.row(), *(f"  note: {n}" for n in report.notes), sep="\n", flush=True)
    elapsed = time.monotonic() - started
    bad = [r for r in reports if r.missing or r.fanout_duplicates or r.notes]
    print(f"\n{len(reports)} scenarios in {elapsed / 60:.1f} min; "
          f"{'all accounted for' if not bad else f'{len(bad)} FAILED'}")  # fmt: skip
    if args.write_doc:
        write_doc(args.write_doc, reports, scale.name, elapsed)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
