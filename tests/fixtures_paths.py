"""The one place that says where the tests' fixture files live: ``tests/fixtures/`` inside the repository.

``ORACLES`` holds the reference-implementation numbers (JSON, see ``fixtures/oracles/README.md``); ``DATA`` holds
the small slices of public datasets the tests compare against (see ``fixtures/data/README.md`` and each
dataset's ``LICENSE.md``). Nothing here looks outside the repository, and nothing skips when a file is missing:
a missing fixture is a broken checkout and must fail the test that needs it.
"""

from __future__ import annotations

import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ORACLES = FIXTURES / "oracles"
DATA = FIXTURES / "data"


def load_oracle(name: str) -> dict:
    """``fixtures/oracles/<name>`` parsed; raises (never skips) when the file is absent."""
    path = ORACLES / name
    if not path.is_file():
        raise FileNotFoundError(f"oracle fixture missing: {path} (it ships with the repository under tests/fixtures)")
    return json.loads(path.read_text())
