"""The embedded default under what users and machines do to it (issue 9): locked work
directories, torn event logs, hung and orphaned trainers, kill -9, a full disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hwtune.api.records import TrialPhase
from hwtune.backends.local import LocalStudyRun, WorkdirError
from hwtune.backends.local.lock import WorkdirLock, read_holder
from tests.backends.local_support import toy_spec

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "hwtune.cli.main", *args]


def write_study(path: Path, spec: dict, name: str = "toy") -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"apiVersion": "hwtune.io/v1alpha1", "kind": "TuningStudy",
                                    "metadata": {"name": name}, "spec": spec}))
    return path


def wait_for(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def events_of(workdir: Path) -> list[dict]:
    path = workdir / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


FAULT_TRAINER = Path(__file__).resolve().parent / "fault_train.py"
FAULT_TUNER = Path(__file__).resolve().parent / "fault_tuner.py"


def fault_spec(**kwargs) -> dict:
    from tests.backends.local_support import container

    env = kwargs.pop("env", None)
    spec = toy_spec(**kwargs)
    spec["trialTemplate"] = container(FAULT_TRAINER, env=env)
    return spec


def group_alive(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


def trial_groups(workdir: Path) -> dict[int, int]:
    """trial id -> process group of its current launch, from the trial lock files."""
    groups = {}
    for lock in workdir.glob("trials/*/.lock"):
        holder = read_holder(lock)
        if isinstance(holder.get("pgid"), int):
            groups[int(lock.parent.name)] = holder["pgid"]
    return groups


def start_tuner(workdir: Path, spec: dict, *, resume: bool = False, options: dict | None = None
                ) -> subprocess.Popen:
    spec_file = workdir.parent / f"{workdir.name}-spec.json"
    spec_file.write_text(json.dumps(spec))
    command = [sys.executable, str(FAULT_TUNER), str(workdir), str(spec_file),
               "--options", json.dumps(options or {})]
    if resume:
        command.append("--resume")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), str(REPO)])}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


# -- 1. the work-directory lock ---------------------------------------------------------------------

def test_a_second_tuner_on_the_same_workdir_is_refused(tmp_path):
    spec = toy_spec(max_trials=1, max_epochs=2)
    first = LocalStudyRun("toy", spec, workdir=tmp_path / "w")
    with pytest.raises(WorkdirError, match=r"in use by another hwtune tune \(pid \d+ on "):
        LocalStudyRun("toy", spec, workdir=tmp_path / "w", resume=True)
    first.run()  # releases the directory
    again = LocalStudyRun("toy", spec, workdir=tmp_path / "w", resume=True)
    again.close()


def test_the_lock_of_a_killed_tuner_is_taken_over(tmp_path):
    workdir = tmp_path / "w"
    workdir.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path;"
         "from hwtune.backends.local.lock import WorkdirLock;"
         f"lock = WorkdirLock(Path({str(workdir)!r})); lock.acquire(); print('locked', flush=True);"
         "time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(Exception, match="locked by pid"):
        WorkdirLock(workdir).acquire()
    holder.kill()  # SIGKILL: no chance to clean up; the lock file stays behind
    holder.wait()
    assert read_holder(workdir / ".hwtune.lock")["pid"] == holder.pid
    lock = WorkdirLock(workdir)
    lock.acquire()
    assert read_holder(workdir / ".hwtune.lock")["pid"] == os.getpid()
    lock.release()


@pytest.mark.slow
def test_two_tune_commands_on_one_workdir(tmp_path):
    gate = tmp_path / "gate"  # the first study's trainers wait while it exists
    gate.touch()
    spec = fault_spec(max_trials=3, parallel=2, env={"FAULT_WAIT_FOR": str(gate)})
    path = write_study(tmp_path / "s.yaml", spec)
    workdir = tmp_path / "w"
    first = subprocess.Popen(cli("tune", str(path), "--workdir", str(workdir), "--quiet"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(trial_groups(workdir)) == 2, what="the first tuner's trials")
        second = subprocess.run(cli("tune", str(path), "--workdir", str(workdir), "--resume",
                                    "--quiet"), capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"in use by another hwtune tune (pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        gate.unlink()
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, out + err
    events = events_of(workdir)
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert len([e for e in events if e["kind"] == "created"]) == 3


# -- 4. the event log -------------------------------------------------------------------------------

def _event(seq: int, kind: str = "running", trial: int = 0):
    from hwtune.engine import StudyEvent

    return StudyEvent(seq=seq, kind=kind, trial_id=trial, time=1000.0 + seq)


def _good_log(path: Path, n: int = 3) -> bytes:
    from hwtune.backends.local import EventLog

    log = EventLog(path)
    for seq in range(n):
        log.append(_event(seq))
    log.close()
    return path.read_bytes()


def test_every_line_carries_a_checksum_and_stays_json(tmp_path):
    from hwtune.backends.local.eventlog import decode_line

    data = _good_log(tmp_path / "events.jsonl")
    lines = data.splitlines()
    assert len(lines) == 3
    for seq, line in enumerate(lines):
        assert json.loads(line)["seq"] == seq and b'"crc32":"' in line
        assert decode_line(line)[0]["seq"] == seq


TORN_TAILS = {
    "a prefix without newline": lambda good: good[:25],
    "a prefix that ends in a newline": lambda good: good[:25] + b"\n",
    "a whole line with one flipped bit": lambda good: good.replace(b'"seq":3', b'"seq":2'),
    "a whole line with a bad checksum": lambda good: good[:-4] + b'00"}\n',
    "zeros after a power loss": lambda good: b"\0" * 300,
    "zeros with newlines": lambda good: b"\0" * 100 + b"\n" + b"\0" * 50 + b"\n",
    "a line that is valid JSON but has no checksum": lambda good: b'{"seq": 3}\n',
    "two torn lines": lambda good: good[:30] + b"\n" + good[:10] + b"\n",
}


@pytest.mark.parametrize("shape", sorted(TORN_TAILS))
def test_a_torn_tail_of_any_shape_is_dropped_and_cut_before_the_next_append(tmp_path, shape,
                                                                            caplog):
    from hwtune.backends.local import EventLog

    path = tmp_path / "events.jsonl"
    clean = _good_log(path)
    extra = EventLog(tmp_path / "x.jsonl")
    extra.append(_event(0))
    extra.append(_event(1))
    extra.append(_event(2))
    extra.append(_event(3))
    extra.close()
    fourth = (tmp_path / "x.jsonl").read_bytes().splitlines(keepends=True)[3]
    path.write_bytes(clean + TORN_TAILS[shape](fourth))
    log = EventLog(path)
    assert [e["seq"] for e in log.read()] == [0, 1, 2]
    assert "dropping a torn or corrupt tail from line 4" in caplog.text
    log.append(_event(3))  # cuts the tail first
    log.close()
    assert [e["seq"] for e in EventLog(path).read()] == [0, 1, 2, 3]
    assert path.read_bytes() == clean + fourth


def test_a_good_last_line_that_lost_its_newline_is_kept(tmp_path):
    from hwtune.backends.local import EventLog

    path = tmp_path / "events.jsonl"
    clean = _good_log(path)
    path.write_bytes(clean[:-1])
    log = EventLog(path)
    assert [e["seq"] for e in log.read()] == [0, 1, 2]
    log.append(_event(3))
    log.close()
    assert [e["seq"] for e in EventLog(path).read()] == [0, 1, 2, 3]


@pytest.mark.parametrize("damage", ["garbage", "checksum", "blank-prefix"])
def test_damage_in_the_middle_is_an_error_naming_file_and_line(tmp_path, damage):
    from hwtune.backends.local import EventLog

    path = tmp_path / "events.jsonl"
    lines = _good_log(path, 4).splitlines(keepends=True)
    if damage == "garbage":
        lines[1] = b'{"seq": 1, "ki\n'
    elif damage == "checksum":
        lines[1] = lines[1].replace(b'"seq":1', b'"seq":7')
    else:
        lines[1] = b"\0\0\0\n"
    path.write_bytes(b"".join(lines))
    with pytest.raises(WorkdirError, match=rf"{path}:2: .*damaged in the middle"):
        EventLog(path).read()
    with pytest.raises(WorkdirError):
        EventLog(path).append(_event(4))  # never cuts good events
    assert path.read_bytes() == b"".join(lines)


def test_duplicate_sequence_numbers_are_an_error_naming_the_line(tmp_path):
    from hwtune.backends.local import EventLog
    from hwtune.backends.local.eventlog import encode_line

    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(encode_line(_event(s).to_dict()) for s in (0, 1, 1, 2)))
    with pytest.raises(WorkdirError, match=r":3: event sequence number 1 where 2 was expected"):
        EventLog(path).read()


def test_old_logs_without_checksums_still_load_and_grow_with_them(tmp_path):
    from hwtune.backends.local import EventLog

    path = tmp_path / "events.jsonl"
    legacy = b"".join(json.dumps(_event(s).to_dict(), sort_keys=True).encode() + b"\n"
                      for s in range(3))
    path.write_bytes(legacy + b'{"seq": 3, "ki\n')  # torn, ending in a newline
    log = EventLog(path)
    assert [e["seq"] for e in log.read()] == [0, 1, 2]
    log.append(_event(3))
    log.close()
    assert [e["seq"] for e in EventLog(path).read()] == [0, 1, 2, 3]
    # ... but once checksums start, a line without one is damage.
    with open(path, "ab") as fh:
        fh.write(json.dumps(_event(4).to_dict()).encode() + b"\n")
    assert [e["seq"] for e in EventLog(path).read()] == [0, 1, 2, 3]


def test_a_failed_write_is_cut_back_to_the_last_whole_line(tmp_path, monkeypatch):
    import errno

    from hwtune.backends.local import EventLog, InfrastructureError
    from hwtune.backends.local import eventlog as module

    path = tmp_path / "events.jsonl"
    log = EventLog(path)
    log.append(_event(0))
    real_write = os.write

    def half_then_enospc(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(module.os, "write", half_then_enospc)
    with pytest.raises(InfrastructureError, match="No space left"):
        log.append(_event(1))
    monkeypatch.setattr(module.os, "write", real_write)
    with pytest.raises(InfrastructureError, match="no longer written"):
        log.append(_event(2))  # never a gap in the sequence
    log.close()
    assert path.read_bytes().count(b"\n") == 1  # the half line was cut
    again = EventLog(path)  # the next run, once there is space
    again.append(_event(1))
    again.close()
    assert [e["seq"] for e in EventLog(path).read()] == [0, 1]


def test_a_study_resumes_over_a_torn_tail_that_ends_in_a_newline(tmp_path):
    spec = toy_spec(max_trials=2, max_epochs=2)
    first = LocalStudyRun("toy", spec, workdir=tmp_path / "w")
    first.run()
    path = tmp_path / "w" / "events.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][:20] + b"\n")
    again = LocalStudyRun("toy", spec, workdir=tmp_path / "w", resume=True)
    result = again.run()
    assert len(result.trials) == 2
    third = LocalStudyRun("toy", spec, workdir=tmp_path / "w", resume=True)  # still readable
    third.close()


# -- 2. hung and orphaned trainers ------------------------------------------------------------------

def test_a_hung_trainer_is_stopped_and_failed_after_its_inactivity_limit(tmp_path):
    from hwtune.backends.local.backend import InactivityLimit

    spec = fault_spec(max_trials=2, parallel=2,
                      env={"FAULT_HANG_AT": "2", "FAULT_IGNORE_SIGTERM": "1"})
    run = LocalStudyRun("hung", spec, workdir=tmp_path / "w",
                        backend_options={"inactivity": InactivityLimit(seconds=1.5),
                                         "stop_grace_seconds": 1.0})
    started = time.monotonic()
    result = run.run()
    assert time.monotonic() - started < 30
    for trial in result.trials:
        assert trial.phase is TrialPhase.FAILED
        assert trial.reason.startswith("inactive: no report for"), trial.reason
        assert "(limit 1.5 s)" in trial.reason and "hanging at epoch 2" in trial.reason
        assert [o.resource for o in trial.observations] == [1]
    assert run.backend.running_processes() == {}


def test_the_default_limit_follows_the_trials_own_pace(tmp_path):
    from hwtune.backends.local.backend import InactivityLimit

    spec = fault_spec(max_trials=1, parallel=1, max_epochs=3,
                      env={"FAULT_HANG_AT": "3", "FAULT_SLEEP": "0.3"})
    limit = InactivityLimit(factor=4, floor_seconds=0.5, first_level_seconds=60)
    run = LocalStudyRun("pace", spec, workdir=tmp_path / "w",
                        backend_options={"inactivity": limit, "stop_grace_seconds": 1.0})
    started = time.monotonic()
    result = run.run()
    trial = result.trials[0]
    assert trial.phase is TrialPhase.FAILED and "4x its usual" in trial.reason, trial.reason
    assert time.monotonic() - started < 20  # not the 60 s of a first level
    assert limit.limit([]) == 60 and limit.limit([0.1, 0.2, 5.0]) == 0.8


def test_inactivity_limit_parsing():
    from hwtune.backends.local.backend import InactivityLimit

    assert InactivityLimit.parse("600") == InactivityLimit(seconds=600)
    assert InactivityLimit.parse("90s").seconds == 90
    assert InactivityLimit.parse("10x") == InactivityLimit(factor=10)
    for bad in ("", "x", "-3", "0", "ten", "0x"):
        with pytest.raises(ValueError, match="give seconds"):
            InactivityLimit.parse(bad)


@pytest.mark.slow
def test_trainers_die_with_a_killed_tuner_even_when_they_hang(tmp_path):
    workdir = tmp_path / "w"
    spec = fault_spec(max_trials=2, parallel=2,
                      env={"FAULT_HANG_AT": "1", "FAULT_IGNORE_SIGTERM": "1"})
    tuner = start_tuner(workdir, spec, options={"stop_grace_seconds": 1.0})
    try:
        wait_for(lambda: len(trial_groups(workdir)) == 2 and all(
            "hanging at epoch 1" in (workdir / f"trials/{t}/trial.log").read_text()
            for t in (0, 1)), what="two hung trainers")
        groups = trial_groups(workdir)
        assert all(group_alive(g) for g in groups.values())
        os.killpg(tuner.pid, signal.SIGKILL)  # the tuner, and nothing else
        tuner.wait()
        killed_at = time.monotonic()
        wait_for(lambda: not any(group_alive(g) for g in groups.values()), timeout=10,
                 what="the orphans to die")
        # Within the grace (1 s) plus the supervisor's poll, far below the retry window.
        assert time.monotonic() - killed_at < 5
    finally:
        for group in trial_groups(workdir).values():
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.slow
def test_an_immediate_resume_waits_for_the_orphan_of_its_trial(tmp_path):
    workdir = tmp_path / "w"
    stamps = tmp_path / "stamps"
    spec = fault_spec(max_trials=1, parallel=1,
                      env={"FAULT_HANG_AT": "2", "FAULT_IGNORE_SIGTERM": "1",
                           "FAULT_STAMPS": str(stamps)})
    options = {"stop_grace_seconds": 2.0}
    first = start_tuner(workdir, spec, options=options)
    wait_for(lambda: "hanging at epoch 2" in (workdir / "trials/0/trial.log").read_text()
             if (workdir / "trials/0/trial.log").exists() else False, what="a hung trainer")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    second = start_tuner(workdir, spec, resume=True, options=options)  # at once
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, out + err
    by_pid: dict[int, list[float]] = {}
    for line in stamps.read_text().splitlines():
        pid, when = line.split()
        by_pid.setdefault(int(pid), []).append(float(when))
    assert len(by_pid) == 2, by_pid.keys()
    old, new = sorted(by_pid.values(), key=min)
    assert max(old) < min(new), "the relaunched trial ran while its orphan still wrote"
    log = (workdir / "trials/0/trial.log").read_text()
    assert "the tuner is gone; stopping the trial" in log


# -- 3. no lost level -------------------------------------------------------------------------------

def _checkpoint_level(workdir: Path, trial: int) -> int:
    meta = workdir / "checkpoints" / str(trial) / "latest.json"
    try:
        return json.loads(meta.read_text())["resource"]
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_loses_no_level(tmp_path):
    """The tuner dies after a trainer checkpointed level 2 and before its report arrived; the
    resumed trial reports level 2 first, so the study holds 1, 2, 3."""
    workdir = tmp_path / "w"
    spec = fault_spec(max_trials=1, parallel=1, env={"FAULT_EVAL_SLEEP": "1.0"})
    options = {"stop_grace_seconds": 3.0}
    first = start_tuner(workdir, spec, options=options)
    wait_for(lambda: _checkpoint_level(workdir, 0) == 2, what="the checkpoint of epoch 2")
    levels = [e["resource"] for e in events_of(workdir) if e["kind"] == "observed"]
    assert levels == [1]  # level 2 is being evaluated: saved, not reported
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    wait_for(lambda: not group_alive(trial_groups(workdir)[0]), timeout=15,
             what="the orphan to stop")
    second = start_tuner(workdir, spec, resume=True, options=options)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, out + err
    observed = [e for e in events_of(workdir) if e["kind"] == "observed"]
    assert [e["resource"] for e in observed] == [1, 2, 3]
    log = (workdir / "trials/0/trial.log").read_text()
    assert "epoch 2 was checkpointed but its report was never acknowledged" in log


# -- 5. infrastructure failures ---------------------------------------------------------------------

def _assert_resumes_to_the_end(workdir: Path, spec: dict, max_trials: int) -> None:
    again = LocalStudyRun("faults", spec, workdir=workdir, resume=True)
    result = again.run()
    assert len(result.trials) == max_trials
    for trial in result.trials:
        assert trial.phase is TrialPhase.COMPLETED, (trial.trial_id, trial.reason)
        levels = [o.resource for o in trial.observations]
        assert levels == [1, 2, 3], (trial.trial_id, levels)
    assert not [e for e in events_of(workdir) if e["kind"] == "failed"]


def test_a_full_disk_under_the_event_log_ends_the_run_and_fails_no_trial(tmp_path,
                                                                         monkeypatch):
    import errno

    from hwtune.backends.local import EventLog, InfrastructureError

    full = {"on": False}
    real_append = EventLog._append

    def append(self, event):
        if full["on"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
        real_append(self, event)

    def fill_the_disk(run):
        if run.study.reports >= 2:
            full["on"] = True

    monkeypatch.setattr(EventLog, "_append", append)
    spec = fault_spec(max_trials=3, parallel=2, env={"FAULT_SLEEP": "0.2"})
    workdir = tmp_path / "w"
    run = LocalStudyRun("faults", spec, workdir=workdir, on_iteration=fill_the_disk)
    with pytest.raises(InfrastructureError, match="No space left on device") as info:
        run.run()
    assert "resume with --resume" in str(info.value)
    assert run.backend.running_processes() == {}
    assert not [e for e in events_of(workdir) if e["kind"] == "failed"]
    full["on"] = False  # space freed
    _assert_resumes_to_the_end(workdir, spec, 3)


def test_a_trainer_that_finds_the_disk_full_is_resumed_not_failed(tmp_path):
    from hwtune.backends.local import InfrastructureError

    flag = tmp_path / "disk-full"
    spec = fault_spec(max_trials=3, parallel=1, env={"FAULT_DISK_FULL": str(flag)})
    workdir = tmp_path / "w"

    def fill_the_disk(run):
        if run.study.reports >= 4:
            flag.touch()

    run = LocalStudyRun("faults", spec, workdir=workdir, on_iteration=fill_the_disk)
    with pytest.raises(InfrastructureError, match="could not write its files \\(exit code 74\\)"):
        run.run()
    phases = {t.trial_id: t.phase for t in run.study.trials}
    assert TrialPhase.FAILED not in phases.values(), phases
    log = (workdir / "trials/1/trial.log").read_text()
    assert "No space left on device" in log and "exiting with 74" in log
    flag.unlink()
    _assert_resumes_to_the_end(workdir, spec, 3)


def test_a_launch_the_machine_cannot_make_is_not_the_trials_failure(tmp_path, monkeypatch):
    import errno

    from hwtune.backends.local import InfrastructureError, LocalBackend

    real_spawn = LocalBackend._spawn_process

    def spawn(self, trial, **kwargs):
        if trial.trial_id == 1:
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")  # fork() failed
        return real_spawn(self, trial, **kwargs)

    monkeypatch.setattr(LocalBackend, "_spawn_process", spawn)
    spec = fault_spec(max_trials=2, parallel=1)
    workdir = tmp_path / "w"
    with pytest.raises(InfrastructureError, match="trial 1 could not be launched: Resource"):
        LocalStudyRun("faults", spec, workdir=workdir).run()
    monkeypatch.setattr(LocalBackend, "_spawn_process", real_spawn)
    _assert_resumes_to_the_end(workdir, spec, 2)


@pytest.mark.slow
def test_tune_on_a_full_disk_says_so_without_a_traceback(tmp_path):
    flag = tmp_path / "disk-full"
    flag.touch()
    spec = fault_spec(max_trials=2, parallel=1, env={"FAULT_DISK_FULL": str(flag)})
    path = write_study(tmp_path / "s.yaml", spec)
    workdir = tmp_path / "w"
    command = cli("tune", str(path), "--workdir", str(workdir), "--quiet")
    full = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert full.returncode == 75, full.stdout + full.stderr
    assert "could not write its files" in full.stderr and "--resume" in full.stderr
    assert "Traceback" not in full.stderr
    flag.unlink()
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "2 completed" in resumed.stdout
    assert not [e for e in events_of(workdir) if e["kind"] == "failed"]


# -- 6. trainers that say nothing, or far too much --------------------------------------------------

def test_a_trainer_that_exits_0_without_reporting_fails_with_that_reason(tmp_path):
    spec = fault_spec(max_trials=1, parallel=1, env={"FAULT_NO_REPORT": "1"})
    result = LocalStudyRun("silent", spec, workdir=tmp_path / "w").run()
    trial = result.trials[0]
    assert trial.phase is TrialPhase.FAILED
    assert trial.reason.startswith("ended without reporting its objectives (val_error): exited "
                                   "with status 0")
    assert "finishing without a report" in trial.reason


def test_trial_logs_keep_their_tail_under_the_cap(tmp_path):
    cap = 256 * 1024
    spec = fault_spec(max_trials=1, parallel=1, env={"FAULT_SPAM_BYTES": str(4 * 2**20)})
    run = LocalStudyRun("loud", spec, workdir=tmp_path / "w",
                        backend_options={"log_max_bytes": cap})
    result = run.run()
    assert result.trials[0].phase is TrialPhase.COMPLETED
    log = run.backend.log_path(0).read_bytes()
    assert len(log) <= cap
    assert b"earlier bytes of this log dropped" in log
    assert log.rstrip().endswith(b"epoch 3 -> stop")


def test_tune_refuses_a_bad_inactivity_setting(tmp_path):
    path = write_study(tmp_path / "s.yaml", fault_spec(max_trials=1))
    result = subprocess.run(cli("tune", str(path), "--workdir", str(tmp_path / "w"),
                                "--trial-inactivity", "soon"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--trial-inactivity 'soon': give seconds (600) or a multiple" in result.stderr


def test_a_resume_killed_between_its_pause_and_its_resume_still_resumes_the_trial(tmp_path):
    """kill -9 can land after ``--resume`` recorded an interrupted trial as paused and before it
    resumed it: the next resume must pick that trial up (the scheduler never would)."""
    from hwtune.backends.local.runner import INTERRUPTED_REASON

    spec = fault_spec(max_trials=2, parallel=2, env={"FAULT_SLEEP": "0.2"})
    workdir = tmp_path / "w"

    def interrupt(run):
        if run.study.reports >= 1:
            run.interrupt()

    from hwtune.backends.local import StudyInterrupted

    with pytest.raises(StudyInterrupted):
        LocalStudyRun("faults", spec, workdir=workdir, on_iteration=interrupt).run()
    half = LocalStudyRun("faults", spec, workdir=workdir, resume=True)
    active = [t.trial_id for t in half.study.active_trials()]
    assert active
    for tid in active:  # what the killed resume got to write
        half.study.pause_trial(tid, INTERRUPTED_REASON)
    half.backend.close()
    half.events.close()
    half.close()
    result = LocalStudyRun("faults", spec, workdir=workdir, resume=True).run()
    assert [t.phase for t in result.trials] == [TrialPhase.COMPLETED] * 2
    assert all([o.resource for o in t.observations] == [1, 2, 3] for t in result.trials)


def test_a_full_disk_under_hwtunes_own_files_ends_the_run_the_same_way(tmp_path, monkeypatch):
    import errno

    from hwtune.backends.local import InfrastructureError, LocalBackend

    def disk_full(self, launch, now):  # e.g. the trial log's "=== hwtune:" line cannot be written
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.log_path(0)))

    monkeypatch.setattr(LocalBackend, "_check_inactivity", disk_full)
    spec = fault_spec(max_trials=2, parallel=1)
    workdir = tmp_path / "w"
    with pytest.raises(InfrastructureError, match="hwtune could not write its files: No space"):
        LocalStudyRun("faults", spec, workdir=workdir).run()
    monkeypatch.undo()
    _assert_resumes_to_the_end(workdir, spec, 2)


def test_the_supervisor_passes_on_exit_codes_and_signals(tmp_path):
    from hwtune.backends.local import backend as module

    def supervised(code: str) -> int:
        return subprocess.run([sys.executable, "-I", "-S", module.SUPERVISOR, str(os.getpid()),
                               "1", "--", sys.executable, "-c", code], timeout=30).returncode

    assert supervised("raise SystemExit(3)") == 3
    assert supervised("import os, signal; os.kill(os.getpid(), signal.SIGKILL)") == -9
    assert supervised("import os, signal; os.kill(os.getpid(), signal.SIGTERM)") == -15
    assert supervised("pass") == 0
    missing = subprocess.run([sys.executable, "-I", "-S", module.SUPERVISOR, str(os.getpid()),
                              "1", "--", str(tmp_path / "nope")], capture_output=True, text=True,
                             timeout=30)
    assert missing.returncode == 127 and "cannot run" in missing.stderr
    # Started by a process that is not its tuner (the tuner died first): runs nothing.
    orphan = subprocess.run([sys.executable, "-I", "-S", module.SUPERVISOR, "1", "1", "--",
                             sys.executable, "-c", "print('ran')"], capture_output=True,
                            text=True, timeout=30)
    assert orphan.returncode == 1 and "ran" not in orphan.stdout
