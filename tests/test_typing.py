"""The type stubs match the compiled module, and the package type-checks."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


def test_stubs_match_the_extension_module():
    out = run("mypy.stubtest", "tripletcore._core")
    assert out.returncode == 0, out.stdout + out.stderr


def test_package_is_typed_and_passes_mypy_strict():
    import tripletcore

    pkg = Path(tripletcore.__file__).parent
    assert (pkg / "py.typed").exists()
    assert (pkg / "_core.pyi").exists()
    # By module name: a path inside site-packages would make mypy treat
    # site-packages itself as a source tree.
    out = run("mypy", "--strict", "-p", "tripletcore")
    assert out.returncode == 0, out.stdout + out.stderr
