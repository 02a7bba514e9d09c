"""``hwtune tune`` with searcher dyhpo and transfer.fromStudies: the earlier study's work
directory meta-trains the surrogate; a study it cannot be mapped to is refused naming the
field; ``--resume`` replays the same suggestions."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from hwtune.cli.main import app
from tests.backends.local_support import toy_spec
from tests.cli.test_cli import write_study

runner = CliRunner()
SETTINGS = {"fullFitSteps": 30, "refitSteps": 3, "freshCandidates": 8}


def _events(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "events.jsonl").read_text().splitlines()]


def test_tune_meta_trains_the_surrogate_on_an_earlier_work_directory(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    old = toy_spec(max_trials=4, parallel=1)
    result = runner.invoke(app, ["tune", str(write_study(tmp_path / "old.yaml", old, "old")), "-q"])
    assert result.exit_code == 0, result.output

    new = toy_spec(max_trials=3, parallel=1)
    new["algorithm"] = {"scheduler": "dyhpo", "searcher": "dyhpo", "seed": 2,
                        "settings": dict(SETTINGS)}
    new["transfer"] = {"fromStudies": ["old"]}
    study_file = write_study(tmp_path / "new.yaml", new, "new")
    result = runner.invoke(app, ["tune", str(study_file), "-q"])
    assert result.exit_code == 0, result.output
    assert "transfer (dyhpo surrogate meta-trained, joint) from old: 4 trials with reports" \
        in result.output
    assert "SurrogateFallback" not in result.output  # every suggestion came from the model
    events = _events(tmp_path / ".hwtune" / "new")
    created = [e for e in events if e["kind"] == "created"]
    assert len(created) == 3 and any(e["kind"] == "resumed" for e in events)
    assert (tmp_path / ".hwtune" / "new" / "transfer.json").is_file()
    # --resume replays the log (the earlier study comes from the snapshot, even once it is gone).
    (tmp_path / ".hwtune" / "old").rename(tmp_path / "old-moved")
    result = runner.invoke(app, ["tune", str(study_file), "-q", "--resume"])
    assert result.exit_code == 0, result.output
    assert [e for e in _events(tmp_path / ".hwtune" / "new") if e["kind"] == "created"][:3] == created

    # An earlier study with none of this study's parameters: exit 2, naming the field.
    other = dict(new)
    other["parameters"] = {"z": {"type": "float", "min": 0.0, "max": 1.0}}
    (tmp_path / "old-moved").rename(tmp_path / ".hwtune" / "old2")
    other["transfer"] = {"fromStudies": ["old2"]}
    result = runner.invoke(app, ["tune", str(write_study(tmp_path / "z.yaml", other, "z")), "-q"])
    assert result.exit_code == 2, result.output
    assert "transfer.fromStudies[0] ('old', workdir:.hwtune/old2)" in result.output
    assert "shares no parameter with spec.parameters" in result.output
    assert "Traceback" not in result.output
