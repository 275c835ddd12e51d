"""Release metadata: one version, the licence, and extras that match what the
tests and benches import. Reads the checkout (skipped in an installed sdist
that lacks a file)."""

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

import tripletcore as tc

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"

# import name -> the requirement that provides it (directly or as a dependency)
PROVIDERS = {
    "sklearn": "scikit-learn",
    "pytorch_metric_learning": "pytorch-metric-learning",
    "faiss": "faiss-cpu",
    "distributed": "dask",
    "threadpoolctl": "scikit-learn",  # a dependency of scikit-learn
    "triton": "torch",  # torch's Linux wheels depend on triton
}
LOCAL = {"tripletcore", "research", "oracle", "strategies", "tests", "common"}


def load(path: Path) -> dict:
    if not path.exists():
        pytest.skip(f"{path.name} is not in this tree")
    return tomllib.loads(path.read_text())


def requirement_names(reqs: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower() for r in reqs}


def third_party_imports(folder: Path) -> set[str]:
    stdlib = set(sys.stdlib_module_names)
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            elif (  # pytest.importorskip("name")
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "importorskip"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                names = [node.args[0].value]
            else:
                continue
            found.update(n.split(".")[0] for n in names)
    return {m for m in found if m not in stdlib and m not in LOCAL and not m.startswith("_")}


def test_version_has_one_source():
    cargo = load(ROOT / "Cargo.toml")
    assert tc.__version__ == cargo["workspace"]["package"]["version"]
    assert "version" in load(PYPROJECT)["project"]["dynamic"]
    try:
        installed = metadata.version("tripletcore")
    except metadata.PackageNotFoundError:
        return
    assert installed == tc.__version__


def test_licence_is_declared_and_shipped():
    project = load(PYPROJECT)["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "the tripletcore developers" in text
    assert "Typing :: Typed" in project["classifiers"]


@pytest.mark.parametrize(
    ("extra", "folders"),
    [("test", ["tests", "research"]), ("bench", ["benches"])],
)
def test_extras_hold_every_peer_imported(extra, folders):
    project = load(PYPROJECT)["project"]
    have = requirement_names(project["optional-dependencies"][extra])
    have |= requirement_names(project["dependencies"])
    imported = set().union(*(third_party_imports(ROOT / f) for f in folders))
    missing = {m for m in imported if PROVIDERS.get(m, m).lower() not in have}
    assert not missing, f"imported but not in [{extra}]: {sorted(missing)}"
    assert "numpy" in imported  # the scan sees imports at all


def test_optional_layers_have_their_own_extras():
    extras = load(PYPROJECT)["project"]["optional-dependencies"]
    assert requirement_names(extras["torch"]) == {"torch"}
    assert requirement_names(extras["dask"]) == {"dask"}
    assert requirement_names(extras["plot"]) == {"matplotlib"}
    assert requirement_names(extras["theory"]) == {"scipy"}
    assert {"ruff", "mypy", "maturin", "ziglang", "auditwheel"} <= requirement_names(extras["dev"])
