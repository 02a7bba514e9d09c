"""The operator process: kopf, configured for hwtune, in the foreground or embedded in a thread.

``run_operator(settings)`` is what ``hwtune operator`` runs: it owns the main thread, so kopf
turns SIGTERM/SIGINT into a graceful stop (handlers finish, watches close, and the webhooks are
taken out of the ValidatingWebhookConfiguration, so a stopped operator blocks nobody).
``EmbeddedOperator`` runs the same operator in a background thread with kopf's stop/ready flags:
for tests and for programs that host the operator (kopf's "embedding" pattern).

Everything the handlers share (the HardwarePool cache, the API client) travels in kopf's
``memo``; the registry is built per operator, never kopf's global one, so several operators in
one process (tests) do not see each other's handlers.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import kopf

from hwtune.backends.kubernetes import KubeApi
from hwtune.backends.kubernetes.pacing import TokenBucket
from hwtune.controller.admission import (
    HANDLER_ID,
    ClusterPoolReader,
    PoolCache,
    StudyAdmission,
    register_admission,
)
from hwtune.controller.metrics import start_metrics_endpoint
from hwtune.controller.readiness import StudyReadiness, namespace_matcher
from hwtune.controller.settings import FailurePolicy, LogFormat, OperatorSettings
from hwtune.controller.studies import REPORT_ROUTE_PREFIX, StudyHandlers, register_studies
from hwtune.controller.tls import write_self_signed_certificate
from hwtune.controller.webhook import ServiceWebhookServer, service_hostnames

__all__ = [
    "EmbeddedOperator",
    "OperatorFailed",
    "build_registry",
    "configure_logging",
    "load_client_configuration",
    "run_operator",
    "serve",
]

log = logging.getLogger(__name__)

# Annotations and finalizer kopf writes on hwtune's objects carry hwtune's name, not kopf's.
ANNOTATION_PREFIX = "hwtune.io"
FINALIZER = "hwtune.io/finalizer"


class OperatorFailed(RuntimeError):
    """The embedded operator did not start, or stopped with an error (chained as the cause)."""


def load_client_configuration(kubeconfig: Path | None) -> Any:
    """A ``kubernetes.client.Configuration`` for ``kubeconfig``; without one, the pod's service
    account, else $KUBECONFIG or ~/.kube/config. Never touches the client's global default."""
    from kubernetes import client, config

    configuration = client.Configuration()
    if kubeconfig is not None:
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        return configuration
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    return configuration


def _connection_info(configuration: Any) -> kopf.ConnectionInfo:
    """kopf's credentials from the official client's configuration (token or client cert)."""
    header = (configuration.get_api_key_with_prefix("BearerToken")
              or configuration.get_api_key_with_prefix("authorization"))
    scheme, token = None, None
    if header:
        parts = header.split(" ", 1)
        scheme, token = (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


class _RefusalsAreNotErrors(logging.Filter):
    """kopf logs every handler's AdmissionError as an ERROR ("... failed permanently"); for the
    webhook that is a user's invalid study, not an operator fault, so it is logged as INFO and
    error-level alerts stay meaningful. Real handler crashes ("failed with an exception") keep
    their level."""

    _prefix = f"Webhook '{HANDLER_ID}' failed permanently: "

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and str(record.msg).startswith(self._prefix):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class _QuietWatchHandlers(logging.Filter):
    """kopf logs "Handler 'study-pods' succeeded." at INFO for every pod and Job event: several
    lines per trial that say nothing (the profile of a 300-trial run spent ~5% of the event
    loop formatting them). Their failures are still logged."""

    _quiet = tuple(f"Handler '{h}' succeeded" for h in ("study-pods", "study-jobs"))

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and str(record.msg).startswith(self._quiet))


class _StudiesOnlyDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf deep-copies every watched object's body to diff it, although only objects with
    create/update/delete handlers (the TuningStudy) use the diff. Pods and Jobs have event
    handlers only, so their essence is not built (~11% of the loop in a 300-trial run)."""

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        if body.get("kind") in ("Pod", "Job"):
            return None
        return super().build(body=body, extra_fields=extra_fields)


def _install_log_filters() -> None:
    objects = logging.getLogger("kopf.objects")
    for kind in (_RefusalsAreNotErrors, _QuietWatchHandlers):
        if not any(isinstance(f, kind) for f in objects.filters):
            objects.addFilter(kind())


def build_registry(settings: OperatorSettings) -> kopf.OperatorRegistry:
    """The handlers of one operator: login, admission (studies) and the pool watch."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(id="hwtune-login", registry=registry)
    async def login(**_: Any) -> kopf.ConnectionInfo:
        # Re-read on every (re-)login: tokens and certificates may have been rotated.
        configuration = await asyncio.to_thread(load_client_configuration, settings.kubeconfig)
        return _connection_info(configuration)

    register_admission(registry, ignore_failures=settings.failure_policy is FailurePolicy.IGNORE,
                       persistent=settings.webhook_persistent)
    if settings.run_studies:
        register_studies(registry)
    return registry


def _kopf_settings(settings: OperatorSettings, certfile: Path, keyfile: Path,
                   *, embedded: bool) -> Any:
    kopf_settings = kopf.OperatorSettings()
    kopf_settings.peering.name = settings.peering_name
    kopf_settings.peering.priority = settings.priority
    kopf_settings.peering.standalone = settings.standalone
    kopf_settings.peering.clusterwide = settings.clusterwide
    kopf_settings.persistence.finalizer = FINALIZER
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX)
    kopf_settings.persistence.diffbase_storage = _StudiesOnlyDiffBase(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration")
    kopf_settings.posting.reporting_component = "hwtune-operator"
    # kopf's last resort against a stuck exit is SIGKILL, which takes the whole process: right
    # for `hwtune operator`, never for a program (or pytest) hosting an embedded operator.
    kopf_settings.process.ultimate_exiting_timeout = (
        None if embedded else settings.shutdown_timeout_s)
    server_options = dict(addr=settings.listen_address, host=settings.webhook_host,
                          port=settings.webhook_port, certfile=str(certfile),
                          pkeyfile=str(keyfile))
    if settings.service is not None:
        namespace, name = settings.service
        kopf_settings.admission.server = ServiceWebhookServer(
            service_namespace=namespace, service_name=name,
            service_port=settings.webhook_service_port, **server_options)
    else:
        kopf_settings.admission.server = kopf.WebhookServer(**server_options)
    kopf_settings.admission.managed = settings.webhook_configuration
    return kopf_settings


def _study_lister(settings: OperatorSettings, kube: KubeApi) -> Any:
    """What readiness waits for: the studies this replica serves, listed; None where it waits
    for nothing (no studies run here, or kopf peering may keep this replica paused)."""
    if not settings.run_studies or not settings.standalone:
        return None
    patterns = settings.namespaces
    if patterns and all(not p.startswith("!") and not set(p) & set("*?[") for p in patterns):
        return lambda: kube.list_study_keys(patterns)
    return lambda: kube.list_study_keys(match=namespace_matcher(patterns))


async def _start_report_endpoint(settings: OperatorSettings, sink: Any, forward: Any = None,
                                 readiness: StudyReadiness | None = None
                                 ) -> tuple[Any, str, int]:
    """The report endpoint in this event loop; returns its runner, the trainers' base URL and
    the port it listens on. ``forward``: where this replica sends reports of studies another
    replica acts for (``HolderForwarder.forward``). ``readiness``: answers GET /readyz (the
    chart's readiness probe), else /readyz is always ready."""
    from aiohttp import web

    from hwtune.report.server import create_app, runner_options

    app = create_app(sink, route_prefix=REPORT_ROUTE_PREFIX, forward=forward)
    readiness = readiness or StudyReadiness(None)

    async def readyz(_: Any) -> Any:
        ready, answer = await readiness.check()
        return web.json_response(answer, status=200 if ready else 503)

    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, **runner_options())
    await runner.setup()
    site = web.TCPSite(runner, settings.report_listen, settings.report_port or 0)
    await site.start()
    port = runner.addresses[0][1]
    url = settings.report_url or f"http://127.0.0.1:{port}"
    log.info("report endpoint listening on %s:%s (trainers use %s)", settings.report_listen,
             port, url)
    return runner, url, port


async def serve(
    settings: OperatorSettings,
    *,
    stop_flag: threading.Event | asyncio.Event | None = None,
    ready_flag: threading.Event | asyncio.Event | None = None,
    embedded: bool = False,
    on_report_url: Any = None,
) -> None:
    """Run the operator in the current event loop until ``stop_flag`` (or a signal, when this
    is the main thread). Cleans up its certificate files and API client on the way out.
    ``embedded``: a host program owns the process, so a stuck exit is never ended by SIGKILL."""
    from kubernetes import client

    from hwtune.backends.kubernetes.lease import IDENTITY, LeaseHolders, report_address
    from hwtune.report.forward import HolderForwarder

    _install_log_filters()
    configuration = await asyncio.to_thread(load_client_configuration, settings.kubeconfig)
    configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0,
                                                KubeApi.CONNECTIONS)
    api_client = client.ApiClient(configuration)
    kube = KubeApi(api_client)
    studies = StudyHandlers(report_url="", retry_limit=settings.trial_retry_limit, api=kube,
                            lease_seconds=settings.lease_seconds,
                            launch_pacer=TokenBucket(settings.launch_rate, settings.launch_burst))
    # A report reaching the replica that does not hold its study's Lease is forwarded to the
    # holder, at the address the holder publishes in the Lease (docs/operator-design.md).
    holders = LeaseHolders(kube)

    async def locate(scope: tuple[str, ...]) -> str | None:
        # Only studies this replica runs a daemon for: a URL naming any other study costs no
        # Lease read (a caller without a token cannot make the API server work per request).
        return await holders.locate(scope) if scope in studies.router.runners else None

    def count_forward(outcome: str) -> None:
        metrics = getattr(studies, "metrics", None)  # set by start_metrics_endpoint below
        if metrics is not None:
            metrics.forwards.labels(outcome).inc()

    forwarder = HolderForwarder(locate, holders.forget, via=IDENTITY, on_outcome=count_forward)
    studies.readiness = StudyReadiness(_study_lister(settings, kube))
    report_runner, studies.report_url, report_port = await _start_report_endpoint(
        settings, studies.router, forwarder.forward, studies.readiness)
    studies.report_address = holders.own = report_address(settings.report_listen, report_port)
    metrics_server = start_metrics_endpoint(settings, studies)
    if on_report_url is not None:
        on_report_url(studies.report_url)
    try:
        reader = ClusterPoolReader(api_client, settings.pool_read_timeout_s)
        memo = kopf.Memo(admission=StudyAdmission(PoolCache(), reader), studies=studies)
        with tempfile.TemporaryDirectory(prefix="hwtune-webhook-") as tmp:
            if settings.webhook_certfile is not None and settings.webhook_keyfile is not None:
                certfile, keyfile = settings.webhook_certfile, settings.webhook_keyfile
            else:
                hostnames = [settings.webhook_host, settings.listen_address, *settings.extra_sans]
                if settings.service is not None:
                    hostnames = service_hostnames(*settings.service) + hostnames
                certfile, keyfile = await asyncio.to_thread(
                    write_self_signed_certificate, Path(tmp), hostnames)
            kopf_settings = _kopf_settings(settings, certfile, keyfile, embedded=embedded)
            try:
                await kopf.operator(
                    registry=build_registry(settings),
                    settings=kopf_settings,
                    clusterwide=settings.clusterwide,
                    namespaces=settings.namespaces,
                    standalone=settings.standalone,
                    priority=settings.priority,
                    # A name makes peering mandatory in kopf: streams pause while its CRD is
                    # missing, even when standalone.
                    peering_name=None if settings.standalone else settings.peering_name,
                    stop_flag=stop_flag,
                    ready_flag=ready_flag,
                    memo=memo,
                )
            finally:
                kopf_settings.execution.executor.shutdown(wait=True)
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
        await report_runner.cleanup()
        await forwarder.close()
        kube.close()
        api_client.close()


def configure_logging(settings: OperatorSettings) -> None:
    """Root logging as kopf formats it: JSON lines (with the object's namespace/name under
    ``object``) or plain text."""
    log_format = (kopf.LogFormat.JSON if settings.log_format is LogFormat.JSON
                  else kopf.LogFormat.FULL)
    kopf.configure(verbose=settings.verbose, log_format=log_format, log_refkey="object")


def run_operator(settings: OperatorSettings) -> None:
    """Run in the foreground until SIGTERM/SIGINT (``hwtune operator``)."""
    configure_logging(settings)
    where = (f"Service {settings.webhook_service}:{settings.webhook_service_port}"
             if settings.webhook_service else f"https://{settings.webhook_host}")
    log.info("hwtune operator starting: %s, webhook %s -> %s:%s, configuration %s",
             "cluster-wide" if settings.clusterwide else f"namespaces {list(settings.namespaces)}",
             where, settings.listen_address, settings.webhook_port or "(any free port)",
             settings.webhook_configuration)
    asyncio.run(serve(settings))


class EmbeddedOperator:
    """The operator in a background thread of this process (tests, hosting programs).

    ``start()`` returns once kopf reports ready, i.e. its startup activities (login) are done;
    that is before the webhook is registered or the API server is known to be reachable, so
    callers wait for what they need (tests: the webhook configuration and a refused probe).
    It raises OperatorFailed with the reason if the operator stopped first. ``stop()`` asks it
    to stop, waits for the thread and re-raises a failure. Usable as a context manager.
    """

    def __init__(self, settings: OperatorSettings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.report_url: str | None = None  # the report endpoint's base URL, once started
        self._thread = threading.Thread(target=self._main, name="hwtune-operator", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(serve(self.settings, stop_flag=self._stop, ready_flag=self._ready,
                              embedded=True, on_report_url=self._set_report_url))
        except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
            self._error = exc

    def _set_report_url(self, url: str) -> None:
        self.report_url = url

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self, timeout: float = 60) -> EmbeddedOperator:
        if self._thread.ident is not None:
            raise RuntimeError("an EmbeddedOperator can be started once")
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.1):
            if not self._thread.is_alive() or time.monotonic() >= deadline:
                break
        if not self._ready.is_set():
            self.stop(timeout=self.settings.shutdown_timeout_s, check=False)
            reason = repr(self._error) if self._error else f"not ready after {timeout:g}s"
            raise OperatorFailed(f"the operator did not start: {reason}") from self._error
        return self

    def stop(self, timeout: float | None = None, *, check: bool = True) -> None:
        """Stop and wait for the thread (at most ``timeout``, default the shutdown timeout
        plus a margin); with ``check``, raise OperatorFailed if it ended with an error."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout if timeout is not None
                              else self.settings.shutdown_timeout_s + 10)
            if self._thread.is_alive():
                raise OperatorFailed("the operator thread did not stop in time")
        if check and self._error is not None:
            raise OperatorFailed(f"the operator failed: {self._error!r}") from self._error

    def __enter__(self) -> EmbeddedOperator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
