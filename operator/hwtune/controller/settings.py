"""What the operator process is told at start: namespaces, webhook endpoint, peering, logging.

Plain data, validated where it is built (the CLI, tests), so a typo such as a port of 70000 or a
log format of "jsn" is refused with the field's name before kopf starts. ``apply_to`` copies it
onto kopf's own settings object; nothing else in hwtune reads kopf settings.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DEFAULT_WEBHOOK_CONFIGURATION",
    "FailurePolicy",
    "LogFormat",
    "OperatorSettings",
    "SettingsError",
]

# Name of the ValidatingWebhookConfiguration kopf creates and keeps up to date.
DEFAULT_WEBHOOK_CONFIGURATION = "auto.hwtune.io"

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SERVICE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# kopf namespace patterns: globs and negations ("team-*", "!kube-system").
_NAMESPACE_PATTERN = re.compile(r"^!?[a-z0-9*?\[\]-]{1,63}$")


class SettingsError(ValueError):
    """A setting is out of range; the message names the setting."""


class LogFormat(str, enum.Enum):
    """``json``: one JSON object per line (for log collectors); ``plain``: for people."""

    JSON = "json"
    PLAIN = "plain"


class FailurePolicy(str, enum.Enum):
    """What the API server does with a TuningStudy when the webhook cannot be reached.

    ``Fail`` (default): the create/update is refused, so no study with an unknown pool gets in.
    A gracefully stopped operator first takes its webhook out of the configuration (kopf does
    this on SIGTERM), so only a crashed or hung operator blocks applies, until it is back.
    ``Ignore``: the API server admits the study without the pool checks; the CRD schema and the
    ValidatingAdmissionPolicy still apply. Choose it where applies must never depend on the
    operator (e.g. GitOps applying the CRDs, studies and the operator at once); the pools are
    then checked only when the study is reconciled.
    """

    FAIL = "Fail"
    IGNORE = "Ignore"


@dataclass(frozen=True)
class OperatorSettings:
    """Settings of one operator process (see the CLI: ``hwtune operator --help``)."""

    namespaces: tuple[str, ...] = ()
    """Namespaces (kopf patterns) whose studies are served; empty = cluster-wide. Admission is
    cluster-wide either way: a webhook configuration cannot follow kopf's namespace globs."""
    kubeconfig: Path | None = None
    """Kubeconfig to use; None = in-cluster service account, else $KUBECONFIG / ~/.kube/config."""
    webhook_host: str = "127.0.0.1"
    """Host name or IP the API server calls (in the webhook URL and the certificate's SANs)."""
    webhook_listen: str | None = None
    """Address the webhook server binds; None = webhook_host when that is an IP, else 0.0.0.0."""
    webhook_port: int | None = 9443
    """Port of the webhook server; None = any free port (tests)."""
    webhook_service: str | None = None
    """``namespace/name`` of the Service in front of the operator (in-cluster): the webhook is
    then registered as that Service (port webhook_service_port), which the API server routes
    itself, instead of a URL with webhook_host; the server listens on every interface."""
    webhook_service_port: int = 443
    webhook_certfile: Path | None = None
    """PEM certificate (and webhook_keyfile) of the webhook server, e.g. from cert-manager;
    None = a self-signed one made at start (its CA bundle goes into the configuration)."""
    webhook_keyfile: Path | None = None
    webhook_configuration: str = DEFAULT_WEBHOOK_CONFIGURATION
    """ValidatingWebhookConfiguration kopf creates and keeps pointing at this process."""
    failure_policy: FailurePolicy = FailurePolicy.FAIL
    webhook_persistent: bool = False
    """Keep the webhook registered when this process stops (kopf removes it by default): with
    several replicas behind one Service, one replica stopping must not unregister the others'
    webhook. The chart sets it when it runs more than one replica."""
    standalone: bool = False
    """Run without kopf peering even if a peering object exists. kopf pauses *every* replica
    when two peers have the same priority, so replicas of one Deployment run standalone and
    the per-study writer Lease keeps them apart (docs/operator-design.md, section 6)."""
    priority: int = 0
    """Peering priority: of several replicas, the one with the highest priority handles
    resources, the others pause until it stops answering. Every replica serves admission (a
    stateless check), so replicas behind one Service should share one webhook certificate."""
    peering_name: str = "hwtune"
    log_format: LogFormat = LogFormat.PLAIN
    verbose: bool = False
    pool_read_timeout_s: float = 5.0
    """Limit of one live read of HardwarePools during admission; well below the webhook's
    timeoutSeconds (30 s in kopf's configuration), so a slow API server gets a clear refusal
    from hwtune instead of the API server's own timeout error."""
    shutdown_timeout_s: float = 20.0
    """After SIGTERM/SIGINT, how long the graceful exit may take before kopf kills the process;
    below the pod's terminationGracePeriodSeconds (default 30 s) so the exit is still ours.
    ``EmbeddedOperator.stop()`` waits this long (plus a margin) for its thread."""
    report_port: int | None = 8080
    """Port of the report endpoint trainers POST to (the chart's Service port ``reports``);
    None = any free port (tests read ``EmbeddedOperator.report_url``)."""
    report_listen: str = "0.0.0.0"
    """Address the report endpoint binds."""
    report_url: str | None = None
    """Base URL trainers reach the endpoint at (``http://<service>.<namespace>.svc:8080`` in a
    cluster); None = ``http://127.0.0.1:<port>`` (a local operator, tests)."""
    metrics_port: int | None = None
    """Port of the Prometheus endpoint (/metrics; the chart's Service port ``metrics``, which
    ``hwtune operator`` defaults to 9090); None = no endpoint (embedded operators in tests)."""
    metrics_listen: str = "0.0.0.0"
    """Address the metrics endpoint binds."""
    run_studies: bool = True
    """Run TuningStudies (the daemon, finalizer and Job/pod watches); False: admission only
    (tests of the webhook, or a webhook-only replica)."""
    trial_retry_limit: int = 3
    """Failed pods (crash, OOM, exit 75) a trial's Job replaces before the trial fails."""
    lease_seconds: float = 15.0
    """Duration of a study's writer Lease (renewed every fifth of it): how long a standby
    replica waits after the active one died before it takes the study over."""
    launch_rate: float = 50.0
    """Trials the operator launches per second at most (a token bucket shared by its studies;
    bursts of ``launch_burst``): a rung wave's hundreds of launches are spread over seconds
    instead of flooding the API server that every report's log write waits on. 0: unpaced."""
    launch_burst: int = 10
    """Launches allowed at once after a quiet spell."""
    extra_sans: tuple[str, ...] = field(default=())
    """More names for the self-signed certificate (e.g. the Service's DNS names)."""

    def __post_init__(self) -> None:
        for ns in self.namespaces:
            if not _NAMESPACE_PATTERN.match(ns):
                raise SettingsError(f"namespaces: {ns!r} is not a namespace name or pattern")
        if not self.webhook_host:
            raise SettingsError("webhook_host: must not be empty")
        if self.webhook_port is not None and not 1 <= self.webhook_port <= 65535:
            raise SettingsError(
                f"webhook_port: must be 1..65535 (or unset), got {self.webhook_port}")
        if self.webhook_service is not None and not _SERVICE.match(self.webhook_service):
            raise SettingsError(
                f"webhook_service: must be namespace/name, got {self.webhook_service!r}")
        if not 1 <= self.webhook_service_port <= 65535:
            raise SettingsError(
                f"webhook_service_port: must be 1..65535, got {self.webhook_service_port}")
        if (self.webhook_certfile is None) != (self.webhook_keyfile is None):
            raise SettingsError("webhook_certfile, webhook_keyfile: give both or neither")
        for name in ("webhook_certfile", "webhook_keyfile", "kubeconfig"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise SettingsError(f"{name}: {path} is not a file")
        if len(self.webhook_configuration) > 253 or not _DNS_SUBDOMAIN.match(
                self.webhook_configuration):
            raise SettingsError(
                f"webhook_configuration: {self.webhook_configuration!r} is not a DNS subdomain")
        if not _DNS_SUBDOMAIN.match(self.peering_name):
            raise SettingsError(f"peering_name: {self.peering_name!r} is not a DNS subdomain")
        if not 0 < self.pool_read_timeout_s <= 20:
            raise SettingsError(
                f"pool_read_timeout_s: must be in (0, 20] to fit the webhook's 30 s, "
                f"got {self.pool_read_timeout_s}")
        if self.metrics_port is not None and not 1 <= self.metrics_port <= 65535:
            raise SettingsError(
                f"metrics_port: must be 1..65535 (or unset), got {self.metrics_port}")
        if self.report_port is not None and not 1 <= self.report_port <= 65535:
            raise SettingsError(
                f"report_port: must be 1..65535 (or unset), got {self.report_port}")
        if self.report_url is not None and not re.match(r"^https?://[^/\s]+", self.report_url):
            raise SettingsError(
                f"report_url: must be http(s)://host[:port], got {self.report_url!r}")
        if not 0 <= self.trial_retry_limit <= 100:
            raise SettingsError(
                f"trial_retry_limit: must be 0..100, got {self.trial_retry_limit}")
        if not 1.0 <= self.lease_seconds <= 3600:
            raise SettingsError(f"lease_seconds: must be 1..3600, got {self.lease_seconds}")
        if not 0 <= self.launch_rate <= 10000:
            raise SettingsError(
                f"launch_rate: must be 0..10000 launches/s (0: unpaced), got {self.launch_rate}")
        if not 1 <= self.launch_burst <= 10000:
            raise SettingsError(f"launch_burst: must be 1..10000, got {self.launch_burst}")
        if self.shutdown_timeout_s <= 0:
            raise SettingsError(f"shutdown_timeout_s: must be > 0, got {self.shutdown_timeout_s}")
        # Coerce enums given as strings ("json", "Ignore") so the CLI can pass its text.
        try:
            object.__setattr__(self, "log_format", LogFormat(self.log_format))
        except ValueError:
            raise SettingsError(
                f"log_format: must be json or plain, got {self.log_format!r}") from None
        try:
            object.__setattr__(self, "failure_policy", FailurePolicy(self.failure_policy))
        except ValueError:
            raise SettingsError(
                f"failure_policy: must be Fail or Ignore, got {self.failure_policy!r}") from None

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    @property
    def service(self) -> tuple[str, str] | None:
        """(namespace, name) of webhook_service, or None."""
        if self.webhook_service is None:
            return None
        namespace, name = self.webhook_service.split("/")
        return namespace, name

    @property
    def listen_address(self) -> str:
        if self.webhook_listen:
            return self.webhook_listen
        if self.webhook_service is not None:
            return "0.0.0.0"  # the Service's traffic arrives on the pod IP
        try:
            ipaddress.ip_address(self.webhook_host)
        except ValueError:
            return "0.0.0.0"  # a DNS name (a Service): listen on every interface of the pod
        return self.webhook_host
