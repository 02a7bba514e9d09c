"""The scale benchmark (benchmarks/scale.py) runs in CI at a small size and prints every row."""

import json

from hwtune.bench.scale import METHODS, main, run_one


def test_quick_scale_benchmark_prints_every_method_beside_its_targets(tmp_path, capsys):
    out = tmp_path / "scale.json"
    assert main(["--quick", "--sizes", "150", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for method in METHODS:
        assert method in printed
    assert "p99 < 5 ms" in printed and "rebuild < 10 s" in printed and "MISMATCHES" not in printed
    results = {r["method"]: r for r in json.loads(out.read_text())}
    assert set(results) == set(METHODS)
    for method in ("asha", "mo-asha", "mo-asha-promotion"):
        r = results[method]
        assert r["error"] == "" and r["trials"] == 150 and r["reports"] >= 150
        assert r["rebuild_mismatches"] == 0 and r["rebuild_s"] > 0
        assert 0 < r["p50_s"] <= r["p99_s"] and r["rung_records"] > 100
    assert results["syne-tune-moasha"]["trials"] == 150


def test_mo_asha_stops_trials_and_promotion_pauses_them():
    stopping = run_one("mo-asha", 120, rebuild=False)
    promotion = run_one("mo-asha-promotion", 120, rebuild=False)
    # Successive halving at work: far fewer reports than 120 trials x 9 epochs.
    assert 120 < stopping.reports < 120 * 9 / 2
    assert 120 < promotion.reports < 120 * 9 / 2
