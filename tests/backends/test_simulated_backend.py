"""Simulated backend: the shared contract, determinism, hardware timing, OOM, pause/resume."""

from __future__ import annotations

import pytest

from hwtune.api.records import Hardware, TrialPhase
from hwtune.backends.simulated import (
    InMemoryTable,
    SimulatedBackend,
    TableProtocol,
    synthetic_table,
)
from hwtune.engine import EventKind, Study, StudyConfig, Tuner
from tests.contracts.backend_contract import CONTRACT_SPEC, BackendContract, ContractFIFO


def table_for(config: StudyConfig, *, memory_gib: float = 1.0, epoch_runtime: float = 100.0,
              noise: float = 0.01) -> InMemoryTable:
    rows = []
    for i, c in enumerate(config.space.grid(1)):
        rows.append({
            "config": c,
            "metrics": {"val_error": [0.5 / e + 0.01 * i for e in range(1, config.max_resource + 1)],
                        "train_loss": [1.0 / e for e in range(1, config.max_resource + 1)]},
            "epoch_runtime": epoch_runtime,
            "memory_gib": memory_gib,
        })
    return InMemoryTable(rows, seeds=(0, 1, 2), noise=noise)


class TestSimulatedBackendContract(BackendContract):
    def make_backend(self, config, tmp_path):
        return SimulatedBackend(table_for(config), config.hardware_model, n_workers=4)


def make(spec_changes=None, *, workers=4, seed=0, scheduler=None, table=None, **backend_kwargs):
    spec = {**CONTRACT_SPEC, **(spec_changes or {})}
    config = StudyConfig.from_spec(spec)
    backend = SimulatedBackend(table or table_for(config), config.hardware_model, n_workers=workers, seed=seed,
                               **backend_kwargs)
    study = Study(config, scheduler(config) if scheduler else ContractFIFO(config), clock=backend.clock)
    return config, backend, study


def test_in_memory_table_satisfies_the_protocol():
    config = StudyConfig.from_spec({"objectives": [{"metric": "val_error"}],
                                    "parameters": {"x": {"type": "int", "values": [1, 2]}}})
    assert isinstance(table_for(config), TableProtocol)
    assert isinstance(synthetic_table(config.space, 2, 3), TableProtocol)


def test_same_seeds_replay_identically_and_other_seeds_differ():
    def events(seed):
        _, backend, study = make({"budget": {"maxTrials": 8, "maxParallelTrials": 3}}, seed=seed)
        Tuner(study, backend).run()
        return [e.to_dict() for e in study.events]

    first, second = events(0), events(0)
    assert first == second
    assert events(1) != first  # trials replay other recorded seeds (the table has noise)


def test_epochs_take_reference_time_over_the_hardware_speedup():
    config, backend, study = make({"budget": {"maxTrials": 6, "maxParallelTrials": 2}}, workers=2)
    Tuner(study, backend).run()
    for trial in study.trials:
        per_epoch = 100.0 / config.hardware_model.speedup(trial.hardware)
        runtimes = [o.metrics["runtime"] for o in trial.observations]
        assert runtimes == pytest.approx([per_epoch * k for k in range(1, 5)])
        # a100x2: 100 s / (4.0 * 2 * 0.9) = 13.9 s per epoch
        if trial.hardware == Hardware("a100", 2):
            assert per_epoch == pytest.approx(13.888, rel=1e-3)
    # Workers run side by side: the clock ends well before the sum of all runtimes.
    total = sum(study.runtime_of(t.trial_id) for t in study.trials)
    assert backend.clock.now() < total


def test_out_of_memory_fails_the_trial_on_small_gpus():
    spec = {"hardware": {"pools": ["t4", "a100"], "gpuCounts": [1]}, "budget": {"maxTrials": 10, "maxParallelTrials": 2}}
    config = StudyConfig.from_spec({**CONTRACT_SPEC, **spec})
    _, backend, study = make(spec, table=table_for(config, memory_gib=40.0), startup_seconds=5.0)
    Tuner(study, backend).run()
    for trial in study.trials:
        if trial.hardware.pool == "t4":
            assert trial.phase is TrialPhase.FAILED and not trial.observations
            assert "out of memory: needs 40 GiB per GPU, t4x1 has 16 GiB" == trial.reason
            assert study.runtime_of(trial.trial_id) == 5.0  # the startup was paid for
        else:
            assert trial.phase is TrialPhase.COMPLETED


def test_capacity_caps_parallelism_below_the_budget():
    _, backend, study = make({"budget": {"maxTrials": 6, "maxParallelTrials": 6}}, workers=2)
    most = [0]
    study.add_listener(lambda e: most.__setitem__(0, max(most[0], len(backend.active_trial_ids()))))
    Tuner(study, backend).run()
    assert most[0] == 2 and len(study.trials) == 6


def test_promotion_resumes_continue_from_the_checkpoint():
    spec = {"fidelity": {"resource": "epoch", "min": 1, "max": 9, "reductionFactor": 3},
            "algorithm": {"scheduler": "asha-promotion", "seed": 4},
            "budget": {"maxTrials": 18, "maxParallelTrials": 3}}
    config = StudyConfig.from_spec({**CONTRACT_SPEC, **spec})
    backend = SimulatedBackend(table_for(config, noise=0.05), config.hardware_model, n_workers=3,
                               resume_seconds=7.0)
    study = Study(config, clock=backend.clock)
    Tuner(study, backend).run()
    resumed = {e.trial_id for e in study.events if e.kind is EventKind.RESUMED}
    assert resumed, "ASHA promotion should resume some paused trials"
    for trial in study.trials:
        levels = [o.resource for o in trial.observations]
        assert levels == list(range(1, len(levels) + 1)), (trial.trial_id, levels)
    for tid in resumed:
        trial = study.trial(tid)
        n_resumes = sum(1 for e in study.events if e.kind is EventKind.RESUMED and e.trial_id == tid)
        per_epoch = 100.0 / config.hardware_model.speedup(trial.hardware)
        # Runtime = its epochs + 7 s of checkpoint loading per resume: paused time is not billed.
        assert trial.observations[-1].metrics["runtime"] == pytest.approx(
            per_epoch * trial.last_resource + 7.0 * n_resumes)


def test_thousands_of_trials_per_second_scale():
    # A smoke check of the speed the benchmark measures (benchmarks/bench_simulator.py).
    spec = {"parameters": {"lr": {"type": "float", "min": 1e-4, "max": 1e-1, "scale": "log"},
                           "width": {"type": "int", "min": 8, "max": 512, "scale": "log"}},
            "fidelity": {"resource": "epoch", "min": 1, "max": 9, "reductionFactor": 3},
            "algorithm": {"scheduler": "asha", "seed": 0},
            "budget": {"maxTrials": 600, "maxParallelTrials": 8}}
    config = StudyConfig.from_spec({**CONTRACT_SPEC, **spec})
    table = synthetic_table(config.space, 200, 9)
    backend = SimulatedBackend(table, config.hardware_model, n_workers=8)
    scheduler = config.make_scheduler(config.make_searcher(candidates=table.configs()))
    study = Study(config, scheduler, clock=backend.clock)
    result = Tuner(study, backend).run()
    assert len(result.trials) == 600 and "maxTrials" in result.stop_reason
    assert result.summary.counts["Stopped"] > 300  # ASHA stops most trials early


def test_replays_the_benchmark_table_format():
    """hwtune.bench's BenchmarkTable (the recorded-training format) satisfies the protocol."""
    synthetic = pytest.importorskip("hwtune.bench.synthetic")
    table = synthetic.synthetic_table(n_configs=12, seeds=(0, 1), epochs=9)
    assert isinstance(table, TableProtocol)
    config = StudyConfig.from_spec({
        "objectives": [{"metric": "val_error"}, {"metric": "runtime"}, {"metric": "cost"}],
        "parameters": table.space_spec(),
        "hardware": {"pools": ["t4", "a100", "h100"], "gpuCounts": [1, 2]},
        "fidelity": table.fidelity_spec(),
        "algorithm": {"scheduler": "mo-asha", "seed": 1},
        "budget": {"maxTrials": 30, "maxParallelTrials": 4},
    })
    backend = SimulatedBackend(table, config.hardware_model, n_workers=4)
    study = Study(config, config.make_scheduler(config.make_searcher(candidates=table.configs())),
                  clock=backend.clock)
    result = Tuner(study, backend).run()
    assert len(result.trials) == 30 and result.front
    for trial in result.trials:
        for obs in trial.observations:
            expected = table.lookup(trial.config, obs.resource, backend._seeds[backend._seed_slot(trial.trial_id)])
            assert obs.metrics["val_error"] == expected["val_error"]
            assert "epoch_runtime" not in obs.metrics and "memory_gib" not in obs.metrics


def test_table_shorter_than_the_study_is_refused():
    config = StudyConfig.from_spec(CONTRACT_SPEC)
    longer = StudyConfig.from_spec({**CONTRACT_SPEC, "fidelity": {"min": 1, "max": 8}})
    backend = SimulatedBackend(table_for(config), config.hardware_model)
    with pytest.raises(ValueError, match="fidelity.max is 8 but the table only has 4 epochs"):
        Tuner(Study(longer, ContractFIFO(longer), clock=backend.clock), backend)
