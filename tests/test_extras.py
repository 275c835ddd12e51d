"""A missing optional dependency fails with an ImportError that names the
extra installing it. Each case runs in a fresh interpreter in which the peer
is made unimportable (``sys.modules[name] = None``)."""

import subprocess
import sys
import textwrap

import pytest


def run_without(blocked: tuple[str, ...], code: str) -> str:
    """Run ``code`` with ``blocked`` unimportable; return the ImportError's
    message (the code must raise one)."""
    body = textwrap.indent(textwrap.dedent(code).strip(), "    ")
    script = "\n".join(
        [
            "import sys",
            f"for name in {blocked!r}:",
            "    sys.modules[name] = None",
            "try:",
            body,
            "except ImportError as exc:",
            "    print('IMPORTERROR:', exc)",
            "else:",
            "    print('NO ERROR')",
        ]
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("blocked", "code", "message"),
    [
        (
            ("torch",),
            "import tripletcore.torch",
            "tripletcore.torch needs PyTorch: pip install 'tripletcore[torch]'",
        ),
        (
            ("dask", "dask.array"),
            "import tripletcore.dask",
            "tripletcore.dask needs Dask: pip install 'tripletcore[dask]'",
        ),
        (
            ("scipy", "scipy.optimize", "scipy.sparse"),
            """
            import numpy as np
            from tripletcore.theory import iso_lower_bound_lp
            iso_lower_bound_lp(np.eye(4), np.array([0, 0, 1, 1]))
            """,
            "tripletcore.theory.lp needs SciPy: pip install 'tripletcore[theory]'",
        ),
    ],
    ids=["torch", "dask", "scipy"],
)
def test_missing_peer_names_its_extra(blocked, code, message):
    assert run_without(blocked, code) == f"IMPORTERROR: {message}"


def test_the_numpy_core_needs_none_of_them():
    code = """
    import numpy as np
    import tripletcore as tc
    import tripletcore.theory
    tc.batch_hard(np.eye(4), np.array([0, 0, 1, 1]))
    """
    blocked = ("torch", "dask", "scipy", "matplotlib", "sklearn")
    assert run_without(blocked, code) == "NO ERROR"


def test_plots_without_matplotlib_name_the_plot_extra(tmp_path):
    code = f"""
    import numpy as np
    from pathlib import Path
    from tripletcore.app.analysis_plots import write_plots
    try:
        write_plots(np.eye(4), np.array([0, 0, 1, 1]), {{}}, Path({str(tmp_path)!r}))
    except ValueError as exc:  # the CLI reports ValueErrors as usage errors
        print("IMPORTERROR:", exc)
        raise SystemExit(0)
    """
    got = run_without(("matplotlib", "matplotlib.figure"), code)
    assert got == "IMPORTERROR: --plots needs matplotlib: pip install 'tripletcore[plot]'"
