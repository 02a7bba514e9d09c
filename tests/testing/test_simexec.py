"""The exec mode's pieces that need no cluster: Kubernetes' $(VAR) expansion, the container's
environment, and the CRI log format that KWOK (crilogs) reads back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hwtune.testing.simexec import MAX_ENTRY, _CriLog, _exit_code, container_env, expand

CRI_LINE = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) (F|P) (.*)$")


def test_expand_follows_the_kubernetes_rules() -> None:
    env = {"A": "1", "B": "x y"}
    assert expand("--a=$(A) --b=$(B)", env) == "--a=1 --b=x y"
    assert expand("$(UNDEFINED) stays", env) == "$(UNDEFINED) stays"
    assert expand("$$(A) is escaped, $$ is a dollar", env) == "$(A) is escaped, $ is a dollar"
    assert expand("$A and $(A", env) == "$A and $(A"


def test_container_env_expands_in_order_and_reads_fields() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u",
                        "labels": {"hwtune.io/trial": "3"}},
           "spec": {"nodeName": "kwok-t4-0"}}
    container = {"env": [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "$(A)-$(C)"},  # C comes later: left as written
        {"name": "C", "value": "3"},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "TRIAL", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.labels['hwtune.io/trial']"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]}
    assert container_env(pod, container) == {"A": "1", "B": "1-$(C)", "C": "3", "POD": "p",
                                              "TRIAL": "3", "NODE": "kwok-t4-0"}
    with pytest.raises(ValueError, match="resourceFieldRef"):
        container_env(pod, {"env": [{"name": "X", "valueFrom": {"resourceFieldRef": {}}}]})


def test_cri_log_lines_split_and_flush_like_a_kubelet(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    log = _CriLog(path)
    log.write("stdout", b"epoch=1 loss=0.5\nepoch=2 ")
    log.write("stderr", b"warning\n")
    log.write("stdout", b"loss=0.4\n" + b"x" * (MAX_ENTRY + 5) + b"\nlast")
    log.close()
    entries = [CRI_LINE.match(line).groups() for line in path.read_bytes().splitlines()]
    assert entries == [
        (b"stdout", b"F", b"epoch=1 loss=0.5"),
        (b"stderr", b"F", b"warning"),
        (b"stdout", b"F", b"epoch=2 loss=0.4"),
        (b"stdout", b"P", b"x" * MAX_ENTRY),
        (b"stdout", b"F", b"x" * 5),
        (b"stdout", b"F", b"last"),  # no newline at the end: flushed when the process ends
    ]


def test_exit_codes_are_what_a_container_runtime_reports() -> None:
    assert [_exit_code(c) for c in (0, 3, -15, -9)] == [0, 3, 143, 137]
