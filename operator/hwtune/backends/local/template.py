"""From a TuningStudy's ``trialTemplate`` (a pod template) to a local process.

The primary container (``primaryContainerName``, else the first; in ``spec`` or in
``job.template.spec``) is the trainer; the other containers do not run locally. Its ``command`` + ``args`` become the
argv, its ``env`` (``name``/``value`` pairs) is added to the caller's environment together with
the HWTUNE_* variables, and ``workingDir`` the process's cwd. ``$(VAR)`` in command and args is
expanded from that environment exactly like the kubelet does (``$$(VAR)`` stays literal,
unknown names stay as written), so ``args: ["--lr=$(HWTUNE_PARAM_LR)"]`` behaves the same
locally and in a cluster. ``image`` is ignored: the process runs on this machine, and a leading
``python``/``python3`` means the interpreter running hwtune, so the trainer sees the same
packages.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from hwtune.space.errors import SpecError

__all__ = ["ProcessTemplate", "expand_k8s_vars"]

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")
_PYTHON_NAMES = frozenset({"python", "python3", f"python3.{sys.version_info.minor}"})


def expand_k8s_vars(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion of command and args."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR.sub(replace, text)


@dataclass(frozen=True)
class ProcessTemplate:
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)  # the container's own env entries
    working_dir: str | None = None

    @classmethod
    def from_trial_template(cls, template: Mapping[str, Any] | None, *,
                            base_dir: str | None = None) -> "ProcessTemplate":
        """Parse the first container; errors name the field. A relative ``workingDir`` is taken
        relative to ``base_dir`` (the study file's directory)."""
        if not isinstance(template, Mapping):
            raise SpecError("spec.trialTemplate", "is required: the local backend runs its first "
                                             "container's command as a process")
        # A Job-level template (``job.template.spec``) or a bare pod spec (``spec``); the
        # trainer is the container named by primaryContainerName, else the first.
        job = template.get("job")
        if isinstance(job, Mapping):
            pod = job.get("template")
            spec = pod.get("spec") if isinstance(pod, Mapping) else None
            spec_path = "spec.trialTemplate.job.template.spec"
        else:
            spec = template.get("spec")
            spec_path = "spec.trialTemplate.spec"
        containers = spec.get("containers") if isinstance(spec, Mapping) else None
        if not isinstance(containers, Sequence) or not containers \
                or not all(isinstance(c, Mapping) for c in containers):
            raise SpecError(f"{spec_path}.containers", "needs at least one container")
        primary = template.get("primaryContainerName")
        index = 0 if primary is None else next(
            (i for i, c in enumerate(containers) if c.get("name") == primary), None)
        if index is None:
            raise SpecError("spec.trialTemplate.primaryContainerName",
                            f"names no container (have: {', '.join(str(c.get('name')) for c in containers)})")
        container = containers[index]
        container_path = f"{spec_path}.containers[{index}]"
        command = container.get("command") or []
        args = container.get("args") or []
        for name, value in (("command", command), ("args", args)):
            if not isinstance(value, Sequence) or isinstance(value, str) \
                    or not all(isinstance(v, (str, int, float)) for v in value):
                raise SpecError(f"{container_path}.{name}", "must be a list of strings")
        if not command:
            raise SpecError(f"{container_path}.command", "is required to run the trainer locally (there is "
                                                "no image entrypoint to fall back on)")
        argv = [str(v) for v in [*command, *args]]
        if argv[0] in _PYTHON_NAMES:
            argv[0] = sys.executable
        env: dict[str, str] = {}
        for i, entry in enumerate(container.get("env") or []):
            path = f"{container_path}.env[{i}]"
            if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
                raise SpecError(path, "must be a map with a name")
            if "valueFrom" in entry:
                raise SpecError(f"{path}.valueFrom", "is not supported by the local backend "
                                                     "(no Secrets or ConfigMaps); use value")
            env[entry["name"]] = str(entry.get("value", ""))
        working_dir = container.get("workingDir")
        if working_dir is not None:
            if not isinstance(working_dir, str) or not working_dir:
                raise SpecError(f"{container_path}.workingDir", "must be a non-empty path")
            if not os.path.isabs(working_dir) and base_dir is not None:
                working_dir = os.path.join(base_dir, working_dir)
        return cls(argv=tuple(argv), env=env, working_dir=working_dir)

    def build(self, base_env: Mapping[str, str], trial_env: Mapping[str, str]
              ) -> tuple[list[str], dict[str, str]]:
        """argv and environment of one launch: base (the caller's) < container env < HWTUNE_*."""
        env = {**base_env, **self.env, **trial_env}
        container_env = {**self.env, **trial_env}
        # The kubelet expands only from the container's declared env, not the node's.
        argv = [expand_k8s_vars(a, container_env) for a in self.argv]
        return argv, env
