"""Fixtures shared by the integration tests (the broker ones live in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.harness import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook endpoint on loopback that records every POST (see harness.Receiver)."""
    r = Receiver().start()
    yield r
    r.stop()
