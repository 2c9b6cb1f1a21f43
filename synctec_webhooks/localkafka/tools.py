"""The programs the local broker needs, `java` and `mvn`: finding them, and quoting the end
of what they printed when they fail."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from synctec_webhooks.errors import BrokerError

INSTALL_HINT = "install Java 17+ and Maven: apt-get install openjdk-17-jdk-headless maven"
TAIL_LINES = 40


def require_tool(name: str) -> str:
    """The path of `name` (`$JAVA_HOME/bin/java` first for java); BrokerError if missing."""
    if name == "java" and (java_home := os.environ.get("JAVA_HOME")):
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise BrokerError(f"`{name}` not found on PATH; {INSTALL_HINT}")
    return found


def tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last `lines` lines of `text`."""
    return "\n".join(text.rstrip().splitlines()[-lines:])
