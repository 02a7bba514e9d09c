"""``PodLogCollectors`` against a fake API server (the real path is
tests/cluster/test_stdout_collector.py): a log stream that breaks is reopened and the bytes read
are skipped, the rest of an ended pod's log (its last line without a newline too) is read before
the Job's end is handed on, levels the study holds are not sent again, and a stop ends the
reading."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from aiohttp import web

from hwtune.api.crd import MetricsCollectorSpec, parse_spec
from hwtune.api.records import Decision, TrialPhase
from hwtune.backends.kubernetes.api import KubeApi
from hwtune.backends.kubernetes.podlog import PodLogCollectors
from hwtune.report.protocol import ReportReply

LOG = b"noise\nepoch=1 loss=0.5\nepoch=2 loss=0.4\nepoch=3 loss=0.3\n"
TAIL = b"epoch=4 loss=0.2"  # printed last, without a newline


def kube_api(host: str) -> KubeApi:
    """The operator's own client, pointed at the fake API server."""
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = host
    configuration.api_key = {"authorization": "t0k3n"}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return KubeApi(client.ApiClient(configuration), workers=2, log_workers=1, status_workers=1)


class FakeRunner:
    """What PodLogCollectors uses of a StudyRunner (its API client is the real one)."""

    def __init__(self, host: str, stop_at: int | None = None) -> None:
        self.name, self.namespace = "s", "ns"
        self.api = kube_api(host)
        state = SimpleNamespace(active=True, launches=1)
        self.backend = SimpleNamespace(lock=threading.RLock(), _trials={0: state},
                                       intend=lambda intent: self.intents.append(intent),
                                       delete_intent=lambda tid, reason: ("delete", tid))
        self.record = SimpleNamespace(last_resource=0)
        self.study = SimpleNamespace(trial=lambda tid: self.record)
        self.reports: list[tuple[int, dict[str, float]]] = []
        self.jobs: list[dict[str, Any]] = []
        self.job_pods: list[list[dict[str, Any]] | None] = []  # the pods handed with each Job
        self.intents: list[Any] = []
        self.stop_at = stop_at

    async def submit_report(self, trial: str, payload: Any) -> ReportReply:
        self.reports.append((payload.resource, dict(payload.metrics)))
        self.record.last_resource = payload.resource
        if self.stop_at is not None and payload.resource >= self.stop_at:
            self.backend._trials[0].active = False
            return ReportReply(Decision.STOP, "stopped by the scheduler")
        return ReportReply(Decision.CONTINUE)

    def job_event(self, job: dict[str, Any], pods: list[dict[str, Any]] | None = None) -> None:
        self.jobs.append(job)
        self.job_pods.append(pods)


def pod(phase: str) -> dict[str, Any]:
    terminated = {"state": {"terminated": {"exitCode": 0}}} if phase != "Running" else {}
    return {"metadata": {"name": "s-0-abc", "uid": "u1", "namespace": "ns",
                         "labels": {"hwtune.io/study": "s", "hwtune.io/trial": "0"},
                         "annotations": {"hwtune.io/launch": "1"}},
            "status": {"phase": phase, "containerStatuses": [terminated]}}


JOB = {"metadata": {"name": "s-0", "labels": {"hwtune.io/trial": "0"},
                    "annotations": {"hwtune.io/launch": "1"}},
       "status": {"conditions": [{"type": "Complete", "status": "True"}]}}


async def serve(requests: list[dict[str, str]], ended: asyncio.Event, *,
                break_first: bool = True, pods_status: int = 200) -> web.AppRunner:
    async def log(request: web.Request) -> web.StreamResponse:
        requests.append(dict(request.query) | {"auth": request.headers.get("Authorization")})
        response = web.StreamResponse()
        await response.prepare(request)
        if request.query.get("follow") != "true":
            await response.write(LOG + TAIL)  # the whole log, then the end
            return response
        if break_first and len([r for r in requests if r.get("follow")]) == 1:
            await response.write(LOG[:20])  # the middle of "epoch=1 ...": then the stream breaks
            request.transport.close()
            return response
        await response.write(LOG)
        await ended.wait()  # a follow stream stays open while the container runs
        return response

    async def pods(request: web.Request) -> web.Response:
        requests.append({"list": request.query["labelSelector"],
                         "auth": request.headers.get("Authorization")})
        if pods_status != 200:
            return web.json_response({"kind": "Status", "message": "etcd is down"},
                                     status=pods_status)
        return web.json_response({"items": [pod("Succeeded")], "metadata": {}})

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/ns/pods/s-0-abc/log", log)
    app.router.add_get("/api/v1/namespaces/ns/pods", pods)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


def collectors(runner: FakeRunner) -> PodLogCollectors:
    spec = parse_spec(MetricsCollectorSpec, {"kind": "stdout", "resourceMetric": "epoch"})
    return PodLogCollectors(runner, container="trainer", collector_spec=spec,
                            objectives=["loss"], whole_run=None, max_resource=9)


async def wait_until(predicate: Any, seconds: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_a_broken_stream_is_resumed_and_the_rest_read_before_the_job_ends() -> None:
    async def main() -> None:
        requests: list[dict[str, str]] = []
        ended = asyncio.Event()
        server = await serve(requests, ended)
        port = server.addresses[0][1]
        runner = FakeRunner(f"http://127.0.0.1:{port}")
        logs = collectors(runner)
        try:
            logs.pod_event(pod("Running"))
            await wait_until(lambda: len(runner.reports) == 3)
            # The Job completes: held until the pod's log is read to its very end.
            assert logs.hold_job(JOB) is True
            await wait_until(lambda: runner.jobs)
            assert runner.jobs == [JOB]
            assert logs.hold_job(JOB) is False  # handed on once, then the engine sees it
        finally:
            ended.set()
            await logs.close()
            await server.cleanup()
            runner.api.close()
        assert [r for r, _ in runner.reports] == [1, 2, 3, 4]  # each level once, in order
        assert runner.reports[-1] == (4, {"loss": 0.2})
        reads = [r for r in requests if "list" not in r]
        assert [r.get("follow") for r in reads] == ["true", "true", None]
        assert all(r["container"] == "trainer" and r["auth"] == "Bearer t0k3n"
                   for r in reads)
        # The trial's pods were listed once, at the Job's end, by the operator's own client,
        # and handed on with the Job: the runner reads them from there, not again.
        assert [r for r in requests if "list" in r] == [
            {"list": "hwtune.io/study=s,hwtune.io/trial=0", "auth": "Bearer t0k3n"}]
        assert [[p["metadata"]["uid"] for p in pods or []] for pods in runner.job_pods] == [["u1"]]

    asyncio.run(main())


def test_levels_the_study_holds_are_skipped_and_a_stop_ends_the_reading() -> None:
    async def main() -> None:
        requests: list[dict[str, str]] = []
        ended = asyncio.Event()
        server = await serve(requests, ended)
        runner = FakeRunner(f"http://127.0.0.1:{server.addresses[0][1]}", stop_at=3)
        runner.record.last_resource = 1  # logged before an operator restart
        logs = collectors(runner)
        try:
            logs.pod_event(pod("Running"))
            await wait_until(lambda: not logs._pods)  # stopped: nothing more to follow
        finally:
            ended.set()
            await logs.close()
            await server.cleanup()
            runner.api.close()
        assert [r for r, _ in runner.reports] == [2, 3]
        # After the stop nothing of this trial is read or held any more.
        assert logs.hold_job(JOB) is False
        logs.pod_event(pod("Running"))
        assert not logs._pods

    asyncio.run(main())


def test_a_pause_deletes_the_job_as_there_is_no_sdk_to_hear_it() -> None:
    async def main() -> None:
        ended = asyncio.Event()
        server = await serve([], ended)
        runner = FakeRunner(f"http://127.0.0.1:{server.addresses[0][1]}")

        async def pause(trial: str, payload: Any) -> ReportReply:
            runner.reports.append((payload.resource, dict(payload.metrics)))
            runner.backend._trials[0].active = False
            runner.record.phase = TrialPhase.PAUSED
            return ReportReply(Decision.PAUSE, "paused at rung 1")

        runner.submit_report = pause  # type: ignore[method-assign]
        logs = collectors(runner)
        try:
            logs.pod_event(pod("Running"))
            await wait_until(lambda: runner.intents)
        finally:
            ended.set()
            await logs.close()
            await server.cleanup()
            runner.api.close()
        assert runner.intents == [("delete", 0)] and len(runner.reports) == 1

    asyncio.run(main())


def test_reports_read_when_the_pod_ends_are_all_delivered() -> None:
    """Several levels in one chunk, the engine slow to answer, and the pod's end arriving while
    the first of them is being decided: none of them is lost (their bytes count as read)."""
    async def main() -> None:
        ended = asyncio.Event()
        server = await serve([], ended, break_first=False)
        runner = FakeRunner(f"http://127.0.0.1:{server.addresses[0][1]}")
        fast = runner.submit_report

        async def slow(trial: str, payload: Any) -> ReportReply:
            await asyncio.sleep(0.2)  # the log write-ahead under load
            return await fast(trial, payload)

        runner.submit_report = slow  # type: ignore[method-assign]
        logs = collectors(runner)
        try:
            logs.pod_event(pod("Running"))
            await wait_until(lambda: runner.reports)
            logs.pod_event(pod("Succeeded"))  # mid-chunk: levels 2 and 3 not decided yet
            assert logs.hold_job(JOB) is True
            await wait_until(lambda: runner.jobs)
        finally:
            ended.set()
            await logs.close()
            await server.cleanup()
            runner.api.close()
        assert [r for r, _ in runner.reports] == [1, 2, 3, 4]

    asyncio.run(main())


@pytest.mark.parametrize("status", [500, 403])
def test_a_pod_listing_the_api_refuses_still_ends_the_trial_with_the_logs_seen(status) -> None:
    """The drain's listing fails: the pods already followed are read to their end, the Job is
    handed on (without pods: the runner reads them itself), and nothing is raised."""
    async def main() -> None:
        requests: list[dict[str, str]] = []
        ended = asyncio.Event()
        server = await serve(requests, ended, break_first=False, pods_status=status)
        runner = FakeRunner(f"http://127.0.0.1:{server.addresses[0][1]}")
        logs = collectors(runner)
        try:
            logs.pod_event(pod("Running"))
            await wait_until(lambda: len(runner.reports) == 3)
            logs.pod_event(pod("Succeeded"))
            assert logs.hold_job(JOB) is True
            await wait_until(lambda: runner.jobs)
            # a Job counting a new ready pod lists the trial's pods: refused, looked at again
            # at the next such event
            logs.job_changed({**JOB, "status": {"ready": 1}})
            await wait_until(lambda: len([r for r in requests if "list" in r]) == 2)
            await asyncio.sleep(0.1)
            assert logs._ready_seen == {}
        finally:
            ended.set()
            await logs.close()
            await server.cleanup()
            runner.api.close()
        assert [r for r, _ in runner.reports] == [1, 2, 3, 4]
        assert runner.jobs == [JOB] and runner.job_pods == [None]

    asyncio.run(main())
