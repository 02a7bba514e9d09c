"""The model side: answers surrogate requests (in process, or behind ``hwtune surrogate serve``).

A request (``docs/surrogate-protocol.md``) carries one study's training points in arrival
order with their targets, the points to predict, and the *full-fit set*: the first t points
(t = the largest power of two <= min(n, 256)). The store keeps, per study, the state of the full
fit for each t (``fullFitSteps`` Adam steps from a seeded start), and for every request runs a
short refit (``refitSteps``) from that state on the current points, then predicts. When the refit
diverges (NaN, failed Cholesky) it fits from scratch instead. Because the full fit depends only
on the first t points and the refit only on the full fit and the current points, the answer to a
request is a function of the request alone: a restarted operator or service gives the same
suggestions. That is also why there is no cache of refits.

Fits (``hwtune.surrogate.models.fit``) stop early when the marginal likelihood has stopped
improving and keep the best step's state. FMS variants: the GMN is trained jointly with the rest
(feature head, curve CNN, GP) in full fits and refits alike; a full fit uses at most
``gmnPoints`` of the points (message passing over every checkpoint graph at every Adam step is
the expensive part on a CPU), and every fit encodes only its training points' checkpoints.

Background full fits (``background_fits=True``: ``hwtune surrogate serve``'s default; in process
``surrogateBackgroundFits``): a full fit on 256 points costs seconds on a CPU, so a request whose
full fit is neither in memory nor saved does not wait for it. It reserves the fit for a fit
thread (at most ``fit_threads`` over all studies, one per model at a time; queued once the
request has answered, so the two do not compete), and answers from a stand-in: the one this model
already has, else the study's previous (smaller) full fit in memory or on disk, else a quick fit
(``quickFitSteps`` on at most ``quickFitPoints`` points), refit on the current points as usual.
The thread fits on its own copy of the network, saves the state (temporary file, then rename),
and publishes it; later requests answer from it exactly as a fit in the request would. Answers
given meanwhile depend on timing; the engine records every suggestion and replays them on a
rebuild, so a study's past never does. Seeded starts hold ``models.SEED_LOCK`` (torch's
generator is per process).

Checkpoints are read by location (a directory or fsspec URI holding an hwtune checkpoint, or a
file written with ``torch.save``); unreadable ones count as "no checkpoint" and are reported in
``checkpointsMissing``.

Persistence (``state_dir``, ``hwtune surrogate serve --state-dir``, ``HWTUNE_SURROGATE_STATE_DIR``):
every full fit is also written to ``<state_dir>/<study>/<model key>/full-<t>-<digest>.pt``
(written to a temporary file, then renamed: a crash leaves the old file or the new one, never
half of one). A model that has no full fit in memory for a request's full-fit set looks there
first, so a restarted service or operator answers its first request at warm speed (a 256-point
full fit costs seconds on a CPU; loading it, milliseconds) and answers exactly what the old process
would have. Only the latest ``KEEP_FITS`` full fits per model are kept on disk (the full-fit set
only grows, so older ones are never asked for again); ``forget(study)`` deletes the study's files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import queue
import re
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from hwtune.surrogate import CHECKPOINT_SEARCHERS
from hwtune.surrogate.graph import ParamGraph, param_graph, state_of_checkpoint
from hwtune.surrogate.models import SEED_LOCK, VARIANTS, Points, SurrogateNet, fit, predict
from hwtune.surrogate.points import PROTOCOL_VERSION, PointBlock, RequestError, block_from_json

__all__ = ["KEEP_FITS", "ModelStore", "load_graph", "select_device"]

log = logging.getLogger(__name__)

DEFAULTS = {"fullFitSteps": 1000, "refitSteps": 30, "gmnPoints": 64, "refitPoints": 256, "lr": 0.01,
            "quickFitSteps": 30, "quickFitPoints": 64}
_MAX_GRAPHS = 4096
KEEP_FITS = 2  # full fits kept on disk per model (the current one and the one before)


def select_device(requested: str | None = None, cuda_available: bool | None = None) -> str:
    """``cuda`` when torch sees a GPU, else ``cpu``; ``requested`` (``cpu``, ``cuda``,
    ``cuda:N``) overrides, and asking for a GPU that is not there is a clear error at start
    rather than a failure at the first request."""
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if requested is None or requested == "":
        return "cuda" if cuda_available else "cpu"
    if requested == "cpu":
        return "cpu"
    if re.fullmatch(r"cuda(:[0-9]+)?", requested):
        if not cuda_available:
            raise ValueError(f"device: {requested} was asked for but torch sees no GPU "
                             "(use --device cpu, or leave it out to pick one)")
        return requested
    raise ValueError(f"device: must be cpu, cuda or cuda:N, got {requested!r}")


def load_graph(location: str, level: int | None = None) -> ParamGraph:
    """The parameter graph of the checkpoint at ``location``. With ``level``, an hwtune
    checkpoint there must be of that level (one overwritten since is refused)."""
    from hwtune.trainer.checkpoint import CheckpointStore

    if location.endswith((".pt", ".pth")):
        import fsspec

        with fsspec.open(location, "rb") as fh:
            record = torch.load(fh, map_location="cpu", weights_only=False)
        state = record.get("state", record) if isinstance(record, Mapping) else record
    else:
        checkpoint = CheckpointStore(location).load()
        if checkpoint is None:
            raise FileNotFoundError(f"no checkpoint at {location}")
        if level is not None and level >= 1 and checkpoint.resource != level:
            raise FileNotFoundError(f"the checkpoint at {location} is of level "
                                    f"{checkpoint.resource} now, not {level}")
        state = checkpoint.state
    model, arch = state_of_checkpoint(state)
    return param_graph(model, arch)


class _StudyModel:
    def __init__(self, net: SurrogateNet, key: tuple) -> None:
        self.net = net
        self.key = key
        self.full: dict[str, dict[str, Any]] = {}  # digest of the full-fit set -> fit state
        self.sizes: dict[str, int] = {}  # digest -> points of that full-fit set
        self.lock = threading.Lock()
        # Background full fits: the digest being fitted (one at a time per model), and the state
        # that answers meanwhile (a quick fit, or an earlier full fit read from disk).
        self.pending: str | None = None
        self.interim: tuple[str, int, dict[str, Any]] | None = None  # (kind, points, state)
        self.job: tuple | None = None  # reserved by this request, queued once it has answered
        self.forgotten = False


class ModelStore:
    """Per-study models. Thread-safe: one lock per study (the service runs requests of different
    studies in parallel threads)."""

    def __init__(self, device: str | None = None, max_studies: int = 64,
                 threads: int | None = None, state_dir: str | os.PathLike | None = None,
                 background_fits: bool = False, fit_threads: int = 1) -> None:
        self.device = select_device(device)
        state_dir = state_dir if state_dir is not None else os.environ.get("HWTUNE_SURROGATE_STATE_DIR")
        self.state_dir = Path(state_dir) if state_dir else None
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            for tmp in self.state_dir.glob("*/*/.tmp-*.pt"):  # a save cut short by a crash
                tmp.unlink(missing_ok=True)
        # Background full fits (module docstring): at most ``fit_threads`` at once over all
        # studies, one per model; started lazily.
        self.background_fits = background_fits
        self.fit_threads = max(1, int(fit_threads))
        self._jobs: queue.Queue = queue.Queue()
        self._workers: list[threading.Thread] = []
        self._busy = threading.Condition()
        self._inflight = 0
        self.background_started = 0  # full fits handed to the background, ever
        self.background_done = 0
        self.background_seconds: list[float] = []  # wall seconds of each finished one
        self.on_background_fit: Callable[[float], None] | None = None  # the service's metric
        # The nets are tiny: more CPU threads only add contention (a shared node, the operator's
        # own threads). HWTUNE_SURROGATE_THREADS or ``threads`` overrides the default of 1.
        threads = threads or int(os.environ.get("HWTUNE_SURROGATE_THREADS", "1"))
        torch.set_num_threads(max(1, threads))
        self.max_studies = max_studies
        self._studies: OrderedDict[tuple, _StudyModel] = OrderedDict()
        self._graphs: OrderedDict[str, ParamGraph | None] = OrderedDict()
        self._lock = threading.Lock()

    # -- requests -------------------------------------------------------------------------------
    def handle(self, request: Any) -> dict[str, Any]:
        """Answer a ``predict`` request (see the module docstring); ``RequestError`` for bad
        input, naming the field."""
        started = time.perf_counter()
        req = _parse(request)
        model = self._model(req)
        job = None
        try:
            with model.lock:
                try:
                    graphs, index, missing = self._graphs_for(req)
                    answer = self._fit_and_predict(model, req, graphs, index)
                finally:
                    job, model.job = model.job, None
        finally:
            if job is not None:  # after the answer: the fit thread does not slow this request down
                self._jobs.put(job)
        answer.update({"version": PROTOCOL_VERSION, "checkpointsMissing": missing,
                       "device": self.device, "seconds": time.perf_counter() - started})
        return answer

    def forget(self, study: str) -> int:
        with self._lock:
            keys = [k for k in self._studies if k[0] == study]
            for k in keys:
                self._studies[k].forgotten = True  # a background fit still running saves nothing
                del self._studies[k]
            if self.state_dir is not None:
                shutil.rmtree(self.state_dir / _safe(study), ignore_errors=True)
        return len(keys)

    def persisted(self) -> list[str]:
        """Studies with a full fit on disk (a restarted service warm-starts them)."""
        if self.state_dir is None:
            return []
        out = []
        for d in self.state_dir.iterdir():
            name = d / "study"
            if d.is_dir() and name.exists():
                out.append(name.read_text())
        return sorted(out)

    # -- persistence ------------------------------------------------------------------------------
    def _fit_path(self, key: tuple, t: int, digest: str) -> Path | None:
        if self.state_dir is None:
            return None
        study, variant, dx, length, seed = key
        return (self.state_dir / _safe(study) / f"{variant}-dx{dx}-L{length}-s{seed}"
                / f"full-{t:06d}-{digest[:20]}.pt")

    def _load_fit(self, key: tuple, t: int, digest: str) -> dict[str, Any] | None:
        path = self._fit_path(key, t, digest)
        if path is None or not path.exists():
            return None
        try:
            record = torch.load(path, map_location=self.device, weights_only=True)
            if record.get("digest") != digest:  # a 20-character prefix collision: refit
                return None
            return record["state"]
        except Exception as exc:  # a damaged file is only a lost cache: fit again
            log.warning("surrogate: cannot read the saved fit %s (%s); fitting again", path, exc)
            return None

    def _latest_saved(self, key: tuple) -> tuple[int, dict[str, Any]] | None:
        """The largest saved full fit of this model, whatever its set (an earlier full-fit set of
        the same study: the set only grows): a warm start while the current one is fitted."""
        path = self._fit_path(key, 0, "x")
        if path is None or not path.parent.is_dir():
            return None
        for saved in sorted(path.parent.glob("full-*.pt"), reverse=True):
            try:
                record = torch.load(saved, map_location=self.device, weights_only=True)
                return int(saved.name.split("-")[1]), record["state"]
            except Exception as exc:  # damaged: try the one before
                log.warning("surrogate: cannot read the saved fit %s (%s)", saved, exc)
        return None

    def _save_fit(self, key: tuple, t: int, digest: str, state: dict[str, Any]) -> None:
        path = self._fit_path(key, t, digest)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            (path.parent.parent / "study").write_text(key[0])
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pt")
            with os.fdopen(fd, "wb") as fh:
                torch.save({"digest": digest, "state": _to_cpu(state)}, fh)
            os.replace(tmp, path)
            fits = sorted(path.parent.glob("full-*.pt"))
            for old in fits[:-KEEP_FITS]:
                old.unlink(missing_ok=True)
        except OSError as exc:  # a full disk must not fail the suggestion
            log.warning("surrogate: cannot save the fit to %s: %s", path, exc)

    def studies(self) -> list[str]:
        with self._lock:
            return sorted({k[0] for k in self._studies})

    # -- internals --------------------------------------------------------------------------------
    def _model(self, req: dict[str, Any]) -> _StudyModel:
        key = (req["study"], req["variant"], req["dx"], req["curveLength"], req["seed"])
        with self._lock:
            model = self._studies.get(key)
            if model is None:
                with SEED_LOCK:
                    torch.manual_seed(req["seed"])
                    net = SurrogateNet(req["dx"], req["curveLength"], req["variant"], device=self.device)
                model = _StudyModel(net, key)
                self._studies[key] = model
                while len(self._studies) > self.max_studies:
                    self._studies.popitem(last=False)
            self._studies.move_to_end(key)
            return model

    def _graph(self, location: str, level: int) -> ParamGraph | None:
        key = f"{location}@{level}"
        with self._lock:
            if key in self._graphs:  # misses too: an overwritten level never comes back
                self._graphs.move_to_end(key)
                return self._graphs[key]
        try:
            graph: ParamGraph | None = load_graph(location, level)
        except Exception as exc:  # unreadable checkpoint: predict without it, report it
            log.debug("surrogate: cannot read checkpoint %s (level %s): %s", location, level, exc)
            graph = None
        with self._lock:
            self._graphs[key] = graph
            while len(self._graphs) > _MAX_GRAPHS:
                self._graphs.popitem(last=False)
        return graph

    def _graphs_for(self, req: dict[str, Any]) -> tuple[list[ParamGraph], dict[Any, int], int]:
        graphs: list[ParamGraph] = []
        index: dict[Any, int] = {}
        missing = 0
        if req["variant"] not in CHECKPOINT_SEARCHERS:
            return graphs, index, 0
        for block in (req["full"], req["train"], req["test"]):
            for loc in block.checkpoint:
                if loc is None or loc in index:
                    continue
                g = self._graph(*loc)
                if g is None:
                    missing += 1
                    index[loc] = -1
                else:
                    index[loc] = len(graphs)
                    graphs.append(g)
        return graphs, index, missing

    def _fit_and_predict(self, model: _StudyModel, req: dict[str, Any], graphs: list[ParamGraph],
                         index: dict[Any, int]) -> dict[str, Any]:
        s = req["settings"]
        net = model.net
        full_block = req["full"]
        digest = req["fullDigest"]
        info: dict[str, Any] = {"points": len(req["train"]), "fullFitPoints": len(full_block)}
        state = model.full.get(digest)
        fit_started = time.perf_counter()
        if state is None:
            state = self._load_fit(model.key, len(full_block), digest)
            if state is not None:
                self._publish(model, digest, len(full_block), state)
                info["fullFit"] = {"loaded": True, "seconds": time.perf_counter() - fit_started}
        if state is None and self.background_fits:
            # Answer now from a stand-in, fit the full set in the background (module docstring).
            started = self._start_background(model, req, graphs, index)
            kind, points, state = self._interim(model, req, graphs, index)
            info["fullFit"] = {"background": started, "answeredFrom": kind, "answeredFromPoints": points,
                               "seconds": time.perf_counter() - fit_started}
        if state is None:
            state, result = self._full_fit(net, req, graphs, index)
            self._publish(model, digest, len(full_block), state)
            self._save_fit(model.key, len(full_block), digest, state)
            info["fullFit"] = {"mllStart": result.mll_start, "mllEnd": result.mll_end,
                               "diverged": result.diverged, "seconds": time.perf_counter() - fit_started}
        train, test = req["train"], req["test"]
        refit_started = time.perf_counter()
        y, mu, sd = _standardise(req["y"])
        # The refit's cost is the exact GP's Cholesky and its gradient at every step, cubic in
        # the points; past ``refitPoints`` the parameters are refit on a seeded sample of that
        # many (the latest half of the points in arrival order, the rest drawn from the earlier
        # ones) and the posterior below still conditions on every training point.
        rows = _refit_rows(len(train), s["refitPoints"], req["seed"])
        net.set_points(_points(train.take(rows), index, mu, sd), graphs)
        refit = fit(net, y[rows], steps=s["refitSteps"], seed=_seed(req["seed"], len(train)),
                    init=state, lr=s["lr"])
        kind = "refit"
        if refit.diverged or refit.mll_end < refit.mll_start - 1.0:
            # Diverged (or got much worse): fit from scratch on the current points.
            refit = fit(net, y[rows], steps=s["fullFitSteps"],
                        seed=_seed(req["seed"], len(train) + 1), lr=s["lr"])
            kind = "scratch"
        info["refit"] = {"kind": kind, "mllStart": refit.mll_start, "mllEnd": refit.mll_end,
                         "points": len(rows), "diverged": refit.diverged,
                         "seconds": time.perf_counter() - refit_started}
        net.set_points(_points(_concat(train, test), index, mu, sd), graphs)
        rows = np.arange(len(train), len(train) + len(test))
        if len(test) == 0:
            mean, std = np.zeros(0), np.zeros(0)
        else:
            mean, std = predict(net, y, refit.state, rows)
        return {"mean": (mean * sd + mu).tolist(), "std": (std * sd).tolist(), "fit": info}


    # -- full fits, now or in the background ----------------------------------------------------
    def _full_fit(self, net: SurrogateNet, req: dict[str, Any], graphs: list[ParamGraph],
                  index: dict[Any, int]):
        """The full fit of the request's full-fit set: a function of that set (seeded start), so
        whether it runs in the request or in the background, the state is the same."""
        s = req["settings"]
        full_block, full_y = req["full"], req["fullY"]
        rows = np.arange(len(full_block))
        if req["variant"] in ("fms", "fms-nocurve") and len(rows) > s["gmnPoints"]:
            rng = np.random.default_rng([req["seed"], len(full_block)])
            rows = np.sort(rng.choice(rows, size=s["gmnPoints"], replace=False))
        y, mu, sd = _standardise(full_y[rows])
        net.set_points(_points(full_block.take(rows), index, mu, sd), graphs)
        result = fit(net, y, steps=s["fullFitSteps"], seed=_seed(req["seed"], len(full_block)),
                     lr=s["lr"])
        if result.diverged:  # one retry from another seed
            result = fit(net, y, steps=s["fullFitSteps"],
                         seed=_seed(req["seed"], len(full_block) + 7919), lr=s["lr"])
        return result.state, result

    def _publish(self, model: _StudyModel, digest: str, points: int, state: dict[str, Any]) -> None:
        model.full[digest] = state
        model.sizes[digest] = points
        model.interim = None  # a full fit is the better start from now on

    def _interim(self, model: _StudyModel, req: dict[str, Any], graphs: list[ParamGraph],
                 index: dict[Any, int]) -> tuple[str, int, dict[str, Any]]:
        """What answers while the full fit runs, best first: the stand-in already made for this
        model; the full fit of the study's previous (smaller) full-fit set, in memory or saved;
        else a quick fit (``quickFitSteps`` from a seeded start on at most ``quickFitPoints`` of
        the full-fit set). The refit that follows trains it on the current points."""
        if model.interim is not None:
            return model.interim
        if model.full:
            digest = max(model.full, key=lambda d: model.sizes.get(d, 0))
            model.interim = ("previous", model.sizes.get(digest, 0), model.full[digest])
            return model.interim
        saved = self._latest_saved(model.key)
        if saved is not None:
            model.interim = ("saved", saved[0], saved[1])
            return model.interim
        s = req["settings"]
        full_block, full_y = req["full"], req["fullY"]
        limit = s["quickFitPoints"]
        if req["variant"] in ("fms", "fms-nocurve"):
            limit = min(limit, s["gmnPoints"])
        rows = np.arange(len(full_block))
        if len(rows) > limit:
            rng = np.random.default_rng([req["seed"], len(full_block), limit])
            rows = np.sort(rng.choice(rows, size=limit, replace=False))
        y, mu, sd = _standardise(full_y[rows])
        model.net.set_points(_points(full_block.take(rows), index, mu, sd), graphs)
        result = fit(model.net, y, steps=s["quickFitSteps"], seed=_seed(req["seed"], len(full_block) + 104729),
                     lr=s["lr"])
        model.interim = ("quick", len(rows), result.state)
        return model.interim

    def _start_background(self, model: _StudyModel, req: dict[str, Any], graphs: list[ParamGraph],
                          index: dict[Any, int]) -> str:
        """Reserve the full fit of this request's set for a fit thread (queued when the request
        has answered) unless one of this model's is queued or running: ``started``, ``running``
        (this set's), or ``waiting`` (an earlier set's fit runs; a later request starts this
        one)."""
        digest = req["fullDigest"]
        if model.pending is not None:
            return "running" if model.pending == digest else "waiting"
        model.pending = digest
        with self._busy:
            self._inflight += 1
            self.background_started += 1
            while len(self._workers) < self.fit_threads:
                worker = threading.Thread(target=self._fit_worker, daemon=True,
                                          name=f"hwtune-surrogate-fit-{len(self._workers)}")
                worker.start()
                self._workers.append(worker)
        model.job = (model, req, graphs, index)
        return "started"

    def _fit_worker(self) -> None:
        while True:
            model, req, graphs, index = self._jobs.get()
            started = time.perf_counter()
            digest = req["fullDigest"]
            try:
                # Its own net: the request threads keep using the model's.
                with SEED_LOCK:
                    net = SurrogateNet(req["dx"], req["curveLength"], req["variant"], device=self.device)
                state, _ = self._full_fit(net, req, graphs, index)
                with self._lock:  # forget() holds it too: a forgotten study saves nothing
                    if not model.forgotten:
                        self._save_fit(model.key, len(req["full"]), digest, state)
                with model.lock:
                    self._publish(model, digest, len(req["full"]), state)
                seconds = time.perf_counter() - started
                self.background_seconds.append(seconds)
                if self.on_background_fit is not None:
                    self.on_background_fit(seconds)
            except Exception:  # the interim answers go on; the next request tries again
                log.exception("surrogate: background full fit of %s failed", model.key[0])
            finally:
                model.pending = None
                with self._busy:
                    self._inflight -= 1
                    self.background_done += 1
                    self._busy.notify_all()

    def wait_background(self, timeout: float | None = None) -> bool:
        """Block until no background fit is queued or running; False on timeout."""
        with self._busy:
            return self._busy.wait_for(lambda: self._inflight == 0, timeout)

    def background_running(self) -> int:
        with self._busy:
            return self._inflight

def _refit_rows(n: int, limit: int, seed: int) -> np.ndarray:
    """All rows when n <= limit; else the latest limit/2 rows and a seeded sample of the rest
    (a function of (n, limit, seed): the same request refits the same way)."""
    if n <= limit:
        return np.arange(n)
    recent = limit // 2
    rng = np.random.default_rng([seed, n, limit])
    earlier = rng.choice(n - recent, size=limit - recent, replace=False)
    return np.sort(np.concatenate([earlier, np.arange(n - recent, n)]))


def _safe(study: str) -> str:
    """A directory name for a study: readable, and unique through a hash of the full name."""
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", study)[:60]
    return f"{readable}-{hashlib.sha1(study.encode()).hexdigest()[:10]}"


def _to_cpu(state: Any) -> Any:
    if isinstance(state, torch.Tensor):
        return state.detach().cpu()
    if isinstance(state, dict):
        return {k: _to_cpu(v) for k, v in state.items()}
    return state


def _seed(base: int, n: int) -> int:
    return int(np.random.default_rng([base, n]).integers(2 ** 31))


def _standardise(y: np.ndarray) -> tuple[np.ndarray, float, float]:
    mu = float(np.mean(y)) if len(y) else 0.0
    sd = float(np.std(y)) if len(y) > 1 else 1.0
    sd = sd if sd > 1e-9 else 1.0
    return (y - mu) / sd, mu, sd


def _concat(a: PointBlock, b: PointBlock) -> PointBlock:
    return PointBlock(np.concatenate([a.x, b.x]), np.concatenate([a.budget, b.budget]),
                      np.concatenate([a.curve, b.curve]), np.concatenate([a.mask, b.mask]),
                      a.checkpoint + b.checkpoint)


def _points(block: PointBlock, index: Mapping[Any, int], mu: float, sd: float) -> Points:
    curve = np.where(block.mask > 0, (block.curve - mu) / sd, 0.0)
    graph = np.array([-1 if c is None else index.get(c, -1) for c in block.checkpoint], dtype=int)
    return Points(block.x, block.budget, curve, block.mask, graph)


def _parse(request: Any) -> dict[str, Any]:
    if not isinstance(request, Mapping):
        raise RequestError("request: must be a JSON object")
    version = request.get("version")
    if version != PROTOCOL_VERSION:
        raise RequestError(f"version: this service speaks version {PROTOCOL_VERSION}, got {version!r}")
    study = request.get("study")
    if not isinstance(study, str) or not study:
        raise RequestError("study: must be a non-empty string")
    variant = request.get("variant")
    if variant not in VARIANTS:
        raise RequestError(f"variant: must be one of {', '.join(VARIANTS)}, got {variant!r}")
    out: dict[str, Any] = {"study": study, "variant": variant}
    for key in ("dx", "curveLength", "seed"):
        value = request.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "seed" else 1):
            raise RequestError(f"{key}: must be an integer >= {0 if key == 'seed' else 1}, got {value!r}")
        out[key] = value
    settings = dict(DEFAULTS)
    raw = request.get("settings") or {}
    if not isinstance(raw, Mapping):
        raise RequestError("settings: must be an object")
    for key, value in raw.items():
        if key not in DEFAULTS:
            raise RequestError(f"settings.{key}: unknown (known: {', '.join(DEFAULTS)})")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value <= 0 or (key != "lr" and not float(value).is_integer()) \
                or (key != "lr" and value > 100_000):
            raise RequestError(f"settings.{key}: must be a positive {'number' if key == 'lr' else 'integer'}"
                               f"{'' if key == 'lr' else ' <= 100000'}, got {value!r}")
        settings[key] = int(value) if key != "lr" else float(value)
    out["settings"] = settings
    dx, length = out["dx"], out["curveLength"]
    out["train"] = block_from_json(request.get("train"), "train", dx, length)
    out["test"] = block_from_json(request.get("test"), "test", dx, length)
    full = request.get("fullFit")
    if not isinstance(full, Mapping):
        raise RequestError("fullFit: must be an object with points and y")
    out["full"] = block_from_json(full.get("points"), "fullFit.points", dx, length)
    out["fullY"] = _vector(full, "y", "fullFit", len(out["full"]))
    out["y"] = _vector(request, "y", "", len(out["train"]))
    if len(out["train"]) < 1 or len(out["full"]) < 1:
        raise RequestError("train: at least one training point is required")
    digest = hashlib.sha1(json.dumps({"p": full.get("points"), "y": full.get("y")}, sort_keys=True)
                          .encode()).hexdigest()
    out["fullDigest"] = digest
    return out


def _vector(data: Mapping[str, Any], key: str, path: str, n: int) -> np.ndarray:
    where = f"{path}.{key}" if path else key
    if key not in data:
        raise RequestError(f"{where}: is required")
    try:
        arr = np.asarray(data[key], dtype=float)
    except (TypeError, ValueError):
        raise RequestError(f"{where}: must be a list of numbers") from None
    if arr.ndim != 1 or len(arr) != n:
        raise RequestError(f"{where}: expected a list of {n} numbers")
    if not np.all(np.isfinite(arr)):
        raise RequestError(f"{where}: values must be finite")
    return arr
