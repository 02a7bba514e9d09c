"""The Kubernetes backend's runner against an in-memory API (the real one: tests/cluster):
write-ahead order, Jobs as built, adoption after a kill, no duplicate Job, bounded status."""

from __future__ import annotations

import asyncio
import json

import pytest

from hwtune.backends.kubernetes import StudyRunner, parse_chunks
from hwtune.backends.kubernetes.log import StudyLog
from hwtune.backends.kubernetes.manifests import GPU_RESOURCE, TOKEN_PATH, derive_token
from hwtune.engine import Study, StudyConfig
from hwtune.engine.config import pool_catalog
from tests.backends.kube_fakes import POOLS, FakeKube, FakeLogStore, FakeTrainers, job_env, study_spec


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
    # Every trial has its TuningTrial; stopped trials' Jobs are gone, others remain.
    trials = {o["spec"]["trialId"]: o for (k, _), o in kube.objects.items() if k == "TuningTrial"}
    assert sorted(trials) == list(range(12))
    stopped = {t for t, o in trials.items() if o["status"]["phase"] == "Stopped"}
    assert stopped, "mo-asha should stop some trials"
    for t in stopped:
        assert ("Job", f"st-{t}") not in kube.objects
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
        secret = kube.objects[("Secret", f"st-{trial}-token")]
        assert kube.secret_value(secret, "token").decode() == derive_token(runner._key, trial)
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
    from hwtune.backends.kubernetes import runner as runner_module

    assert runner_module._bounded_curve(list(range(1000)))[::99] == [0, 999]
    assert len(runner_module._bounded_curve(list(range(1000)))) == runner_module.MAX_CURVE_POINTS
    monkeypatch.setattr(runner_module, "MAX_FRONT_POINTS", 2)
    kube = FakeKube()
    trainers = FakeTrainers(kube)
    runner = make_runner(kube)

    async def main() -> None:
        task = await play(kube, trainers, runner)
        await runner.flush_status()
        assert task.result()

    asyncio.run(main())
    status = kube.study_status
    assert status["frontSize"] >= 2 and len(status["paretoFront"]) == 2
    assert len(json.dumps(status)) < 100 * 1024


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
        for kind in ("TuningTrial", "Job", "Secret"):
            kube.objects.pop((kind, f"st-{tid}" if kind != "Secret" else f"st-{tid}-token"),
                             None)
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
        assert ("Secret", f"st-{tid}-token") not in kube.objects
    assert kube.job_creates == job_creates
