"""The HWTUNE_* environment contract: what a backend writes is what the SDK reads."""

from __future__ import annotations

import pytest

from hwtune.api.records import Hardware
from hwtune.trainer.env import TrialEnv, TrialEnvError


def test_round_trip_through_the_environment():
    env = TrialEnv(trial_id="12", study="digits", params={"lr": 0.01, "optimizer": "sgd",
                                                          "layers": 3, "bn": True},
                   hardware=Hardware("a100", 4), resource_name="epoch", target_resource=3,
                   max_resource=9, resume=True, reported_resource=3,
                   report_url="http://127.0.0.1:4000", report_token="secret",
                   checkpoint_uri="/ckpt/12", report_retry_seconds=5.0)
    variables = env.to_env()
    assert all(k.startswith("HWTUNE_") and isinstance(v, str) for k, v in variables.items())
    assert variables["HWTUNE_PARAM_LR"] == "0.01"
    assert variables["HWTUNE_PARAM_OPTIMIZER"] == "sgd"
    assert variables["HWTUNE_PARAM_BN"] == "true"
    assert variables["HWTUNE_POOL"] == "a100" and variables["HWTUNE_GPU_COUNT"] == "4"
    assert TrialEnv.from_env(variables) == env


def test_defaults_describe_a_script_run_by_hand():
    env = TrialEnv.from_env({})
    assert env.trial_id == "0" and env.params == {} and env.hardware is None
    assert env.report_url is None and env.checkpoint_uri is None and not env.resume
    assert env.max_resource is None and env.reported_resource == 0


def test_token_from_a_mounted_file(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-secret\n")
    env = TrialEnv.from_env({"HWTUNE_REPORT_TOKEN_FILE": str(token_file)})
    assert env.report_token == "from-secret"
    env = TrialEnv.from_env({"HWTUNE_REPORT_TOKEN_FILE": str(token_file),
                             "HWTUNE_REPORT_TOKEN": "direct"})
    assert env.report_token == "direct"


@pytest.mark.parametrize(
    "variables, names",
    [
        ({"HWTUNE_PARAMS": "{lr: 1}"}, "HWTUNE_PARAMS"),
        ({"HWTUNE_PARAMS": "[1, 2]"}, "HWTUNE_PARAMS"),
        ({"HWTUNE_POOL": "t4", "HWTUNE_GPU_COUNT": "two"}, "HWTUNE_GPU_COUNT"),
        ({"HWTUNE_POOL": "t4", "HWTUNE_GPU_COUNT": "0"}, "HWTUNE_GPU_COUNT"),
        ({"HWTUNE_MAX_RESOURCE": "0"}, "HWTUNE_MAX_RESOURCE"),
        ({"HWTUNE_TARGET_RESOURCE": "5", "HWTUNE_MAX_RESOURCE": "3"}, "HWTUNE_TARGET_RESOURCE"),
        ({"HWTUNE_REPORT_RETRY_SECONDS": "soon"}, "HWTUNE_REPORT_RETRY_SECONDS"),
        ({"HWTUNE_REPORT_TOKEN_FILE": "/nonexistent/token"}, "HWTUNE_REPORT_TOKEN_FILE"),
    ],
)
def test_malformed_variables_name_themselves(variables, names):
    with pytest.raises(TrialEnvError, match=names):
        TrialEnv.from_env(variables)
