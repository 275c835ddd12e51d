"""The installed package holds the library and one app; the research code
lives outside it (research/ in the checkout), and the library never imports
the app."""

import ast
from pathlib import Path

import tripletcore as tc

PKG = Path(tc.__file__).parent


def test_package_holds_library_and_app_but_no_research():
    subpackages = {p.parent.name for p in PKG.glob("*/__init__.py")}
    assert subpackages == {"app", "theory", "torch"}, subpackages
    modules = {p.stem for p in PKG.glob("*.py")}
    assert {"dask", "sampling", "geometry", "mining"} <= modules
    for gone in ("experiments", "demo", "cli", "analysis", "analysis_plots", "theory"):
        assert gone not in modules, gone  # theory is a subpackage now
    assert {"_ts_lp", "_thickness_nd"}.isdisjoint(modules)
    app = {p.stem for p in (PKG / "app").glob("*.py")}
    assert {"cli", "demo", "analysis", "analysis_plots"} <= app
    theory = {p.stem for p in (PKG / "theory").glob("*.py")}
    assert {"separation", "lp", "_thickness"} <= theory
    everything = [p.relative_to(PKG).as_posix() for p in PKG.rglob("*")]
    assert not [p for p in everything if "research" in p or "experiment" in p]


def imported_modules(path, package):
    """Absolute names of the modules a file imports (``from a import b`` gives
    both ``a`` and ``a.b``); ``package`` resolves relative imports."""
    tree = ast.parse(path.read_text(), str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def test_import_checker_sees_relative_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("from .app import cli\nfrom ..app.demo import run_demo\nimport research.paper\n")
    got = imported_modules(f, "tripletcore.theory")
    assert "tripletcore.theory.app.cli" in got and "tripletcore.app.demo" in got
    assert "research.paper" in got
    got = imported_modules(f, "tripletcore")
    assert "tripletcore.app" in got and "tripletcore.app.cli" in got


def test_library_modules_do_not_import_the_app_or_research():
    checked = []
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        if parts[1] in ("app", "__main__"):
            continue  # the app itself, and `python -m tripletcore`
        package = ".".join(parts[:-1])  # what `from .` means in this file
        bad = {
            m
            for m in imported_modules(path, package)
            if m.startswith(("tripletcore.app", "research"))
        }
        assert not bad, f"{path.relative_to(PKG)} imports {sorted(bad)}"
        checked.append(parts)
    assert len(checked) >= 25
    assert ("tripletcore", "theory", "separation") in checked


def test_theory_is_public_and_thickness_stays_at_the_top():
    import tripletcore.theory as theory

    assert theory.thickness is tc.thickness and theory.Thickness is tc.Thickness
    for name in (
        "ts_distance_bounds",
        "nearest_triplet_separated",
        "iso_lower_bound_lp",
        "iso_distance_line",
    ):
        assert callable(getattr(theory, name)), name
    assert set(theory.__all__) <= set(dir(theory))
    assert tc.pk_batch.__module__ == "tripletcore.sampling"
