"""A real Prometheus server (Debian's `prometheus` package) for one test module.

It runs as a plain child process on a free loopback port, with its config and TSDB in
a temporary folder, and is stopped with SIGTERM afterwards: never the system service.
Its config is deploy/prometheus/prometheus.yml with every job's service discovery
replaced by the addresses of the processes under test, and scraped every second.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from synctec_webhooks.localkafka import free_port
from tests.integration.harness import wait_until
from tools import dashboard as dash

INSTALL_HINT = "run `make test` (it installs Debian's prometheus package) or apt-get install it"


def scrape_config(targets: Mapping[str, Sequence[str]], interval: str = "1s") -> dict[str, Any]:
    """The deployed scrape config, pointed at `targets` (job name -> host:port list)."""
    config: dict[str, Any] = yaml.safe_load(dash.PROMETHEUS_CONFIG.read_text())
    config["global"] = {"scrape_interval": interval, "evaluation_interval": interval}
    config["rule_files"] = [str(dash.PROMETHEUS_CONFIG.parent / f) for f in config["rule_files"]]
    jobs = []
    for job in config["scrape_configs"]:
        name = job["job_name"]
        if name not in targets:
            continue
        jobs.append({"job_name": name, "static_configs": [{"targets": list(targets[name])}]})
    missing = set(targets) - {j["job_name"] for j in jobs}
    if missing:
        raise AssertionError(f"jobs {sorted(missing)} are not in {dash.PROMETHEUS_CONFIG}")
    config["scrape_configs"] = jobs
    return config


class PrometheusServer:
    def __init__(self, config: Mapping[str, Any], workdir: Path) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise AssertionError(f"prometheus not found; {INSTALL_HINT}")
        self._binary = binary
        self._config = workdir / "prometheus.yml"
        self._config.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        self._data = workdir / "tsdb"
        self._log = workdir / "prometheus.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 60.0) -> PrometheusServer:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    self._binary,
                    f"--config.file={self._config}",
                    f"--storage.tsdb.path={self._data}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._ready, timeout, lambda: f"prometheus not ready:\n{self.log()}")
        return self

    def _ready(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise AssertionError(f"prometheus exited {self._process.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log(self) -> str:
        return self._log.read_text()[-4000:] if self._log.exists() else ""

    @property
    def api(self) -> dash.Prometheus:
        return dash.Prometheus(self.url)

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(10)
