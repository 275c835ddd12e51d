"""The command line's safety (issues 16 and 17): no silent overwrite, every
numeric flag range-checked by name before any work, clean errors for
unwritable folders, and the small report fixes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tripletcore.app import cli_checks, demo
from tripletcore.app.cli import build_parser, main

PNG = b"\x89PNG\r\n\x1a\n"


def save(tmp: Path, name: str, arr: np.ndarray) -> str:
    path = tmp / name
    np.save(path, arr)
    return str(path)


@pytest.fixture
def data(tmp_path: Path) -> list[str]:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 3))
    y = np.arange(40) % 4
    return [save(tmp_path, "x.npy", x), save(tmp_path, "y.npy", y)]


# ---------------------------------------------------------------- overwrite policy


def test_analyze_plots_never_overwrite_without_force(tmp_path, data, capsys):
    plots = tmp_path / "plots"
    plots.mkdir()
    (plots / "pca.png").write_bytes(b"mine")
    (plots / "notes.txt").write_text("keep me")
    args = ["analyze", *data, "--no-bounds", "--thickness", "off", "--plots", str(plots)]

    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"writing to '{tmp_path / 'plots-1'}'" in err and "--force" in err
    assert (plots / "pca.png").read_bytes() == b"mine"
    assert (plots / "notes.txt").read_text() == "keep me"
    assert (tmp_path / "plots-1" / "pca.png").read_bytes().startswith(PNG)

    assert main(args) == 0  # plots-1 is taken now
    assert "plots-2" in capsys.readouterr().err
    assert (tmp_path / "plots-2" / "gaps.png").read_bytes().startswith(PNG)

    assert main([*args, "--force"]) == 0
    assert capsys.readouterr().err == ""
    assert (plots / "pca.png").read_bytes().startswith(PNG)
    assert (plots / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "plots-3").exists()


def test_empty_or_new_folders_are_used_as_given(tmp_path, data, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    base = ["analyze", *data, "--no-bounds", "--thickness", "off", "--plots"]
    assert main([*base, str(empty)]) == 0
    assert main([*base, str(tmp_path / "new" / "deeper")]) == 0
    assert capsys.readouterr().err == ""
    assert (empty / "pca.png").exists() and (tmp_path / "new" / "deeper" / "pca.png").exists()


def test_demo_out_never_overwrites_without_force(tmp_path, monkeypatch, capsys):
    seen: list[Path] = []
    monkeypatch.setattr(demo, "run_demo", lambda cfg: seen.append(cfg.out))
    out = tmp_path / "report"
    out.mkdir()
    (out / "summary.md").write_text("an earlier run")
    assert main(["demo", "--out", str(out)]) == 0
    assert main(["demo", "--out", str(out), "--force"]) == 0
    assert seen == [tmp_path / "report-1", out]
    assert "report-1" in capsys.readouterr().err
    assert (out / "summary.md").read_text() == "an earlier run"  # nothing ran into it


def test_help_states_the_overwrite_policy():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices  # type: ignore[attr-defined]
    for command in ("demo", "analyze"):
        text = " ".join(sub[command].format_help().split())
        assert "--force" in text
        assert "DIR-1, DIR-2" in text


@pytest.mark.parametrize("kind", ["under a file", "in /proc"])
def test_unwritable_plots_folder_is_one_line_exit_2(tmp_path, data, capsys, kind):
    if kind == "under a file":
        (tmp_path / "file").write_text("x")
        target = tmp_path / "file" / "plots"
    else:
        target = Path("/proc/tripletcore-plots")
    assert main(["analyze", *data, "--no-bounds", "--plots", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tripletcore: error: --plots") and err.count("\n") == 1
    assert "Traceback" not in err


# ---------------------------------------------------------------- flag ranges


DEMO_BAD = [
    (["--threads", "100000"], "--threads"),
    (["--threads", "0"], "--threads"),
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**70)], "--seed"),
    (["--batch-size", str(10**9)], "--batch-size"),
    (["--batch-size", "2"], "--batch-size"),
    (["--embedding-dim", "0"], "--embedding-dim"),
    (["--embedding-dim", str(10**7)], "--embedding-dim"),
    (["--hidden", "0"], "--hidden"),
    (["--hidden", str(10**8)], "--hidden"),
    (["--epochs", "0"], "--epochs"),
    (["--epochs", str(10**12)], "--epochs"),
    (["--steps", "0"], "--steps"),
    (["--eval-every", "0"], "--eval-every"),
    (["--eval-every", "nan"], "--eval-every"),
    (["--lr", "0"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--margin", "-1"], "--margin"),
    (["--margin", "nan"], "--margin"),
]


@pytest.mark.parametrize(("argv", "flag"), DEMO_BAD)
def test_demo_flags_are_range_checked_by_name(tmp_path, capsys, argv, flag):
    out = tmp_path / "report"
    assert main(["demo", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tripletcore: error: {flag} must be"), err
    assert "got" in err
    assert not out.exists()  # refused before the folder is made


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--bounds-sample", "2"], "--bounds-sample"),
        (["--bounds-steps", "-1"], "--bounds-steps"),
        (["--bounds-steps", str(10**7)], "--bounds-steps"),
        (["--margin", "nan"], "--margin"),
        (["--margin", "-0.5"], "--margin"),
        (["--seed", "-1"], "--seed"),
        (["--seed", str(2**70)], "--seed"),
    ],
)
def test_analyze_flags_are_range_checked_by_name(data, capsys, argv, flag):
    assert main(["analyze", *data, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tripletcore: error: {flag} must be"), err


def test_huge_batch_fails_fast_as_a_user_runs_it(tmp_path):
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "tripletcore", "demo", "--batch-size", str(10**9)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert r.returncode == 2
    assert r.stderr.startswith("tripletcore: error: --batch-size must be")
    assert time.perf_counter() - t0 < 10
    assert not any(tmp_path.iterdir())


def test_batch_larger_than_the_training_set_is_refused(tmp_path, capsys):
    assert main(["demo", "--batch-size", "5000", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert re.match(r"tripletcore: error: --batch-size must be <= \d+ \(the training images\)", err)


def test_seed_range_accepts_its_ends():
    cli_checks.check_seed("--seed", 0)
    cli_checks.check_seed("--seed", 2**64 - 1)
    with pytest.raises(cli_checks.FlagError, match="--seed"):
        cli_checks.check_seed("--seed", 2**64)


# ---------------------------------------------------------------- help texts


def test_every_demo_and_analyze_option_has_help_and_shows_its_default():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices  # type: ignore[attr-defined]
    for command in ("demo", "analyze"):
        p = sub[command]
        text = " ".join(p.format_help().split())
        for action in p._actions:
            if action.dest == "help":
                continue
            assert action.help, f"{command} {action.option_strings} has no help"
            if action.default not in (None, False) and action.option_strings:
                shown = f"(default: {action.default})" in text or "default" in action.help
                assert shown, f"{command} {action.option_strings[0]} hides its default"


# ---------------------------------------------------------------- reports


def test_analyze_prints_the_at_margin_fraction_as_a_fraction(data, capsys):
    assert main(["analyze", *data, "--no-bounds", "--thickness", "off"]) == 0
    text = capsys.readouterr().out
    line = next(ln for ln in text.splitlines() if "at the margin" in ln)
    assert line.strip().startswith("fraction of anchors at the margin")
    assert re.search(r": \d\.\d{3} \(\d+\.\d%\)$", line), line


def test_bounds_report_progress_in_steps():
    from tripletcore.theory import ts_distance_bounds

    rng = np.random.default_rng(0)
    x = rng.standard_normal((14, 2))
    y = np.arange(14) % 3
    ticks: list[int] = []
    ts_distance_bounds(x, y, steps=37, seed=0, lp="off", progress=ticks.append)
    assert sum(ticks) == 4 * 37 and len(ticks) > 4


def test_analyze_shows_a_progress_bar_on_a_terminal(monkeypatch):
    tqdm = pytest.importorskip("tqdm")
    from tripletcore.app import analysis

    bars: list[tuple[int, int]] = []

    class Bar:
        def __init__(self, total: int, **kw: object) -> None:
            self.total, self.n = total, 0

        def update(self, k: int) -> None:
            self.n += k

        def close(self) -> None:
            bars.append((self.total, self.n))

    monkeypatch.setattr(tqdm, "tqdm", Bar)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((30, 2)), np.arange(30) % 3
    analysis.ts_bounds(x, y, sample=12, steps=20, seed=0, progress=True)
    analysis.ts_bounds(x, y, sample=12, steps=20, seed=0, progress=False)
    assert bars == [(80, 80)]


def test_pca_colour_bar_has_one_colour_per_label():
    pytest.importorskip("matplotlib")
    from tripletcore.app.analysis_plots import label_colours

    for k in (2, 7, 10, 13, 20, 45):
        cmap, norm = label_colours(k)
        assert cmap.N == k
        colours = [tuple(cmap(norm(code))) for code in range(k)]
        assert len(set(colours)) == k
        # a code's whole band on the colour bar is one colour
        for code in range(k):
            assert tuple(cmap(norm(code - 0.45))) == tuple(cmap(norm(code + 0.45)))


def test_demo_summary_states_the_whole_run_time(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    cfg = demo.DemoConfig(steps=2, eval_every=1000.0, out=tmp_path / "r", progress=False)
    result = demo.run_demo(cfg, say=lambda _: None)
    md = (tmp_path / "r" / "summary.md").read_text()
    total = json.loads((tmp_path / "r" / "summary.json").read_text())["seconds_total"]
    assert result.seconds_total > 0 and total == result.seconds_total
    assert f"the whole run {result.seconds_total:.1f} s" in " ".join(md.split())
    assert "the whole run 0.0 s" not in " ".join(md.split())


# ---------------------------------------------------------------- docs


def test_docs_local_cluster_example_has_a_main_guard():
    text = (Path(__file__).parent.parent / "docs" / "dask.md").read_text()
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        if "LocalCluster(" in block:
            assert 'if __name__ == "__main__":' in block
            guarded = block.split('if __name__ == "__main__":', 1)[1]
            assert "LocalCluster(" in guarded
