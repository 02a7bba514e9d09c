"""The surrogate service's own Prometheus metrics (docs/metrics.md), in a registry of its own so
two services in one process (tests) do not collide and the operator's registry stays apart."""

from __future__ import annotations

from typing import Callable

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics,
                               generate_latest)
from prometheus_client.core import GaugeMetricFamily

__all__ = ["ServiceMetrics"]

# Fits run from ~10 ms (a short refit on a GPU) to minutes (a full fit on a CPU).
FIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class ServiceMetrics:
    def __init__(self, device: str, models: Callable[[], int]) -> None:
        # No *_created series, as the operator (hwtune.observe.metrics).
        disable_created_metrics()
        self.registry = r = CollectorRegistry()
        self.fit_seconds = Histogram(
            "hwtune_surrogate_fit_seconds", "Model fitting in a predict request, or a background full fit (seconds).",
            labelnames=["kind"], buckets=FIT_BUCKETS, registry=r)
        self.predict_seconds = Histogram(
            "hwtune_surrogate_predict_seconds",
            "One suggestion: a whole predict request, fit included (seconds).",
            buckets=FIT_BUCKETS, registry=r)
        # prometheus_client appends _total.
        self.requests = Counter(
            "hwtune_surrogate_http_requests", "HTTP requests by endpoint and status code.",
            labelnames=["endpoint", "code"], registry=r)
        models_held = Gauge("hwtune_surrogate_models", "Per-study models held in memory.", registry=r)
        models_held.set_function(lambda: float(models()))
        r.register(_GpuMemory(device))

    def scrape(self) -> bytes:
        return generate_latest(self.registry)


class _GpuMemory:
    """``hwtune_surrogate_gpu_memory_bytes{device}``: torch.cuda.memory_allocated() on a CUDA
    device; on a CPU service one series with device="cpu" and value 0 (so dashboards see the
    service is up but holds no GPU memory)."""

    def __init__(self, device: str) -> None:
        self.device = device

    def describe(self):
        return []

    def collect(self):
        family = GaugeMetricFamily("hwtune_surrogate_gpu_memory_bytes",
                                   "GPU memory allocated by the service's tensors (bytes; 0 on a CPU).",
                                   labels=["device"])
        value = 0.0
        if self.device.startswith("cuda"):
            import torch  # the service has it already; only imported at scrape time here

            value = float(torch.cuda.memory_allocated(self.device))
        family.add_metric([self.device], value)
        yield family
