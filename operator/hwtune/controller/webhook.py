"""The webhook server, when the API server reaches the operator through a Service (in-cluster).

kopf's WebhookServer registers a URL (``https://host:port/...``): right for a local operator
(the API server calls 127.0.0.1), wrong in a cluster, where the API server usually cannot resolve
Service DNS names. ``ServiceWebhookServer`` serves exactly the same way but registers
``clientConfig.service`` (namespace, name, port), which the API server routes to the Service's
endpoints itself, and it is the name ``<name>.<namespace>.svc`` the certificate must carry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import kopf

__all__ = ["ServiceWebhookServer", "service_hostnames"]


def service_hostnames(namespace: str, name: str) -> list[str]:
    """The names the API server may check a Service's certificate against."""
    return [f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"]


class ServiceWebhookServer(kopf.WebhookServer):  # type: ignore[misc]
    """kopf's HTTPS webhook server, registered as a Service instead of a URL."""

    def __init__(self, *, service_namespace: str, service_name: str, service_port: int,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service_namespace = service_namespace
        self.service_name = service_name
        self.service_port = service_port

    async def __call__(self, fn: Any) -> AsyncIterator[dict[str, Any]]:
        async for client_config in super().__call__(fn):
            # kopf appends "/<handler id>" to service.path, as it does to the URL's path.
            service_config: dict[str, Any] = {"service": {
                "namespace": self.service_namespace, "name": self.service_name,
                "port": self.service_port, "path": (self.path or "").rstrip("/")}}
            if client_config.get("caBundle"):
                service_config["caBundle"] = client_config["caBundle"]
            yield service_config
