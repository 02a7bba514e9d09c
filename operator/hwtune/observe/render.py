"""Render the dashboard's panels to one PNG from a real Prometheus's query results (matplotlib),
so the README can show what a Grafana user sees without a Grafana (it is AGPL and in no registry
this project uses). Each panel runs the same expression as the dashboard
(``hwtune.observe.queries.PANELS``): fronts as instant queries pivoted point x objective, time
series as range queries, bars as instant queries.

``hwtune observe render --prometheus URL --namespace NS --study NAME --out FILE`` renders a live
study; ``--demo`` first runs a simulated MO-ASHA study scraped by a local Prometheus
(127.0.0.1) and renders that.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from hwtune.observe.promserver import PrometheusServer, query_api
from hwtune.observe.queries import PANELS, substitute

__all__ = ["render_dashboard", "run_demo"]


def _instant(base: str, expr: str, at: float) -> list[dict[str, Any]]:
    return query_api(base, "/api/v1/query", {"query": expr, "time": at})["result"]


def render_dashboard(base: str, namespace: str, study: str, out: Path, *, quality: str = "",
                     start: float | None = None, end: float | None = None) -> Path:
    """Query ``base`` (a Prometheus URL) for every panel and draw them into ``out`` (PNG).
    ``quality``: the quality objective (default: the first non-built-in one exported)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = time.time() if end is None else end
    start = end - 3600 if start is None else start
    step = max(1.0, (end - start) / 300)
    if not quality:
        found = _instant(base, f'group by (objective) (hwtune_study_front_point{{namespace="{namespace}",'
                               f'study="{study}",objective!~"cost|runtime"}})', end)
        quality = found[0]["metric"]["objective"] if found else "cost"
    interval = f"{max(60, int(4 * step))}s"
    cols = 2
    rows = math.ceil(len(PANELS) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(13, 3.6 * rows))
    for ax, panel in zip(axes.flat, PANELS):
        expr = substitute(panel.expr, namespace=namespace, study=study, quality=quality,
                          rate_interval=interval)
        title = panel.title.replace("quality", quality)
        ax.set_title(title, fontsize=10)
        if panel.kind == "xy":
            table: dict[str, dict[str, float]] = {}
            for s in _instant(base, expr, end):
                table.setdefault(s["metric"]["point"], {})[s["metric"]["objective"]] = float(s["value"][1])
            pts = sorted((c[panel.x], c[panel.y]) for c in table.values()
                         if panel.x in c and panel.y in c)
            if pts:  # the study's front, projected on two of its objectives: points only
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="tab:blue", s=25)
            ax.set_xlabel(f"{panel.x} (USD)" if panel.x == "cost" else panel.x)
            ax.set_ylabel(quality if panel.y == "quality" else f"{panel.y} (s)")
        elif panel.kind == "bars":
            result = _instant(base, expr, end)
            labels = [s["metric"].get("event", "?") for s in result]
            ax.barh(labels, [float(s["value"][1]) for s in result], color="tab:green")
        else:
            result = query_api(base, "/api/v1/query_range",
                               {"query": expr, "start": start, "end": end, "step": step})["result"]
            for s in result:
                ts = [float(t) - start for t, _ in s["values"]]
                vs = [float(v) for _, v in s["values"]]
                label = panel.legend
                for key, value in s["metric"].items():
                    label = label.replace("{{%s}}" % key, value)
                ax.plot(ts, vs, label=label or None)
            ax.set_xlabel("seconds since start")
            if panel.unit:
                ax.set_ylabel({"currencyUSD": "USD", "h": "GPU-hours", "percentunit": "fraction",
                               "s": "seconds"}.get(panel.unit, panel.unit))
            if len(result) > 1 or (result and panel.legend):
                ax.legend(fontsize=7)
        if not ax.has_data():
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    for ax in list(axes.flat)[len(PANELS):]:
        ax.set_visible(False)
    fig.suptitle(f"hwtune studies: {namespace}/{study} (from Prometheus query results)")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def run_demo(out: Path, *, trials: int = 80, seconds: float = 40.0) -> Path:
    """A simulated MO-ASHA study (3 pools, cost budget) exported by ``StudyMetrics``, scraped
    every second by a local Prometheus while it runs (paced over about ``seconds``), then
    rendered."""
    from hwtune.backends.simulated import SimulatedBackend, synthetic_table
    from hwtune.engine import Study, StudyConfig, Tuner
    from hwtune.observe.metrics import StudyMetrics

    spec = {
        "objectives": [{"metric": "val_error"}, {"metric": "runtime"}, {"metric": "cost"}],
        "parameters": {
            "lr": {"type": "float", "values": [round(0.0001 * 1.5 ** i, 8) for i in range(20)]},
            "width": {"type": "int", "values": list(range(8, 168, 8))},
            "opt": {"type": "categorical", "values": ["sgd", "adam", "lamb"]},
        },
        "hardware": {"pools": ["t4", "a100", "h100"], "gpuCounts": [1, 2]},
        "fidelity": {"resource": "epoch", "min": 1, "max": 9, "reductionFactor": 3},
        "algorithm": {"scheduler": "mo-asha-promotion", "searcher": "random", "seed": 5},
        "budget": {"maxTrials": trials, "maxParallelTrials": 4, "maxCostUSD": 0.5},
    }
    config = StudyConfig.from_spec(spec)
    backend = SimulatedBackend(synthetic_table(config.space, 1200, 9, seed=1, seeds=(0,)),
                               config.hardware_model, n_workers=4, seed=0)
    study = Study(config, clock=backend.clock)
    metrics = StudyMetrics()
    observer = metrics.watch(study, "ml", "demo", lock=backend.lock)
    server = metrics.serve(0, addr="127.0.0.1")
    prom = PrometheusServer({"hwtune-operator": [f"127.0.0.1:{server.server_address[1]}"]})
    try:
        prom.start()
        tuner = Tuner(study, backend)
        started = time.time()
        pause = seconds / max(1, 3 * trials)
        while True:
            with observer.reconcile():
                if tuner.step() is not None:
                    break
            time.sleep(pause)
        time.sleep(3)  # a scrape after the end
        return render_dashboard(prom.base, "ml", "demo", out, quality="val_error",
                                start=started - 5, end=time.time())
    finally:
        prom.stop()
        server.shutdown()
