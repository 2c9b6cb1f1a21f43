"""Schemathesis against the live admin service on a real broker: every operation of the
OpenAPI document is fuzzed (valid and invalid data, then stateful sequences that follow
the links between operations); no answer may be a 5xx, and every answer must match the
document (status code, content type, headers, body schema), and auth must be enforced.

It runs twice: with the operator token, and with account A's API key while account B
has a webhook; then no answer of the whole run (its HAR report) may hold B's webhook id
or URL, and B's webhook is still there, as it was.

One check is left out: `positive_data_acceptance` expects every schema-valid body to be
accepted, but a URL that is schema-valid may still be refused by rules JSON Schema cannot
state (the SSRF guard resolves the host; yarl's URL grammar). Those refusals are checked
to be well-formed 422s like any other answer.

The seed is fixed so a failure here reproduces; `SCHEMATHESIS_EXAMPLES` raises the
examples per operation for a deeper run (the default keeps this test near 30 s).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from synctec_webhooks.admin.openapi import build_spec
from tests.integration.admin_client import AdminClient
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


def _operations() -> int:
    methods = ("get", "post", "patch", "delete", "put")
    return sum(1 for item in build_spec()["paths"].values() for m in item if m in methods)


@pytest.mark.parametrize("credential", ["operator", "api_key"])
def test_schemathesis_finds_no_server_error_and_no_answer_off_the_spec(
    admin: Pipeline, tmp_path: Path, credential: str
) -> None:
    op = AdminClient(admin.admin_url(), admin.admin_token)
    token, foreign = admin.admin_token, ()
    if credential == "api_key":
        for account in ("acct_a", "acct_b"):
            assert op.post("/accounts", {"id": account}).status == 201
        token = op.post("/accounts/acct_a/api-keys", {}).body["key"]
        url_b = f"http://127.0.0.1:9/only-b-{secrets.token_hex(6)}"
        hook_b = op.post("/webhooks", {"url": url_b, "events": ["*"], "account_id": "acct_b"})
        assert hook_b.status == 201, hook_b.body
        foreign = (hook_b.body["id"], url_b)
    har = tmp_path / "run.har"
    run = _schemathesis(admin, tmp_path, token, har)
    assert run.returncode == 0, (
        f"schemathesis found failures; see the captured output\n{_summary(run.stdout)}"
    )
    # every operation of the document was exercised (but the document's own, which
    # schemathesis leaves out)
    assert f"Tested: {_operations() - 1}" in run.stdout, _summary(run.stdout)
    if foreign:
        text = har.read_text()
        assert len(json.loads(text)["log"]["entries"]) > 100
        for secret in foreign:
            assert secret not in text, f"{secret} of account B answered to account A's key"
        after = op.get(f"/webhooks/{foreign[0]}")
        assert after.status == 200 and after.body["url"] == foreign[1], after.body


def _schemathesis(
    admin: Pipeline, tmp_path: Path, token: str, har: Path
) -> subprocess.CompletedProcess[str]:
    examples = os.environ.get("SCHEMATHESIS_EXAMPLES", "10")
    run = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{admin.admin_url()}/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--report",
            "har",
            "--report-har-path",
            str(har),
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
    return run


def _summary(out: str) -> str:
    return out[out.find("SUMMARY") :][:3000]
