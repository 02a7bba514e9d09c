"""optuna-gp and the layering rule (only hwtune.surrogate imports torch): hwtune never imports
torch for it; Optuna's GP sampler does, lazily, when it first fits its model. Without torch the
study is refused up front with what to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("optuna")

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = textwrap.dedent("""\
    import copy, sys
    sys.path.insert(0, {engine!r})
    from engine_helpers import BASE_SPEC
    from hwtune.engine import Study, StudyConfig
    spec = copy.deepcopy(BASE_SPEC)
    spec["objectives"] = [{{"metric": "val_error"}}]
    spec["algorithm"] = {{"scheduler": "fifo", "searcher": "optuna-gp", "seed": 1,
                         "settings": {{"optunaStartupTrials": 3}}}}
    spec["budget"] = {{"maxTrials": 10, "maxParallelTrials": 1}}
    config = StudyConfig.from_spec(spec)
    config.check_algorithm()
    study = Study(config)
    for i in range(3):  # the startup trials: random, no model
        start = study.start_next()
        study.trial_running(start.trial.trial_id)
        study.report(start.trial.trial_id, 1, {{"val_error": 0.5 - 0.1 * i}})
        study.complete_trial(start.trial.trial_id)
    print("after-startup", "torch" in sys.modules)
    study.start_next()  # the first model-based suggestion: Optuna imports torch now
    print("after-model", "torch" in sys.modules)
    """)


def run(code: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *extra, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def test_hwtune_never_imports_torch_for_optuna_gp() -> None:
    pytest.importorskip("torch")
    result = run(PROGRAM.format(engine=str(ROOT / "tests" / "engine")))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "after-startup False" in result.stdout, result.stdout
    assert "after-model True" in result.stdout, result.stdout


def test_optuna_gp_without_torch_is_refused_with_what_to_install(tmp_path: Path) -> None:
    # A torch that cannot be found: a meta-path finder that hides it.
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent("""\
        import sys
        class _NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ModuleNotFoundError("No module named 'torch'")
                return None
        sys.meta_path.insert(0, _NoTorch())
        """))
    code = ("import sys; sys.path.insert(0, %r)\n" % str(tmp_path)) + "import sitecustomize\n" \
        + PROGRAM.format(engine=str(ROOT / "tests" / "engine"))
    result = run(code)
    assert result.returncode != 0
    assert "optuna-gp needs torch" in result.stderr, result.stderr[-3000:]
    assert "spec.algorithm" in result.stderr, result.stderr[-3000:]
