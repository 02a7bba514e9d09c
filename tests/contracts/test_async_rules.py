"""Rules the package's asyncio code keeps, checked over its source."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "hwtune"


def test_no_asyncio_wait_for_in_the_package() -> None:
    """On Python 3.11 asyncio.wait_for drops a cancel that lands in the step its awaitable
    finishes; a loop built on it (the study log's writer was) then never stops. asyncio.timeout
    does not have that flaw."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\basyncio\.wait_for\(", line):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert not offenders, "use asyncio.timeout instead:\n" + "\n".join(offenders)
