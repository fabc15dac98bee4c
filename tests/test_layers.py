"""The package's shape, machine-checked: the layers contract (``.importlinter``) and small files."""

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 400


def _lint_imports() -> str:
    exe = Path(sys.executable).with_name("lint-imports")
    if exe.exists():
        return str(exe)
    found = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert found, "lint-imports (import-linter) is not installed next to this Python: pip install import-linter"
    return found


def test_layers_contract_holds():
    res = subprocess.run([_lint_imports(), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "BROKEN" not in res.stdout and "KEPT" in res.stdout


def test_no_package_file_is_longer_than_400_lines():
    long = {}
    for path in sorted((REPO / "polymodal").rglob("*.py")):
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_LINES:
            long[str(path.relative_to(REPO))] = n
    assert not long, f"files over {MAX_LINES} lines (split them by job): {long}"
