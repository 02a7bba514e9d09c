"""Where the surrogate model runs: in this process (torch imported on first use), or in the
surrogate service (``hwtune surrogate serve``) over HTTP + JSON with a timeout.

Both take the request built by ``hwtune.surrogate.freeze_thaw`` and return the service's answer
(``mean``, ``std`` per test point, fit details). A ``RemotePredictor`` raises
``PredictorUnavailable`` when the service is down, slow, or answers with an error; the searcher
then falls back (see ``freeze_thaw``). No torch here.
"""

from __future__ import annotations

import importlib
import json
import urllib.error
import urllib.request
from typing import Any, Mapping

__all__ = ["LocalPredictor", "PredictorUnavailable", "RemotePredictor", "make_predictor"]


class PredictorUnavailable(RuntimeError):
    """The model could not answer (service down, timeout, error answer)."""


class LocalPredictor:
    """The model in this process (needs torch, gpytorch, torch-geometric)."""

    def __init__(self, device: str | None = None, state_dir: str | None = None,
                 background_fits: bool = False) -> None:
        store = importlib.import_module("hwtune.surrogate.store")  # torch: only when used
        self.store = store.ModelStore(device=device, state_dir=state_dir,
                                      background_fits=background_fits)

    def predict(self, request: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return self.store.handle(request)
        except Exception as exc:  # a model failure must not end the study: the searcher falls back
            raise PredictorUnavailable(f"in-process surrogate failed: {type(exc).__name__}: {exc}") from exc

    def describe(self) -> str:
        return f"in-process ({self.store.device})"


class RemotePredictor:
    """``POST <url>/v1/predict`` with ``timeout`` seconds for the whole answer."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"algorithm.settings.surrogateUrl: must be an http(s) URL, got {url!r}")
        if not timeout > 0:
            raise ValueError(f"algorithm.settings.surrogateTimeoutSeconds: must be > 0, got {timeout!r}")
        self.url = url.rstrip("/")
        self.timeout = float(timeout)

    def predict(self, request: Mapping[str, Any]) -> dict[str, Any]:
        body = json.dumps(request).encode()
        http = urllib.request.Request(f"{self.url}/v1/predict", data=body, method="POST",
                                      headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(http, timeout=self.timeout) as resp:
                answer = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise PredictorUnavailable(f"surrogate service at {self.url} answered {exc.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PredictorUnavailable(f"surrogate service at {self.url} unreachable or slow "
                                       f"(timeout {self.timeout:g}s): {reason}") from None
        if not isinstance(answer, dict) or "mean" not in answer or "std" not in answer:
            raise PredictorUnavailable(f"surrogate service at {self.url} sent a malformed answer")
        return answer

    def describe(self) -> str:
        return f"service {self.url}"


def make_predictor(settings: Mapping[str, Any]):
    """``surrogateUrl`` set: the service (``surrogateTimeoutSeconds``, default 10); else in
    process (``surrogateDevice``: cpu, cuda; default: cuda when present; ``surrogateStateDir``:
    where full fits are saved so a restarted study warm-starts, default
    ``HWTUNE_SURROGATE_STATE_DIR``, else memory only; ``surrogateBackgroundFits``: true to run
    full fits in a background thread as the service does, default false so that an in-process
    answer stays a function of the request, e.g. for the simulated backend's benchmarks)."""
    url = settings.get("surrogateUrl")
    if url:
        return RemotePredictor(str(url), float(settings.get("surrogateTimeoutSeconds", 10.0)))
    state_dir = settings.get("surrogateStateDir")
    background = settings.get("surrogateBackgroundFits", False)
    if not isinstance(background, bool):
        raise ValueError(f"algorithm.settings.surrogateBackgroundFits: must be true or false, got {background!r}")
    return LocalPredictor(device=settings.get("surrogateDevice"),
                          state_dir=None if state_dir is None else str(state_dir),
                          background_fits=background)
