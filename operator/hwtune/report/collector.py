"""Metrics from a trainer's output, for trainers that do not use the SDK.

``spec.metricsCollector`` says how: ``stdout`` (``name=value`` pairs anywhere in a line, as
Katib's StdOut collector reads them), ``json`` (a line holding one JSON object) or ``regex`` (the
user's pattern: groups ``name`` and ``value``, or one named group per metric). ``LineCollector``
turns lines into the same ``(resource, metrics)`` reports the SDK sends, so schedulers decide on
them exactly as on SDK reports.

It is a pure object over text: no files, no processes, no Kubernetes. The local backend feeds it
the trial's log as the process writes it; the operator feeds it the pod's log, followed through
the API server (``GET .../pods/<pod>/log?follow=true&container=<primary>``), so no sidecar is
injected into the user's pod (see docs/coming-from-katib.md for why).

Grouping: a report is emitted after a line once every objective metric has a value since the last
report (a line with several metrics is one group). The resource level is the value of
``resourceMetric`` when one is named (the report waits for it too), otherwise the number of
reports so far (a study without ``fidelity`` gets one report per trial: ``summary()`` over the
whole run, when the trainer exits). Only objective metrics, the resource metric and the
``additional`` metrics (``additionalMetrics``, Katib's ``additionalMetricNames``: recorded in the
report when seen since the last one, never waited for) are read: ``--lr=0.1`` echoed in a
command line is ignored. Values that are not finite numbers (``nan``, ``inf``) are ignored,
as is anything after a line of more than ``MAX_LINE`` characters.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

__all__ = ["CollectedReport", "LineCollector", "STDOUT_PATTERN", "make_collector"]

# name=value: names as Katib allows them (word characters, '-', '.', '/'), numbers in any float
# notation. ``loss = 0.3`` and ``loss=3e-1`` both match; ``loss=abc`` does not.
STDOUT_PATTERN = re.compile(
    r"(?P<name>[A-Za-z_][\w./-]*)\s*=\s*"
    r"(?P<value>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?![\w.])")
MAX_LINE = 65536
HWTUNE_LINE = "=== hwtune: "  # lines hwtune itself writes into a trial's log: never metrics


@dataclass(frozen=True)
class CollectedReport:
    """One report parsed from output: what an SDK trainer would have sent."""

    resource: int
    metrics: dict[str, float]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


@dataclass
class LineCollector:
    """Parses a trainer's output into reports. ``kind`` is ``stdout``, ``json`` or ``regex``;
    ``objectives`` the metrics a report needs (built-in ``runtime``/``cost`` left out);
    ``resource_metric`` the printed metric holding the resource level (None: counted);
    ``pattern`` the regex of kind ``regex``. Feed it with ``feed_text`` (chunks, lines may be
    split anywhere) or ``feed_line``; call ``close`` at the end of the output."""

    kind: str
    objectives: Sequence[str]
    resource_metric: str | None = None
    pattern: str | None = None
    additional: Sequence[str] = ()
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False)
    _pending: dict[str, float] = field(default_factory=dict, init=False)
    _resource: int | None = field(default=None, init=False)
    _count: int = field(default=0, init=False)
    _partial: str = field(default="", init=False)
    lines: int = field(default=0, init=False)  # lines read, for messages
    matched: int = field(default=0, init=False)  # lines that held a wanted metric
    history: list[CollectedReport] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.kind not in ("stdout", "json", "regex"):
            raise ValueError(f"unknown metrics collector kind {self.kind!r}")
        if not self.objectives:
            raise ValueError("a collector needs at least one objective metric to wait for")
        if self.kind == "regex":
            if not self.pattern:
                raise ValueError("kind regex needs a pattern")
            self._regex = re.compile(self.pattern)
        elif self.kind == "stdout":
            self._regex = STDOUT_PATTERN
        self._wanted = set(self.objectives) | set(self.additional) | (
            {self.resource_metric} if self.resource_metric else set())

    # -- feeding -------------------------------------------------------------------------------
    def feed_text(self, text: str) -> list[CollectedReport]:
        """A chunk of output; a line split across chunks is parsed once complete."""
        data = self._partial + text
        *complete, self._partial = data.split("\n")
        if len(self._partial) > MAX_LINE:
            self._partial = ""  # a runaway line (a progress bar without newlines): drop it
        reports: list[CollectedReport] = []
        for line in complete:
            reports.extend(self.feed_line(line))
        return reports

    def close(self) -> list[CollectedReport]:
        """End of output: the last line, even without its newline."""
        rest, self._partial = self._partial, ""
        return self.feed_line(rest) if rest else []

    def feed_line(self, line: str) -> list[CollectedReport]:
        self.lines += 1
        if line.startswith(HWTUNE_LINE):
            return []
        # A progress bar rewrites its line with '\r': only the last version counts.
        line = line[:MAX_LINE].rsplit("\r", 1)[-1] if "\r" in line else line[:MAX_LINE]
        pairs = [(n, v) for n, v in self._pairs(line) if n in self._wanted]
        if not pairs:
            return []
        self.matched += 1
        for name, value in pairs:
            if name == self.resource_metric:
                if value.is_integer() and value >= 1:
                    self._resource = int(value)
            else:
                self._pending[name] = value
        if any(m not in self._pending for m in self.objectives):
            return []
        if self.resource_metric is not None:
            if self._resource is None:
                return []
            resource = self._resource
        else:
            resource = self._count + 1
        self._count += 1
        report = CollectedReport(resource, dict(self._pending))
        self.history.append(report)
        self._pending.clear()
        self._resource = None
        return [report]

    def feed_lines(self, lines: Iterable[str]) -> Iterator[CollectedReport]:
        for line in lines:
            yield from self.feed_line(line)

    # -- parsing one line ----------------------------------------------------------------------
    def _pairs(self, line: str) -> list[tuple[str, float]]:
        if self.kind == "json":
            return self._json_pairs(line)
        assert self._regex is not None
        pairs: list[tuple[str, float]] = []
        named = self._regex.groupindex
        for match in self._regex.finditer(line):
            if "name" in named and "value" in named:
                items: Iterable[tuple[str, Any]] = [(match.group("name"), match.group("value"))]
            else:
                items = match.groupdict().items()
            for name, raw in items:
                value = _number(raw) if raw is not None else None
                if name is not None and value is not None:
                    pairs.append((name, value))
        return pairs

    @staticmethod
    def _json_pairs(line: str) -> list[tuple[str, float]]:
        text = line.strip()
        if not text.startswith("{"):
            return []
        try:
            doc = json.loads(text)
        except ValueError:
            return []
        if not isinstance(doc, dict):
            return []
        return [(k, v) for k, v in ((k, _number(v)) for k, v in doc.items()) if v is not None]

    def summary(self, strategies: Mapping[str, str] | None = None) -> CollectedReport | None:
        """One report for the whole run (a study without fidelity: one report per trial, as
        Katib reads a trial's output): each objective's ``latest``, ``min`` or ``max`` value over
        every group seen (default latest); None when no group was complete."""
        if not self.history:
            return None
        metrics: dict[str, float] = {}
        for name in self.objectives:
            values = [r.metrics[name] for r in self.history]
            how = (strategies or {}).get(name, "latest")
            metrics[name] = min(values) if how == "min" else max(values) if how == "max" \
                else values[-1]
        for name in self.additional:  # the latest value seen, when any
            values = [r.metrics[name] for r in self.history if name in r.metrics]
            if values and name not in metrics:
                metrics[name] = values[-1]
        return CollectedReport(1, metrics)

    # -- for messages --------------------------------------------------------------------------
    def describe(self) -> str:
        """What the collector looks for, in the words of an error message."""
        names = ", ".join(self.objectives)
        example = " ".join(f"{m}=0.3" for m in self.objectives)
        if self.kind == "json":
            example = json.dumps({m: 0.3 for m in self.objectives})
        elif self.kind == "regex":
            example = f"lines matching {self.pattern!r}"
        return f"metricsCollector {self.kind} reads {names} from lines like {example}"


def make_collector(spec: Any, objectives: Sequence[str]) -> LineCollector | None:
    """The collector of a ``hwtune.api.crd.MetricsCollectorSpec`` (None, or kind ``sdk``:
    None). ``objectives`` are the study's objective metrics without the built-in ones."""
    if spec is None:
        return None
    kind = getattr(spec.kind, "value", spec.kind)
    if kind == "sdk":
        return None
    return LineCollector(kind, objectives=list(objectives), resource_metric=spec.resource_metric,
                         pattern=spec.pattern,
                         additional=tuple(getattr(spec, "additional_metrics", None) or ()))
