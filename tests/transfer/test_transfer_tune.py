"""A study with transfer.fromStudies runs under ``hwtune tune``: the earlier study is a work
directory next to the new one's, and the transfer searcher starts from its best trial."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from hwtune.api.records import Objective
from hwtune.backends.local.studies import load_workdir
from hwtune.cli.main import app
from tests.backends.local_support import toy_spec
from tests.cli.test_cli import write_study

runner = CliRunner()


def _created(workdir: Path) -> list[dict]:
    lines = (workdir / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["kind"] == "created"]


def test_tune_with_transfer_from_an_earlier_work_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    old = toy_spec(max_trials=5, parallel=2)
    result = runner.invoke(app, ["tune", str(write_study(tmp_path / "old.yaml", old, "old")), "-q"])
    assert result.exit_code == 0, result.output
    past = load_workdir(tmp_path / ".hwtune" / "old")
    best = past.best(Objective("val_error"))
    assert len(past.reported()) == 5 and best is not None

    new = toy_spec(max_trials=4, parallel=1)
    # The developer narrowed x and added y (the toy trainer ignores y).
    new["parameters"] = {"x": {"type": "float", "min": 0.05, "max": 0.95},
                         "y": {"type": "int", "min": 1, "max": 4}}
    new["algorithm"].update(searcher="transfer", scheduler="asha")
    new["transfer"] = {"fromStudies": ["old"], "method": "best-first-tpe"}
    study_file = write_study(tmp_path / "new.yaml", new, "new")
    result = runner.invoke(app, ["validate", str(study_file)])  # no earlier study needed here
    assert result.exit_code == 0 and "asha/transfer" in result.output, result.output
    result = runner.invoke(app, ["tune", str(study_file), "-q"])
    assert result.exit_code == 0, result.output
    assert "transfer (best-first-tpe) from old: 5 trials with reports (workdir:" in result.output
    created = _created(tmp_path / ".hwtune" / "new")
    assert len(created) == 4
    first = created[0]["config"]
    assert first["x"] == min(0.95, max(0.05, best.config["x"])) and 1 <= first["y"] <= 4

    # --resume rebuilds the same study with the same transfer (the searcher replays exactly),
    # from the snapshot of the earlier study, even when that study is gone by now.
    assert (tmp_path / ".hwtune" / "new" / "transfer.json").is_file()
    (tmp_path / ".hwtune" / "old").rename(tmp_path / "old-moved")
    result = runner.invoke(app, ["tune", str(study_file), "-q", "--resume"])
    assert result.exit_code == 0, result.output
    assert _created(tmp_path / ".hwtune" / "new")[:4] == created


def test_tune_names_a_missing_or_unusable_earlier_study(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    new = toy_spec(max_trials=2)
    new["algorithm"]["searcher"] = "transfer"
    new["transfer"] = {"fromStudies": ["gone"]}
    result = runner.invoke(app, ["tune", str(write_study(tmp_path / "new.yaml", new, "new")), "-q"])
    assert result.exit_code == 2
    assert "earlier study 'gone' not found" in result.output and ".hwtune/gone" in result.output

    # An earlier study that never got a report (stopped before its first epoch).
    (tmp_path / ".hwtune" / "gone").mkdir(parents=True)
    (tmp_path / ".hwtune" / "gone" / "study.json").write_text(
        json.dumps({"name": "gone", "spec": toy_spec(), "pools": {}}))
    result = runner.invoke(app, ["tune", str(tmp_path / "new.yaml"), "-q"])
    assert result.exit_code == 2, result.output
    assert "earlier study 'gone'" in result.output and "has no trial with a report" in result.output


def test_the_transfer_example_validates_and_matches_its_first_version() -> None:
    import yaml

    from hwtune.engine import StudyConfig
    from hwtune.engine.config import pool_catalog
    from hwtune.transfer import HARDWARE, match_spaces
    from tests.backends.local_support import REPO

    result = runner.invoke(app, ["validate", str(REPO / "examples" / "local-transfer-study.yaml")])
    assert result.exit_code == 0, result.output
    specs = {}
    for name in ("local-study.yaml", "local-transfer-study.yaml"):
        docs = list(yaml.safe_load_all((REPO / "examples" / name).read_text()))
        pools = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "HardwarePool"}
        specs[name] = StudyConfig.from_spec(docs[0]["spec"], catalog=pool_catalog(pools))
    old, new = specs["local-study.yaml"], specs["local-transfer-study.yaml"]
    assert new.transfer_from == ("digits-mlp",) and new.transfer_method == "best-first-tpe"
    m = match_spaces(old.space, new.space, old_hardware=tuple(old.hardware),
                     new_hardware=tuple(new.hardware))
    assert m.new_names == ("activation",) and m.removed == ("layers",)
    assert m.shared["lr"].change == "shifted" and m.shared[HARDWARE].change == "choices-removed"
