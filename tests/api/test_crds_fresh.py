"""crds/ and the chart's copy are exactly what the models generate."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwtune.api import crdgen

ROOT = Path(__file__).resolve().parents[2]
COPIES = [ROOT / "crds", ROOT / "charts" / "hwtune" / "crds"]


@pytest.mark.parametrize("copy", COPIES, ids=lambda p: str(p.relative_to(ROOT)))
def test_generated_manifests_are_fresh(copy: Path, tmp_path: Path) -> None:
    crdgen.write_all(tmp_path)
    want = {p.name: p.read_text() for p in tmp_path.glob("*.yaml")}
    have = {p.name: p.read_text() for p in copy.glob("hwtune.io_*.yaml")} if copy.is_dir() else {}
    stale = sorted(name for name in want.keys() | have.keys() if want.get(name) != have.get(name))
    assert not stale, (
        f"{copy.relative_to(ROOT)} is stale ({', '.join(stale)}): run hack/gen-crds.sh"
    )
