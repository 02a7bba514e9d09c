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
    spec = toy_spec(max_trials=3, parallel=2, max_epochs=3, env={"TOY_SLEEP": "0.3"})
    path = write_study(tmp_path / "s.yaml", spec)
    workdir = tmp_path / "w"
    first = subprocess.Popen(cli("tune", str(path), "--workdir", str(workdir), "--quiet"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(e["kind"] == "observed" for e in events_of(workdir)),
                 what="the first tuner's first report")
        second = subprocess.run(cli("tune", str(path), "--workdir", str(workdir), "--resume",
                                    "--quiet"), capture_output=True, text=True, timeout=60)
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"in use by another hwtune tune (pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, out + err
    events = events_of(workdir)
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert len([e for e in events if e["kind"] == "created"]) == 3
