"""The embedded operator's life cycle without a cluster: the API server address is a closed
local port, so kopf logs in (from the kubeconfig), becomes ready and then finds nothing to talk
to. Starting, stopping, thread clean-up and the "never SIGKILL the host" rule are what is tested;
the webhook against a real API server is in tests/cluster/test_admission.py."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest

from hwtune.controller import OperatorSettings
from hwtune.controller.operator import EmbeddedOperator

UNREACHABLE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: not-a-real-token}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
"""


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(UNREACHABLE_KUBECONFIG)
    return path


def test_embedded_operator_starts_stops_and_leaves_no_threads(
        kubeconfig: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL)  # kopf's connection retries are expected noise here
    before = set(threading.enumerate())
    operator = EmbeddedOperator(OperatorSettings(kubeconfig=kubeconfig, webhook_port=None,
                                                 standalone=True, shutdown_timeout_s=5))
    started = time.monotonic()
    operator.start(timeout=30)
    assert operator.running
    operator.stop(check=False)  # it may already have failed to reach the API: not the point
    assert not operator.running
    assert time.monotonic() - started < 30
    with pytest.raises(RuntimeError, match="can be started once"):
        operator.start()
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(threading.enumerate()) - before

