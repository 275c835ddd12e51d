"""The research code type-checks (mypy --strict) against the installed library,
as it did while it lived inside the package."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_research_passes_mypy_strict():
    # -p by name from the checkout's root: tripletcore comes from where it is installed
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "-p", "research"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues found" in out.stdout
