"""The transfer benchmark commands in their CI size (bundled tables: nothing is trained)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(script: str, tmp_path: Path, *args: str) -> str:
    env = {**os.environ, "HWTUNE_CACHE_DIR": str(tmp_path), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--quick", *args],
                            capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not any(tmp_path.glob("tables/*")), "the quick size must use the bundled tables"
    return result.stdout


def test_htaa_protocol_quick(tmp_path: Path) -> None:
    out = _run("transfer_htaa.py", tmp_path, "--json", str(tmp_path / "htaa.json"))
    assert "HT-AA protocol: 2 pairs, 3 seeds" in out and "paper: 1.2-3.6x" in out
    row = re.search(r"^\s+10\s+((?:[\d.]+x\s*){5})$", out, re.M)
    assert row, out
    speedups = [float(x) for x in re.findall(r"([\d.]+)x", row.group(1))]
    assert len(speedups) == 5 and all(s > 0 for s in speedups)
    assert (tmp_path / "htaa.json").exists()


def test_mo_transfer_quick(tmp_path: Path) -> None:
    out = _run("transfer_mo.py", tmp_path)
    assert out.count("=== target") == 2
    finals = re.findall(r"^(random|mo-asha|mo-asha\+transfer)\s+([\d.]+) ±", out, re.M)
    assert {m for m, _ in finals} == {"random", "mo-asha", "mo-asha+transfer"}
