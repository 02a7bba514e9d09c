"""StudyConfig.from_spec: the agreed spec shape parses; every bad field is named."""

from __future__ import annotations

import copy

import pytest

from hwtune.api.records import Goal, Hardware, Objective
from hwtune.engine import Budget, StudyConfig
from hwtune.optimize.hardware import PoolSpec
from hwtune.space import SpecError

FULL = {
    "objectives": [
        {"metric": "val_error", "goal": "minimize"},
        {"metric": "runtime", "goal": "minimize"},
        {"metric": "cost"},
    ],
    "parameters": {
        "lr": {"type": "float", "min": 1.0e-4, "max": 1.0e-1, "scale": "log"},
        "layers": {"type": "int", "min": 1, "max": 4},
        "batch_size": {"type": "int", "values": [64, 128, 256, 512]},
        "optimizer": {"type": "categorical", "values": ["sgd", "adam"]},
        "momentum": {"type": "float", "min": 0.0, "max": 0.99, "condition": {"parameter": "optimizer", "in": ["sgd"]}},
    },
    "hardware": {
        "pools": ["t4", "a100", "h100"],
        "gpuCounts": [1, 2, 4, 8],
        "scalingEfficiency": 0.9,
        "overrides": {"a100": {"pricePerGPUHour": 3.0, "relativeThroughput": 2.5}},
    },
    "fidelity": {"resource": "epoch", "min": 1, "max": 81, "reductionFactor": 3},
    "algorithm": {"scheduler": "mo-asha", "searcher": "random", "seed": 7, "settings": {"tieBreak": "crowding"}},
    "transfer": {"fromStudies": ["old"]},
    "budget": {"maxTrials": 200, "maxParallelTrials": 16, "maxCostUSD": 500, "maxGPUHours": 120,
               "maxDurationSeconds": 86400},
    "checkpoints": {"persistentVolumeClaim": "ckpt", "path": "/checkpoints"},
    "trialTemplate": {"spec": {"containers": [{"name": "trainer", "image": "x:1", "command": ["python", "train.py"]}]}},
}


def test_full_spec_parses():
    c = StudyConfig.from_spec(FULL)
    assert c.objectives == (Objective("val_error"), Objective("runtime"), Objective("cost", Goal.MINIMIZE))
    assert c.space.names == ("lr", "layers", "batch_size", "optimizer", "momentum")
    assert len(c.hardware) == 1 + 4 + 4  # t4 only has 1 GPU per node
    assert c.hardware_model.pool(Hardware("a100")).price_per_gpu_hour == 3.0
    assert (c.fidelity.min, c.fidelity.max, c.fidelity.reduction_factor) == (1, 81, 3)
    assert c.algorithm.scheduler == "mo-asha" and c.seed == 7
    assert c.budget == Budget(200, 16, 500, 120, 86400)
    assert c.transfer_from == ("old",)
    assert c.trial_template is not None and c.max_resource == 81


def test_minimal_spec_defaults():
    c = StudyConfig.from_spec({"objectives": [{"metric": "loss"}],
                               "parameters": {"x": {"type": "float", "min": 0, "max": 1}}})
    assert len(c.hardware) == 0
    assert not c.fidelity.declared and c.fidelity.max == 1
    assert c.algorithm.scheduler == "fifo" and c.algorithm.searcher == "random" and c.seed == 0
    assert c.budget == Budget()


def test_custom_catalog():
    catalog = {"v100": PoolSpec(gpu_type="v100", gpu_memory_gib=32, gpus_per_node=4, price_per_gpu_hour=2.0)}
    c = StudyConfig.from_spec({**FULL, "hardware": {"gpuCounts": [1, 4]}}, catalog=catalog)
    assert list(c.hardware) == [Hardware("v100", 1), Hardware("v100", 4)]


def _with(path: str, value):
    spec = copy.deepcopy(FULL)
    node = spec
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if k.isdigit() else node[k]
    last = keys[-1]
    if value is _DELETE:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return spec


_DELETE = object()


@pytest.mark.parametrize(
    ("change", "value", "path", "words"),
    [
        ("objectives", [], "objectives", "non-empty"),
        ("objectives", _DELETE, "objectives", "required"),
        ("objectives.1.goal", "lowest", "objectives[1].goal", "minimize or maximize"),
        ("objectives.2.metric", "val_error", "objectives[2].metric", "twice"),
        ("objectives.0.weight", 1, "objectives[0].weight", "unknown field"),
        ("parameters", _DELETE, "parameters", "required"),
        ("parameters.lr.max", 1e-5, "parameters.lr.max", "must be > min"),
        ("parameters.runtime", {"type": "float", "min": 0, "max": 1}, "parameters.runtime", "built-in metric"),
        ("hardware.pools", ["t4", "tpu"], "hardware.pools[1]", "unknown pool"),
        ("fidelity.max", 1, "fidelity.max", "> min"),
        ("fidelity.min", 0, "fidelity.min", ">= 1"),
        ("fidelity.reductionFactor", 1, "fidelity.reductionFactor", ">= 2"),
        ("fidelity.max", _DELETE, "fidelity.max", "required"),
        ("algorithm.scheduler", "bohb", "algorithm.scheduler", "unknown scheduler"),
        ("algorithm.searcher", "bohb", "algorithm.searcher", "unknown searcher"),
        ("algorithm.seed", -1, "algorithm.seed", ">= 0"),
        ("algorithm.settings", [1], "algorithm.settings", "map"),
        ("budget.maxTrials", 0, "budget.maxTrials", "integer >= 1"),
        ("budget.maxParallelTrials", 300, "budget.maxParallelTrials", "<= maxTrials"),
        ("budget.maxCostUSD", -1, "budget.maxCostUSD", ">= 0"),
        ("budget.maxGPUHours", "lots", "budget.maxGPUHours", "number"),
        ("budget.deadline", 5, "budget.deadline", "unknown field"),
        ("checkpoints.uri", "s3://b/p", "checkpoints", "exactly one"),
        ("trialTemplate", "pod.yaml", "trialTemplate", "pod template"),
        ("transfer.fromStudies", "old", "transfer.fromStudies", "list of study names"),
        ("trials", 5, "trials", "unknown field"),
    ],
)
def test_bad_fields_are_named(change, value, path, words):
    with pytest.raises(SpecError) as info:
        StudyConfig.from_spec(_with(change, value))
    assert info.value.path == path, info.value
    assert words in info.value.reason, info.value


def test_transfer_searcher_needs_sources():
    spec = _with("algorithm.searcher", "transfer")
    del spec["transfer"]
    with pytest.raises(SpecError, match="transfer.fromStudies"):
        StudyConfig.from_spec(spec)


def test_trial_template_can_be_required():
    spec = _with("trialTemplate", _DELETE)
    StudyConfig.from_spec(spec)
    with pytest.raises(SpecError, match="trialTemplate: is required"):
        StudyConfig.from_spec(spec, require_trial_template=True)


def test_make_scheduler_uses_the_study_settings():
    c = StudyConfig.from_spec(_with("algorithm.scheduler", "asha"))
    scheduler = c.make_scheduler()
    assert list(scheduler.objectives) == list(c.objectives)
    suggestion = scheduler.suggest()
    assert suggestion is not None and suggestion.hardware in c.hardware
    assert c.space.validate(suggestion.config) == suggestion.config
