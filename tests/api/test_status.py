"""Status models: written by the operator in Python, read back from the API server."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from hwtune.api.crd import (
    Condition,
    LearningCurvePoint,
    TuningStudy,
    TuningStudyStatus,
    TuningTrial,
    TuningTrialStatus,
    parse_manifest,
)
from hwtune.api.records import TrialPhase
from invalid_manifests import example_study, example_study_status, example_trial

NOW = dt.datetime(2026, 11, 24, 2, 30, tzinfo=dt.timezone.utc)


def test_study_status_serialises_with_api_names() -> None:
    out = example_study_status().to_dict()
    assert out["spentCostUSD"] == 12.5 and out["gpuHours"] == 3.25 and out["frontSize"] == 1
    assert out["trials"] == {"total": 12, "pending": 0, "running": 4, "paused": 0,
                             "completed": 6, "stopped": 2, "failed": 0}
    assert out["paretoFront"][0]["hardware"] == {"pool": "a100", "gpuCount": 2}
    assert out["conditions"][0]["lastTransitionTime"] == "2026-11-24T02:30:00Z"
    assert out["startTime"] == "2026-11-24T02:30:00Z"


def test_study_with_status_round_trips() -> None:
    doc = {**example_study(), "status": example_study_status().to_dict()}
    study = parse_manifest(doc)
    assert isinstance(study, TuningStudy)
    assert study.status == example_study_status()
    assert study.to_dict() == doc


def test_trial_status_round_trips() -> None:
    status = TuningTrialStatus(
        phase=TrialPhase.PAUSED, resource=3, runtime_seconds=90.0, cost_usd=0.2,
        learning_curve=[LearningCurvePoint(resource=r, metrics={"val_error": 0.5 / r}, time=NOW)
                        for r in (1, 2, 3)],
        last_checkpoint="resnet-cifar/7/epoch-3", job_name="resnet-cifar-7-0",
        reason="PausedAtRung")
    doc = {**example_trial(), "status": status.to_dict()}
    trial = parse_manifest(doc)
    assert isinstance(trial, TuningTrial) and trial.status == status
    assert doc["status"]["costUSD"] == 0.2 and doc["status"]["phase"] == "Paused"
    assert [p["resource"] for p in doc["status"]["learningCurve"]] == [1, 2, 3]


def test_status_refuses_impossible_values() -> None:
    with pytest.raises(ValidationError, match="spentCostUSD"):
        TuningStudyStatus.model_validate({"spentCostUSD": -1.0})
    with pytest.raises(ValidationError, match="phase"):
        TuningTrialStatus.model_validate({"phase": "Exploded"})
    with pytest.raises(ValidationError, match="type"):
        Condition(type="not camel", status="True")
    with pytest.raises(ValidationError, match="resource"):
        LearningCurvePoint(resource=0, metrics={})
