"""The ``hwtune`` command.

- ``hwtune tune study.yaml``: run a study on this machine (trials are local processes), with a
  live view, then print the Pareto front and write its plot.
- ``hwtune validate study.yaml``: check a study file as the cluster would, without running it.
- ``hwtune convert katib experiment.yaml``: Katib Experiments as TuningStudies, with what was lost.
- ``hwtune operator``: run the Kubernetes operator (admission webhook) in the foreground.
- ``hwtune surrogate serve``: the DyHPO/FMS surrogate service (docs/surrogate-protocol.md).
- ``hwtune surrogate bench``: the FMS benchmark (model hub, Kendall tau, regret, latency).
- ``hwtune observe generate|render``: the chart's dashboard/alerts; the dashboard as a PNG.
- ``hwtune version``.

Exit codes: 0 done, 1 unexpected error, 2 invalid study file or work directory, 3 the study
failed (more failed trials than budget.maxFailedTrials, or no trial reported its objectives), 75
the machine failed (a full disk; continue with ``--resume`` once fixed), 130 interrupted
(continue with ``--resume``); ``convert`` exits 4 when something could not be kept.
"""

from __future__ import annotations

import json
import logging
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.console import Console
from rich.live import Live

from hwtune.api.records import TrialPhase
from hwtune.cli.studyfile import StudyFileError, check_runs_locally, load_study_file

app = typer.Typer(
    name="hwtune",
    help="Hardware-aware, multi-objective hyperparameter tuning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_INVALID = 2
EXIT_STUDY_FAILED = 3  # the study ran and failed (maxFailedTrials, no trial reported)
EXIT_INFRASTRUCTURE = 75  # EX_TEMPFAIL: try again (--resume) once the machine is fixed
EXIT_INTERRUPTED = 130

console = Console()
errors = Console(stderr=True)


def _fail(message: str, code: int = EXIT_INVALID) -> typer.Exit:
    # escape(): field paths such as spec.parameters[lr].min are not rich markup
    errors.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _load(path: Path, *, locally: bool = False):
    try:
        study = load_study_file(path)
        if locally:
            check_runs_locally(study)
        return study
    except StudyFileError as exc:
        for problem in exc.problems:
            errors.print(f"[bold red]error:[/] {escape(f'{exc.path}: {problem}')}",
                         highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INVALID) from None


@app.command()
def version() -> None:
    """Print the hwtune version."""
    try:
        console.print(f"hwtune {metadata.version('hwtune')}")
    except metadata.PackageNotFoundError:
        console.print("hwtune (not installed)")


@app.command()
def validate(
    study_file: Path = typer.Argument(..., help="YAML with one TuningStudy and any HardwarePools"),
) -> None:
    """Check a study file (schema, field rules, pool references) without running it."""
    study = _load(study_file)
    config = study.config
    fidelity = config.fidelity
    console.print(
        f"[green]ok[/]: TuningStudy [bold]{study.name}[/]: {len(config.space.names)} parameters, "
        f"{len(config.hardware) or 'no'} hardware choices, "
        f"{len(config.objectives)} objectives ({', '.join(o.metric for o in config.objectives)}), "
        f"{config.scheduler_name}/{config.searcher_name}, "
        + (f"{fidelity.resource} {fidelity.min}..{fidelity.max}" if config.fidelity_declared
           else "one report per trial")
        + (f", {len(study.pools)} HardwarePools" if study.pools else ""),
        highlight=False)


@app.command()
def tune(
    study_file: Path = typer.Argument(..., help="YAML with one TuningStudy and any HardwarePools"),
    workdir: Optional[Path] = typer.Option(
        None, "--workdir", "-w",
        help="Where the event log, trial logs and checkpoints go [default: .hwtune/<study>]"),
    resume: bool = typer.Option(False, "--resume", help="Continue the study in --workdir"),
    max_parallel: Optional[int] = typer.Option(
        None, "--max-parallel", "-j", min=1,
        help="Trials at once [default: the study's budget.maxParallelTrials]"),
    plot: Optional[Path] = typer.Option(
        None, "--plot", help="Plot file (PNG) [default: <workdir>/front.png]"),
    cwd: Optional[Path] = typer.Option(
        None, "--cwd", help="Directory trials start in [default: the current directory]"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live view"),
    trial_inactivity: Optional[str] = typer.Option(
        None, "--trial-inactivity",
        help="Stop and fail a trial that has not reported for this long: seconds (600), or a "
             "multiple of its usual time per level (10x) [default: 10x, at least 120 s; "
             "3600 s until its pace is known]"),
    trial_log_max_bytes: Optional[int] = typer.Option(
        None, "--trial-log-max-bytes", min=4096,
        help="Keep only the last part of a trial's log beyond this size [default: 10 MiB]"),
) -> None:
    """Run a study on this machine: trials are local processes, GPU pools are simulated."""
    from hwtune.backends.local import (
        InactivityLimit,
        InfrastructureError,
        LocalStudyRun,
        StudyInterrupted,
        WorkdirError,
    )
    from hwtune.cli.plot import plot_front
    from hwtune.cli.view import front_configs, front_table, progress_view, simulated_note
    from hwtune.optimize.context import note_event

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    study = _load(study_file, locally=True)
    workdir = workdir or Path(".hwtune") / study.name
    plot = plot or workdir / "front.png"
    started = time.monotonic()
    live: Live | None = None
    last_draw = [0.0]

    def draw(run: LocalStudyRun) -> None:
        now = time.monotonic()
        if live is None or now - last_draw[0] < 0.25:
            return
        last_draw[0] = now
        live.update(progress_view(run.study, name=study.name, workdir=str(workdir),
                                  started=started, pools=run.simulated_pools))

    backend_options: dict = {}
    if trial_inactivity is not None:
        try:
            backend_options["inactivity"] = InactivityLimit.parse(trial_inactivity)
        except ValueError as exc:
            raise _fail(f"--trial-inactivity {exc}") from None
    if trial_log_max_bytes is not None:
        backend_options["log_max_bytes"] = trial_log_max_bytes
    restart = f"hwtune tune {study_file} --workdir {workdir} --resume"
    try:
        run = LocalStudyRun(study.name, study.spec, config=study.config, workdir=workdir,
                            pools=study.pools,
                            resume=resume, max_parallel=max_parallel, cwd=cwd,
                            base_dir=study_file.resolve().parent, on_iteration=draw,
                            backend_options=backend_options)
    except WorkdirError as exc:
        raise _fail(str(exc)) from None
    except InfrastructureError as exc:
        raise _fail(f"{exc}\nFix that, then run: {restart}", EXIT_INFRASTRUCTURE) from None
    except OSError as exc:  # the work directory cannot be created or written
        raise _fail(f"{exc.filename or workdir}: {exc.strerror or exc}",
                    EXIT_INFRASTRUCTURE) from None
    fallbacks = [0]

    def show_notes(event) -> None:
        # What a searcher noted (a surrogate fallback and why): the same lines the operator
        # posts as Events, on stderr so the progress view and the result stay on stdout.
        for note in (event.extra or {}).get("notes") or ():
            shown = note_event(note)
            if shown is None:
                continue
            reason, message, _ = shown
            fallbacks[0] += reason == "SurrogateFallback"
            errors.print(f"{reason}: {message}", highlight=False, markup=False, soft_wrap=True)

    run.study.add_listener(show_notes)
    if resume:
        console.print(f"resuming {study.name}: {len(run.study.trials)} trials from "
                      f"{workdir}/events.jsonl", highlight=False)
    from hwtune.api import algorithms

    how = run.config.transfer_method if algorithms.searcher(run.config.searcher_name).needs_transfer \
        else f"{run.config.searcher_name} surrogate meta-trained, " \
             f"{run.config.settings.get('transferMode', 'joint')}"
    for past in run.config.transfer_studies:
        console.print(f"transfer ({how}) from {past.name}: "
                      f"{len(past.reported())} trials with reports ({past.source})", highlight=False)
    try:
        if quiet or not console.is_terminal:
            result = run.run()
        else:
            with Live(console=console, refresh_per_second=4, transient=False) as live_view:
                live = live_view
                result = run.run()
                live_view.update(progress_view(run.study, name=study.name, workdir=str(workdir),
                                               started=started, pools=run.simulated_pools))
    except StudyInterrupted:
        errors.print(f"interrupted: trial processes stopped, checkpoints kept. Continue with\n"
                     f"  {restart}", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except InfrastructureError as exc:
        raise _fail(f"{exc}\nThen run: {restart}", EXIT_INFRASTRUCTURE) from None
    except OSError as exc:  # a file of hwtune's own (trial directories, logs) on a broken disk
        raise _fail(f"{exc.filename or workdir}: {exc.strerror or exc}\nThen run: {restart}",
                    EXIT_INFRASTRUCTURE) from None

    wall = time.monotonic() - started
    summary = result.summary
    counts = ", ".join(f"{n} {phase.lower()}" for phase, n in summary.counts.items() if n)
    console.print(f"{study.name}: {result.stop_reason}. {len(result.trials)} trials ({counts}), "
                  f"{summary.reports} reports, spent ${summary.spend.cost_usd:.4g} and "
                  f"{summary.spend.gpu_hours:.3g} GPU-hours in {wall:.0f} s of wall time.",
                  highlight=False)
    console.print(simulated_note(run.simulated_pools), style="italic", highlight=False)
    if fallbacks[0]:
        errors.print(f"the surrogate could not answer {fallbacks[0]} time(s); those suggestions "
                     f"fell back to random search (see the lines above, and {workdir}/events.jsonl)",
                     highlight=False)
    console.print(front_table(run.study, result.front))
    console.print(front_configs(run.study, result.front), highlight=False, end="")
    for record in run.study.trials_in(TrialPhase.FAILED):
        first_line = record.reason.splitlines()[0] if record.reason else "failed"
        errors.print(f"trial {record.trial_id} failed: {first_line} (log: "
                     f"{run.backend.log_path(record.trial_id)})", highlight=False)
    try:
        written = plot_front(run.study, plot)
    except OSError as exc:  # the study is done and saved; only its picture is missing
        errors.print(f"warning: could not write the plot {plot}: {exc.strerror or exc}",
                     highlight=False)
    else:
        console.print(f"plot: {written}", highlight=False)
    if result.failed:
        raise _fail(f"study {study.name} {result.stop_reason}", EXIT_STUDY_FAILED)
    if summary.reports == 0 and result.trials:
        # Never a silent success with no data.
        from hwtune.engine.study import no_report_advice

        raise _fail(f"study {study.name} got no report from any trial: "
                    f"{no_report_advice(run.study.config)}", EXIT_STUDY_FAILED)


convert_app = typer.Typer(help="Convert other tuners' specs to TuningStudies.",
                          no_args_is_help=True)
app.add_typer(convert_app, name="convert")
EXIT_LOSSY = 4  # converted, but something could not be kept (see the report)


@convert_app.command("katib")
def convert_katib(
    files: list[Path] = typer.Argument(..., help="YAML files with Katib v1beta1 Experiments"),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Write the TuningStudies here [default: stdout]"),
    max_resource: Optional[int] = typer.Option(
        None, "--max-resource", min=1,
        help="Reports per trial at most (e.g. epochs): needed to turn medianstop into ASHA"),
    configmap: list[Path] = typer.Option(
        [], "--configmap", help="A ConfigMap YAML holding a trial template (repeatable)"),
    from_cluster: bool = typer.Option(
        False, "--from-cluster",
        help="Read the trial-template ConfigMaps the Experiments name from the cluster (an "
             "unreachable cluster is an error) [default: read them from the cluster when a "
             "kubeconfig is found and --configmap does not give them]"),
    kubeconfig: Optional[Path] = typer.Option(
        None, "--kubeconfig", help="Kubeconfig for --from-cluster [default: $KUBECONFIG, "
                                   "then ~/.kube/config]"),
) -> None:
    """Katib Experiments -> TuningStudies. Prints what could not be kept, per Katib field, and
    exits 4 when anything was lost (2 when a file is not a Katib Experiment, or --from-cluster
    cannot read a ConfigMap)."""
    import yaml

    from hwtune.api.katib import KatibConversionError, convert_experiment

    maps: dict[tuple, dict] = {}
    for path in configmap:
        try:
            for doc in yaml.safe_load_all(path.read_text()):
                if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
                    meta = doc.get("metadata") or {}
                    maps[(meta.get("namespace"), meta.get("name"))] = doc.get("data") or {}
                    maps[(None, meta.get("name"))] = doc.get("data") or {}
        except (OSError, yaml.YAMLError) as exc:
            raise _fail(f"{path}: {exc}") from None
    read: list[tuple[Path, list[Any]]] = []
    for path in files:
        try:
            read.append((path, [d for d in yaml.safe_load_all(path.read_text()) if d is not None]))
        except (OSError, yaml.YAMLError) as exc:
            raise _fail(f"{path}: {exc}") from None
    wanted = {ref for _, docs in read for doc in docs for ref in [_katib_configmap_ref(doc)]
              if ref is not None and ref not in maps and (None, ref[1]) not in maps}
    if wanted:
        fetched, problem = _cluster_configmaps(sorted(wanted), kubeconfig, required=from_cluster)
        if problem is not None:
            if from_cluster:
                raise _fail(problem)
            errors.print(f"note: {escape(problem)}", highlight=False, soft_wrap=True)
        maps.update(fetched)
    studies, lossy = [], False
    for path, docs in read:
        for i, doc in enumerate(docs):
            where = f"{path}" + (f", document {i + 1}" if len(docs) > 1 else "")
            try:
                conv = convert_experiment(doc, max_resource=max_resource, configmaps=maps)
            except KatibConversionError as exc:
                raise _fail(f"{where}: {exc}") from None
            name = (doc.get("metadata") or {}).get("name")
            for field_path, why in conv.lost:
                errors.print(f"{escape(where)}: {escape(str(name))}: [bold red]lost[/] "
                             f"{escape(field_path)}: {escape(why)}", highlight=False,
                             soft_wrap=True)
            for field_path, why in conv.notes:
                errors.print(f"{escape(where)}: {escape(str(name))}: note {escape(field_path)}: "
                             f"{escape(why)}", highlight=False, soft_wrap=True)
            lossy |= conv.lossy
            studies.append(conv.study)
    text = yaml.safe_dump_all(studies, sort_keys=False)
    if output is not None:
        output.write_text(text)
    else:
        typer.echo(text, nl=False)
    if lossy:
        raise typer.Exit(EXIT_LOSSY)


def _katib_configmap_ref(doc: Any) -> tuple[str, str] | None:
    """(namespace, name) of the ConfigMap an Experiment's trial template is in, or None."""
    if not isinstance(doc, dict):
        return None
    template = ((doc.get("spec") or {}).get("trialTemplate") or {})
    cm = template.get("configMap") if isinstance(template, dict) else None
    if not isinstance(cm, dict) or template.get("trialSpec") is not None \
            or not cm.get("configMapName"):
        return None
    namespace = cm.get("configMapNamespace") or (doc.get("metadata") or {}).get("namespace") \
        or "kubeflow"  # Katib's own default
    return str(namespace), str(cm["configMapName"])


def _cluster_configmaps(refs: list[tuple[str, str]], kubeconfig: Optional[Path], *,
                        required: bool) -> tuple[dict[tuple, dict], str | None]:
    """The ConfigMaps ``refs`` read from the cluster of ``kubeconfig`` (else $KUBECONFIG, else
    ~/.kube/config): (namespace, name) -> data, and what went wrong (None: nothing). Without
    ``required``, no kubeconfig means no attempt and no problem."""
    import os

    names = ", ".join(f"{ns}/{name}" for ns, name in refs)
    path = kubeconfig or (Path(os.environ["KUBECONFIG"].split(os.pathsep)[0])
                          if os.environ.get("KUBECONFIG") else Path.home() / ".kube" / "config")
    if not path.is_file():
        if not required:
            return {}, None
        return {}, (f"--from-cluster: no kubeconfig at {path} (give --kubeconfig) to read "
                    f"ConfigMap {names}")
    try:
        from kubernetes import client, config
        from kubernetes.client.exceptions import ApiException
    except ImportError:
        return {}, ("reading ConfigMaps from the cluster needs the kubernetes package "
                    "(pip install 'hwtune[operator]'); or pass them with --configmap FILE")
    try:
        configuration = client.Configuration()
        config.load_kube_config(config_file=str(path), client_configuration=configuration)
    except Exception as exc:  # noqa: BLE001 - a broken kubeconfig, in the user's words
        return {}, f"kubeconfig {path}: {exc}"
    configuration.retries = 0
    out: dict[tuple, dict] = {}
    with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        for namespace, name in refs:
            try:
                body = core.read_namespaced_config_map(name, namespace, _request_timeout=(3, 10))
            except ApiException as exc:
                if exc.status == 404:
                    return out, (f"ConfigMap {namespace}/{name} not found in the cluster of "
                                 f"{path} ({configuration.host})")
                return out, (f"cannot read ConfigMap {namespace}/{name} from the cluster of "
                             f"{path} ({configuration.host}): {exc.status} {exc.reason}")
            except Exception as exc:  # noqa: BLE001 - unreachable: urllib3 errors vary
                reason = str(getattr(exc, "reason", None) or exc).splitlines()[0][:300]
                return out, (f"cannot reach the cluster of {path} ({configuration.host}) to "
                             f"read ConfigMap {namespace}/{name}: {reason}")
            out[(namespace, name)] = dict(body.data or {})
    return out, None


@app.command("operator")
def operator_command(
    namespace: list[str] = typer.Option(
        [], "--namespace", "-n",
        help="Serve studies in this namespace (a kopf pattern, repeatable) [default: all]"),
    kubeconfig: Optional[Path] = typer.Option(
        None, "--kubeconfig",
        help="Kubeconfig [default: in-cluster service account, else $KUBECONFIG]"),
    webhook_host: str = typer.Option(
        "127.0.0.1", "--webhook-host",
        help="Host or IP the API server calls the admission webhook at"),
    webhook_port: int = typer.Option(9443, "--webhook-port", min=1, max=65535),
    webhook_service: Optional[str] = typer.Option(
        None, "--webhook-service",
        help="NAMESPACE/NAME of the Service in front of the operator (in-cluster): the webhook "
             "is registered as that Service instead of a URL with --webhook-host"),
    webhook_service_port: int = typer.Option(443, "--webhook-service-port", min=1, max=65535),
    webhook_cert: Optional[Path] = typer.Option(
        None, "--webhook-cert", help="PEM certificate [default: a self-signed one]"),
    webhook_key: Optional[Path] = typer.Option(None, "--webhook-key", help="Its PEM key"),
    webhook_configuration: str = typer.Option(
        "auto.hwtune.io", "--webhook-configuration",
        help="Name of the ValidatingWebhookConfiguration the operator creates and maintains"),
    failure_policy: str = typer.Option(
        "Fail", "--webhook-failure-policy",
        help="Fail: refuse studies while the webhook is unreachable (a stopped operator "
             "removes its webhook first; a crashed one blocks until it is back); Ignore: "
             "admit them without the pool checks (schema and admission policy still apply)"),
    webhook_persistent: bool = typer.Option(
        False, "--webhook-persistent",
        help="Keep the webhook registered when this process stops (several replicas)"),
    standalone: bool = typer.Option(
        False, "--standalone",
        help="No kopf peering (replicas are kept apart by each study's writer Lease)"),
    priority: int = typer.Option(
        0, "--priority", help="Peering priority: the highest-priority replica works"),
    peering_name: str = typer.Option(
        "hwtune", "--peering-name",
        help="ClusterKopfPeering (or KopfPeering with --namespace) the replicas share"),
    report_port: int = typer.Option(
        8080, "--report-port", min=0, max=65535,
        help="Port of the report endpoint trainers POST to (0: any free port)"),
    report_listen: str = typer.Option("0.0.0.0", "--report-listen",
                                      help="Address the report endpoint binds"),
    report_url: Optional[str] = typer.Option(
        None, "--report-url",
        help="Base URL trainers reach the endpoint at, e.g. "
             "http://hwtune.hwtune-system.svc:8080 [default: http://127.0.0.1:<port>]"),
    metrics_port: int = typer.Option(
        9090, "--metrics-port", min=0, max=65535,
        help="Port of the Prometheus endpoint /metrics (0: no endpoint)"),
    metrics_listen: str = typer.Option("0.0.0.0", "--metrics-listen",
                                       help="Address the metrics endpoint binds"),
    trial_retry_limit: int = typer.Option(
        3, "--trial-retry-limit", min=0, max=100,
        help="Failed pods a trial's Job replaces (resuming from its checkpoint) before the "
             "trial fails"),
    lease_seconds: float = typer.Option(
        15.0, "--lease-seconds", min=1.0, max=3600.0,
        help="Duration of each study's writer Lease: a standby replica takes a study over "
             "this long after the active one stopped renewing it"),
    launch_rate: float = typer.Option(
        50.0, "--launch-rate", min=0.0, max=10000.0,
        help="Trials launched per second at most, all studies together (0: unpaced)"),
    launch_burst: int = typer.Option(
        10, "--launch-burst", min=1, max=10000,
        help="Launches allowed at once after a quiet spell"),
    log_format: str = typer.Option("plain", "--log-format", help="json | plain"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run the Kubernetes operator until SIGTERM: admission webhook for TuningStudies, study
    reconciliation (TuningTrials and Jobs) and the report endpoint."""
    from hwtune.controller import OperatorSettings, SettingsError
    from hwtune.controller.operator import run_operator

    try:
        settings = OperatorSettings(
            namespaces=tuple(namespace), kubeconfig=kubeconfig, webhook_host=webhook_host,
            webhook_port=webhook_port, webhook_service=webhook_service,
            webhook_service_port=webhook_service_port, webhook_certfile=webhook_cert,
            webhook_keyfile=webhook_key, webhook_configuration=webhook_configuration,
            failure_policy=failure_policy, webhook_persistent=webhook_persistent,
            standalone=standalone, priority=priority, peering_name=peering_name,
            log_format=log_format, verbose=verbose,
            report_port=report_port or None, report_listen=report_listen, report_url=report_url,
            metrics_port=metrics_port or None, metrics_listen=metrics_listen,
            trial_retry_limit=trial_retry_limit, lease_seconds=lease_seconds,
            launch_rate=launch_rate, launch_burst=launch_burst)
    except SettingsError as exc:
        raise _fail(str(exc)) from None
    run_operator(settings)


surrogate_app = typer.Typer(help="The DyHPO / FMS surrogate: service and benchmarks.",
                            no_args_is_help=True)
app.add_typer(surrogate_app, name="surrogate")


def _surrogate_device(device: str | None) -> str:
    """The device the model runs on (GPU when torch sees one), or exit 2 saying why; also the
    check that the torch extra is installed."""
    try:
        from hwtune.surrogate.store import select_device
    except ImportError as exc:
        raise _fail(f"the surrogate needs the torch extra (pip install 'hwtune[torch]'): {exc}") from None
    try:
        return select_device(device)
    except ValueError as exc:
        raise _fail(f"--{exc}") from None


@surrogate_app.command("serve")
def surrogate_serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on"),
    port: int = typer.Option(8470, "--port", min=0, max=65535),
    device: Optional[str] = typer.Option(
        None, "--device", help="cpu | cuda [default: cuda when torch sees a GPU]"),
    threads: int = typer.Option(1, "--threads", min=1, help="torch CPU threads per request"),
    workers: int = typer.Option(2, "--workers", min=1, help="Requests fitted in parallel"),
    max_body_mib: int = typer.Option(64, "--max-body-mib", min=1),
    state_dir: Optional[Path] = typer.Option(
        None, "--state-dir", envvar="HWTUNE_SURROGATE_STATE_DIR",
        help="Save each study's fitted model here; a restarted service reloads it"),
    background_fits: bool = typer.Option(
        True, "--background-fits/--no-background-fits",
        help="Answer a request whose full fit is missing from a quick fit and run the full fit "
        "in the background (--no-background-fits: fit it in the request)"),
    fit_threads: int = typer.Option(1, "--fit-threads", min=1,
                                    help="Background full fits at once (over all studies)"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Serve surrogate suggestions over HTTP + JSON until interrupted."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    device = _surrogate_device(device)
    from hwtune.surrogate.service import serve_forever

    try:
        serve_forever(host, port, device, threads, workers, max_body_mib * 1024 * 1024,
                      state_dir=None if state_dir is None else str(state_dir),
                      background_fits=background_fits, fit_threads=fit_threads)
    except OSError as exc:  # the state directory or the port
        raise _fail(f"{exc.filename or f'{host}:{port}'}: {exc.strerror or exc}") from None


@surrogate_app.command("latency")
def surrogate_latency(
    sizes: str = typer.Option("100,500,2000", "--sizes", help="Observation counts, comma-separated"),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Suggestions timed per warm/restart row"),
    cold_repeats: int = typer.Option(2, "--cold-repeats", min=1, help="Suggestions per cold row"),
    device: Optional[str] = typer.Option(None, "--device",
                                         help="cpu | cuda [default: cuda when torch sees a GPU]"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the numbers here"),
    background_fits: bool = typer.Option(
        True, "--background-fits/--no-background-fits",
        help="Full fits in a fit thread, as the service does by default (--no-background-fits: "
        "in the request)"),
    sync_cold: bool = typer.Option(False, "--sync-cold",
                                   help="Also time cold suggestions with the full fit in the request"),
) -> None:
    """Time DyHPO suggestions at 100/500/2,000 observations: warm, after a restart that reloads
    the saved model, after the full-fit set grew, and cold; p50 and max beside the goal (< 1 s
    at 2,000 on a CPU)."""
    try:
        counts = [int(v) for v in sizes.split(",") if v.strip()]
    except ValueError:
        raise _fail(f"--sizes: expected comma-separated integers, got {sizes!r}") from None
    if not counts or min(counts) < 10:
        raise _fail(f"--sizes: each size must be >= 10, got {sizes!r}")
    device = _surrogate_device(device)
    from hwtune.surrogate.latency import format_table, measure

    results = measure(counts, repeats=repeats, cold_repeats=cold_repeats, device=device,
                      log=lambda m: errors.print(m, highlight=False), background=background_fits,
                      sync_cold=sync_cold)
    if json_out is not None:
        json_out.write_text(json.dumps(results, indent=1))
    console.print(format_table(results), highlight=False, soft_wrap=True)


@surrogate_app.command("bench")
def surrogate_bench(
    quick: bool = typer.Option(False, "--quick", help="The CI-sized configuration (< 60 s)"),
    seeds: int = typer.Option(0, "--seeds", min=0, help="Runs per method [default: 1 quick, 5 full]"),
    latency: bool = typer.Option(True, "--latency/--no-latency",
                                 help="Also time suggestions at 100/500/2000 observations"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the numbers here"),
    method: Optional[list[str]] = typer.Option(
        None, "--method", help="Run only this method (repeatable; e.g. one per process: finished "
        "runs are cached, the printout takes every cached run)"),
    multi_objective: bool = typer.Option(True, "--multi-objective/--no-multi-objective",
                                         help="Also the (val error, cost) hypervolume runs"),
    run_seed: Optional[list[int]] = typer.Option(
        None, "--run-seed", min=0, help="Run only this seed (repeatable, in this order; several "
        "processes share the work, each run is claimed by one)"),
    transfer: bool = typer.Option(
        False, "--transfer", help="Also the transfer setting: the surrogates meta-trained on an "
        "earlier study of the same hub (another task's table, built and cached too); methods "
        "fms+t, dyhpo+t, gp+t (joint) and fms+pre, dyhpo+pre, gp+pre (pretrained)"),
    transfer_source: str = typer.Option(
        "noisy", "--transfer-source", help="The earlier study of --transfer: noisy (the hub "
        "fine-tuned on noisy ten-class digits) or resplit (the same task, another data split)"),
) -> None:
    """Build (or reuse) the model-hub table, then print Kendall tau, regret and latency beside
    the FMS paper's numbers."""
    try:
        from hwtune.surrogate.bench import run_benchmark
    except ImportError as exc:
        raise _fail(f"the benchmark needs the torch extra (pip install 'hwtune[torch]'): {exc}") from None
    from hwtune.surrogate.bench import TRANSFER_METHODS, TRANSFER_SOURCE_SETS

    if transfer_source not in TRANSFER_SOURCE_SETS:
        raise _fail(f"--transfer-source: unknown {transfer_source!r} (one of "
                    f"{', '.join(TRANSFER_SOURCE_SETS)})")

    known = {"random", "asha", "fms", "fms-flat", "fms-nocurve", "dyhpo", "gp", *TRANSFER_METHODS}
    for m in method or []:
        if m not in known:
            raise _fail(f"--method: unknown method {m!r} (one of {', '.join(sorted(known))})")
    text = run_benchmark(quick=quick, seeds=seeds or (1 if quick else 5), latency=latency,
                         json_path=json_out, log=lambda m: errors.print(m, highlight=False),
                         only=method or None, multi_objective=multi_objective,
                         run_seeds=run_seed or None, transfer=transfer,
                         transfer_source=transfer_source)
    console.print(text, highlight=False, soft_wrap=True, markup=False)


observe_app = typer.Typer(help="Metrics, the Grafana dashboard and the alert rules.",
                          no_args_is_help=True)
app.add_typer(observe_app, name="observe")


@observe_app.command("generate")
def observe_generate(
    chart: Path = typer.Option(Path("charts/hwtune"), "--chart", help="The Helm chart to update"),
) -> None:
    """Write the chart's PrometheusRule template and Grafana dashboard JSON (dev extra)."""
    from hwtune.observe.chartgen import write_chart_files

    if not (chart / "Chart.yaml").is_file():
        raise _fail(f"--chart: {chart} has no Chart.yaml")
    try:
        for path in write_chart_files(chart):
            typer.echo(f"wrote {path}")
    except ImportError as exc:
        raise _fail(f"the dashboard needs the dev extra (pip install 'hwtune[dev]'): {exc}") from None


@observe_app.command("render")
def observe_render(
    out: Path = typer.Option(..., "--out", help="PNG file to write"),
    prometheus: Optional[str] = typer.Option(
        None, "--prometheus", help="Prometheus base URL, e.g. http://127.0.0.1:9090"),
    namespace: str = typer.Option("default", "--namespace", "-n"),
    study: Optional[str] = typer.Option(None, "--study"),
    quality: str = typer.Option("", "--quality", help="Quality objective [default: the first]"),
    hours: float = typer.Option(1.0, "--hours", min=0.01, help="Time range of the time series"),
    demo: bool = typer.Option(False, "--demo", help="Run a simulated study scraped by a local "
                              "Prometheus (needs the prometheus binary) and render that"),
) -> None:
    """Render the dashboard's panels from real Prometheus query results to a PNG."""
    from hwtune.observe.promserver import PrometheusError
    from hwtune.observe.render import render_dashboard, run_demo

    try:
        if demo:
            path = run_demo(out)
        else:
            if prometheus is None or study is None:
                raise _fail("--prometheus and --study are needed (or --demo)")
            now = time.time()
            path = render_dashboard(prometheus.rstrip("/"), namespace, study, out, quality=quality,
                                    start=now - hours * 3600, end=now)
    except (PrometheusError, OSError) as exc:
        raise _fail(f"render: {exc}", code=1) from None
    typer.echo(f"wrote {path}")


def main() -> None:  # pragma: no cover - console script entry point is ``app``
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
