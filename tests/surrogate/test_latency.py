"""``hwtune surrogate latency`` in a tiny configuration: every mode is timed, the restarted store
reloads the saved fit (measure() raises otherwise), and the table prints the goal and the load."""

from __future__ import annotations

from hwtune.surrogate.latency import format_table, measure


def test_latency_table_in_small():
    results = measure((20,), repeats=2, cold_repeats=1,
                      settings={"fullFitSteps": 5, "refitSteps": 2, "freshCandidates": 4})
    row = results["sizes"][20]
    assert row["observations"] == 20 and len(row["warm"]["cpu"]) == 2 and len(row["cold"]["wall"]) == 1
    text = format_table(results)
    assert "< 1 s" in text and "load average" in text and "restart" in text
