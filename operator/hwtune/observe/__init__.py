"""Observability: Prometheus metrics of running studies (kopf-free, torch-free).

``StudyMetrics`` owns one ``prometheus_client`` registry. ``StudyMetrics.watch(study, ...)``
attaches a listener to an engine ``Study`` (any backend: simulated, local, Kubernetes), so
counters follow the study's events and gauges (trials by phase, spend, hypervolume, the Pareto
front) are read from the study's state at scrape time. The metric table is in docs/metrics.md.
"""

from hwtune.observe.metrics import FRONT_LIMIT, StudyMetrics, StudyObserver, select_front

__all__ = ["FRONT_LIMIT", "StudyMetrics", "StudyObserver", "select_front"]
