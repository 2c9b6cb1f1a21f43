"""The broker's software: Apache Kafka's jars, resolved from Maven Central once into a
cache folder whose contents are the JVM's classpath."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from synctec_webhooks.errors import BrokerError
from synctec_webhooks.localkafka.files import POM_FILE
from synctec_webhooks.localkafka.tools import require_tool, tail

logger = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"

_COMPLETE_MARKER = ".complete"


def cache_dir() -> Path:
    """`$SYNCTEC_CACHE_DIR`, or ~/.cache/synctec-webhooks when unset or empty."""
    configured = os.environ.get("SYNCTEC_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "synctec-webhooks"


def jar_dir() -> Path:
    """Where the broker's jars live once fetched: the JVM classpath is `<jar_dir>/*`."""
    return cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"


def fetch_jars() -> Path:
    """Resolve the broker's jars with Maven into `jar_dir()`, unless already there."""
    target = jar_dir()
    if (target / _COMPLETE_MARKER).is_file():
        return target
    mvn = require_tool("mvn")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Maven writes into a staging folder that is renamed into place only once complete,
    # so an interrupted fetch never looks like a usable classpath.
    staging = Path(tempfile.mkdtemp(prefix="libs.partial-", dir=target.parent))
    try:
        logger.info("Fetching Kafka %s jars from Maven Central into %s", KAFKA_VERSION, target)
        command = [
            mvn, "-q", "-B", "-f", str(POM_FILE),
            # Overrides the pom's property, so this module's constant names the version.
            f"-Dkafka.version={KAFKA_VERSION}",
            "dependency:copy-dependencies", "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BrokerError(
                f"Maven could not fetch the Kafka {KAFKA_VERSION} jars (exit {result.returncode}):"
                f"\n{tail(result.stdout + result.stderr)}"
            )
        (staging / _COMPLETE_MARKER).touch()
        if target.exists() and not (target / _COMPLETE_MARKER).is_file():
            shutil.rmtree(target)  # left by a fetch from before the marker existed
        try:
            staging.rename(target)
        except OSError:
            # Another process (a parallel test run) finished first: its copy will do.
            if not (target / _COMPLETE_MARKER).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
