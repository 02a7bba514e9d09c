"""A real Prometheus (Debian's ``prometheus`` binary) on 127.0.0.1 for tests and the dashboard
renderer, and a small client of its HTTP API. Nothing here reaches beyond loopback."""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml

__all__ = ["PrometheusError", "PrometheusServer", "free_port", "prometheus_binary", "query_api"]


class PrometheusError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prometheus_binary(name: str = "prometheus") -> str:
    """The binary's path, or an error that says how to install it (never a silent skip)."""
    found = shutil.which(name)
    if found is None:
        raise PrometheusError(f"{name} not found on PATH: install Debian's prometheus package "
                              "(apt-get install -y prometheus; .ci/run does this)")
    return found


def query_api(base: str, path: str, params: dict[str, Any] | None = None,
              timeout: float = 10.0) -> Any:
    url = f"{base}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        raise PrometheusError(f"{path} {params}: HTTP {exc.code}: {exc.read().decode()[:500]}") from None
    if body.get("status") != "success":
        raise PrometheusError(f"{path} {params}: {body}")
    return body["data"]


class PrometheusServer:
    """``prometheus`` scraping ``targets`` (job name -> list of host:port) every
    ``scrape_interval``, with ``rule_groups`` loaded; its data in a temporary directory."""

    def __init__(self, targets: dict[str, Sequence[str]], *, rule_groups: list[dict] | None = None,
                 scrape_interval: str = "1s", workdir: Path | None = None) -> None:
        self.binary = prometheus_binary()
        self._tmp = None if workdir is not None else tempfile.TemporaryDirectory(prefix="hwtune-prom-")
        self.dir = Path(workdir or self._tmp.name)  # type: ignore[union-attr]
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        config: dict[str, Any] = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": list(t)}]}
                               for job, t in targets.items()],
        }
        if rule_groups:
            rules = self.dir / "rules.yaml"
            rules.write_text(yaml.safe_dump({"groups": rule_groups}, sort_keys=False))
            config["rule_files"] = [str(rules)]
        self.config_file = self.dir / "prometheus.yml"
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "prometheus.log"

    def start(self, timeout: float = 60.0) -> "PrometheusServer":
        log = open(self.log, "wb")
        self.process = subprocess.Popen(
            [self.binary, f"--config.file={self.config_file}",
             f"--storage.tsdb.path={self.dir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}",
             "--storage.tsdb.retention.time=1h"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrometheusError(f"prometheus exited {self.process.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.base}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise PrometheusError(f"prometheus not ready after {timeout}s:\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "PrometheusServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- queries --------------------------------------------------------------------------------
    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        data = query_api(self.base, "/api/v1/query", params)
        if data["resultType"] != "vector":
            raise PrometheusError(f"{expr}: expected a vector, got {data['resultType']}")
        return data["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        return query_api(self.base, "/api/v1/query_range",
                         {"query": expr, "start": start, "end": end, "step": step})["result"]

    def rules(self) -> list[dict[str, Any]]:
        return [r for g in query_api(self.base, "/api/v1/rules")["groups"] for r in g["rules"]]

    def wait_for(self, expr: str, predicate, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll ``expr`` until ``predicate(result)``; the last result in the error otherwise."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if predicate(result):
                return result
            time.sleep(0.5)
        raise PrometheusError(f"{expr}: condition not met in {timeout}s; last result {result}")


def values(result: Iterable[dict[str, Any]], *keys: str) -> dict[tuple[str, ...], float]:
    """An instant vector as {label values: float}."""
    out = {}
    for sample in result:
        out[tuple(sample["metric"].get(k, "") for k in keys)] = float(sample["value"][1])
    return out


def finite(x: float) -> bool:
    return not (math.isnan(x) or math.isinf(x))
