"""The study's picture: cost against runtime for every trial, coloured by its quality metric,
with the Pareto front (over all objectives) outlined."""

from __future__ import annotations

from pathlib import Path

from hwtune.api.records import BUILTIN_METRICS
from hwtune.engine import Study

__all__ = ["plot_front"]


def plot_front(study: Study, path: str | Path) -> Path:
    """Write the PNG (or any format matplotlib knows from the suffix) and return its path."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    path = Path(path)
    quality = next((o for o in study.config.objectives if o.metric not in BUILTIN_METRICS), None)
    front_ids = {p.trial_id for p in study.front()}
    points = [(t, t.observations[-1].metrics) for t in study.trials if t.observations]

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    if points:
        xs = [m["runtime"] for _, m in points]
        ys = [m["cost"] for _, m in points]
        colours = [m[quality.metric] if quality else t.trial_id for t, m in points]
        scatter = ax.scatter(xs, ys, c=colours, cmap="viridis_r" if quality is None or
                             quality.goal.value == "minimize" else "viridis",
                             s=36, alpha=0.85, edgecolors="none", zorder=2)
        bar = fig.colorbar(scatter, ax=ax)
        bar.set_label(quality.metric if quality else "trial")
        on_front = [(x, y) for (t, _), x, y in zip(points, xs, ys) if t.trial_id in front_ids]
        if on_front:
            ax.scatter(*zip(*on_front), s=140, facecolors="none", edgecolors="crimson",
                       linewidths=1.8, label="Pareto front (all objectives)", zorder=3)
        for (t, _), x, y in zip(points, xs, ys):
            if t.trial_id in front_ids:
                ax.annotate(f"#{t.trial_id} {t.hardware or ''}", (x, y), fontsize=7,
                            xytext=(5, 4), textcoords="offset points")
        if min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        if min(ys) > 0 and max(ys) / min(ys) > 20:
            ax.set_yscale("log")
        # Below the axes: inside, it would hide points wherever it goes.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=8, frameon=False)
    else:
        ax.text(0.5, 0.5, "no trial reported yet", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_xlabel("runtime on its hardware (s)")
    ax.set_ylabel("cost (USD)")
    ax.set_title(f"{len(points)} trials, {len(front_ids)} on the front")
    ax.grid(True, alpha=0.3, which="both")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
