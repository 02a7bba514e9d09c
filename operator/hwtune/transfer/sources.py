"""Loading earlier studies into ``PastStudy`` records, from three places:

- ``hwtune.backends.local.studies.load_workdir(path)``: a ``hwtune tune`` work directory
  (``study.json`` + ``events.jsonl``), read through the local backend's ``EventLog`` (so
  checksums and torn tails are handled once, there) and folded here by ``from_events``; it lives
  with the local backend because that reader does.
- ``from_table(table)``: a benchmark table (``hwtune.bench.table``): one trial per config, its
  curve at every epoch, ``runtime`` (and ``cost`` when a hardware model is given) accumulated from
  the table's ``epoch_runtime``.
- ``from_trial_objects(name, trials, study_spec=...)``: TuningTrial objects as plain dicts (what
  the Kubernetes API returns: ``spec.trialId``, ``spec.parameters``, ``spec.hardware``,
  ``status.phase``, ``status.learningCurve``); the cluster lister lives in
  ``hwtune.backends.kubernetes`` so this package never imports a Kubernetes client.

``from_events`` is the shared core: the ordered study events folded into trials.

Local lookup of a study by name (``resolve_local``): a name that is an existing directory is
used as is; otherwise ``<search dir>/<name>`` for each search dir, by default the parent of the
new study's work directory (``hwtune tune`` puts studies in ``.hwtune/<name>``, so an earlier
study run from the same directory is found by its name).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from hwtune.api.records import Goal, Hardware, Objective, TrialPhase
from hwtune.engine.events import EventKind, StudyEvent
from hwtune.transfer.records import PastStudy, PastTrial, TransferError

__all__ = ["from_events", "from_table", "from_trial_objects", "resolve_local", "spec_summary"]


# -- the spec ------------------------------------------------------------------------------------
def spec_summary(spec: Mapping[str, Any], *, where: str, catalog: Mapping[str, Any] | None = None
                 ) -> tuple[dict[str, Any], tuple[Objective, ...], tuple[Hardware, ...], int]:
    """(parameters, objectives, hardware choices, max resource) of a study spec. The spec is
    validated by the engine's parser when the pools are known (``catalog``), otherwise the
    hardware choices are the declared pools times GPU counts."""
    from hwtune.api._base import ManifestError
    from hwtune.engine.config import StudyConfig
    from hwtune.optimize.hardware import DEFAULT_CATALOG, PoolSpec

    if not isinstance(spec, Mapping) or not isinstance(spec.get("parameters"), Mapping):
        raise TransferError(f"{where}: the study spec has no parameters map")
    pools = dict(DEFAULT_CATALOG)
    for name, pool in (catalog or {}).items():
        pools[name] = pool if isinstance(pool, PoolSpec) else PoolSpec.from_spec(pool, f"pools.{name}")
    try:
        config = StudyConfig.from_spec(spec, catalog=pools)
        hardware = tuple(config.hardware)
    except ManifestError as exc:
        hw = spec.get("hardware")
        declared_pools_unknown = isinstance(hw, Mapping) and all(
            e.path.startswith("spec.hardware") for e in exc.errors)
        if not declared_pools_unknown:
            raise TransferError(f"{where}: invalid study spec: {exc}") from None
        # Pools of the cluster this loader does not know: take the declared choices.
        counts = hw.get("gpuCounts") or [1]
        hardware = tuple(Hardware(str(p), int(n)) for p in hw.get("pools") or () for n in counts)
        stripped = {k: v for k, v in spec.items() if k != "hardware"}
        try:
            config = StudyConfig.from_spec(stripped)
        except ManifestError as exc2:
            raise TransferError(f"{where}: invalid study spec: {exc2}") from None
    return (dict(spec["parameters"]), tuple(config.objectives), hardware, config.max_resource)


# -- events --------------------------------------------------------------------------------------
_HALTS = {EventKind.COMPLETED: TrialPhase.COMPLETED, EventKind.FAILED: TrialPhase.FAILED,
          EventKind.STOPPED: TrialPhase.STOPPED, EventKind.PAUSED: TrialPhase.PAUSED}


def from_events(name: str, spec: Mapping[str, Any], events: Iterable[StudyEvent | Mapping[str, Any]],
                *, source: str, catalog: Mapping[str, Any] | None = None) -> PastStudy:
    """Fold a study's ordered events (``StudyEvent`` or their ``to_dict()``) into a record."""
    parameters, objectives, hardware, max_resource = spec_summary(spec, where=source, catalog=catalog)
    configs: dict[int, tuple[Mapping[str, Any], Hardware | None]] = {}
    phases: dict[int, TrialPhase] = {}
    curves: dict[int, dict[int, Mapping[str, float]]] = {}
    parsed = [e if isinstance(e, StudyEvent) else StudyEvent.from_dict(e) for e in events]
    for e in sorted(parsed, key=lambda e: e.seq):
        tid = e.trial_id
        if e.kind is EventKind.CREATED:
            configs[tid] = (dict(e.config or {}), e.hardware)
            phases[tid], curves[tid] = TrialPhase.PENDING, {}
            continue
        if tid not in configs:
            raise TransferError(f"{source}: event {e.seq} ({e.kind.value}) names trial {tid}, "
                                "which was never created")
        if e.kind is EventKind.RESUMED:
            phases[tid] = TrialPhase.PENDING
        elif e.kind is EventKind.RUNNING:
            phases[tid] = TrialPhase.RUNNING
        elif e.kind is EventKind.OBSERVED:
            curves[tid][int(e.resource)] = {k: float(v) for k, v in (e.metrics or {}).items()}
            if e.decision is not None and e.decision.halts:
                phases[tid] = TrialPhase.STOPPED if e.decision.value == "stop" else TrialPhase.PAUSED
        else:
            phases[tid] = _HALTS[e.kind]
    trials = tuple(
        PastTrial(tid, configs[tid][0], configs[tid][1], phases[tid],
                  tuple(sorted(curves[tid].items())))
        for tid in sorted(configs))
    return PastStudy(name, source, parameters, objectives, hardware, max_resource, trials)


def resolve_local(name: str, search_dirs: Sequence[str | Path]) -> Path:
    """The work directory of earlier study ``name`` (see the module docstring)."""
    direct = Path(name).expanduser()
    if direct.is_dir() and (direct / "study.json").is_file():
        return direct
    looked = []
    for d in search_dirs:
        candidate = Path(d) / name
        looked.append(str(candidate))
        if (candidate / "study.json").is_file():
            return candidate
    raise TransferError(f"transfer.fromStudies: earlier study {name!r} not found (looked for a "
                        f"hwtune work directory at {', '.join(looked) or name})")


# -- benchmark tables ----------------------------------------------------------------------------
def from_table(table: Any, *, name: str | None = None, seed: int | None = None,
               hardware: Hardware | None = None, hardware_model: Any = None,
               objectives: Sequence[Objective] | None = None,
               config_indices: Sequence[int] | None = None,
               checkpoints: Mapping[int, tuple[str, Sequence[str]]] | None = None) -> PastStudy:
    """Every config of ``table`` (or those at ``config_indices``) as a trial that trained to the
    table's last epoch with ``seed`` (default: the first). Metrics per epoch: the table's metrics
    but ``epoch_runtime``, plus ``runtime`` (cumulative seconds, on ``hardware`` when a
    ``hardware_model`` is given) and ``cost`` (with a ``hardware_model``). ``checkpoints``: config
    index -> (starting weights, [checkpoint after epoch 1, 2, ...]) for tables that keep them
    (the FMS benchmark's), so a surrogate with a weight encoder can learn from them."""
    from hwtune.bench.table import RUNTIME_METRIC

    seed = table.seeds[0] if seed is None else seed
    if seed not in table.seeds:
        raise TransferError(f"table {table.name}: no seed {seed} (seeds: {list(table.seeds)})")
    if objectives is None:
        objectives = tuple(Objective(m, Goal(table.goal(m))) for m in table.metric_names
                           if m != RUNTIME_METRIC)
    metrics = [m for m in table.metric_names if m != RUNTIME_METRIC]
    indices = range(len(table)) if config_indices is None else config_indices
    trials = []
    for tid, index in enumerate(indices):
        runtime = 0.0
        curve = []
        for epoch in range(1, table.max_resource + 1):
            row = table.lookup(index, epoch, seed)
            seconds = float(row[RUNTIME_METRIC])
            if hardware_model is not None:
                seconds = hardware_model.runtime(seconds, hardware)
            runtime += seconds
            point = {m: float(row[m]) for m in metrics}
            point["runtime"] = runtime
            if hardware_model is not None:
                point["cost"] = hardware_model.cost(runtime, hardware)
            curve.append((epoch, point))
        ckpts: tuple[tuple[int, str], ...] = ()
        if checkpoints is not None and index in checkpoints:
            initial, epochs = checkpoints[index]
            ckpts = ((0, str(initial)),) + tuple((e + 1, str(p)) for e, p in enumerate(epochs))
        trials.append(PastTrial(tid, dict(table.config(index)), hardware, TrialPhase.COMPLETED,
                                tuple(curve), ckpts))
    return PastStudy(name or table.name, f"table:{table.source}", dict(table.space_spec()),
                     tuple(objectives), () if hardware is None else (hardware,),
                     table.max_resource, tuple(trials))


# -- TuningTrial objects -------------------------------------------------------------------------
def _get(obj: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(k)
    return obj


def from_trial_objects(name: str, trials: Iterable[Mapping[str, Any]], *,
                       study_spec: Mapping[str, Any], namespace: str = "",
                       catalog: Mapping[str, Any] | None = None) -> PastStudy:
    """A study from its TuningTrial objects as dicts (camelCase, as the API returns them) and
    its TuningStudy ``spec``. Trials of other studies (``spec.studyName``) are refused."""
    source = f"cluster:{namespace + '/' if namespace else ''}{name}"
    parameters, objectives, hardware, max_resource = spec_summary(study_spec, where=source,
                                                                  catalog=catalog)
    out: dict[int, PastTrial] = {}
    for i, obj in enumerate(trials):
        meta_name = _get(obj, "metadata", "name") or f"items[{i}]"
        where = f"{source}: TuningTrial {meta_name}"
        spec = obj.get("spec") if isinstance(obj, Mapping) else None
        if not isinstance(spec, Mapping):
            raise TransferError(f"{where}: has no spec")
        if spec.get("studyName") not in (None, name):
            raise TransferError(f"{where}: spec.studyName is {spec.get('studyName')!r}, not {name!r}")
        tid = spec.get("trialId")
        if isinstance(tid, bool) or not isinstance(tid, int) or tid < 0:
            raise TransferError(f"{where}: spec.trialId must be an integer >= 0, got {tid!r}")
        if tid in out:
            raise TransferError(f"{where}: spec.trialId {tid} appears twice")
        params = spec.get("parameters") or {}
        if not isinstance(params, Mapping):
            raise TransferError(f"{where}: spec.parameters must be a map")
        hw = spec.get("hardware")
        try:
            hardware_choice = None if hw is None else Hardware(str(hw["pool"]), int(hw.get("gpuCount", 1)))
        except (KeyError, TypeError, ValueError) as exc:
            raise TransferError(f"{where}: spec.hardware: {exc}") from None
        status = obj.get("status") or {}
        phase_text = status.get("phase") or "Pending"
        try:
            phase = TrialPhase(phase_text)
        except ValueError:
            raise TransferError(f"{where}: status.phase {phase_text!r} is not a trial phase") from None
        curve: dict[int, dict[str, float]] = {}
        for j, point in enumerate(status.get("learningCurve") or ()):
            ppath = f"{where}: status.learningCurve[{j}]"
            resource = _get(point, "resource")
            metrics = _get(point, "metrics")
            if isinstance(resource, bool) or not isinstance(resource, int) or resource < 1:
                raise TransferError(f"{ppath}.resource: must be an integer >= 1, got {resource!r}")
            if not isinstance(metrics, Mapping):
                raise TransferError(f"{ppath}.metrics: must be a map of metric -> number")
            clean = {}
            for k, v in metrics.items():
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise TransferError(f"{ppath}.metrics.{k}: must be a finite number, got {v!r}")
                clean[str(k)] = float(v)
            curve[resource] = clean
        if curve:
            # The built-in metrics may live beside the curve (status.runtimeSeconds, costUSD):
            # the last point gets them, as a work directory's last report has them.
            last = curve[max(curve)]
            for metric, key in (("runtime", "runtimeSeconds"), ("cost", "costUSD")):
                value = status.get(key)
                if metric not in last and isinstance(value, (int, float)) and not isinstance(
                        value, bool) and math.isfinite(value):
                    last[metric] = float(value)
        # The newest checkpoint (of the last reported level) lets FMS learn from its weights.
        last_ckpt = status.get("lastCheckpoint")
        ckpts = ((max(curve), last_ckpt),) if curve and isinstance(last_ckpt, str) and last_ckpt \
            else ()
        out[tid] = PastTrial(tid, dict(params), hardware_choice, phase, tuple(sorted(curve.items())),
                             ckpts)
    return PastStudy(name, source, parameters, objectives, hardware, max_resource,
                     tuple(out[t] for t in sorted(out)))
