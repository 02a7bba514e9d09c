"""Kubeflow Katib ``v1beta1`` Experiments as TuningStudies (``hwtune convert katib``).

``convert_experiment(doc)`` returns the TuningStudy manifest and a ``Conversion`` listing, per
Katib field path, what could not be kept (``lost``: the converted study would tune differently
or not run; the command exits non-zero) and what changed meaning (``notes``). The result is
validated with the TuningStudy model, so whatever it writes passes ``hwtune validate``.

The field-by-field table is docs/coming-from-katib.md. Pure data in, data out: no cluster.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from hwtune.api.crd import API_VERSION, param_env_name, parse_manifest
from hwtune.api.records import BUILTIN_METRICS

__all__ = ["ALGORITHMS", "Conversion", "KatibConversionError", "convert_experiment"]

KATIB_API = "kubeflow.org/v1beta1"

# Katib algorithmName -> hwtune searcher (scheduler fifo unless said otherwise).
ALGORITHMS = {
    "random": "random",
    "grid": "grid",
    "tpe": "optuna-tpe",
    "multivariate-tpe": "optuna-multivariate-tpe",
    "cmaes": "optuna-cmaes",
    "sobol": "optuna-sobol",
    "bayesianoptimization": "optuna-gp",
    "hyperband": "random",  # with scheduler hyperband
}
UNSUPPORTED_ALGORITHMS = {"pbt": "population-based training", "enas": "neural architecture "
                          "search (ENAS)", "darts": "neural architecture search (DARTS)"}
MULTI_POD_KINDS = ("PyTorchJob", "TFJob", "MPIJob", "XGBoostJob", "PaddleJob", "JAXJob",
                   "TrainJob", "RayJob", "JobSet")
# With no early stopping, trials run to the end and every printed group of metrics is a
# report: the fidelity is only a ceiling on how many a trial may send.
DEFAULT_MAX_REPORTS = 10000
_JOB_FIELDS = ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished")
_PLACEHOLDER = re.compile(r"\$\{(trialParameters|trialSpec)\.([A-Za-z0-9_.\-\[\]'\"]+)\}")


class KatibConversionError(ValueError):
    """Not a Katib Experiment at all (wrong apiVersion/kind, not a mapping)."""


@dataclass
class Conversion:
    study: dict[str, Any] | None
    lost: list[tuple[str, str]] = field(default_factory=list)  # (Katib field, why)
    notes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def lossy(self) -> bool:
        return bool(self.lost)

    def lose(self, path: str, why: str) -> None:
        self.lost.append((path, why))

    def note(self, path: str, why: str) -> None:
        self.notes.append((path, why))


def _number(value: Any, path: str, conv: Conversion) -> float | int | None:
    """Katib writes numbers as strings ("0.01", "3")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    try:
        text = str(value).strip()
        return int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
    except (TypeError, ValueError):
        conv.lose(path, f"{value!r} is not a number")
        return None


def _parameters(spec: Mapping[str, Any], conv: Conversion, drop: str | None
                ) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i, p in enumerate(spec.get("parameters") or []):
        path = f"spec.parameters[{i}]"
        name = p.get("name")
        if name == drop:
            continue
        kind = p.get("parameterType")
        fs = p.get("feasibleSpace") or {}
        dist = fs.get("distribution")
        if kind in ("double", "int"):
            low = _number(fs.get("min"), f"{path}.feasibleSpace.min", conv)
            high = _number(fs.get("max"), f"{path}.feasibleSpace.max", conv)
            if fs.get("list") and (low is None or high is None):
                values = [_number(v, f"{path}.feasibleSpace.list", conv) for v in fs["list"]]
                out[name] = {"type": "float" if kind == "double" else "int", "values": values}
                continue
            if low is None or high is None:
                continue
            entry: dict[str, Any] = {"type": "float" if kind == "double" else "int",
                                     "min": float(low), "max": float(high)}
            if fs.get("step") is not None:
                step = _number(fs["step"], f"{path}.feasibleSpace.step", conv)
                if step is not None:
                    entry["step"] = float(step)
            if dist in ("logUniform",):
                entry["scale"] = "log"
            elif dist in ("normal", "logNormal"):
                conv.lose(f"{path}.feasibleSpace.distribution",
                          f"{dist} is not supported: sampled {'log-' if dist == 'logNormal' else ''}"
                          "uniformly between min and max instead")
                if dist == "logNormal":
                    entry["scale"] = "log"
            if "step" in entry and entry.get("scale") == "log":
                conv.lose(f"{path}.feasibleSpace.step", "a log-scale range takes no step in "
                          "hwtune: the step was dropped")
                del entry["step"]
            out[name] = entry
        elif kind == "discrete":
            values = [_number(v, f"{path}.feasibleSpace.list", conv) for v in fs.get("list") or []]
            values = [v for v in values if v is not None]
            integral = all(float(v).is_integer() for v in values)
            out[name] = {"type": "int" if integral else "float",
                         "values": [int(v) if integral else float(v) for v in values]}
        elif kind == "categorical":
            out[name] = {"type": "categorical", "values": [str(v) for v in fs.get("list") or []]}
        else:
            conv.lose(f"{path}.parameterType", f"unknown parameter type {kind!r}")
    return out


def _substitute(node: Any, subst: Any) -> Any:
    if isinstance(node, str):
        return subst(node)
    if isinstance(node, list):
        return [_substitute(v, subst) for v in node]
    if isinstance(node, Mapping):
        return {k: _substitute(v, subst) for k, v in node.items()}
    return node


def _regex_from_katib(pattern: str) -> str:
    """Katib's metricsFormat has two unnamed groups (name, value): name them."""
    out, seen, i = [], 0, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if ch == "(" and not pattern.startswith("(?", i) and seen < 2:
            out.append("(?P<name>" if seen == 0 else "(?P<value>")
            seen += 1
            i += 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def convert_experiment(doc: Any, *, max_resource: int | None = None,
                       configmaps: Mapping[tuple[str, str], Mapping[str, str]] | None = None
                       ) -> Conversion:
    """Convert one decoded Experiment. ``max_resource``: the highest resource level (e.g.
    epochs) for early stopping (Katib's medianstop has none). ``configmaps``: (namespace,
    name) -> data, for trial templates kept in ConfigMaps."""
    if not isinstance(doc, Mapping) or doc.get("kind") != "Experiment" \
            or doc.get("apiVersion") != KATIB_API:
        raise KatibConversionError(f"not a Katib Experiment ({KATIB_API}, kind Experiment)")
    conv = Conversion(study=None)
    meta = doc.get("metadata") or {}
    spec = doc.get("spec") or {}
    out: dict[str, Any] = {}

    # -- objective -----------------------------------------------------------------------------
    objective = spec.get("objective") or {}
    metric = objective.get("objectiveMetricName")
    entry: dict[str, Any] = {"metric": metric, "goal": objective.get("type", "minimize")}
    if objective.get("goal") is not None:
        target = _number(objective["goal"], "spec.objective.goal", conv)
        if target is not None:
            entry["target"] = float(target)
    strategies = {s.get("name"): s.get("value") for s in objective.get("metricStrategies") or []}
    # Katib's default strategy follows the objective's type (min for minimize).
    strategy = strategies.get(metric) or ("min" if entry["goal"] == "minimize" else "max")
    entry["strategy"] = strategy
    out["objectives"] = [entry]

    # -- algorithm -----------------------------------------------------------------------------
    algorithm = spec.get("algorithm") or {}
    name = algorithm.get("algorithmName", "random")
    settings = {s.get("name"): s.get("value") for s in algorithm.get("algorithmSettings") or []}
    drop_param = None
    scheduler = "fifo"
    fidelity: dict[str, Any] | None = None
    if name in UNSUPPORTED_ALGORITHMS:
        conv.lose("spec.algorithm.algorithmName", f"{name}: {UNSUPPORTED_ALGORITHMS[name]} has "
                  "no hwtune equivalent; converted as random search")
        searcher = "random"
    elif name not in ALGORITHMS:
        conv.lose("spec.algorithm.algorithmName", f"unknown algorithm {name!r}; random search")
        searcher = "random"
    else:
        searcher = ALGORITHMS[name]
    algo: dict[str, Any] = {"searcher": searcher}
    seed = settings.pop("random_state", None)
    if seed is not None and _number(seed, "spec.algorithm.algorithmSettings[random_state]",
                                    conv) is not None:
        algo["seed"] = int(_number(seed, "", conv))
    if name == "hyperband":
        scheduler = "hyperband"
        drop_param = settings.pop("resource_name", None)
        eta = _number(settings.pop("eta", 3), "spec.algorithm.algorithmSettings[eta]", conv) or 3
        top = None
        for p in spec.get("parameters") or []:
            if p.get("name") == drop_param:
                top = _number((p.get("feasibleSpace") or {}).get("max"), "", conv)
        top = max_resource or (int(top) if top else None)
        if top is None:
            conv.lose("spec.algorithm.algorithmSettings[resource_name]",
                      "hyperband needs the resource's maximum (a parameter's max or "
                      "--max-resource)")
            top = DEFAULT_MAX_REPORTS
        fidelity = {"resource": "step", "min": 1, "max": int(top),
                    "reductionFactor": max(2, int(eta))}
        settings.pop("r_l", None)
        if drop_param:
            conv.note("spec.algorithm.algorithmSettings[resource_name]",
                      f"parameter {drop_param} is the resource level now (fidelity), not searched; "
                      "its references become $(HWTUNE_MAX_RESOURCE)")
    for key in settings:
        conv.note(f"spec.algorithm.algorithmSettings[{key}]",
                  "Katib's sampler setting is not carried over (hwtune's defaults apply)")

    early = spec.get("earlyStopping") or {}
    if early.get("algorithmName"):
        if early["algorithmName"] != "medianstop":
            conv.lose("spec.earlyStopping.algorithmName",
                      f"unknown early stopping {early['algorithmName']!r}: dropped")
        elif max_resource is None:
            conv.lose("spec.earlyStopping", "medianstop becomes ASHA, which needs the highest "
                      "resource level (reports per trial): pass --max-resource N; early stopping "
                      "dropped")
        else:
            scheduler = "asha"
            start = _number({s.get("name"): s.get("value") for s in
                             early.get("algorithmSettings") or []}.get("start_step", 1),
                            "spec.earlyStopping.algorithmSettings[start_step]", conv) or 1
            fidelity = {"resource": "step", "min": max(1, int(start)), "max": int(max_resource),
                        "reductionFactor": 3}
            if fidelity["min"] >= fidelity["max"]:
                fidelity["min"] = 1
            conv.note("spec.earlyStopping", f"medianstop -> ASHA (stopping) over reports 1.."
                      f"{max_resource}; min_trials_required is not used")
    algo["scheduler"] = scheduler
    out["algorithm"] = {"scheduler": algo["scheduler"], "searcher": algo["searcher"],
                        **({"seed": algo["seed"]} if "seed" in algo else {})}
    if fidelity is None:
        fidelity = {"resource": "step", "min": 1, "max": max_resource or DEFAULT_MAX_REPORTS,
                    "reductionFactor": 3}
    out["fidelity"] = fidelity

    # -- parameters and budget -----------------------------------------------------------------
    out["parameters"] = _parameters(spec, conv, drop_param)
    budget: dict[str, Any] = {}
    for katib, ours in (("maxTrialCount", "maxTrials"), ("parallelTrialCount",
                                                         "maxParallelTrials"),
                        ("maxFailedTrialCount", "maxFailedTrials")):
        if spec.get(katib) is not None:
            budget[ours] = int(spec[katib])
    budget.setdefault("maxParallelTrials", 3)  # Katib's default
    if "maxTrials" in budget and budget["maxParallelTrials"] > budget["maxTrials"]:
        budget["maxParallelTrials"] = budget["maxTrials"]
    out["budget"] = budget
    if spec.get("resumePolicy"):
        conv.note("spec.resumePolicy", "hwtune studies resume from their event log and trial "
                  "checkpoints; no policy to set")
    if spec.get("nasConfig"):
        conv.lose("spec.nasConfig", "neural architecture search is not supported")

    # -- metrics collector ---------------------------------------------------------------------
    mc = spec.get("metricsCollectorSpec") or {}
    kind = (mc.get("collector") or {}).get("kind", "StdOut")
    formats = ((mc.get("source") or {}).get("filter") or {}).get("metricsFormat") or []
    if kind == "StdOut":
        out["metricsCollector"] = ({"kind": "regex", "pattern": _regex_from_katib(formats[0])}
                                   if formats else {"kind": "stdout"})
        if len(formats) > 1:
            conv.lose("spec.metricsCollectorSpec.source.filter.metricsFormat",
                      "only the first format is used")
    elif kind == "Push":
        out["metricsCollector"] = {"kind": "sdk"}
        conv.lose("spec.metricsCollectorSpec.collector.kind", "Push: call the hwtune SDK "
                  "(hwtune.trainer) instead of katib_client.report_metrics, or print name=value "
                  "lines")
    else:
        out["metricsCollector"] = {"kind": "stdout"}
        conv.lose("spec.metricsCollectorSpec.collector.kind",
                  f"{kind}: hwtune reads metrics from the trainer's output (stdout, JSON lines "
                  "or a regex), not from files or other sources; print them instead")

    extra = [m for m in objective.get("additionalMetricNames") or [] if m != metric]
    if extra:
        kept = [m for m in extra if m not in BUILTIN_METRICS]
        if out["metricsCollector"]["kind"] != "sdk" and kept:
            out["metricsCollector"]["additionalMetrics"] = kept
        elif kept:
            conv.note("spec.objective.additionalMetricNames",
                      "SDK reports carry any extra metric: report them with the objectives")
        for name in extra:
            if name in BUILTIN_METRICS:
                conv.lose("spec.objective.additionalMetricNames",
                          f"{name!r} is measured by hwtune itself (a built-in metric)")

    # -- trial template ------------------------------------------------------------------------
    tt = spec.get("trialTemplate") or {}
    trial_spec = tt.get("trialSpec")
    if trial_spec is None and tt.get("configMap"):
        cm = tt["configMap"]
        key = (cm.get("configMapNamespace") or meta.get("namespace") or "kubeflow",
               cm.get("configMapName"))
        data = (configmaps or {}).get(key) or (configmaps or {}).get((None, key[1]))
        if data is None or cm.get("templatePath") not in data:
            conv.lose("spec.trialTemplate.configMap", f"ConfigMap {key[0]}/{key[1]} (key "
                      f"{cm.get('templatePath')}) not given: pass it with --configmap FILE or "
                      "read it with --from-cluster")
        else:
            import yaml

            trial_spec = yaml.safe_load(data[cm["templatePath"]])
    references = {p.get("name"): p.get("reference") for p in tt.get("trialParameters") or []}
    unexpanded: list[str] = []

    def subst(text: str) -> str:
        def one(m: re.Match[str]) -> str:
            group, key = m.group(1), m.group(2)
            if group == "trialParameters":
                ref = references.get(key)
                if ref is None:
                    unexpanded.append(m.group(0))
                    return m.group(0)
                if ref == drop_param:
                    return "$(HWTUNE_MAX_RESOURCE)"
                return f"$(HWTUNE_PARAM_{param_env_name(ref)})"
            if key == "Name":
                return "$(HWTUNE_STUDY)-$(HWTUNE_TRIAL_ID)"
            if key == "Kind":
                return "Job"
            if key == "APIVersion":
                return "batch/v1"
            unexpanded.append(m.group(0))
            return m.group(0)

        return _PLACEHOLDER.sub(one, text)

    primary = tt.get("primaryContainerName")
    template: dict[str, Any] | None = None
    if trial_spec is not None:
        kind_ = trial_spec.get("kind")
        if kind_ in MULTI_POD_KINDS or (kind_ and kind_ != "Job"):
            conv.lose("spec.trialTemplate.trialSpec.kind",
                      f"{kind_}: multi-pod trial kinds are not supported yet (hwtune runs one "
                      "batch/v1 Job per trial)")
        job_spec = copy.deepcopy(trial_spec.get("spec") or {})
        pod = job_spec.pop("template", None) or {}
        pod_spec = pod.get("spec") or {}
        # The containers' command/args/env are expanded by the kubelet; elsewhere a
        # placeholder would stay literal.
        pod_spec = _substitute(pod_spec, subst)
        job: dict[str, Any] = {k: job_spec.pop(k) for k in _JOB_FIELDS if k in job_spec}
        job_spec.pop("selector", None)
        for extra in sorted(job_spec):
            conv.lose(f"spec.trialTemplate.trialSpec.spec.{extra}",
                      "not a Job field hwtune sets (it owns parallelism, completions, the "
                      "selector)")
        for i, container in enumerate(pod_spec.get("containers") or []):
            for key_ in ("resources",):
                if "$(HWTUNE_PARAM_" in str(container.get(key_, "")):
                    conv.lose(f"spec.trialTemplate.trialSpec...containers[{i}].{key_}",
                              "a trial parameter in resources is not expanded by Kubernetes")
        job["template"] = {k: v for k, v in (("metadata", pod.get("metadata")),
                                             ("spec", pod_spec)) if v}
        template = {"job": job}
        names = [c.get("name") for c in pod_spec.get("containers") or []]
        if primary and primary in names:
            template["primaryContainerName"] = primary
        elif primary:
            conv.lose("spec.trialTemplate.primaryContainerName",
                      f"{primary} names no container of the trial spec")
        if len(names) > 1 and not primary:
            conv.note("spec.trialTemplate.primaryContainerName", "not set: the first container "
                      "is the trainer")
    else:
        conv.lose("spec.trialTemplate", "no trialSpec (and no ConfigMap given)")
    for placeholder in sorted(set(unexpanded)):
        conv.lose("spec.trialTemplate", f"{placeholder} has no hwtune equivalent (left as is)")
    for cond in ("successCondition", "failureCondition"):
        if tt.get(cond):
            conv.note(f"spec.trialTemplate.{cond}", "not needed: hwtune follows batch/v1 Job "
                      "status")
    if tt.get("retain"):
        conv.note("spec.trialTemplate.retain", "use job.ttlSecondsAfterFinished instead")
    if template is not None:
        out["trialTemplate"] = template

    study_meta: dict[str, Any] = {"name": meta.get("name")}
    if meta.get("namespace"):
        study_meta["namespace"] = meta["namespace"]
    study = {"apiVersion": API_VERSION, "kind": "TuningStudy", "metadata": study_meta,
             "spec": out}
    try:
        parse_manifest(study)
    except Exception as exc:  # the conversion made something the model refuses
        conv.lose("(result)", f"the converted study is not valid: {exc}")
        conv.study = study
        return conv
    conv.study = study
    return conv
