"""What ``hwtune tune`` shows: the live progress view and the final Pareto front table."""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from hwtune.api.records import TrialPhase
from hwtune.engine import FrontPoint, Study

__all__ = ["format_value", "front_configs", "front_table", "progress_view", "simulated_note"]

_PHASE_STYLE = {
    TrialPhase.PENDING: "yellow",
    TrialPhase.RUNNING: "cyan",
    TrialPhase.PAUSED: "magenta",
    TrialPhase.COMPLETED: "green",
    TrialPhase.STOPPED: "dim",
    TrialPhase.FAILED: "red",
}


def format_value(metric: str, value: float) -> str:
    if metric == "cost":
        return f"${value:.4g}"
    if metric == "runtime":
        return f"{value:.3g} s" if value < 600 else f"{value / 60:.3g} min"
    return f"{value:.4g}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def simulated_note(pools: Sequence[str]) -> str:
    if not pools:
        return "no hardware dimension: runtimes as measured on this machine, cost 0"
    return f"simulated pools: runtime scaled from the local CPU ({', '.join(pools)})"


def progress_view(study: Study, *, name: str, workdir: str, started: float,
                  pools: Sequence[str]) -> RenderableType:
    summary = study.summary()
    budget = study.config.budget
    head = Text.assemble((name, "bold"), f"  ·  {workdir}  ·  {_duration(time.monotonic() - started)}")
    note = Text(simulated_note(pools), style="italic dim")

    started_trials = summary.spend.trials_started
    total = budget.max_trials
    finished = sum(summary.counts[p.value] for p in TrialPhase if p.is_finished())
    bar = Table.grid(padding=(0, 1))
    if total:
        bar.add_row(ProgressBar(total=total, completed=finished, width=40),
                    f"{finished}/{total} trials finished ({started_trials} started)")
    else:
        bar.add_row(f"{finished} trials finished ({started_trials} started)")

    phases = Text()
    for phase in TrialPhase:
        count = summary.counts[phase.value]
        if count or phase in (TrialPhase.RUNNING, TrialPhase.COMPLETED):
            phases.append(f"{phase.value} {count}   ", style=_PHASE_STYLE[phase])

    spend = summary.spend
    facts = Text(f"spent ${spend.cost_usd:.4g} · {spend.gpu_hours:.3g} GPU-h · "
                 f"{summary.reports} reports · front {len(summary.front)}")

    best = Text("best: ")
    for metric, point in summary.best.items():
        best.append(f"{metric} {format_value(metric, point.values[metric])}", style="bold")
        best.append(f" (#{point.trial_id} {point.hardware or 'default'})   ")
    if not summary.best:
        best.append("no reports yet", style="dim")

    running = Table(box=None, show_header=False, padding=(0, 1))
    resource = study.config.fidelity.resource
    first = study.config.objectives[0].metric
    for record in study.active_trials():
        last = record.observations[-1].metrics if record.observations else {}
        value = format_value(first, last[first]) if first in last else "-"
        running.add_row(f"#{record.trial_id}", str(record.hardware or "default"),
                        f"{resource} {record.last_resource}/{study.config.max_resource}",
                        f"{first} {value}", style=_PHASE_STYLE[record.phase])
    parts: list[RenderableType] = [head, note, bar, phases, facts, best]
    if running.row_count:
        parts.append(running)
    return Group(*parts)


def config_text(config: Mapping[str, Any]) -> str:
    def short(value: Any) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    return " ".join(f"{k}={short(v)}" for k, v in sorted(config.items()))


def front_table(study: Study, front: Sequence[FrontPoint]) -> Table:
    objectives = study.config.objectives
    table = Table(title=f"Pareto front ({len(front)} of {len(study.trials)} trials)",
                  title_justify="left")
    table.add_column("trial", justify="right")
    table.add_column("hardware")
    table.add_column(study.config.fidelity.resource, justify="right")
    for objective in objectives:
        arrow = "↓" if objective.goal.value == "minimize" else "↑"
        table.add_column(f"{objective.metric} {arrow}", justify="right")
    for point in _ordered(study, front):
        table.add_row(str(point.trial_id), str(point.hardware or "default"), str(point.resource),
                      *(format_value(o.metric, point.values[o.metric]) for o in objectives))
    return table


def _ordered(study: Study, front: Sequence[FrontPoint]) -> list[FrontPoint]:
    first = study.config.objectives[0]
    return sorted(front, key=lambda p: (first.loss(p.values[first.metric]), p.trial_id))


def front_configs(study: Study, front: Sequence[FrontPoint]) -> Text:
    """The configurations of the front, one line each, in the table's order (kept out of the
    table so that it stays readable in a narrow terminal)."""
    text = Text()
    for point in _ordered(study, front):
        text.append(f"#{point.trial_id}", style="bold")
        text.append(f" {config_text(study.trial(point.trial_id).config)}\n")
    return text
