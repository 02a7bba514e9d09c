"""``hwtune surrogate latency`` in a tiny configuration: every mode is timed, the restarted store
reloads the saved fit (measure() raises otherwise), and the table prints the goal and the load."""

from __future__ import annotations

from hwtune.surrogate.latency import format_table, measure


def test_latency_table_in_small():
    results = measure((20,), repeats=2, cold_repeats=1, sync_cold=True,
                      settings={"fullFitSteps": 5, "refitSteps": 2, "freshCandidates": 4})
    row = results["sizes"][20]
    assert row["observations"] == 20 and len(row["warm"]["cpu"]) == 2 and len(row["cold"]["wall"]) == 1
    # What answered each mode: the background fit's stand-ins, then the full fit.
    assert row["cold"]["from"] == [f"quick ({row['fullFitPoints']} pts)"]
    assert row["during"]["from"][0].startswith("quick")
    assert row["grown"]["from"] == [f"previous ({row['fullFitPoints'] // 2} pts)"]
    assert row["warm"]["from"] == ["full fit"] * 2 and row["restart"]["from"] == ["saved fit"] * 2
    assert row["cold-sync"]["from"] == ["fitted now"] and len(row["fullFitReady"]) == 1
    text = format_table(results)
    assert "< 1 s" in text and "load average" in text and "restart" in text
    assert "background full fit of" in text and "cold-sync" in text
