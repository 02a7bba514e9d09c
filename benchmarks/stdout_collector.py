"""The cluster stdout metrics collector, measured: how long from a line printed by an unmodified
script to the decision the operator stores for it, and from a stop decision to the script's
process being killed.

Everything is real except the GPUs: the local control plane of hack/cluster.sh, the operator (in
this process, embedded), KWOK serving container logs, and the simulated trainer's exec mode
running each trial pod's command (a Python script printing ``epoch=N loss=X``) as a local
process. The operator follows each pod's log through the API server
(hwtune.backends.kubernetes.podlog).

    python benchmarks/stdout_collector.py --quick          # 9 trials, 3 at once
    python benchmarks/stdout_collector.py --trials 40 --parallel 10

Printed:
- print-to-decision p50/p95/max: CRI timestamp of the line in the container log (written by the
  exec mode as the process prints it) to the time of the ``observed`` event in the study's log
  (the engine's decision, before it is stored and acted on); the path is process pipe -> log
  file -> kwok server -> API server -> operator stream -> LineCollector -> engine;
- stop-to-kill p50/max: ``observed`` event with decision ``stop`` to the end of the trial's
  process (the Job deleted, the pod's deletion seen, SIGTERM);
- trials stopped early / completed, and the study's wall time.

Measured on the shared 2-core development machine (2026-11-30, one run each):
--quick (9 trials, 3 at once): 29 reports, print-to-decision p50 0.004 s, p95 0.035 s,
max 0.036 s; 7 stopped early, stop-to-kill p50 0.14 s, max 0.54 s.
--trials 40 --parallel 10: 106 reports, print-to-decision p50 0.069 s, p95 0.33 s,
max 0.79 s; 33 stopped early, stop-to-kill p50 1.7 s, max 2.5 s (Job deletion -> pod
deletion -> the exec mode's SIGTERM, all on two loaded cores).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import secrets
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))

from hwtune.backends.kubernetes.log import parse_chunks  # noqa: E402
from hwtune.controller.operator import EmbeddedOperator  # noqa: E402
from hwtune.controller.settings import OperatorSettings  # noqa: E402
from hwtune.testing.cluster import LocalCluster  # noqa: E402
from hwtune.testing.simtrainer import SimTrainer  # noqa: E402

SCRIPT = textwrap.dedent("""\
    import argparse, math, time
    p = argparse.ArgumentParser()
    p.add_argument("--lr", type=float)
    p.add_argument("--epoch-seconds", type=float)
    a = p.parse_args()
    for epoch in range(1, 10):
        time.sleep(a.epoch_seconds)
        print(f"epoch={epoch} loss={(math.log10(a.lr) + 2.5) ** 2 + 1.0 / epoch:.6f}")
    """)
CRI = re.compile(r"^(\S+) stdout [FP] epoch=(\d+) ")


def _cri_time(stamp: str) -> float:
    # 2026-11-30T18:00:00.123456000Z: Python parses microseconds
    return dt.datetime.strptime(stamp[:26] + "Z", "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=dt.timezone.utc).timestamp()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="9 trials, 3 at once")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--parallel", type=int, default=6)
    parser.add_argument("--epoch-seconds", type=float, default=0.5)
    parser.add_argument("--cluster", default=f"stdout-bench-{os.getpid()}",
                        help="local cluster name (started and stopped unless it runs already)")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.parallel = 9, 3
    cluster = LocalCluster(args.cluster)
    was_up = cluster.is_up()
    cluster.up()
    namespace = f"bench-{secrets.token_hex(3)}"
    tmp = Path(tempfile.mkdtemp(prefix="hwtune-stdout-bench-"))
    script = tmp / "train.py"
    script.write_text(SCRIPT)
    try:
        cluster.kubectl("create", "namespace", namespace)
        cluster.kubectl("apply", "-f", str(REPO / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        cluster.kubectl("apply", "-f", str(REPO / "examples" / "pools.yaml"))
        configuration = f"bench-{secrets.token_hex(3)}.hwtune.io"
        settings = OperatorSettings(
            kubeconfig=cluster.kubeconfig, namespaces=(namespace,), webhook_host="127.0.0.1",
            webhook_port=None, webhook_configuration=configuration, standalone=True,
            shutdown_timeout_s=15, report_listen="127.0.0.1", report_port=None)
        study = {
            "apiVersion": "hwtune.io/v1alpha1", "kind": "TuningStudy",
            "metadata": {"name": "bench"},
            "spec": {
                "objectives": [{"metric": "loss", "goal": "minimize"}],
                "parameters": {"lr": {"type": "float", "min": 1e-4, "max": 1e-1,
                                      "scale": "log"}},
                "hardware": {"pools": ["t4", "a100"], "gpuCounts": [1]},
                "fidelity": {"resource": "epoch", "min": 1, "max": 9, "reductionFactor": 3},
                "algorithm": {"scheduler": "asha", "searcher": "random", "seed": 1},
                "budget": {"maxTrials": args.trials, "maxParallelTrials": args.parallel},
                "metricsCollector": {"kind": "stdout", "resourceMetric": "epoch"},
                "trialTemplate": {
                    "metadata": {"annotations": {"hwtune.io/sim-outcome": "hold"}},
                    "spec": {"containers": [{
                        "name": "trainer", "image": "python:3.11",
                        "command": [sys.executable, str(script)],
                        "args": ["--lr=$(HWTUNE_PARAM_LR)",
                                 f"--epoch-seconds={args.epoch_seconds}"],
                        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}]}]}}}}
        with EmbeddedOperator(settings), SimTrainer(
                None, kubeconfig=cluster.kubeconfig, namespace=namespace, mode="exec",
                log_root=tmp / "logs") as sim:
            begin = time.monotonic()
            cluster.wait_for(lambda: cluster.apply(study, namespace=namespace), 30, "admission")
            final = cluster.wait_for(
                lambda: (s := (cluster.get_json("tuningstudy", "bench", namespace=namespace)
                               .get("status") or {})).get("phase") in ("Completed", "Failed")
                and s, 1800, "the study to end")
            wall = time.monotonic() - begin
            runs = sim.runs()
            chunks = cluster.get_json("configmaps", namespace=namespace,
                                      selector="hwtune.io/study=bench,hwtune.io/log=true")["items"]
            cluster.kubectl("-n", namespace, "delete", "tuningstudy", "bench", "--wait=true")
        cluster.kubectl("delete", "validatingwebhookconfiguration", configuration,
                        "--ignore-not-found", check=False)
        events = parse_chunks((int(c["metadata"]["labels"]["hwtune.io/log-chunk"]),
                               c.get("data") or {}) for c in chunks).events
        printed: dict[tuple[int, int], float] = {}
        ended: dict[int, float] = {}
        for run in runs:
            if run.log_path and Path(run.log_path).exists():
                for line in Path(run.log_path).read_text().splitlines():
                    match = CRI.match(line)
                    if match:
                        printed.setdefault((int(run.trial), int(match.group(2))),
                                           _cri_time(match.group(1)))
            if run.ended_at is not None and run.outcome == "killed":
                ended[int(run.trial)] = run.ended_at
        lags, kills = [], []
        for event in events:
            if event["kind"] != "observed":
                continue
            key = (int(event["trialId"]), int(event["resource"]))
            if key in printed:
                lags.append(event["time"] - printed[key])
            if event.get("decision") == "stop" and key[0] in ended:
                kills.append(ended[key[0]] - event["time"])
        stopped = sum(1 for e in events if e["kind"] == "observed"
                      and e.get("decision") == "stop" and e["resource"] < 9)
        print(f"# {os.cpu_count()} CPUs; {args.trials} trials, {args.parallel} at once, "
              f"{args.epoch_seconds}s per epoch; study {final['phase']} in {wall:.1f}s")
        print(f"reports {len(lags)}  stopped early {stopped}  "
              f"completed {final['trials'].get('completed', 0)}")
        if lags:
            print(f"print-to-decision s: p50 {statistics.median(lags):.3f}  "
                  f"p95 {pct(lags, 0.95):.3f}  max {max(lags):.3f}")
        if kills:
            print(f"stop-to-kill s: p50 {statistics.median(kills):.3f}  max {max(kills):.3f} "
                  f"({len(kills)} processes)")
        return 0 if final["phase"] == "Completed" else 1
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        if not was_up:
            cluster.down()


if __name__ == "__main__":
    sys.exit(main())
