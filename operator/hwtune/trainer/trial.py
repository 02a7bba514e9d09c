"""The trial as a training script sees it: hyperparameters, hardware, reports, checkpoints and
graceful preemption."""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import threading
from typing import Any, Callable, Iterator, Mapping

from hwtune.api.records import Decision, Hardware
from hwtune.report.protocol import check_metrics, check_resource
from hwtune.trainer.checkpoint import Checkpoint, CheckpointStore
from hwtune.trainer.client import ReportClient
from hwtune.trainer.env import TrialEnv

__all__ = ["EXIT_INFRASTRUCTURE", "EXIT_PREEMPTED", "Trial"]

log = logging.getLogger("hwtune.trainer")

# Exit status after SIGTERM once the checkpoint is safe. 75 is EX_TEMPFAIL ("try again later"):
# backends resume the trial from its checkpoint instead of failing it, and a Job's
# podFailurePolicy can ignore it (onExitCodes [75], action Ignore).
EXIT_PREEMPTED = 75
# Exit status when the trial's files cannot be written (a full disk): 74 is EX_IOERR. Backends
# end the run and keep the trial to be resumed, instead of failing it.
EXIT_INFRASTRUCTURE = 74
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})

_MISSING = object()
PreemptCallback = Callable[[], Mapping[str, Any] | None]


class Trial:
    """Created once per process by ``hwtune.trainer.init()``; tests build their own."""

    def __init__(self, env: TrialEnv | None = None, *, client: ReportClient | None = None,
                 handle_sigterm: bool = True) -> None:
        self.env = env if env is not None else TrialEnv.from_env()
        self._client = client
        if self._client is None and self.env.report_url:
            self._client = ReportClient(self.env.report_url, self.env.trial_id,
                                        self.env.report_token,
                                        retry_seconds=self.env.report_retry_seconds)
        self._store = CheckpointStore(self.env.checkpoint_uri) if self.env.checkpoint_uri else None
        self.last_decision = Decision.CONTINUE
        self.last_reason = ""
        self.preempted = False
        self._last_reported = 0
        self._last_checkpoint = 0
        self._preempt_callback: PreemptCallback | None = None
        self._saving = False
        self._exit_after_save = False
        # From save_checkpoint(r) until report(r) has kept its pending report beside the
        # checkpoint, SIGTERM waits (at most DEFER_SIGTERM_SECONDS): exiting in between would
        # leave level r checkpointed but never reported, and the resumed trial would skip it.
        self._unreported_checkpoint: int | None = None
        self._defer_timer: threading.Timer | None = None
        self._held = self.env.reported_resource  # levels the study holds: never sent again
        self._pending_checked = False
        if handle_sigterm and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)

    # -- what the trial is -------------------------------------------------------------------

    @property
    def id(self) -> str:
        return self.env.trial_id

    @property
    def params(self) -> Mapping[str, Any]:
        return self.env.params

    @property
    def hardware(self) -> Hardware | None:
        return self.env.hardware

    @property
    def max_resource(self) -> int | None:
        return self.env.max_resource

    @property
    def target_resource(self) -> int | None:
        return self.env.target_resource

    @property
    def resumed(self) -> bool:
        return self.env.resume

    def param(self, name: str, default: Any = _MISSING) -> Any:
        """A hyperparameter; ``default`` for one the study does not set (or an inactive
        conditional). Without a default a missing name is an error naming it."""
        if name in self.env.params:
            return self.env.params[name]
        if default is _MISSING:
            raise KeyError(f"hyperparameter {name!r} is not set for this trial "
                           f"(set: {', '.join(sorted(self.env.params)) or 'none'})")
        return default

    # -- reports -----------------------------------------------------------------------------

    def report(self, resource: int, **metrics: float) -> Decision:
        """Report ``metrics`` at resource level ``resource`` (1-based, e.g. the epoch just
        finished) and return the study's decision: CONTINUE, or PAUSE / STOP after which the
        script should return (its checkpoint is what a resumed trial continues from)."""
        resource = check_resource(resource)
        checked = check_metrics(metrics)
        self._send_pending_report()
        if resource <= self._held:
            # A resumed trial replaying levels the study already holds (it resumed from an older
            # checkpoint): the study has these, so they are not sent twice.
            log.info("%s %d already reported before this launch; not sent again",
                     self.env.resource_name, resource)
            self._last_reported = max(self._last_reported, resource)
            self._level_committed(resource)
            return Decision.CONTINUE
        if resource < self._last_reported:
            raise ValueError(f"resource went backwards: {resource} after {self._last_reported}")
        pending = self._store is not None and self._client is not None \
            and resource == self._last_checkpoint
        if pending:
            try:
                self._store.save_pending_report(resource, checked)
            except OSError as exc:
                if exc.errno not in _DISK_ERRNOS:
                    raise
                self._exit_infrastructure(f"cannot keep the report of "
                                          f"{self.env.resource_name} {resource}", exc)
        self._level_committed(resource)
        if self._client is None:
            log.warning("offline (no HWTUNE_REPORT_URL): %s %d %s", self.env.resource_name,
                        resource, checked)
            reply_decision, reason = Decision.CONTINUE, "offline"
        else:
            reply = self._client.report(resource, checked)
            reply_decision, reason = reply.decision, reply.reason
            if pending:
                self._store.clear_pending_report()
        self._last_reported = resource
        self.last_decision, self.last_reason = reply_decision, reason
        return reply_decision

    def _level_committed(self, resource: int) -> None:
        """The report of ``resource`` is safe (sent, or kept beside its checkpoint): a SIGTERM
        that waited for it is served now."""
        if self._unreported_checkpoint is not None and resource >= self._unreported_checkpoint:
            self._unreported_checkpoint = None
            if self._defer_timer is not None:
                self._defer_timer.cancel()
                self._defer_timer = None
            if self.preempted:
                self._exit_preempted()

    def _send_pending_report(self) -> None:
        """Once per launch: the report of a checkpointed level that the previous launch never
        got acknowledged goes first."""
        if self._pending_checked or self._store is None:
            return
        self._pending_checked = True
        pending = self._store.pending_report()
        if pending is None:
            return
        resource, metrics = pending
        if resource <= self._held or self._client is None:
            if resource <= self._held:
                self._store.clear_pending_report()  # the study got it after all
            return
        log.warning("%s %d was checkpointed but its report was never acknowledged; sending it "
                    "now", self.env.resource_name, resource)
        reply = self._client.report(resource, metrics)
        self._store.clear_pending_report()
        self._held = max(self._held, resource)
        self._last_reported = max(self._last_reported, resource)
        self.last_decision, self.last_reason = reply.decision, reply.reason

    def resource_levels(self, start: int = 1, max_resource: int | None = None) -> Iterator[int]:
        """Levels ``start, start+1, ...`` up to the study's maximum (``max_resource`` when the
        script runs outside a study), ending early once a report's decision halts the trial::

            for epoch in trial.resource_levels(start):
                ...; trial.save_checkpoint(state, epoch); trial.report(epoch, loss=...)
        """
        last = self.env.max_resource if self.env.max_resource is not None else max_resource
        if last is None:
            raise ValueError("no maximum resource: HWTUNE_MAX_RESOURCE is unset and no "
                             "max_resource was given")
        self._send_pending_report()  # its decision may end the trial before any level
        level = max(1, start)
        while level <= last and not self.last_decision.halts:
            yield level
            level += 1

    # -- checkpoints -------------------------------------------------------------------------

    @property
    def checkpoint_store(self) -> CheckpointStore | None:
        return self._store

    def save_checkpoint(self, state: Mapping[str, Any], resource: int) -> None:
        """Save ``state`` (a dict; tensors allowed) as the trial's checkpoint after ``resource``
        levels. Without a checkpoint location (a script run by hand) this does nothing."""
        if self._store is None:
            return
        self._saving = True
        try:
            try:
                self._store.save(state, resource)
            except OSError as exc:
                if exc.errno not in _DISK_ERRNOS:
                    raise
                self._exit_infrastructure(f"cannot save the checkpoint of "
                                          f"{self.env.resource_name} {resource}", exc)
            self._last_checkpoint = resource
            if resource > max(self._last_reported, self._held):
                self._unreported_checkpoint = resource
        finally:
            self._saving = False
        if self._exit_after_save:
            self._exit_after_save = False
            self._on_sigterm(signal.SIGTERM, None)

    def load_checkpoint(self) -> Checkpoint | None:
        """The trial's latest checkpoint (after a pause, a preemption or a pod restart), or
        None on a fresh start. Continue from ``checkpoint.resource + 1``."""
        if self._store is None:
            return None
        self._send_pending_report()
        checkpoint = self._store.load()
        if checkpoint is not None:
            self._last_checkpoint = checkpoint.resource
        return checkpoint

    # -- preemption --------------------------------------------------------------------------

    def on_preempt(self, callback: PreemptCallback) -> None:
        """On SIGTERM, ``callback()`` returns the state to checkpoint (as of the last completed
        resource level), or None to keep the last saved checkpoint. Then the process exits with
        EXIT_PREEMPTED (75). Without a callback the last ``save_checkpoint`` is what resumes."""
        self._preempt_callback = callback

    def _completed_resource(self) -> int:
        return max(self._last_reported, self._last_checkpoint)

    DEFER_SIGTERM_SECONDS = 5.0

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.preempted = True
        if self._saving:
            # Let the checkpoint being written finish; save_checkpoint comes back here.
            self._exit_after_save = True
            return
        if self._unreported_checkpoint is not None:
            # The script is about to report the level it just saved: wait for that (bounded),
            # so the report is kept beside the checkpoint. The timer sends SIGTERM again.
            if self._defer_timer is None:
                self._defer_timer = threading.Timer(self.DEFER_SIGTERM_SECONDS,
                                                    self._deferral_over)
                self._defer_timer.daemon = True
                self._defer_timer.start()
            return
        self._exit_preempted()

    def _deferral_over(self) -> None:
        self._unreported_checkpoint = None
        os.kill(os.getpid(), signal.SIGTERM)  # handled in the main thread, which then exits

    def _exit_preempted(self) -> None:
        level = self._completed_resource()
        if self._preempt_callback is not None and self._store is not None and level >= 1:
            try:
                state = self._preempt_callback()
                if state is not None:
                    self._store.save(state, level)
            except Exception:  # the previous checkpoint is still there; exit anyway
                log.exception("preemption callback failed; keeping the previous checkpoint")
        log.warning("preempted (SIGTERM) after %s %d; exiting with %d to be resumed",
                    self.env.resource_name, level, EXIT_PREEMPTED)
        self.close()
        sys.stdout.flush()
        sys.stderr.flush()
        raise SystemExit(EXIT_PREEMPTED)

    def _exit_infrastructure(self, what: str, exc: OSError) -> None:
        log.error("%s: %s; exiting with %d so that the trial resumes from its last checkpoint "
                  "once the disk has room", what, exc, EXIT_INFRASTRUCTURE)
        self.close()
        sys.stdout.flush()
        sys.stderr.flush()
        raise SystemExit(EXIT_INFRASTRUCTURE)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
