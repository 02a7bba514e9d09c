"""StudyConfig.from_spec: the agreed spec shape parses; every bad field is named."""

from __future__ import annotations

import copy

import pytest

from hwtune.api.records import Goal, Hardware, Objective
from hwtune.engine import Budget, StudyConfig
from hwtune.optimize.hardware import PoolSpec
from hwtune.api.crd import ManifestError, TuningStudySpec

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
    assert c.scheduler_name == "mo-asha" and c.seed == 7
    assert c.budget == Budget(200, 16, 500, 120, 86400)
    assert c.transfer_from == ("old",)
    assert c.spec.trial_template is not None and c.max_resource == 81


def test_minimal_spec_defaults():
    c = StudyConfig.from_spec({"objectives": [{"metric": "loss"}],
                               "parameters": {"x": {"type": "float", "min": 0, "max": 1}}})
    assert len(c.hardware) == 0
    assert not c.fidelity_declared and c.fidelity.max == 1
    assert c.scheduler_name == "fifo" and c.searcher_name == "random" and c.seed == 0
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


# The engine does not validate specs itself: the CRD model does, with the API server's paths and
# words; only what needs the pool catalog (hardware.pools) is the engine's.
@pytest.mark.parametrize(
    ("change", "value", "path", "words"),
    [
        ("objectives", [], "spec.objectives", "at least 1 item"),
        ("objectives", _DELETE, "spec.objectives", "Required value"),
        ("objectives.1.goal", "lowest", "spec.objectives[1].goal", "'minimize' or 'maximize'"),
        ("objectives.2.metric", "val_error", "spec.objectives", "must be unique"),
        ("objectives.0.weight", 1, "spec.objectives[0].weight", "unknown field"),
        ("parameters", _DELETE, "spec.parameters", "Required value"),
        ("parameters.lr.max", 1e-5, "spec.parameters[lr].min", "min must be less than max"),
        ("parameters.runtime", {"type": "float", "min": 0, "max": 1}, "spec.parameters",
         "parameter runtime is named like a built-in metric"),
        ("hardware.pools", ["t4", "a100", "tpu"], "spec.hardware.pools[2]", "unknown pool"),
        ("fidelity.max", 1, "spec.fidelity.min", "min must be less than max"),
        ("fidelity.min", 0, "spec.fidelity.min", "greater than or equal to 1"),
        ("fidelity.reductionFactor", 1, "spec.fidelity.reductionFactor",
         "greater than or equal to 2"),
        ("fidelity.max", _DELETE, "spec.fidelity.max", "Required value"),
        ("algorithm.scheduler", "bohb", "spec.algorithm.scheduler", "'fifo', 'random', 'asha'"),
        ("algorithm.searcher", "bohb", "spec.algorithm.searcher", "'random', 'grid', 'tpe' or 'transfer'"),
        ("algorithm.seed", -1, "spec.algorithm.seed", "greater than or equal to 0"),
        ("algorithm.settings", [1], "spec.algorithm.settings", "must be an object"),
        ("budget.maxTrials", 0, "spec.budget.maxTrials", "greater than or equal to 1"),
        ("budget.maxParallelTrials", 300, "spec.budget.maxParallelTrials",
         "must not exceed maxTrials"),
        ("budget.maxCostUSD", -1, "spec.budget.maxCostUSD", "greater than or equal to 0"),
        ("budget.maxGPUHours", "lots", "spec.budget.maxGPUHours", "valid number"),
        ("budget.deadline", 5, "spec.budget.deadline", "unknown field"),
        ("checkpoints.uri", "s3://b/p", "spec.checkpoints", "exactly one"),
        ("trialTemplate", "pod.yaml", "spec.trialTemplate", "valid dictionary"),
        ("transfer.fromStudies", "old", "spec.transfer.fromStudies", "valid list"),
        ("transfer.mapping", {"learning-rate": "lr"}, "spec.transfer.mapping",
         "parameter name learning-rate must match"),
        ("trials", 5, "spec.trials", "unknown field"),
    ],
)
def test_bad_fields_are_named(change, value, path, words):
    with pytest.raises(ManifestError) as info:
        StudyConfig.from_spec(_with(change, value))
    assert info.value.path == path, info.value
    assert words in info.value.reason, info.value


def test_trial_template_can_be_required():
    spec = _with("trialTemplate", _DELETE)
    StudyConfig.from_spec(spec)
    with pytest.raises(ManifestError, match="spec.trialTemplate: Required value"):
        StudyConfig.from_spec(spec, require_trial_template=True)


def test_engine_takes_the_validated_crd_model():
    study = TuningStudySpec.model_validate(FULL)
    c = StudyConfig.from_model(study)
    assert c.spec is study and c.fidelity is study.fidelity
    assert c.scheduler_name == "mo-asha" and c.settings == {"tieBreak": "crowding"}
    # transfer.mapping is part of the one model (renamed parameters of the earlier studies)
    mapped = StudyConfig.from_spec(_with("transfer.mapping", {"learning_rate": "lr"}))
    assert mapped.spec.transfer.mapping == {"learning_rate": "lr"}


def test_make_scheduler_uses_the_study_settings():
    c = StudyConfig.from_spec(_with("algorithm.scheduler", "asha"))
    scheduler = c.make_scheduler()
    assert list(scheduler.objectives) == list(c.objectives)
    suggestion = scheduler.suggest()
    assert suggestion is not None and suggestion.hardware in c.hardware
    assert c.space.validate(suggestion.config) == suggestion.config


def test_pool_catalog_takes_models_or_spec_maps():
    from hwtune.api.crd import HardwarePoolSpec
    from hwtune.engine.config import pool_catalog

    spec = {"gpuType": "nvidia-l4", "gpuMemoryGiB": 24, "gpusPerNode": 4, "pricePerNodeHour": 4.6,
            "relativeThroughput": 1.5}
    from_model = pool_catalog({"l4": HardwarePoolSpec.model_validate(spec)})
    from_map = pool_catalog({"l4": spec})
    assert from_model["l4"] == from_map["l4"] and "t4" in from_model
    assert list(pool_catalog({"l4": spec}, base=None)) == ["l4"]
    c = StudyConfig.from_spec({**FULL, "hardware": {"pools": ["l4"], "gpuCounts": [1, 4]}},
                              catalog=from_model)
    assert list(c.hardware) == [Hardware("l4", 1), Hardware("l4", 4)]
