"""Two operator replicas behind one balancer: what a trainer's report costs when its connection
lands on the replica that does not act for the study, with and without forwarding.

Runs on 127.0.0.1 only, without a cluster: two report endpoints built exactly as the operator
builds its own (``create_app`` with the study route prefix; one acts for the study, the other
answers 503 as a standby runner does), a balancer that picks a replica at random per TCP
connection (kube-proxy's behaviour), and the trainer SDK's ``ReportClient``. Each report opens
a new connection (a trainer's first report, or its first after a reconnect), so about half of
them land on the standby.

    python benchmarks/report_forward.py            # 400 reports per mode

Modes:
- ``direct``: to the acting replica (the floor);
- ``503 + retry``: the standby answers 503 and closes; the SDK retries after its backoff
  (0.1 s, jittered to 50-100 ms) on a new connection, landing at random again (before forwarding);
- ``forwarded``: the standby forwards to the acting replica (``HolderForwarder``) and passes its
  answer back.

Printed: p50 / p95 / p99 / max in ms, and how many reports saw a 503.

Measured on the shared 2-core development machine (2026-11-30, 400 reports per mode, load
9-11 from other sessions' clusters):

| mode | p50 ms | p95 ms | p99 ms | max ms | 503s seen |
|---|---|---|---|---|---|
| direct | 0.7 | 1.8 | 6.8 | 37.4 | 0 |
| 503 + retry | 8.8 | 1234 | 5104 | 14062 | 392 |
| forwarded | 1.1 | 4.4 | 7.6 | 8.8 | 0 |

The 503 tail is geometric: each retry lands on the standby again half of the time, and the
SDK's backoff doubles (0.1, 0.2, 0.4 s ...), so one report in a hundred waits seconds.
"""

from __future__ import annotations

import argparse
import logging
import random
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))
sys.path.insert(0, str(ROOT))  # tests.sockets: the load-balancer stand-ins' splice

from aiohttp import web  # noqa: E402

from hwtune.api.records import Decision  # noqa: E402
from hwtune.report.forward import HolderForwarder  # noqa: E402
from hwtune.report.protocol import ProtocolError, ReportReply  # noqa: E402
from hwtune.report.server import create_app, new_token, runner_options  # noqa: E402
from hwtune.report.threaded import ThreadedServer  # noqa: E402
from hwtune.trainer.client import ReportClient  # noqa: E402
from tests.sockets import splice  # noqa: E402

PREFIX = "/studies/{namespace}/{study}"
TOKEN = new_token()


class _NotHere(ProtocolError):
    status = 503


class Sink:
    def __init__(self, acts: bool) -> None:
        self.acts = acts
        self.level: dict[str, int] = {}
        self.lock = threading.Lock()

    def expected_token(self, trial: str) -> str | None:
        if not self.acts:
            raise _NotHere("not running here; retry")
        return TOKEN

    def submit_report(self, trial: str, payload) -> ReportReply:
        return ReportReply(Decision.CONTINUE)


class Replica(ThreadedServer):
    what = "replica"

    def __init__(self, acts: bool, holder: str | None = None) -> None:
        super().__init__()
        self.sink = Sink(acts)
        self.holder = holder

    async def _locate(self, scope):
        return self.holder

    def _make_runner(self) -> web.AppRunner:
        forwarder = None
        if self.holder is not None:
            forwarder = HolderForwarder(self._locate, lambda scope: None, via="bench")
        app = create_app(self.sink, route_prefix=PREFIX,
                         forward=forwarder.forward if forwarder else None)
        if forwarder is not None:
            app.on_cleanup.append(lambda _: forwarder.close())
        return web.AppRunner(app, **runner_options())


class Balancer:
    """A random replica per TCP connection, as kube-proxy does for a Service."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", random.choice(self.ports)))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=splice, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.listener.close()


class Count503(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.n = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.n += "HTTP 503" in record.getMessage()


def measure(port: int, reports: int) -> tuple[list[float], int]:
    counter = Count503()
    logger = logging.getLogger("hwtune.trainer")
    logger.addHandler(counter)
    logger.propagate = False
    took = []
    try:
        for i in range(reports):
            client = ReportClient(f"http://127.0.0.1:{port}/studies/ns/s", "0", TOKEN,
                                  retry_seconds=30)
            started = time.perf_counter()
            client.report(i + 1, {"val_error": 0.5})
            took.append((time.perf_counter() - started) * 1000)
            client.close()
    finally:
        logger.removeHandler(counter)
        logger.propagate = True
    return took, counter.n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=400)
    args = parser.parse_args()
    random.seed(1)
    holder = Replica(acts=True).start()
    old_standby = Replica(acts=False).start()
    standby = Replica(acts=False, holder=f"127.0.0.1:{holder.bound_port}").start()
    rows = []
    try:
        for mode, ports in (("direct", [holder.bound_port]),
                            ("503 + retry", [holder.bound_port, old_standby.bound_port]),
                            ("forwarded", [holder.bound_port, standby.bound_port])):
            balancer = Balancer(ports)
            measure(balancer.port, 20)  # warm up
            took, refused = measure(balancer.port, args.reports)
            balancer.close()
            q = statistics.quantiles(took, n=100)
            rows.append((mode, statistics.median(took), q[94], q[98], max(took), refused))
    finally:
        for server in (standby, old_standby, holder):
            server.stop()
    print(f"{args.reports} reports per mode, a new connection each, balanced at random over "
          "the replicas")
    print("| mode | p50 ms | p95 ms | p99 ms | max ms | 503s seen |")
    print("|---|---|---|---|---|---|")
    for mode, p50, p95, p99, top, refused in rows:
        print(f"| {mode} | {p50:.1f} | {p95:.1f} | {p99:.1f} | {top:.1f} | {refused} |")


if __name__ == "__main__":
    main()
