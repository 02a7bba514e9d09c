"""``hwtune surrogate latency``: seconds per DyHPO suggestion against the number of observations.

A synthetic study of n observations (n/20 trials x 20 epochs, all paused, so every suggestion
scores each paused trial plus ``freshCandidates`` new configurations) is asked for several
suggestions, by a model store that fits as the service does by default (full fits in the
background, ``hwtune.surrogate.store``; ``background=False``: in the request), in these cases:

- ``warm``: the model already holds the full fit of the current full-fit set (a running study
  or service);
- ``restart``: a new model store (a restarted service or operator) whose state directory holds
  the full fit the old one saved (``--state-dir``);
- ``grown``: the full-fit set has just doubled (the 2nd, 4th, ... 256th observation) and the
  model holds the previous set's full fit;
- ``cold``: a new model store with nothing saved (a new service without a state directory, or a
  lost one); with background fits it answers from a quick fit and starts the full fit, whose
  wall time until it is ready is given too;
- ``during``: the request right after a cold one, while that full fit still runs beside it (one
  process: the two threads share the interpreter);
- ``cold-sync`` (``sync_cold``): cold with the full fit in the request, as before background fits.

Each suggestion is timed in wall seconds and in the thread's CPU seconds (torch runs on the
calling thread with one thread, so on a shared machine CPU seconds are what the suggestion
itself costs); the table gives the median and the maximum of each, the goal beside them, and the
machine's load average and CPU count, which a reader needs to judge the wall times.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from hwtune.surrogate.predictors import LocalPredictor

__all__ = ["GOAL_SECONDS", "format_table", "measure", "synthetic_study"]

GOAL_SECONDS = 1.0  # per suggestion at 2,000 observations on a CPU (issue 10)
MODES = ("warm", "restart", "grown", "cold", "during", "cold-sync")


def synthetic_study(n: int, settings: Mapping[str, Any] | None = None):
    """A DyHPO study holding ``n`` observations of paused trials with plausible curves."""
    from hwtune.api.records import Decision
    from hwtune.engine import Study, StudyConfig

    epochs = 20 if n >= 200 else 5
    spec = {"objectives": [{"metric": "val_error"}],
            "parameters": {"lr": {"type": "float", "min": 1e-4, "max": 1e-1, "scale": "log"},
                           "width": {"type": "int", "min": 8, "max": 512},
                           "momentum": {"type": "float", "min": 0.0, "max": 0.99}},
            "fidelity": {"resource": "epoch", "min": 1, "max": epochs + 1},
            "algorithm": {"scheduler": "dyhpo", "searcher": "dyhpo", "seed": 0,
                          "settings": {"initialTrials": 1, **(settings or {})}}}
    config = StudyConfig.from_spec(spec)
    study = Study(config, name=f"latency-{n}")
    rng = np.random.default_rng(n)
    for _ in range(n // epochs):
        tid = study.create_trial(config.space.sample(rng), max_resource=epochs).trial.trial_id
        floor, rate = rng.uniform(0.05, 0.5), rng.uniform(0.2, 1.0)
        for e in range(1, epochs + 1):
            decision = study.report(tid, e, {"val_error": floor + 0.5 * e ** -rate},
                                    runtime_seconds=e)
        if decision is not Decision.PAUSE:
            raise AssertionError(f"synthetic trial {tid} was not paused: {decision}")
    return study


def _time(core, predictor) -> tuple[float, float, dict[str, Any]]:
    core._predictor = predictor
    wall, cpu = time.perf_counter(), time.thread_time()
    core.choose(allow_new=True, allow_resume=True)
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    core.count += 1  # the next suggestion draws other candidates and weights, on the same data
    if core.last_answer is None:
        raise RuntimeError("the model did not answer (it fell back): see the log")
    answer, core.last_answer = core.last_answer, None
    return wall, cpu, answer


def measure(sizes: Sequence[int] = (100, 500, 2000), repeats: int = 5, cold_repeats: int = 2,
            device: str = "cpu", settings: Mapping[str, Any] | None = None,
            log: Callable[[str], None] = lambda _: None, background: bool = True,
            sync_cold: bool = False) -> dict[str, Any]:
    """The numbers behind ``format_table``: per size and mode, wall and CPU seconds of each
    suggestion, and what the model fitted."""
    import torch

    torch.set_num_threads(1)
    results: dict[str, Any] = {"device": device, "cpus": os.cpu_count(), "background": background,
                               "loadBefore": os.getloadavg(), "sizes": {}}

    def store(path: Path) -> LocalPredictor:
        return LocalPredictor(device, state_dir=str(path), background_fits=background)

    with tempfile.TemporaryDirectory(prefix="hwtune-latency-") as tmp:
        for n in sizes:
            study = synthetic_study(n, settings)
            core = study.scheduler.core
            rows: dict[str, Any] = {m: {"wall": [], "cpu": [], "from": []} for m in MODES}
            ready: list[float] = []
            info: dict[str, Any] = {}

            def timed(mode: str, predictor) -> dict[str, Any]:
                w, c, answer = _time(core, predictor)
                rows[mode]["wall"].append(w)
                rows[mode]["cpu"].append(c)
                rows[mode]["from"].append(_answered_from(answer))
                return answer

            saved = Path(tmp) / f"n{n}"
            for i in range(cold_repeats):  # nothing saved: the full fit happens now
                cold = store(Path(tmp) / f"cold{n}-{i}")
                started = time.perf_counter()
                info = timed("cold", cold)["fit"]
                if background:
                    timed("during", cold)  # the full fit runs beside this one
                    cold.store.wait_background()
                    ready.append(time.perf_counter() - started)
                if sync_cold:
                    timed("cold-sync", LocalPredictor(device, state_dir=str(Path(tmp) / f"sync{n}-{i}")))
            warm = store(saved)
            _time(core, warm)  # fits and saves; then the same store is warm
            warm.store.wait_background()
            for _ in range(repeats):
                timed("warm", warm)
            for _ in range(repeats):  # a new process's store, the old one's state on disk
                answer = timed("restart", store(saved))
                if not (answer["fit"].get("fullFit") or {}).get("loaded"):
                    raise AssertionError("the restarted store did not load the saved full fit")
            t = int(info.get("fullFitPoints") or 0)
            if t >= 4:  # the model holds the fit of the first t/2 points; the set grows to t
                for i in range(cold_repeats):
                    grown = store(Path(tmp) / f"grown{n}-{i}")
                    core.max_full = t // 2
                    try:
                        _time(core, grown)
                        grown.store.wait_background()
                    finally:
                        core.max_full = t
                    timed("grown", grown)
                    grown.store.wait_background()
            results["sizes"][n] = {"observations": study.reports, "gpPoints": info.get("points"),
                                   "refitPoints": (info.get("refit") or {}).get("points"),
                                   "fullFitPoints": info.get("fullFitPoints"), "fullFitReady": ready,
                                   **rows}
            log(f"  {n} observations: " + ", ".join(
                f"{m} p50 {statistics.median(rows[m]['wall']):.2f} s" for m in MODES if rows[m]["wall"]))
    results["loadAfter"] = os.getloadavg()
    return results


def _answered_from(answer: Mapping[str, Any]) -> str:
    full = (answer.get("fit") or {}).get("fullFit")
    if full is None:
        return "full fit"
    if full.get("loaded"):
        return "saved fit"
    if "answeredFrom" in full:
        return f"{full['answeredFrom']} ({full['answeredFromPoints']} pts)"
    return "fitted now"


def format_table(results: Mapping[str, Any], goal: float = GOAL_SECONDS) -> str:
    def cell(values: Sequence[float]) -> str:
        return f"{statistics.median(values):6.2f} {max(values):6.2f}"

    fits = "in the background (the service's default)" if results.get("background", True) \
        else "in the request"
    lines = [f"Suggestion latency, DyHPO surrogate on {results['device']} (1 torch thread), "
             f"freeze-thaw over every paused trial + fresh candidates; full fits {fits}; "
             "seconds, p50 and max",
             f"machine: {results['cpus']} CPUs, load average (1/5/15 min) before "
             + "/".join(f"{v:.1f}" for v in results["loadBefore"]) + ", after "
             + "/".join(f"{v:.1f}" for v in results["loadAfter"]),
             "",
             f"{'obs':>5} {'GP pts':>6} {'refit':>5} {'mode':>9} | {'wall p50':>8} {'max':>6} | "
             f"{'CPU p50':>7} {'max':>6} | {'n':>2} | {'answered from':<22} | goal < {goal:g} s: CPU max, wall max"]
    for n, r in results["sizes"].items():
        for mode in MODES:
            wall, cpu = r[mode]["wall"], r[mode]["cpu"]
            if not wall:
                continue
            source = ", ".join(sorted(set(r[mode].get("from") or [])))
            verdict = lambda v: "meets" if max(v) < goal else "MISSES"  # noqa: E731
            lines.append(f"{r['observations']:>5} {r['gpPoints'] or 0:>6} {r.get('refitPoints') or 0:>5} "
                         f"{mode:>9} | {cell(wall)} | {cell(cpu)} | {len(wall):>2} | {source:<22} | "
                         f"{verdict(cpu)}, {verdict(wall)}")
        if r.get("fullFitReady"):
            lines.append(f"{'':>5} {'':>6} {'':>5} {'':>9}   background full fit of {r['fullFitPoints']} "
                         f"points ready {cell(r['fullFitReady'])} s (wall) after the cold request")
    lines += ["",
              "warm: the model holds the current full fit (a running service). restart: a new "
              "store that reloads the full fit from its state directory (a restarted service or "
              "operator). grown: the full-fit set has just doubled; the model holds the previous "
              "set's full fit. cold: nothing saved; with background fits it answers from a quick "
              "fit (quickFitSteps on quickFitPoints) and the full fit (fullFitSteps on up to 256 "
              "points) runs in a fit thread; during: the next request while that fit runs. "
              "cold-sync: the full fit in the request. GP pts: the points the posterior "
              "conditions on (a subset past maxPoints, 512); refit: those the refit trains on "
              "(a sample past refitPoints, 256). Wall times on a loaded machine exceed CPU times."]
    return "\n".join(lines)
