"""The Kubernetes backend's runner against an in-memory API (the real one: tests/cluster):
write-ahead order, Jobs as built, adoption after a kill, no duplicate Job, bounded status."""

from __future__ import annotations

import asyncio
import copy
import json

import pytest

from hwtune.backends.kubernetes import StudyRunner, parse_chunks
from hwtune.backends.kubernetes.log import StudyLog
from hwtune.backends.kubernetes.manifests import GPU_RESOURCE, TOKEN_PATH, derive_token
from hwtune.engine import Study, StudyConfig
from hwtune.engine.config import pool_catalog
from tests.backends.kube_fakes import (
    POOLS,
    FakeKube,
    FakeLogStore,
    FakeTrainers,
    job_env,
    study_spec,
    trial_of,
)


def make_runner(kube: FakeKube, spec=None) -> StudyRunner:
    return StudyRunner(kube, namespace="ns", name="st", uid="uid-1", spec=spec or study_spec(),
                       generation=1, report_url="http://127.0.0.1:9", status_interval=0.01)


async def play(kube: FakeKube, trainers: FakeTrainers, runner: StudyRunner,
               rounds: int | None = None) -> asyncio.Task:
    await runner.load()
    task = asyncio.create_task(runner.run())
    n = 0
    while not task.done() and (rounds is None or n < rounds):
        await asyncio.sleep(0.01)
        await trainers.step(runner)
        n += 1
        assert n < 5000, "the study did not end"
    return task


def config() -> StudyConfig:
    return StudyConfig.from_spec(study_spec(), catalog=pool_catalog(POOLS))


def logged_events(kube: FakeKube) -> list[dict]:
    return parse_chunks(kube.chunks.items()).events


def test_study_runs_to_completion_with_jobs_as_specified() -> None:
    kube, trainers = FakeKube(), FakeTrainers(FakeKube())
    trainers.kube = kube
    runner = make_runner(kube)

    async def main() -> str:
        task = await play(kube, trainers, runner)
        await runner.flush_status()
        return task.result()

    reason = asyncio.run(main())
    assert "maxTrials" in reason or "no more trials" in reason
    status = kube.study_status
    assert status["phase"] == "Completed"
    assert status["trials"]["total"] == 12
    assert status["trials"]["pending"] == status["trials"]["running"] == 0
    # Every trial keeps its TuningTrial; every finished trial's Job is deleted (stopped ones at
    # the stop, completed ones once their Job completed), and their token Secrets with them.
    trials = {o["spec"]["trialId"]: o for (k, _), o in kube.objects.items() if k == "TuningTrial"}
    assert sorted(trials) == list(range(12))
    phases = {o["status"]["phase"] for o in trials.values()}
    assert {"Stopped", "Completed"} <= phases, phases
    assert kube.jobs() == {} and kube.secrets() == {}
    assert sorted(set(kube.deleted_jobs)) == sorted(f"st-{t}" for t in trials)
    # The front in the status is the front of the TuningTrials' last reported points.
    points = {t: o["status"]["learningCurve"][-1]["metrics"] for t, o in trials.items()
              if o["status"].get("learningCurve")}
    front = {t for t, m in points.items()
             if not any(o["val_error"] <= m["val_error"] and o["cost"] <= m["cost"]
                        and (o["val_error"], o["cost"]) != (m["val_error"], m["cost"])
                        for o in points.values())}
    assert {p["trialId"] for p in status["paretoFront"]} == front
    reasons = {reason for reason, _ in kube.events}
    assert {"Launched", "Stopped", "Completed"} <= reasons, reasons
    # The log replays to the same decisions (one engine).
    rebuilt = Study.rebuild(config(), logged_events(kube), strict=True)
    assert [t.phase for t in rebuilt.trials] == [runner.study.trial(t.trial_id).phase
                                                 for t in rebuilt.trials]


def test_job_manifest_carries_pool_gpus_env_and_token_file() -> None:
    kube = FakeKube()
    trainers = FakeTrainers(kube)
    runner = make_runner(kube)

    async def main() -> None:
        task = await play(kube, trainers, runner, rounds=3)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    jobs = kube.jobs()
    assert jobs
    for name, job in jobs.items():
        env = job_env(job)
        trial = int(env["HWTUNE_TRIAL_ID"])
        tt = kube.objects[("TuningTrial", name)]
        pod = job["spec"]["template"]["spec"]
        hw = tt["spec"]["hardware"]
        assert name == f"st-{trial}"
        assert pod["nodeSelector"] == POOLS[hw["pool"]]["nodeSelector"]
        assert pod["tolerations"] == POOLS[hw["pool"]]["tolerations"]
        assert pod["restartPolicy"] == "Never"
        trainer = pod["containers"][0]
        assert trainer["resources"]["limits"][GPU_RESOURCE] == str(hw["gpuCount"])
        assert env["HWTUNE_POOL"] == hw["pool"] and env["HWTUNE_GPU_COUNT"] == str(hw["gpuCount"])
        assert env["HWTUNE_REPORT_URL"] == "http://127.0.0.1:9/studies/ns/st"
        assert env["HWTUNE_REPORT_TOKEN_FILE"] == TOKEN_PATH
        assert "HWTUNE_REPORT_TOKEN" not in env  # never a plain value
        assert json.loads(env["HWTUNE_PARAMS"])["lr"] == float(env["HWTUNE_PARAM_LR"])
        assert trainer["args"] == ["--lr=$(HWTUNE_PARAM_LR)"]  # expanded by the kubelet
        labels = job["spec"]["template"]["metadata"]["labels"]
        assert labels == {"hwtune.io/study": "st", "hwtune.io/trial": str(trial),
                          "hwtune.io/pool": hw["pool"]}
        assert job["metadata"]["ownerReferences"][0]["kind"] == "TuningTrial"
        assert job["spec"]["podFailurePolicy"]["rules"]
        launch = job["metadata"]["annotations"]["hwtune.io/launch"]
        volume = pod["volumes"][-1]["secret"]["secretName"]
        assert volume == f"st-{trial}-token-{launch}"
        secret = kube.objects[("Secret", volume)]
        assert kube.secret_value(secret, "token").decode() == derive_token(runner._key, trial)
        # Owned by this launch's Job: deleting the Job deletes its token (no Secret delete right).
        assert [(r["kind"], r["uid"]) for r in secret["metadata"]["ownerReferences"]] == \
            [("Job", job["metadata"]["uid"])]
        assert runner.expected_token(str(trial)) == derive_token(runner._key, trial)
    assert runner.expected_token("999") is None


def test_killed_runner_is_adopted_without_duplicate_jobs_or_lost_reports() -> None:
    kube = FakeKube()
    trainers = FakeTrainers(kube)

    async def main() -> None:
        for rounds in (4, 7, 3, 9):  # killed (cancelled) mid-study several times
            runner = make_runner(kube)
            task = await play(kube, trainers, runner, rounds=rounds)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if task.done() and not task.cancelled():
                break
        runner = make_runner(kube)
        task = await play(kube, trainers, runner)
        await runner.flush_status()
        assert task.result()

    asyncio.run(main())
    events = logged_events(kube)
    launches = sum(1 for e in events if e["kind"] in ("created", "resumed"))
    assert kube.job_creates == launches  # one Job per launch, never a duplicate
    observed = [(e["trialId"], e["resource"], e["decision"]) for e in events
                if e["kind"] == "observed"]
    # Every decision a trainer got is in the log, exactly once.
    assert sorted(set(trainers.decisions)) == sorted(observed)
    Study.rebuild(config(), events, strict=True)
    assert kube.study_status["phase"] == "Completed"


def test_log_chunks_stay_small_and_reload_in_order() -> None:
    store = FakeLogStore({})
    cfg = config()
    study = Study(cfg)

    async def main() -> None:
        log = StudyLog(store, chunk_bytes=2048, chunk_events=10)
        log.attach(asyncio.get_running_loop())
        writer = asyncio.create_task(log.run())
        study.add_listener(log.append)
        for _ in range(12):
            study.start_next()
        await log.durable(log.last_seq)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)

    asyncio.run(main())
    assert len(store.chunks) >= 2
    assert all(sum(len(v) for v in c.values()) <= 2048 + 600 for c in store.chunks.values())
    loaded = parse_chunks(store.chunks.items())
    assert [e["seq"] for e in loaded.events] == list(range(12))
    del store.chunks[0]["e000000003"]
    with pytest.raises(Exception, match="gap at event 3"):
        parse_chunks(store.chunks.items())


def test_status_stays_bounded_front_and_curve_are_capped(monkeypatch) -> None:
    # The rules themselves: tests/backends/test_kubernetes_status.py.
    from hwtune.backends.kubernetes import status as bounds

    monkeypatch.setattr(bounds, "MAX_FRONT_POINTS", 2)
    kube = FakeKube()
    trainers = FakeTrainers(kube)
    runner = make_runner(kube)

    async def main() -> None:
        task = await play(kube, trainers, runner)
        await runner.flush_status()
        assert task.result()

    asyncio.run(main())
    status = kube.study_status
    assert status["frontSize"] >= 3 and len(status["paretoFront"]) == 2
    assert status["frontOmitted"] == status["frontSize"] - 2 and status["frontSource"]
    assert len(json.dumps(status)) < 100 * 1024


def test_pods_are_read_only_when_a_job_says_one_failed() -> None:
    """No pod watch: a ready pod in the Job's status is the trial running; a failed Job makes the
    runner read that trial's pods (what they ran is the trial's cost), before the Job event."""
    import copy
    import datetime as dt

    from hwtune.api.records import TrialPhase

    kube = FakeKube()
    runner = make_runner(kube, study_spec(maxTrials=1, maxParallelTrials=1))

    def iso(t: float) -> str:
        return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    async def main() -> None:
        await runner.load()
        task = asyncio.create_task(runner.run())
        for _ in range(500):
            if ("Job", "st-0") in kube.objects:
                break
            await asyncio.sleep(0.01)
        job = kube.objects[("Job", "st-0")]
        job["status"] = {"active": 1}  # a pod, not ready yet
        runner.job_event(copy.deepcopy(job))
        assert runner.study.trial(0).phase is TrialPhase.PENDING
        job["status"] = {"active": 1, "ready": 1}
        runner.job_event(copy.deepcopy(job))
        assert runner.study.trial(0).phase is TrialPhase.RUNNING
        assert kube.pod_reads == []  # running needs no pod
        # Out of memory twice, 2 s each, far apart (the Job's back-off between them).
        meta = {"labels": dict(job["metadata"]["labels"]),
                "annotations": dict(job["metadata"]["annotations"])}
        now = dt.datetime.now(dt.timezone.utc).timestamp()
        kube.pods[0] = [
            {"metadata": {**meta, "uid": uid}, "status": {"phase": "Failed", "containerStatuses": [
                {"name": "t", "state": {"terminated": {"exitCode": 137, "startedAt": iso(start),
                                                       "finishedAt": iso(start + 2)}}}]}}
            for uid, start in (("a", now - 60), ("b", now - 30))]
        job["status"] = {"failed": 2, "conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}
        runner.job_event(copy.deepcopy(job))
        for _ in range(500):
            if runner.study.trial(0).phase is TrialPhase.FAILED:
                break
            await asyncio.sleep(0.01)
        assert kube.pod_reads == [0]
        assert runner.study.trial(0).phase is TrialPhase.FAILED
        assert runner.study.runtime_of(0) == pytest.approx(4.0, abs=0.01)
        await asyncio.wait_for(task, 10)

    asyncio.run(main())


def test_launches_go_out_in_bounded_batches() -> None:
    """The tuner launches at most LAUNCHES_IN_FLIGHT trials whose Jobs are not made yet, and
    refills as they are made: each batch holds the engine lock briefly."""
    from hwtune.backends.kubernetes import KubernetesBackend

    kube, trainers = FakeKube(), FakeTrainers(FakeKube())
    trainers.kube = kube
    runner = make_runner(kube, study_spec(maxTrials=40, maxParallelTrials=40))
    seen: list[int] = []
    create = kube.create_job

    async def slow_create(body):
        seen.append(runner.backend._launching)
        await asyncio.sleep(0.01)
        return await create(body)

    kube.create_job = slow_create

    load = runner.load

    async def load_with_a_small_limit() -> None:
        await load()
        runner.backend._in_flight_limit = 8

    runner.load = load_with_a_small_limit

    async def main() -> None:
        task = await play(kube, trainers, runner)
        task.result()

    asyncio.run(main())
    assert kube.job_creates == 40
    assert max(seen) <= 8
    assert KubernetesBackend.LAUNCHES_IN_FLIGHT >= 16


def test_a_burst_of_events_is_posted_as_one_per_reason() -> None:
    from hwtune.backends.kubernetes.runner import GROUP_NOTES, _grouped_notes

    few = [("Launched", f"trial {i}", False) for i in range(GROUP_NOTES)]
    assert _grouped_notes(few) == few
    many = [("Launched", f"trial {i}", False) for i in range(20)] + [("Stopped", "trial 3", False)]
    grouped = _grouped_notes(many)
    assert grouped[0][0] == "Launched" and grouped[0][1].startswith("20 trials: trial 0; trial 1")
    assert grouped[1] == ("Stopped", "trial 3", False)


def test_answers_waiting_on_a_fenced_log_fail_instead_of_hanging() -> None:
    """A writer that is fenced (another replica took the study) fails every answer still
    waiting for durability: the report handler says 503 at once, and nothing is told that the
    log does not hold."""
    from hwtune.backends.kubernetes.log import LogFenced

    class FencedStore(FakeLogStore):
        async def write_chunk(self, index, entries, *, new):
            raise LogFenced("another writer stamped the log")

    study = Study(config())

    async def main() -> None:
        log = StudyLog(FencedStore({}))
        log.attach(asyncio.get_running_loop())
        study.add_listener(log.append)
        study.start_next()
        waiting = asyncio.ensure_future(log.durable(log.last_seq))
        writer = asyncio.create_task(log.run())
        with pytest.raises(LogFenced):
            await asyncio.wait_for(waiting, timeout=5)
        with pytest.raises(LogFenced):
            await writer
        with pytest.raises(LogFenced):  # a later answer is refused too, not left hanging
            await asyncio.wait_for(log.durable(log.last_seq), timeout=5)
        assert log.durable_seq == -1

    asyncio.run(main())


def test_a_halted_trial_whose_tuningtrial_was_never_created_gets_it_at_adoption() -> None:
    """The operator died after logging trials' launches and before creating their TuningTrials,
    and the trials were halted since: the next runner recreates every missing TuningTrial from
    the log (with its final status), and gives them no Secret and no Job."""
    kube = FakeKube()
    trainers = FakeTrainers(kube)

    async def main() -> None:
        task = await play(kube, trainers, make_runner(kube))
        assert task.result()

    asyncio.run(main())
    events = logged_events(kube)
    halted = sorted({e["trialId"] for e in events
                     if e["kind"] == "observed" and e.get("decision") == "stop"})[:2]
    assert halted, "mo-asha should stop some trials"
    for tid in halted:  # as if their creates were lost (the GC takes the owned objects too)
        for kind in ("TuningTrial", "Job"):
            kube.objects.pop((kind, f"st-{tid}"), None)
        for name in kube.secrets(tid):
            kube.objects.pop(("Secret", name))
    job_creates = kube.job_creates

    async def restart() -> StudyRunner:
        runner = make_runner(kube)
        await runner.load()
        await runner.flush_status()
        return runner

    runner = asyncio.run(restart())
    for tid in halted:
        trial = kube.objects[("TuningTrial", f"st-{tid}")]
        created = next(e for e in events if e["kind"] == "created" and e["trialId"] == tid)
        assert trial["spec"]["trialId"] == tid
        assert trial["spec"]["parameters"] == created["config"]
        assert trial["status"]["phase"] == runner.study.trial(tid).phase.value
        assert trial["status"]["phase"] in ("Stopped", "Completed")
        assert ("Job", f"st-{tid}") not in kube.objects
        assert kube.secrets(tid) == {}
    assert kube.job_creates == job_creates


class CountingKube(FakeKube):
    """Counts TuningTrial status writes per trial."""

    def __init__(self) -> None:
        super().__init__()
        self.trial_writes: dict[str, int] = {}

    async def patch_trial_status(self, namespace, name, status) -> None:
        await super().patch_trial_status(namespace, name, status)
        self.trial_writes[name] = self.trial_writes.get(name, 0) + 1


def _views_match_the_engine(kube: FakeKube, runner: StudyRunner, only=None) -> None:
    for (kind, name), obj in kube.objects.items():
        if kind != "TuningTrial" or (only is not None and name not in only):
            continue
        record = runner.study.trial(obj["spec"]["trialId"])
        status = obj.get("status") or {}
        assert status.get("phase") == record.phase.value, name
        assert status.get("reports", 0) == len(record.observations), name


def test_trial_status_writes_are_coalesced_but_halts_and_the_end_are_written() -> None:
    kube = CountingKube()
    trainers = FakeTrainers(kube)
    seen_halted: set[str] = set()

    async def main() -> None:
        runner = StudyRunner(kube, namespace="ns", name="st", uid="uid-1", spec=study_spec(),
                             generation=1, report_url="http://127.0.0.1:9",
                             status_interval=0.01, trial_status_interval=3600)
        await runner.load()
        task = asyncio.create_task(runner.run())
        n = 0
        while not task.done():
            await asyncio.sleep(0.01)
            await trainers.step(runner)
            # A halted trial's view is written at once (a few status rounds), not an hour later.
            for _ in range(5):
                await asyncio.sleep(0.01)
            for (kind, name), obj in kube.objects.items():
                if kind == "TuningTrial" and (obj.get("status") or {}).get("phase") in (
                        "Stopped", "Completed", "Paused"):
                    seen_halted.add(name)
            n += 1
            assert n < 5000
        assert task.result()
        _views_match_the_engine(kube, runner)
        events = logged_events(kube)
        halted = {name for (kind, name), obj in kube.objects.items() if kind == "TuningTrial"
                  and obj["status"]["phase"] in ("Stopped", "Completed", "Paused")}
        assert halted and halted <= seen_halted
        # With an hour between writes, a trial's view is written when it halts (and when it
        # is resumed and halts again), never once per report or per launch.
        per_trial_events = {}
        for e in events:
            per_trial_events[e["trialId"]] = per_trial_events.get(e["trialId"], 0) + 1
        total_writes = sum(kube.trial_writes.values())
        assert total_writes < sum(per_trial_events.values()) / 2, (total_writes,
                                                                   per_trial_events)

    asyncio.run(main())


def test_trial_views_deferred_at_a_kill_are_written_by_the_next_runner() -> None:
    kube = CountingKube()
    trainers = FakeTrainers(kube)

    async def main() -> None:
        runner = StudyRunner(kube, namespace="ns", name="st", uid="uid-1", spec=study_spec(),
                             generation=1, report_url="http://127.0.0.1:9",
                             status_interval=0.01, trial_status_interval=3600)
        task = await play(kube, trainers, runner, rounds=4)
        task.cancel()  # killed: deferred views are not written
        await asyncio.gather(task, return_exceptions=True)
        lagging = [name for (kind, name), obj in kube.objects.items() if kind == "TuningTrial"
                   and (obj.get("status") or {}).get("reports", 0)
                   != len(runner.study.trial(obj["spec"]["trialId"]).observations)]
        assert lagging, "the hour-long interval should have left some views behind the log"
        before = {name for kind, name in kube.objects if kind == "TuningTrial"}
        again = StudyRunner(kube, namespace="ns", name="st", uid="uid-1", spec=study_spec(),
                            generation=1, report_url="http://127.0.0.1:9",
                            status_interval=0.01, trial_status_interval=3600)
        await again.load()
        task = asyncio.create_task(again.run())
        await asyncio.sleep(0.2)  # a few status rounds, no reports
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        # Trials it launched itself may still wait out their first interval; the others were
        # all written at once.
        _views_match_the_engine(kube, again, only=before)

    asyncio.run(main())


def test_launches_are_paced_by_the_operators_token_bucket() -> None:
    """With a launch pacer (the operator's --launch-rate), a study's first wave of launches
    goes out at the pacer's rate after its burst, and every trial still gets one Job."""
    import time

    from hwtune.backends.kubernetes.pacing import TokenBucket

    kube, trainers = FakeKube(), FakeTrainers(FakeKube())
    trainers.kube = kube
    runner = StudyRunner(kube, namespace="ns", name="st", uid="uid-1",
                         spec=study_spec(maxTrials=40, maxParallelTrials=40), generation=1,
                         report_url="http://127.0.0.1:9", status_interval=0.01,
                         launch_pacer=TokenBucket(rate=100.0, burst=5))
    made: list[float] = []
    create = kube.create_job

    async def stamped_create(body):
        made.append(time.monotonic())
        return await create(body)

    kube.create_job = stamped_create

    async def main() -> None:
        task = await play(kube, trainers, runner)
        task.result()

    asyncio.run(main())
    assert kube.job_creates == 40 and len(made) == 40  # one Job per trial, none twice
    made.sort()
    # 40 launches at 100/s after a burst of 5: the 40th no sooner than ~0.35 s after the 1st
    assert made[-1] - made[0] >= 0.3
    # the k-th Job no sooner than (k - burst) / rate after the start (lower bounds only: a
    # slow machine makes launches late, never early)
    for k, t in enumerate(made):
        assert t - made[0] >= (k - 5) / 100.0 - 0.02, (k, t - made[0])


def test_finished_jobs_left_by_a_killed_runner_are_deleted_and_missing_secrets_made() -> None:
    """A runner killed before deleting a completed trial's finished Job, or between creating a
    launch's Job and its token Secret: the next one deletes the Job (the GC takes its Secret)
    and creates the missing Secret, owned by the adopted Job, without a second Job."""
    kube = FakeKube()
    trainers = FakeTrainers(kube)

    def halted_and_running() -> tuple[set[int], list[str]]:
        halted = {e["trialId"] for e in logged_events(kube)
                  if e["kind"] in ("completed", "stopped") or e.get("decision") == "stop"}
        return halted, [n for n, j in kube.jobs().items() if trial_of(j) not in halted]

    async def first() -> None:
        runner = make_runner(kube)
        await runner.load()
        task = asyncio.create_task(runner.run())
        for _ in range(200):  # until some trials halted while others run
            await asyncio.sleep(0.01)
            await trainers.step(runner)
            halted, running = halted_and_running()
            if len(halted) >= 2 and running:
                break
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(first())
    events = logged_events(kube)
    halted, running = halted_and_running()
    assert halted and running
    # Left behind: a finished Job (and its Secret) of a halted trial...
    done = min(halted)
    launches = sum(1 for e in events if e["kind"] in ("created", "resumed")
                   and e["trialId"] == done)
    kube.objects[("Job", f"st-{done}")] = {
        "metadata": {"name": f"st-{done}", "uid": "left-behind",
                     "labels": {"hwtune.io/study": "st", "hwtune.io/trial": str(done)},
                     "annotations": {"hwtune.io/launch": str(launches)}},
        "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    kube.objects[("Secret", f"st-{done}-token-{launches}")] = {
        "metadata": {"name": f"st-{done}-token-{launches}",
                     "labels": {"hwtune.io/study": "st", "hwtune.io/trial": str(done)},
                     "ownerReferences": [{"kind": "Job", "uid": "left-behind"}]}}
    # ... and a running trial's Job whose Secret was never created.
    adopted = kube.jobs()[running[0]]
    for name in kube.secrets(trial_of(adopted)):
        kube.objects.pop(("Secret", name))
    creates = kube.job_creates

    async def restart() -> None:
        task = await play(kube, trainers, make_runner(kube), rounds=1)
        for _ in range(100):  # the effects run once the loaded log is durable
            if ("Job", f"st-{done}") not in kube.objects and kube.secrets(trial_of(adopted)):
                break
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(restart())
    assert ("Job", f"st-{done}") not in kube.objects and kube.secrets(done) == {}
    made = kube.secrets(trial_of(adopted))
    assert [s["metadata"]["ownerReferences"][0]["uid"] for s in made.values()] == \
        [adopted["metadata"]["uid"]]
    # The adopted Job is the same one (no second Job for its launch).
    assert kube.jobs()[running[0]]["metadata"]["uid"] == adopted["metadata"]["uid"]
    assert kube.job_creates >= creates


def test_a_failed_trials_job_is_kept_for_its_logs() -> None:
    kube = FakeKube()
    trainers = FakeTrainers(kube)

    async def main() -> StudyRunner:
        runner = make_runner(kube)
        task = await play(kube, trainers, runner, rounds=2)
        name, job = next(iter(kube.jobs().items()))
        job["status"] = {"failed": 4, "conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}
        kube.pods[trial_of(job)] = []
        runner.job_event(copy.deepcopy(job))
        for _ in range(500):  # the pods are read, then the Job's end is applied
            await asyncio.sleep(0.01)
            if runner.study.trial(trial_of(job)).phase.value == "Failed" and not runner._chains:
                break
        for _ in range(20):  # time for a deletion that must not come
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return runner, name, trial_of(job)

    runner, name, tid = asyncio.run(main())
    assert runner.study.trial(tid).phase.value == "Failed"
    assert ("Job", name) in kube.objects and kube.secrets(tid)


class LateStatusKube(FakeKube):
    """A status patch that is not final takes 0.2 s and lands even if its caller is cancelled,
    as a request already sent from a worker thread does."""

    async def patch_study_status(self, namespace: str, name: str, status) -> None:
        snapshot = json.loads(json.dumps(status))

        async def land() -> None:
            if snapshot.get("phase") != "Completed":
                await asyncio.sleep(0.2)
            self.study_status = snapshot

        await asyncio.shield(asyncio.ensure_future(land()))


def test_the_final_status_is_never_overtaken_by_a_status_write_in_flight() -> None:
    """The status task's patch still in flight when the study ends must not land after the
    final one: the study would stay Running for ever (seen once on the cluster, where the
    standby that took a finished study over wrote Running and Completed at the same time)."""
    kube = LateStatusKube()
    trainers = FakeTrainers(kube)

    async def main() -> None:
        runner = make_runner(kube)
        task = await play(kube, trainers, runner)
        await task
        await asyncio.sleep(0.5)  # every write in flight has landed

    asyncio.run(main())
    assert kube.study_status["phase"] == "Completed", kube.study_status.get("phase")
