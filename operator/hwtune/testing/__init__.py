"""Test and demo support: the local Kubernetes cluster and its simulated GPU node pools.

See :mod:`hwtune.testing.cluster` (start/stop/attach, kubectl, waiting) and
:mod:`hwtune.testing.nodes` (the node pools of ``hack/cluster/nodes.yaml``). The package
does not import ``nodes`` itself, so ``python -m hwtune.testing.nodes`` runs cleanly. Nothing
here imports the kubernetes client: kubectl does the talking, so the module stays light.
"""

from hwtune.testing.cluster import (
    ATTACH_ENV,
    SIM_DURATION,
    SIM_EXIT_CODE,
    SIM_OUTCOME,
    SIM_START_DELAY,
    ClusterUnavailable,
    KubectlError,
    LocalCluster,
    wait_for,
)

__all__ = [
    "ATTACH_ENV",
    "SIM_DURATION",
    "SIM_EXIT_CODE",
    "SIM_OUTCOME",
    "SIM_START_DELAY",
    "ClusterUnavailable",
    "KubectlError",
    "LocalCluster",
    "wait_for",
]
