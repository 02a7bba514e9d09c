"""Hardware model: catalog, choices, runtime, memory fit and cost, checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hwtune.api.records import Hardware
from hwtune.optimize.hardware import (
    DEFAULT_CATALOG,
    DEFAULT_POOL,
    HardwareModel,
    HardwareSpace,
    OutOfMemory,
    PoolSpec,
    catalog_from_specs,
    resolve_hardware,
)
from hwtune.space import SpecError


def test_default_catalog():
    assert set(DEFAULT_CATALOG) == {"t4", "a100", "h100", "cpu"}
    t4, a100, h100 = DEFAULT_CATALOG["t4"], DEFAULT_CATALOG["a100"], DEFAULT_CATALOG["h100"]
    assert (t4.gpus_per_node, t4.gpu_memory_gib, t4.price_per_gpu_hour, t4.relative_throughput) == (1, 16, 0.53, 1.0)
    assert (a100.gpus_per_node, a100.gpu_memory_gib, a100.price_per_gpu_hour) == (8, 80, 4.10)
    assert (h100.gpus_per_node, h100.price_per_gpu_hour) == (8, 6.88)
    # Faster hardware is cheaper per unit of work than its price alone suggests, but not free.
    assert t4.relative_throughput < a100.relative_throughput < h100.relative_throughput


def test_runtime_scales_with_throughput_and_gpu_count():
    model = HardwareModel(DEFAULT_CATALOG, scaling_efficiency=0.9)
    # a100 x4: 4.0 * 4 * 0.9**2 = 12.96
    assert model.speedup(Hardware("a100", 4)) == pytest.approx(12.96)
    assert model.runtime(129.6, Hardware("a100", 4)) == pytest.approx(10.0)
    # h100 x8: 7 * 8 * 0.9**3 = 40.824
    assert model.runtime(408.24, Hardware("h100", 8)) == pytest.approx(10.0)
    assert model.runtime(100.0, Hardware("t4", 1)) == pytest.approx(100.0)
    assert model.runtime(100.0, None) == pytest.approx(100.0)  # the reference device
    perfect = HardwareModel(DEFAULT_CATALOG, scaling_efficiency=1.0)
    assert perfect.speedup(Hardware("a100", 8)) == pytest.approx(32.0)


def test_cost_per_gpu_hour_and_per_node_hour():
    model = HardwareModel(DEFAULT_CATALOG)
    # One hour on 4 A100s at $4.10 per GPU-hour.
    assert model.cost(3600.0, Hardware("a100", 4)) == pytest.approx(16.40)
    assert model.cost(1800.0, Hardware("t4", 1)) == pytest.approx(0.265)
    assert model.gpu_hours(1800.0, Hardware("a100", 4)) == pytest.approx(2.0)
    assert model.cost(3600.0, None) == 0.0  # no hardware dimension: the free reference pool
    node_priced = PoolSpec(gpu_type="v100", gpu_memory_gib=32, gpus_per_node=4, price_per_node_hour=12.0)
    # 6 GPUs need 2 whole nodes; 3 GPUs hold one node.
    assert node_priced.price_per_hour(6) == 24.0
    assert node_priced.price_per_hour(3) == 12.0
    m2 = HardwareModel({"v100": node_priced})
    assert m2.cost(900.0, Hardware("v100", 3)) == pytest.approx(3.0)


def test_memory_fit_and_oom():
    model = HardwareModel(DEFAULT_CATALOG)
    assert not model.fits(Hardware("t4", 1), 20.0)
    assert model.fits(Hardware("a100", 1), 20.0)
    # Data parallel: 100 GiB of activations over 2 GPUs is 50 GiB each, fits 80 GiB.
    assert model.fits(Hardware("a100", 2), 100.0) and not model.fits(Hardware("a100", 1), 100.0)
    with pytest.raises(OutOfMemory) as info:
        model.runtime(10.0, Hardware("t4", 1), memory_gib_needed=20.0)
    assert "20 GiB per GPU on t4x1" in str(info.value) and "16 GiB" in str(info.value)
    estimating = HardwareModel(DEFAULT_CATALOG, per_sample_memory_gib=0.05, fixed_memory_gib=2.0)
    assert estimating.estimate_memory_gib(256) == pytest.approx(14.8)
    assert estimating.runtime(10.0, Hardware("t4", 1), batch_size=256) == 10.0
    with pytest.raises(OutOfMemory):
        estimating.runtime(10.0, Hardware("t4", 1), batch_size=512)  # 27.6 GiB


def test_choices_drop_counts_above_gpus_per_node():
    space, model = resolve_hardware({"pools": ["t4", "a100"], "gpuCounts": [1, 2, 8, 16]})
    assert list(space) == [Hardware("t4", 1), Hardware("a100", 1), Hardware("a100", 2), Hardware("a100", 8)]
    assert space.pools == ("t4", "a100")
    assert model.scaling_efficiency == 0.9
    assert space.encode(Hardware("a100", 2)).tolist() == [0, 0, 1, 0]
    rng = np.random.default_rng(0)
    assert {space.sample(rng) for _ in range(200)} == set(space)


def test_omitted_hardware_means_no_dimension():
    space, model = resolve_hardware(None)
    assert len(space) == 0 and space.sample(np.random.default_rng(0)) is None
    assert model.pool(None) is model.pools[DEFAULT_POOL]


def test_all_pools_when_pools_omitted_and_overrides():
    space, model = resolve_hardware({"overrides": {"a100": {"pricePerGPUHour": 3.0, "relativeThroughput": 2.5}},
                                     "scalingEfficiency": 0.8})
    assert space.pools == tuple(DEFAULT_CATALOG)
    assert model.pool(Hardware("a100")).price_per_gpu_hour == 3.0
    assert model.speedup(Hardware("a100", 1)) == 2.5
    assert DEFAULT_CATALOG["a100"].price_per_gpu_hour == 4.10  # the catalog is untouched
    _, m2 = resolve_hardware({"overrides": {"t4": {"pricePerNodeHour": 1.0}}})
    assert m2.pool(Hardware("t4")).price_per_gpu_hour is None


@pytest.mark.parametrize(
    ("spec", "path", "words"),
    [
        ({"pools": ["t4", "v100"]}, "spec.hardware.pools[1]", "unknown pool 'v100'"),
        ({"pools": ["t4"], "gpuCounts": [2, 4]}, "spec.hardware.gpuCounts", "no (pool, GPU count) choice remains"),
        ({"gpuCounts": [0]}, "spec.hardware.gpuCounts[0]", "integer >= 1"),
        ({"gpuCounts": [1, 1]}, "spec.hardware.gpuCounts", "unique"),
        ({"scalingEfficiency": 1.5}, "spec.hardware.scalingEfficiency", "(0, 1]"),
        ({"overrides": {"tpu": {"pricePerGPUHour": 1}}}, "spec.hardware.overrides[tpu]", "unknown pool"),
        ({"overrides": {"t4": {"relativeThroughput": 0}}}, "spec.hardware.overrides[t4].relativeThroughput", "> 0"),
        ({"overrides": {"t4": {"speed": 2}}}, "spec.hardware.overrides[t4].speed", "unknown field"),
        ({"pool": ["t4"]}, "spec.hardware.pool", "unknown field"),
    ],
)
def test_bad_hardware_blocks_name_the_field(spec, path, words):
    with pytest.raises(SpecError) as info:
        resolve_hardware(spec)
    assert info.value.path == path and words in info.value.reason, info.value


def test_pool_spec_round_trip_and_errors():
    spec = {"gpuType": "nvidia-a100-80gb", "gpuMemoryGiB": 80, "gpusPerNode": 8, "pricePerGPUHour": 4.1,
            "nodeSelector": {"node.kubernetes.io/instance-type": "p4de.24xlarge"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}
    pool = PoolSpec.from_spec(spec)
    assert pool.to_spec() == {**spec, "relativeThroughput": 1.0}
    assert catalog_from_specs({"a100": spec})["a100"] == pool
    for bad, path in [
        ({**spec, "pricePerNodeHour": 30.0}, "pools[x].pricePerGPUHour"),
        ({k: v for k, v in spec.items() if k != "pricePerGPUHour"}, "pools[x].pricePerGPUHour"),
        ({**spec, "gpuMemoryGiB": 0}, "pools[x].gpuMemoryGiB"),
        ({**spec, "gpusPerNode": 0}, "pools[x].gpusPerNode"),
        ({**spec, "maxNodes": 1.5}, "pools[x].maxNodes"),
        ({k: v for k, v in spec.items() if k != "gpuType"}, "pools[x].gpuType"),
    ]:
        with pytest.raises(SpecError) as info:
            catalog_from_specs({"x": bad})
        assert info.value.path == path, info.value


def test_hardware_space_refuses_duplicates():
    with pytest.raises(ValueError):
        HardwareSpace([Hardware("t4"), Hardware("t4")])
    assert math.isinf(HardwareModel({}).pool(None).gpu_memory_gib)
