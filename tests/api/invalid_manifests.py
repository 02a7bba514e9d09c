"""One table of bad manifests, refused both by the pydantic models (tests/api/test_validation.py)
and by the real API server (tests/cluster/test_crds.py).

Each case starts from a valid example (examples/study.yaml, examples/pools.yaml, or a small
trial), changes one thing, and says which field must be named and with which reason: ``server``
is a fragment of kubectl's stderr, ``model`` a fragment of the pydantic FieldError message.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

DELETE = object()


def example_study() -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / "study.yaml").read_text())


def example_pool() -> dict[str, Any]:
    return next(iter(yaml.safe_load_all((EXAMPLES / "pools.yaml").read_text())))


def example_trial() -> dict[str, Any]:
    return {
        "apiVersion": "hwtune.io/v1alpha1",
        "kind": "TuningTrial",
        "metadata": {"name": "resnet-cifar-7"},
        "spec": {
            "studyName": "resnet-cifar",
            "trialId": 7,
            "parameters": {"lr": 0.01, "batch_size": 128, "model": "resnet18",
                           "optimizer": "sgd", "momentum": 0.9},
            "hardware": {"pool": "a100", "gpuCount": 2},
            "targetResource": 9,
            "resumeFromCheckpoint": "resnet-cifar/7/epoch-3",
        },
    }


def example_study_status() -> Any:
    """A status as the operator would write it mid-study."""
    from hwtune.api.crd import (
        BestValue,
        Condition,
        FrontPoint,
        HardwareChoice,
        StudyPhase,
        TrialCounts,
        TuningStudyStatus,
    )

    now = dt.datetime(2026, 11, 24, 2, 30, tzinfo=dt.timezone.utc)
    a100x2 = HardwareChoice.model_validate({"pool": "a100", "gpuCount": 2})
    return TuningStudyStatus(
        phase=StudyPhase.RUNNING,
        observed_generation=1,
        conditions=[Condition(type="Valid", status="True", reason="SpecValid",
                              last_transition_time=now, observed_generation=1)],
        trials=TrialCounts(total=12, running=4, completed=6, stopped=2),
        spent_cost_usd=12.5, gpu_hours=3.25, hypervolume=0.61, front_size=1,
        pareto_front=[FrontPoint(trial="resnet-cifar-7", trial_id=7, hardware=a100x2,
                                 parameters={"lr": 0.01, "model": "resnet18"},
                                 objectives={"val_error": 0.08, "runtime": 610.0, "cost": 1.39})],
        best_per_objective={"val_error": BestValue(trial="resnet-cifar-7", trial_id=7, value=0.08,
                                                   hardware=a100x2)},
        start_time=now,
    )


BASES = {"study": example_study, "pool": example_pool, "trial": example_trial}


@dataclass(frozen=True)
class Case:
    id: str
    base: str
    edits: dict[tuple[Any, ...], Any]  # path -> new value (DELETE removes the key)
    path: str  # field path the refusal must name (API-server notation)
    server: str  # fragment of kubectl's stderr
    model: str = ""  # fragment of the pydantic message (default: same as server)
    unknown_field: bool = False  # refused by strict field validation (decoding), not the schema
    notes: str = field(default="", compare=False)

    def manifest(self) -> dict[str, Any]:
        doc = copy.deepcopy(BASES[self.base]())
        for path, value in self.edits.items():
            target = doc
            for step in path[:-1]:
                target = target[step]
            if value is DELETE:
                del target[path[-1]]
            else:
                target[path[-1]] = value
        return doc

    @property
    def model_fragment(self) -> str:
        return self.model or self.server


S = ("spec",)
P = ("spec", "parameters")

STUDY_CASES = [
    Case("unknown-field", "study", {S + ("objectivs",): []}, "spec.objectivs",
         server='unknown field "spec.objectivs"', model="unknown field", unknown_field=True),
    Case("unknown-nested-field", "study", {S + ("budget", "maxTrial"): 3}, "spec.budget.maxTrial",
         server='unknown field "spec.budget.maxTrial"', model="unknown field",
         unknown_field=True),
    Case("unknown-parameter-field", "study", {P + ("lr", "log"): True}, "spec.parameters[lr].log",
         server='unknown field "spec.parameters.lr.log"', model="unknown field",
         unknown_field=True),
    Case("wrong-type-max-trials", "study", {S + ("budget", "maxTrials"): "many"},
         "spec.budget.maxTrials", server="must be of type integer", model="valid integer"),
    Case("wrong-type-objectives", "study", {S + ("objectives",): "val_error"}, "spec.objectives",
         server="must be of type array", model="valid list"),
    Case("wrong-type-min", "study", {P + ("lr", "min"): "small"}, "spec.parameters[lr].min",
         server="must be of type number", model="valid number"),
    Case("empty-objectives", "study", {S + ("objectives",): []}, "spec.objectives",
         server="should have at least 1 items", model="at least 1 item"),
    Case("missing-objectives", "study", {S + ("objectives",): DELETE}, "spec.objectives",
         server="Required value", model="Required value"),
    Case("duplicate-objectives", "study",
         {S + ("objectives",): [{"metric": "val_error"}, {"metric": "val_error",
                                                          "goal": "maximize"}]},
         "spec.objectives", server="objective metric names must be unique"),
    Case("bad-goal", "study", {S + ("objectives", 0, "goal"): "best"}, "spec.objectives[0].goal",
         server='Unsupported value: "best"', model="Input should be 'minimize' or 'maximize'"),
    Case("bad-metric-name", "study", {S + ("objectives", 0, "metric"): "val error"},
         "spec.objectives[0].metric", server="should match", model="should match pattern"),
    Case("empty-parameters", "study", {P: {}}, "spec.parameters",
         server="should have at least 1 properties", model="at least 1 item"),
    Case("bad-parameter-name", "study",
         {P + ("learning rate",): {"type": "float", "min": 0.1, "max": 1.0}}, "spec.parameters",
         server="parameter name learning rate must match ^[A-Za-z_][A-Za-z0-9_-]*$"),
    # Katib names like learning-rate are fine, but two names may not share one env variable.
    Case("parameter-env-name-collision", "study",
         {P + ("weight-decay",): {"type": "float", "min": 0.1, "max": 1.0}}, "spec.parameters",
         server="parameter names must stay distinct as env names",
         model="parameters weight_decay and weight-decay both become env variable "
               "HWTUNE_PARAM_WEIGHT_DECAY"),
    Case("step-on-log-range", "study", {P + ("lr", "step"): 0.01}, "spec.parameters[lr].step",
         server="step applies to a linear min/max range only"),
    Case("step-on-values", "study", {P + ("batch_size", "step"): 2},
         "spec.parameters[batch_size].step", server="step applies to a linear min/max range only"),
    Case("int-fractional-step", "study",
         {P + ("layers",): {"type": "int", "min": 1, "max": 8, "step": 1.5}},
         "spec.parameters[layers].step", server="an int parameter needs an integer step"),
    Case("step-zero", "study", {P + ("momentum", "step"): 0.0}, "spec.parameters[momentum].step",
         server="should be greater than 0", model="greater than 0"),
    Case("step-too-fine", "study", {P + ("momentum", "step"): 1e-6},
         "spec.parameters[momentum].step", server="step must leave at most 10000 values"),
    Case("bad-metric-strategy", "study", {S + ("objectives", 0, "strategy"): "best"},
         "spec.objectives[0].strategy", server='Unsupported value: "best"',
         model="Input should be 'latest', 'min' or 'max'"),
    Case("target-not-a-number", "study", {S + ("objectives", 0, "target"): "low"},
         "spec.objectives[0].target", server="must be of type number", model="valid number"),
    Case("negative-max-failed-trials", "study", {S + ("budget", "maxFailedTrials"): -1},
         "spec.budget.maxFailedTrials", server="should be greater than or equal to 0",
         model="greater than or equal to 0"),
    Case("collector-bad-kind", "study", {S + ("metricsCollector",): {"kind": "file"}},
         "spec.metricsCollector.kind", server='Unsupported value: "file"',
         model="Input should be 'sdk', 'stdout', 'json' or 'regex'"),
    Case("collector-regex-without-pattern", "study", {S + ("metricsCollector",): {"kind": "regex"}},
         "spec.metricsCollector.pattern",
         server="pattern is required with kind regex and applies to it only"),
    Case("collector-pattern-without-regex", "study",
         {S + ("metricsCollector",): {"kind": "stdout", "pattern": "(?P<loss>.*)"}},
         "spec.metricsCollector.pattern",
         server="pattern is required with kind regex and applies to it only"),
    Case("collector-resource-metric-with-sdk", "study",
         {S + ("metricsCollector",): {"resourceMetric": "epoch"}},
         "spec.metricsCollector.resourceMetric",
         server="resourceMetric applies to a collector that parses output"),
    Case("collector-resource-metric-is-objective", "study",
         {S + ("metricsCollector",): {"kind": "stdout", "resourceMetric": "val_error"}},
         "spec.metricsCollector.resourceMetric",
         server="metricsCollector.resourceMetric must not be an objective metric"),
    Case("collector-additional-metrics-with-sdk", "study",
         {S + ("metricsCollector",): {"additionalMetrics": ["accuracy"]}},
         "spec.metricsCollector.additionalMetrics",
         server="additionalMetrics applies to a collector that parses output"),
    Case("collector-additional-metric-built-in", "study",
         {S + ("metricsCollector",): {"kind": "stdout", "additionalMetrics": ["cost"]}},
         "spec.metricsCollector.additionalMetrics",
         server="additionalMetrics must not name a built-in metric"),
    Case("bad-parameter-type", "study", {P + ("lr", "type"): "double"}, "spec.parameters[lr].type",
         server='Unsupported value: "double"', model="Input should be 'float', 'int' or"),
    Case("min-above-max", "study", {P + ("lr", "min"): 0.5}, "spec.parameters[lr].min",
         server="min must be less than max"),
    Case("min-equals-max", "study", {P + ("momentum", "max"): 0.0}, "spec.parameters[momentum].min",
         server="min must be less than max"),
    Case("log-scale-zero-min", "study", {P + ("weight_decay", "min"): 0.0},
         "spec.parameters[weight_decay].min", server="log scale needs min > 0"),
    Case("max-without-min", "study", {P + ("momentum", "min"): DELETE},
         "spec.parameters[momentum].max", server="min and max must be set together"),
    Case("int-fractional-bound", "study",
         {P + ("layers",): {"type": "int", "min": 1.5, "max": 4}}, "spec.parameters[layers].min",
         server="an int parameter needs integer min and max"),
    Case("scale-on-values", "study", {P + ("batch_size", "scale"): "log"},
         "spec.parameters[batch_size].scale", server="scale applies to a min/max range only"),
    Case("categorical-with-range", "study",
         {P + ("model", "min"): 0.0, P + ("model", "max"): 1.0}, "spec.parameters[model].type",
         server="min, max and scale apply to int and float parameters only"),
    Case("empty-categorical", "study", {P + ("model", "values"): []},
         "spec.parameters[model].values", server="should have at least 1 items",
         model="at least 1 item"),
    Case("categorical-without-values", "study", {P + ("model", "values"): DELETE},
         "spec.parameters[model].values", server="a categorical parameter needs values"),
    Case("values-and-range", "study",
         {P + ("batch_size", "min"): 64.0, P + ("batch_size", "max"): 512.0},
         "spec.parameters[batch_size].values",
         server="takes either values or min and max, not both"),
    Case("int-values-not-integers", "study", {P + ("batch_size", "values"): [64, 128.5]},
         "spec.parameters[batch_size].values", server="values of an int parameter must be integers"),
    Case("duplicate-values", "study", {P + ("optimizer", "values"): ["sgd", "adam", "sgd"]},
         "spec.parameters[optimizer].values", server="values must be unique"),
    Case("default-outside-values", "study", {P + ("batch_size", "default"): 100},
         "spec.parameters[batch_size].default", server="default must be one of values"),
    Case("default-outside-range", "study", {P + ("lr", "default"): 0.5},
         "spec.parameters[lr].default", server="default must be one of values"),
    Case("parameter-named-like-builtin-metric", "study",
         {P + ("runtime",): {"type": "float", "min": 0.1, "max": 1.0}}, "spec.parameters",
         server="parameter runtime is named like a built-in metric"),
    Case("transfer-mapping-bad-name", "study",
         {S + ("transfer",): {"fromStudies": ["old"], "mapping": {"learning rate": "lr"}}},
         "spec.transfer.mapping", server="parameter name learning rate must match"),
    Case("transfer-mapping-bad-target", "study",
         {S + ("transfer",): {"fromStudies": ["old"], "mapping": {"learning_rate": "l r"}}},
         "spec.transfer.mapping[learning_rate]", server="should match",
         model="should match pattern"),
    Case("condition-unknown-parameter", "study",
         {P + ("momentum", "condition", "parameter"): "optimiser"}, "spec.parameters",
         server="condition of parameter momentum refers to unknown parameter optimiser"),
    Case("condition-on-itself", "study",
         {P + ("momentum", "condition", "parameter"): "momentum"}, "spec.parameters",
         server="condition of parameter momentum refers to the parameter itself"),
    Case("condition-value-not-taken", "study", {P + ("momentum", "condition", "in"): ["rmsprop"]},
         "spec.parameters",
         server="condition of parameter momentum lists a value that parameter optimizer does not "
                "take"),
    Case("condition-empty-in", "study", {P + ("momentum", "condition", "in"): []},
         "spec.parameters[momentum].condition.in", server="should have at least 1 items",
         model="at least 1 item"),
    Case("gpu-count-zero", "study", {S + ("hardware", "gpuCounts"): [0, 1]},
         "spec.hardware.gpuCounts[0]", server="should be greater than or equal to 1",
         model="greater than or equal to 1"),
    Case("duplicate-gpu-counts", "study", {S + ("hardware", "gpuCounts"): [1, 2, 2]},
         "spec.hardware.gpuCounts[2]", server="Duplicate value: 2"),
    Case("bad-pool-name", "study", {S + ("hardware", "pools"): ["t4", "A100"]},
         "spec.hardware.pools[1]", server="should match", model="should match pattern"),
    Case("scaling-efficiency-above-one", "study", {S + ("hardware", "scalingEfficiency"): 1.5},
         "spec.hardware.scalingEfficiency", server="should be less than or equal to 1",
         model="less than or equal to 1"),
    Case("override-of-unlisted-pool", "study",
         {S + ("hardware", "overrides"): {"v100": {"pricePerGPUHour": 1.0}}},
         "spec.hardware.overrides", server="override for pool v100 names a pool not listed"),
    Case("override-bad-pool-name", "study",
         {S + ("hardware", "pools"): [], S + ("hardware", "overrides"): {"A100": {}}},
         "spec.hardware.overrides", server="pool name A100 must match"),
    Case("override-with-both-prices", "study",
         {S + ("hardware", "overrides"): {"a100": {"pricePerGPUHour": 3.0,
                                                   "pricePerNodeHour": 20.0}}},
         "spec.hardware.overrides[a100].pricePerNodeHour",
         server="set at most one of pricePerGPUHour and pricePerNodeHour"),
    Case("negative-cost-budget", "study", {S + ("budget", "maxCostUSD"): -1.0},
         "spec.budget.maxCostUSD", server="should be greater than or equal to 0",
         model="greater than or equal to 0"),
    Case("zero-max-trials", "study", {S + ("budget", "maxTrials"): 0}, "spec.budget.maxTrials",
         server="should be greater than or equal to 1", model="greater than or equal to 1"),
    Case("parallel-above-max-trials", "study", {S + ("budget", "maxParallelTrials"): 300},
         "spec.budget.maxParallelTrials", server="maxParallelTrials must not exceed maxTrials"),
    Case("missing-trial-template", "study", {S + ("trialTemplate",): DELETE},
         "spec.trialTemplate", server="Required value"),
    Case("no-containers", "study", {S + ("trialTemplate", "spec", "containers"): []},
         "spec.trialTemplate.spec.containers", server="should have at least 1 items",
         model="at least 1 item"),
    Case("container-without-image", "study",
         {S + ("trialTemplate", "spec", "containers"): [{"name": "trainer"}]},
         "spec.trialTemplate.spec.containers[0].image", server="Required value"),
    Case("trial-template-spec-and-job", "study",
         {S + ("trialTemplate", "job"): {"template": {"spec": {"containers": [
             {"name": "trainer", "image": "x"}]}}}},
         "spec.trialTemplate.spec", server="set exactly one of spec or job"),
    Case("trial-template-neither-spec-nor-job", "study",
         {S + ("trialTemplate", "spec"): DELETE},
         "spec.trialTemplate.spec", server="set exactly one of spec or job"),
    Case("primary-container-unknown", "study",
         {S + ("trialTemplate", "primaryContainerName"): "main"},
         "spec.trialTemplate.primaryContainerName",
         server="primaryContainerName must name one of the containers"),
    Case("job-negative-backoff", "study",
         {S + ("trialTemplate",): {"job": {"backoffLimit": -1, "template": {"spec": {
             "containers": [{"name": "trainer", "image": "x"}]}}}}},
         "spec.trialTemplate.job.backoffLimit", server="should be greater than or equal to 0",
         model="greater than or equal to 0"),
    Case("job-unknown-field", "study",
         {S + ("trialTemplate",): {"job": {"parallelism": 4, "template": {"spec": {
             "containers": [{"name": "trainer", "image": "x"}]}}}}},
         "spec.trialTemplate.job.parallelism",
         server='unknown field "spec.trialTemplate.job.parallelism"', model="unknown field",
         unknown_field=True),
    Case("job-with-top-level-metadata", "study",
         {S + ("trialTemplate",): {"metadata": {"labels": {"a": "b"}}, "job": {"template": {
             "spec": {"containers": [{"name": "trainer", "image": "x"}]}}}}},
         "spec.trialTemplate.metadata", server="metadata applies to spec"),
    Case("fidelity-min-not-below-max", "study", {S + ("fidelity", "min"): 81},
         "spec.fidelity.min", server="min must be less than max"),
    Case("reduction-factor-one", "study", {S + ("fidelity", "reductionFactor"): 1},
         "spec.fidelity.reductionFactor", server="should be greater than or equal to 2",
         model="greater than or equal to 2"),
    Case("bad-scheduler", "study", {S + ("algorithm", "scheduler"): "bohb"},
         "spec.algorithm.scheduler", server='Unsupported value: "bohb"',
         model="Input should be 'fifo'"),
    Case("mo-asha-without-fidelity", "study", {S + ("fidelity",): DELETE}, "spec.fidelity",
         server="this scheduler needs fidelity"),
    # Only names with a registered factory are listed (hwtune.api.algorithms).
    Case("searcher-nothing-runs", "study", {S + ("algorithm", "searcher"): "bohb"},
         "spec.algorithm.searcher", server='Unsupported value: "bohb"',
         model="Input should be 'random', 'grid', 'tpe', 'transfer', 'dyhpo', 'fms'"),
    Case("transfer-method-unknown", "study",
         {S + ("transfer",): {"fromStudies": ["old"], "method": "warm-start"}},
         "spec.transfer.method", server='Unsupported value: "warm-start"',
         model="Input should be 'only-new'"),
    Case("scheduler-nothing-runs", "study", {S + ("algorithm", "scheduler"): "pbt"},
         "spec.algorithm.scheduler", server='Unsupported value: "pbt"',
         model="Input should be 'fifo'"),
    # One metric-name rule for the schema and the report protocol (which refuses ':').
    Case("metric-name-with-colon", "study", {S + ("objectives", 0, "metric"): "val:err"},
         "spec.objectives[0].metric", server="should match", model="should match pattern"),
    Case("fidelity-resource-with-colon", "study", {S + ("fidelity", "resource"): "ep:och"},
         "spec.fidelity.resource", server="should match", model="should match pattern"),
    Case("checkpoints-pvc-and-uri", "study", {S + ("checkpoints", "uri"): "s3://bucket/ckpt"},
         "spec.checkpoints", server="set exactly one of persistentVolumeClaim or uri"),
    Case("checkpoints-path-with-uri", "study",
         {S + ("checkpoints",): {"uri": "s3://bucket/ckpt", "path": "/ckpt"}},
         "spec.checkpoints.path", server="path applies to persistentVolumeClaim only"),
    Case("checkpoints-bad-uri", "study", {S + ("checkpoints",): {"uri": "bucket/ckpt"}},
         "spec.checkpoints.uri", server="should match", model="should match pattern"),
    Case("study-name-too-long", "study", {("metadata", "name"): "s" * 49}, "metadata.name",
         server="may not be more than 48", model="at most 48 characters"),
]

POOL_CASES = [
    Case("pool-both-prices", "pool", {S + ("pricePerNodeHour",): 4.24}, "spec",
         server="set exactly one of pricePerGPUHour or pricePerNodeHour"),
    Case("pool-no-price", "pool", {S + ("pricePerGPUHour",): DELETE}, "spec",
         server="set exactly one of pricePerGPUHour or pricePerNodeHour"),
    Case("pool-zero-gpus-per-node", "pool", {S + ("gpusPerNode",): 0}, "spec.gpusPerNode",
         server="should be greater than or equal to 1", model="greater than or equal to 1"),
    Case("pool-zero-memory", "pool", {S + ("gpuMemoryGiB",): 0}, "spec.gpuMemoryGiB",
         server="should be greater than 0", model="greater than 0"),
    Case("pool-negative-price", "pool", {S + ("pricePerGPUHour",): -0.5},
         "spec.pricePerGPUHour", server="should be greater than or equal to 0",
         model="greater than or equal to 0"),
    Case("pool-toleration-exists-with-value", "pool",
         {S + ("tolerations",): [{"key": "nvidia.com/gpu", "operator": "Exists",
                                  "value": "present"}]},
         "spec.tolerations[0].value", server="operator Exists takes no value"),
]

TRIAL_CASES = [
    Case("trial-gpu-count-zero", "trial", {S + ("hardware", "gpuCount"): 0},
         "spec.hardware.gpuCount", server="should be greater than or equal to 1",
         model="greater than or equal to 1"),
    Case("trial-missing-study", "trial", {S + ("studyName",): DELETE}, "spec.studyName",
         server="Required value"),
    Case("trial-negative-id", "trial", {S + ("trialId",): -1}, "spec.trialId",
         server="should be greater than or equal to 0", model="greater than or equal to 0"),
]

ALL_CASES = STUDY_CASES + POOL_CASES + TRIAL_CASES


# ---------------------------------------------------------------------------------------------
# Files, not decoded documents: what the YAML reader itself must refuse (or accept) the way
# kubectl and the API server do. ``path``/``model`` as above for the offline refusal (empty path:
# the file as a whole); ``refused`` is the verdict both sides must reach.


@dataclass(frozen=True)
class YamlCase:
    id: str
    build: Any  # () -> str: the file's text
    refused: bool
    path: str = ""
    model: str = ""


def _study_text(name: str) -> str:
    doc = example_study()
    doc["metadata"]["name"] = name
    return yaml.safe_dump(doc, sort_keys=False)


def _replace_once(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def _yaml_number() -> str:
    # min: 1e-4 is a float in YAML 1.2 and for kubectl; PyYAML 1.1 made it a string.
    return _replace_once(_study_text("yaml-number"), "min: 0.0001", "min: 1e-4")


def _duplicate_key() -> str:
    return _replace_once(_study_text("yaml-duplicate"), "      min: 0.0001\n",
                         "      min: 0.0001\n      min: 0.5\n")


def _duplicate_parameter() -> str:
    text = _study_text("yaml-duplicate-param")
    lines = text.splitlines(keepends=True)
    start = lines.index("    lr:\n")
    block = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith("      "):
            break
        block.append(line)
    return "".join(lines[:start] + block + block + lines[start + len(block):])


def _nan_max() -> str:
    return _replace_once(_study_text("yaml-nan"), "      max: 0.1\n", "      max: .nan\n")


def _billion_laughs() -> str:
    lines = ["lol: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 9):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    doc = _study_text("yaml-bomb")
    # The bomb sits in free-form pod metadata, where a schema cannot refuse it.
    return _replace_once(doc, "  trialTemplate:\n",
                         "  trialTemplate:\n    metadata:\n      bomb:\n" +
                         "".join(f"        {line}\n" for line in lines))


def _deep_nesting() -> str:
    # In a typed field the API server refuses it too; in a free-form field (pod template extras)
    # the server accepts up to its own 10,000 levels while hwtune stops at 100 (it serialises
    # specs with Python's recursive JSON encoder): deliberately stricter, and never a traceback.
    return _replace_once(_study_text("yaml-deep"), "    maxTrials: 200\n",
                         "    maxTrials: " + "[" * 1000 + "]" * 1000 + "\n")


def _oversized() -> str:
    # Not a comment: kubectl drops comments, the request must really be large.
    return _replace_once(_study_text("yaml-large"), "  trialTemplate:\n",
                         "  trialTemplate:\n    metadata:\n      padding: " + "x" * (3 * 1024 * 1024 + 100)
                         + "\n")


YAML_CASES = [
    YamlCase("yaml-1.2-number", _yaml_number, refused=False),
    YamlCase("yaml-duplicate-field", _duplicate_key, refused=True,
             path="spec.parameters[lr].min", model="duplicate key 'min'"),
    YamlCase("yaml-duplicate-parameter", _duplicate_parameter, refused=True,
             path="spec.parameters[lr]", model="duplicate key 'lr'"),
    YamlCase("yaml-nan", _nan_max, refused=True, path="spec.parameters[lr].max",
             model="finite number"),
    YamlCase("yaml-billion-laughs", _billion_laughs, refused=True,
             path="spec.trialTemplate.metadata.bomb", model="aliases expand"),
    YamlCase("yaml-1000-levels", _deep_nesting, refused=True, model="nested more than"),
    YamlCase("yaml-over-3-mib", _oversized, refused=True, model="3 MiB"),
]
