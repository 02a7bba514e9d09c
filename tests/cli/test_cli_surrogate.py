"""``hwtune tune`` with the surrogate service down: the study finishes on the fallback and the
command says so (the same reason the operator posts as a Kubernetes Event)."""

from __future__ import annotations

import json
import socket

from typer.testing import CliRunner

from hwtune.cli.main import app
from tests.backends.local_support import toy_spec
from tests.cli.test_cli import write_study


def test_tune_prints_the_surrogate_fallback_and_finishes(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    spec = toy_spec(max_trials=4, max_epochs=2)
    spec["algorithm"] = {"scheduler": "mo-asha", "searcher": "dyhpo", "seed": 1,
                         "settings": {"surrogateUrl": url, "surrogateTimeoutSeconds": 2,
                                      "initialTrials": 1}}
    path = write_study(tmp_path / "s.yaml", spec)
    workdir = tmp_path / "w"
    result = CliRunner().invoke(app, ["tune", str(path), "--workdir", str(workdir),
                                      "--max-parallel", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"SurrogateFallback: surrogate: surrogate service at {url} unreachable" in result.output
    assert "fell back to random search" in result.output
    events = [json.loads(line) for line in (workdir / "events.jsonl").open()]
    assert len([e for e in events if e["kind"] == "created"]) == 4
    assert any("notes" in (e.get("extra") or {}) for e in events)
