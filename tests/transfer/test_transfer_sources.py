"""Loading an earlier study from each source gives the same records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwtune.api.records import Decision, Hardware, TrialPhase
from hwtune.backends.local.runner import EVENTS_FILE, STUDY_FILE, EventLog
from hwtune.backends.local.studies import load_studies, load_workdir
from hwtune.bench.table import BenchmarkTable, TableHeader, TableRun, TableWriter, load_table
from hwtune.engine.events import EventKind, StudyEvent
from hwtune.transfer import (
    TransferError,
    from_table,
    from_trial_objects,
    resolve_local,
)

PARAMS = {
    "lr": {"type": "float", "min": 0.001, "max": 0.1, "scale": "log"},
    "depth": {"type": "int", "min": 1, "max": 4},
    "opt": {"type": "categorical", "values": ["sgd", "adam"]},
    # Unconditional: benchmark tables hold every parameter in every run.
    "momentum": {"type": "float", "min": 0.0, "max": 0.99},
}
SPEC = {"objectives": [{"metric": "val_error"}, {"metric": "runtime"}],
        "parameters": PARAMS, "fidelity": {"resource": "epoch", "min": 1, "max": 3},
        "trialTemplate": {"spec": {"containers": [{"name": "t", "image": "x", "command": ["true"]}]}}}
# Three trials: config, per-epoch val_error, per-epoch seconds (binary fractions: exact sums).
TRIALS = [
    ({"lr": 0.01, "depth": 2, "opt": "sgd", "momentum": 0.5}, [0.5, 0.25, 0.125], [0.5, 0.5, 0.5]),
    ({"lr": 0.05, "depth": 1, "opt": "adam", "momentum": 0.0}, [0.75, 0.5, 0.375], [0.25, 0.25, 0.25]),
    ({"lr": 0.002, "depth": 4, "opt": "sgd", "momentum": 0.25}, [0.875, 0.75, 0.625], [1.0, 1.0, 1.0]),
]


def _curve(errors, seconds):
    out, total = [], 0.0
    for epoch, (err, sec) in enumerate(zip(errors, seconds), 1):
        total += sec
        out.append((epoch, {"val_error": err, "runtime": total}))
    return out


def write_workdir(path: Path, name: str = "old") -> Path:
    path.mkdir(parents=True)
    (path / STUDY_FILE).write_text(json.dumps({"name": name, "spec": SPEC, "pools": {}}))
    log = EventLog(path / EVENTS_FILE)
    seq = 0

    def emit(**kw):
        nonlocal seq
        log.append(StudyEvent(seq=seq, time=float(seq), **kw))
        seq += 1

    for tid, (config, errors, seconds) in enumerate(TRIALS):
        emit(kind=EventKind.CREATED, trial_id=tid, config=config, max_resource=3, suggested=True)
        emit(kind=EventKind.RUNNING, trial_id=tid)
        for epoch, metrics in _curve(errors, seconds):
            emit(kind=EventKind.OBSERVED, trial_id=tid, resource=epoch, metrics=metrics,
                 decision=Decision.CONTINUE, runtime_seconds=metrics["runtime"])
        emit(kind=EventKind.COMPLETED, trial_id=tid, runtime_seconds=sum(seconds))
    log.close()
    return path


def make_table() -> BenchmarkTable:
    header = TableHeader(name="old", parameters=PARAMS, seeds=(0,),
                         metrics={"val_error": {"unit": "fraction", "goal": "minimize"},
                                  "epoch_runtime": {"unit": "s", "goal": "minimize"}},
                         max_resource=3)
    runs = [TableRun(i, 0, config, 1.0, {"val_error": errors, "epoch_runtime": seconds})
            for i, (config, errors, seconds) in enumerate(TRIALS)]
    return BenchmarkTable(header, runs)


def trial_objects() -> list[dict]:
    out = []
    for tid, (config, errors, seconds) in enumerate(TRIALS):
        out.append({
            "apiVersion": "hwtune.io/v1alpha1", "kind": "TuningTrial",
            "metadata": {"name": f"old-{tid}", "namespace": "ns"},
            "spec": {"studyName": "old", "trialId": tid, "parameters": config},
            "status": {"phase": "Completed", "resource": 3, "runtimeSeconds": sum(seconds),
                       "learningCurve": [{"resource": r, "metrics": m, "time": "2026-01-01T00:00:00Z"}
                                         for r, m in _curve(errors, seconds)]},
        })
    return out[::-1]  # listing order is not trial order


def _normal(study):
    return [(t.trial_id, dict(t.config), t.hardware, t.phase,
             [(r, dict(m)) for r, m in t.curve]) for t in study.trials]


def test_three_sources_give_the_same_records(tmp_path: Path) -> None:
    from_dir = load_workdir(write_workdir(tmp_path / "old"))
    table_path = TableWriter.write_all(tmp_path / "old.jsonl", make_table())
    from_tab = from_table(load_table(table_path), objectives=from_dir.objectives)
    from_k8s = from_trial_objects("old", trial_objects(), study_spec=SPEC, namespace="ns")
    expected = [(tid, c, None, TrialPhase.COMPLETED, _curve(e, s)) for tid, (c, e, s) in enumerate(TRIALS)]
    for study in (from_dir, from_tab, from_k8s):
        assert _normal(study) == expected, study.source
        assert study.name == "old" and study.max_resource == 3
        assert [o.metric for o in study.objectives] == ["val_error", "runtime"]
        assert dict(study.parameters) == PARAMS
        assert study.best(study.objectives[0]).trial_id == 0
    assert from_dir.source.startswith("workdir:") and from_k8s.source == "cluster:ns/old"


def test_workdir_keeps_stopped_and_unfinished_trials_and_ranks_them(tmp_path: Path) -> None:
    path = write_workdir(tmp_path / "old")
    log = EventLog(path / EVENTS_FILE)
    seq = len(log.read())  # sequence numbers run on without gaps
    log.append(StudyEvent(seq=seq, kind=EventKind.CREATED, trial_id=3, time=0.0,
                          config={"lr": 0.09, "depth": 3, "opt": "adam", "momentum": 0.0},
                          hardware=Hardware("t4", 2)))
    log.append(StudyEvent(seq=seq + 1, kind=EventKind.OBSERVED, trial_id=3, time=0.0, resource=1,
                          metrics={"val_error": 0.01, "runtime": 1.0}, decision=Decision.STOP))
    log.append(StudyEvent(seq=seq + 2, kind=EventKind.CREATED, trial_id=4, time=0.0,
                          config={"lr": 0.09, "depth": 3, "opt": "adam", "momentum": 0.0}))
    log.close()
    study = load_workdir(path)
    assert [t.phase for t in study.trials][3:] == [TrialPhase.STOPPED, TrialPhase.PENDING]
    assert study.trials[3].hardware == Hardware("t4", 2)
    assert len(study.reported()) == 4
    # The stopped trial's low error at epoch 1 does not beat trials that trained to epoch 3.
    ranked = [t.trial_id for t, _ in study.ranked(study.objectives[0])]
    assert ranked == [0, 1, 2, 3]


def test_torn_last_line_is_dropped_through_the_engine_reader(tmp_path: Path) -> None:
    path = write_workdir(tmp_path / "old")
    with open(path / EVENTS_FILE, "a") as fh:
        fh.write('{"seq": 18, "kind": "crea')
    assert len(load_workdir(path).trials) == 3


def test_bad_sources_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(TransferError, match="not a hwtune work directory"):
        load_workdir(tmp_path)
    objs = trial_objects()
    objs[0]["spec"]["studyName"] = "other"
    with pytest.raises(TransferError, match=r"TuningTrial old-2: spec.studyName is 'other'"):
        from_trial_objects("old", objs, study_spec=SPEC)
    objs = trial_objects()
    objs[1]["status"]["learningCurve"][0]["metrics"]["val_error"] = "x"
    with pytest.raises(TransferError, match=r"learningCurve\[0\].metrics.val_error: must be a finite"):
        from_trial_objects("old", objs, study_spec=SPEC)
    with pytest.raises(TransferError, match=r"invalid study spec: spec.parameters\[lr\]"):
        from_trial_objects("old", [], study_spec={**SPEC, "parameters": {"lr": {"type": "float"}}})
    with pytest.raises(TransferError, match="never reported metric 'accuracy'"):
        load_workdir(write_workdir(tmp_path / "w")).check_metric("accuracy")


def test_cluster_pools_unknown_here_are_kept_as_declared() -> None:
    spec = {**SPEC, "hardware": {"pools": ["my-h200"], "gpuCounts": [1, 8]}}
    objs = trial_objects()
    for o in objs:
        o["spec"]["hardware"] = {"pool": "my-h200", "gpuCount": 8}
    study = from_trial_objects("old", objs, study_spec=spec)
    assert study.hardware == (Hardware("my-h200", 1), Hardware("my-h200", 8))
    assert {t.hardware for t in study.trials} == {Hardware("my-h200", 8)}


def test_resolve_local_by_name_next_to_the_new_workdir(tmp_path: Path) -> None:
    write_workdir(tmp_path / ".hwtune" / "old")
    assert resolve_local("old", [tmp_path / ".hwtune"]) == tmp_path / ".hwtune" / "old"
    assert resolve_local(str(tmp_path / ".hwtune" / "old"), []) == tmp_path / ".hwtune" / "old"
    with pytest.raises(TransferError, match=r"earlier study 'nope' not found .*\.hwtune/nope"):
        resolve_local("nope", [tmp_path / ".hwtune"])


def test_records_round_trip_through_json(tmp_path: Path) -> None:
    from hwtune.transfer import study_from_dict, study_to_dict

    study = load_workdir(write_workdir(tmp_path / "old"))
    again = study_from_dict(json.loads(json.dumps(study_to_dict(study))))
    assert again == study
    # Checkpoint locations (what a surrogate with a weight encoder learns from) survive too.
    first = study.trials[0]
    with_ckpts = study.subset([type(first)(first.trial_id, first.config, first.hardware, first.phase,
                                           first.curve, ((0, "/hub/a.pt"), (1, "/ck/0/epoch-1.pt")))])
    again = study_from_dict(json.loads(json.dumps(study_to_dict(with_ckpts))))
    assert again == with_ckpts and again.trials[0].checkpoint_at(1) == "/ck/0/epoch-1.pt"
    assert again.trials[0].checkpoint_at(2) is None
    with pytest.raises(TransferError, match="snap: malformed earlier study"):
        study_from_dict({"name": "x"}, "snap")


def test_trial_objects_without_builtins_in_the_curve_take_them_from_the_status() -> None:
    objs = trial_objects()
    for o in objs:
        for point in o["status"]["learningCurve"]:
            point["metrics"].pop("runtime")
        o["status"]["costUSD"] = 0.5
    study = from_trial_objects("old", objs, study_spec=SPEC)
    for t, (_, errors, seconds) in zip(study.trials, TRIALS):
        assert dict(t.final) == {"val_error": errors[-1], "runtime": sum(seconds), "cost": 0.5}
        assert "runtime" not in t.curve[0][1]


def test_table_on_a_hardware_choice_prices_runtime_and_cost() -> None:
    from hwtune.engine import StudyConfig

    config = StudyConfig.from_spec({**SPEC, "hardware": {"pools": ["a100"], "gpuCounts": [2]}})
    hw = Hardware("a100", 2)
    study = from_table(make_table(), hardware=hw, hardware_model=config.hardware_model,
                       config_indices=[2, 0])
    assert [t.trial_id for t in study.trials] == [0, 1]
    assert study.trials[0].config == TRIALS[2][0] and study.hardware == (hw,)
    final = study.trials[0].final
    expected = config.hardware_model.runtime(1.0, hw) * 3
    assert final["runtime"] == pytest.approx(expected)
    assert final["cost"] == pytest.approx(config.hardware_model.cost(expected, hw))
    assert final["runtime"] < 3.0  # faster than the reference device


def test_a_trial_objects_last_checkpoint_is_kept_at_its_last_level() -> None:
    objs = trial_objects()
    objs[0]["status"]["lastCheckpoint"] = "s3://ckpt/old/0"
    study = from_trial_objects("old", objs, study_spec=SPEC)
    by_id = {t.trial_id: t for t in study.trials}
    first = by_id.pop(objs[0]["spec"]["trialId"])
    assert first.checkpoints == ((first.last_resource, "s3://ckpt/old/0"),)
    assert all(t.checkpoints == () for t in by_id.values())
