"""Schemathesis against the live admin service on a real broker: every operation of the
OpenAPI document is fuzzed (valid and invalid data, then stateful sequences that follow
the links between operations); no answer may be a 5xx, and every answer must match the
document (status code, content type, headers, body schema), and auth must be enforced.

One check is left out: `positive_data_acceptance` expects every schema-valid body to be
accepted, but a URL that is schema-valid may still be refused by rules JSON Schema cannot
state (the SSRF guard resolves the host; yarl's URL grammar). Those refusals are checked
to be well-formed 422s like any other answer.

The seed is fixed so a failure here reproduces; `SCHEMATHESIS_EXAMPLES` raises the
examples per operation for a deeper run (the default keeps this test near 30 s).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import ADMIN, Pipeline

pytestmark = pytest.mark.broker


@pytest.fixture
def admin(kafka_bootstrap: str, unique_name: str, tmp_path: Path) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, unique_name, tmp_path)
    try:
        yield p.start([ADMIN])
    finally:
        codes = p.stop()
        print(p.all_logs())
    assert codes == {ADMIN: 0}


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_spec(
    admin: Pipeline, tmp_path: Path
) -> None:
    examples = os.environ.get("SCHEMATHESIS_EXAMPLES", "10")
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{admin.admin_url()}/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {admin.admin_token}",
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            examples,
            "--seed",
            "20261127",
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--request-timeout",
            "30",
            "--no-color",
            "--output-truncate",
            "true",
        ],
        cwd=tmp_path,  # its caches and reports stay out of the repository
        capture_output=True,
        text=True,
        timeout=600,
    )
    (tmp_path / "schemathesis.out").write_text(run.stdout + run.stderr)
    print(run.stdout[:60000], run.stderr[-5000:])  # failures come first, then the summary
    assert run.returncode == 0, (
        f"schemathesis found failures; see the captured output\n{_summary(run.stdout)}"
    )
    assert "Tested: 10" in run.stdout  # every operation of the document was exercised


def _summary(out: str) -> str:
    return out[out.find("SUMMARY") :][:3000]
