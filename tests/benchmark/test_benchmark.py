"""`mmer benchmark` end to end on the tiny engine-toy dataset: grid, skip, resume, failures, tables."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from mmer.benchmark.results import majority_reference, merge_reference_points
from mmer.benchmark.runner import BenchmarkSpec, tabulate
from mmer.benchmark.stats import paired_difference
from mmer.cli import main
from mmer.engine import rundir, trainer
from mmer.metrics import METRIC_KEYS
from tests.engine import toy_data

GRID = ["benchmark", "--models", "baseline,br", "--datasets", "engine-toy", "--seeds", "1,2", "--epochs", "1", "--set", "data.batch_size=16"]


class FitCalls:
    """Counts (and delegates) the engine's fit calls; optionally interrupts one run after its first epoch."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.calls: list[tuple[Path, bool]] = []
        self.original = trainer.fit
        monkeypatch.setattr(trainer, "fit", self)

    def __call__(self, cfg, run_dir, **kwargs):
        self.calls.append((Path(run_dir), bool(kwargs.get("resume"))))
        return self.original(cfg, run_dir, **kwargs)


def read_results(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((out / "results.csv").open()))


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "b"
    assert main([*GRID, "--out", str(out), "--compare", "baseline,br"]) == 0
    return out


def test_grid_writes_one_run_directory_and_one_result_row_per_run(bench):
    rows = read_results(bench)
    assert [(r["model"], r["seed"]) for r in rows] == [("baseline", "1"), ("br", "1"), ("baseline", "2"), ("br", "2")]
    for r in rows:
        run = bench / r["run_dir"]
        assert run == bench / "runs" / "engine-toy" / r["model"] / f"seed{r['seed']}" and rundir.is_complete(run)
        test = json.loads((run / rundir.METRICS).read_text())["test"]
        assert all(float(r[k]) == pytest.approx(test[k], abs=1e-6) for k in METRIC_KEYS)
        assert r["overrides"] == "data.batch_size=16" and float(r["peak_rss_mb"]) > 0 and float(r["train_seconds"]) >= 0
    assert int(rows[0]["parameters"]) > 0


def test_summary_reports_mean_and_sample_std_with_the_best_in_bold(bench):
    rows = [r for r in read_results(bench) if r["model"] == "baseline"]
    f1 = [float(r["micro_f1"]) for r in rows]
    summary = (bench / "summary.md").read_text()
    assert "ddof=1" in summary and "| Method | n | Acc | P | R | Micro-F1 |" in summary
    line = next(line for line in summary.splitlines() if line.startswith("| baseline |"))
    assert f"{np.mean(f1):.3f} ± {np.std(f1, ddof=1):.3f}" in line and line.split("|")[2].strip() == "2"
    best = max(("baseline", "br"), key=lambda m: np.mean([float(r["micro_f1"]) for r in read_results(bench) if r["model"] == m]))
    best_line = next(line for line in summary.splitlines() if line.startswith(f"| {best} |"))
    assert best_line.rstrip(" |").endswith("**")  # micro-F1 is the last column
    tex = (bench / "summary.tex").read_text()
    assert r"\begin{tabular}" in tex and r"\mathbf" in tex
    table_rows = list(csv.DictReader((bench / "summary.csv").open()))
    assert {r["row"] for r in table_rows} == {"baseline", "br"} and float(table_rows[0]["micro_f1_std"]) == pytest.approx(np.std(f1, ddof=1), abs=1e-6)


def test_paired_comparison_over_shared_seeds(bench):
    rows = read_results(bench)
    a = [float(r["micro_f1"]) for r in rows if r["model"] == "baseline"]
    b = [float(r["micro_f1"]) for r in rows if r["model"] == "br"]
    expected = paired_difference(a, b)
    comp = next(r for r in csv.DictReader((bench / "comparisons.csv").open()) if r["metric"] == "micro_f1")
    assert comp["seeds"] == "1 2" and comp["n"] == "2"
    assert float(comp["mean_diff"]) == pytest.approx(np.mean(np.array(a) - np.array(b)), abs=1e-6)
    assert float(comp["ci_low"]) == pytest.approx(expected.ci_low, abs=1e-6)
    assert "baseline − br" in (bench / "summary.md").read_text()


def test_rerun_skips_complete_runs_without_training(bench, monkeypatch, capsys):
    fits = FitCalls(monkeypatch)
    stamps = {p: p.stat().st_mtime_ns for p in bench.glob("runs/*/*/*/metrics.json")}
    assert main([*GRID, "--out", str(bench)]) == 0
    assert fits.calls == []
    assert {p: p.stat().st_mtime_ns for p in bench.glob("runs/*/*/*/metrics.json")} == stamps
    assert "4 complete" in capsys.readouterr().out


def test_tabulate_reads_the_finished_runs_without_training_or_writing(bench, monkeypatch):
    fits = FitCalls(monkeypatch)
    files = sorted(p for p in bench.rglob("*") if p.is_file())
    spec = BenchmarkSpec(out=bench, models=["br", "baseline"], datasets=["engine-toy"], seeds=[1, 2, 3], epochs=1, overrides=["data.batch_size=16"])
    result = tabulate(spec, {"engine-toy": {"always a": {"micro_f1": 0.25}}})
    assert fits.calls == [] and sorted(p for p in bench.rglob("*") if p.is_file()) == files  # seed 3 is not trained
    assert [(r["model"], r["seed"]) for r in result.results] == [("br", 1), ("baseline", 1), ("br", 2), ("baseline", 2)]
    assert {(r["model"], r["seed"], f"{r['micro_f1']:.6f}") for r in result.results} == {(r["model"], int(r["seed"]), r["micro_f1"]) for r in read_results(bench)}
    assert result.tables is not None
    main_table = result.tables.tables[0]
    assert [(r.label, r.reference) for r in main_table.rows] == [("br", False), ("baseline", False), ("always a (reference)", True)]
    assert "| *always a (reference)* | – | – | – | – | 0.250 |" in result.tables.sections["engine-toy"][0]


def test_majority_reference_predicts_the_most_frequent_training_label_everywhere():
    bundle = toy_data.load(None, None)
    train, test = bundle.splits["train"].labels, bundle.splits["test"].labels
    top = int(train.sum(0).argmax())
    reference = majority_reference(bundle)
    assert list(reference) == [f"majority label: {toy_data.LABELS[top]}"]
    metrics = reference[f"majority label: {toy_data.LABELS[top]}"]
    assert metrics["precision"] == pytest.approx(float(test[:, top].mean()))  # one prediction per sample
    assert metrics["recall"] == pytest.approx(float(test[:, top].sum() / test.sum()))
    assert set(metrics) == set(METRIC_KEYS)


def test_interrupted_grid_resumes_the_interrupted_run_only(tmp_path, monkeypatch):
    out = tmp_path / "b"
    grid = ["benchmark", "--models", "baseline", "--datasets", "engine-toy", "--seeds", "1,2", "--epochs", "2", "--set", "data.batch_size=16", "--out", str(out)]
    original_history = rundir.write_history

    def interrupt_seed2_in_epoch2(run_dir, rows):  # Ctrl-C while seed 2 finishes its second epoch
        if run_dir.name == "seed2" and len(rows) == 2:
            raise KeyboardInterrupt
        original_history(run_dir, rows)

    monkeypatch.setattr(rundir, "write_history", interrupt_seed2_in_epoch2)
    assert main(grid) == 130
    seed1, seed2 = out / "runs" / "engine-toy" / "baseline" / "seed1", out / "runs" / "engine-toy" / "baseline" / "seed2"
    assert rundir.is_complete(seed1) and (seed2 / rundir.LAST).is_file() and not rundir.is_complete(seed2)
    monkeypatch.setattr(rundir, "write_history", original_history)
    stamp = (seed1 / rundir.METRICS).stat().st_mtime_ns
    fits = FitCalls(monkeypatch)
    assert main(grid) == 0
    assert fits.calls == [(seed2, True)]  # only the interrupted run, continued from last.pt
    assert (seed1 / rundir.METRICS).stat().st_mtime_ns == stamp
    assert [r["epoch"] for r in csv.DictReader((seed2 / rundir.HISTORY).open())] == ["1", "2"]
    assert len(read_results(out)) == 2


def test_a_failing_run_is_reported_and_the_grid_goes_on(tmp_path, monkeypatch, capsys):
    out = tmp_path / "b"
    original = trainer.fit

    def fail_br(cfg, run_dir, **kwargs):
        if "br" in Path(run_dir).parts:
            raise RuntimeError("solver exploded")
        return original(cfg, run_dir, **kwargs)

    monkeypatch.setattr(trainer, "fit", fail_br)
    assert main([*GRID, "--seeds", "1", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "br on engine-toy, seed 1" in err and "RuntimeError: solver exploded" in err
    assert [r["model"] for r in read_results(out)] == ["baseline"]
    assert "Traceback" in (out / "benchmark.log").read_text()
    assert main([*GRID, "--seeds", "1", "--out", str(tmp_path / "c"), "--fail-fast", "--models", "br,baseline"]) == 1
    assert not (tmp_path / "c" / "runs" / "engine-toy" / "baseline").exists()  # stopped at the first failure


def test_changed_config_is_stale_not_silently_reused(tmp_path, capsys):
    out = tmp_path / "b"
    assert main([*GRID, "--out", str(out), "--models", "br", "--seeds", "1"]) == 0
    assert main([*GRID, "--epochs", "2", "--out", str(out), "--models", "br", "--seeds", "1"]) == 1
    assert "train.epochs 1 -> 2" in capsys.readouterr().err
    assert read_results(out) == []  # a run of another config is never tabulated


def test_directory_states_restart_and_blocked(tmp_path, monkeypatch, capsys):
    out = tmp_path / "b"
    partial = out / "runs" / "engine-toy" / "br" / "seed1"
    partial.mkdir(parents=True)
    (partial / rundir.LOG).write_text("stopped before the first checkpoint\n")
    blocked = out / "runs" / "engine-toy" / "br" / "seed2"
    blocked.mkdir(parents=True)
    (blocked / "notes.txt").write_text("mine")
    assert main(["benchmark", "--models", "br", "--datasets", "engine-toy", "--seeds", "1,2", "--out", str(out), "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "restart" in plan and "blocked" in plan
    assert main(["benchmark", "--models", "br", "--datasets", "engine-toy", "--seeds", "1,2", "--out", str(out)]) == 1
    assert rundir.is_complete(partial) and (blocked / "notes.txt").read_text() == "mine"
    assert "notes.txt" in capsys.readouterr().err


def test_ablation_file_produces_an_ablation_table(tmp_path):
    ablation = tmp_path / "baseline_tiny.yaml"
    ablation.write_text('"(1) narrow": [model.d_model=8, model.num_heads=2]\n"(2) full": []\n')
    out = tmp_path / "b"
    assert main(["benchmark", "--models", "baseline", "--datasets", "engine-toy", "--seeds", "1", "--epochs", "1", "--out", str(out), "--ablations", str(ablation)]) == 0
    assert rundir.is_complete(out / "runs" / "engine-toy" / "baseline__1-narrow" / "seed1")
    summary = (out / "summary.md").read_text()
    section = summary[summary.index("Ablation baseline_tiny on engine-toy") :]
    assert "| (1) narrow | 1 |" in section and "| (2) full | 1 |" in section
    rows = {r["entry"]: r for r in read_results(out)}
    assert rows["baseline__1-narrow"]["overrides"] == "model.d_model=8 model.num_heads=2"
    assert int(rows["baseline__1-narrow"]["parameters"]) < int(rows["baseline"]["parameters"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "model.no_such_key=1"], "unknown key 'model.no_such_key'"),
        (["--compare", "baseline,ramerr"], "'ramerr' is not a model or ablation variant"),
        (["--seeds", "1,x"], "--seeds must be comma-separated integers"),
        (["--models", "baseline,baseline"], "lists a value twice"),
        (["--root", "other=/tmp"], "not in --datasets"),
    ],
)
def test_bad_arguments_fail_before_anything_trains(tmp_path, monkeypatch, capsys, extra, message):
    fits = FitCalls(monkeypatch)
    assert main([*GRID, "--out", str(tmp_path / "b"), *extra]) == 2
    assert message in capsys.readouterr().err and fits.calls == []


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_dataset_that_reads_files_needs_its_root_before_anything_trains(tmp_path, monkeypatch, capsys, dry_run):
    """The grid's first run (engine-toy, built in) would train before the real dataset's missing folder showed up."""
    fits = FitCalls(monkeypatch)
    args = ["benchmark", "--models", "baseline", "--datasets", "engine-toy,music-emotions", "--seeds", "1", "--out", str(tmp_path / "b")]
    assert main([*args, *dry_run]) == 2
    assert "dataset 'music-emotions' reads files: give its data folder with --root music-emotions=DIR" in capsys.readouterr().err
    assert fits.calls == [] and not (tmp_path / "b").exists()


def test_option_added_after_a_run_keeps_the_run_unless_it_is_changed(tmp_path, capsys):
    """A saved config that lacks a key the code now has (a newer option) is still this grid's run when the key is
    at its default; setting the key to anything else makes the run stale."""
    out = tmp_path / "b"
    args = ["benchmark", "--models", "baseline", "--datasets", "engine-toy", "--seeds", "1", "--epochs", "1", "--out", str(out)]
    assert main(args) == 0
    saved = out / "runs" / "engine-toy" / "baseline" / "seed1" / rundir.CONFIG
    cfg = yaml.safe_load(saved.read_text())
    del cfg["model"]["dropout"]  # as if the run predates the option
    saved.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert main(args) == 0
    assert "complete, skipped" in capsys.readouterr().out
    assert main([*args, "--set", "model.dropout=0.2"]) == 1
    assert "model.dropout None -> 0.2" in capsys.readouterr().err


def test_reference_points_of_runs_are_merged_by_name():
    chance, ceiling, late = {"micro_f1": 0.27}, {"micro_f1": 0.785}, {"micro_f1": 0.764}
    old_run, new_run = {"chance": chance, "ceiling": ceiling}, {"chance": chance, "late_fusion": late, "ceiling": ceiling}
    # a run from before a reference existed does not hide it, nor the others
    assert merge_reference_points([old_run, new_run]) == new_run
    assert list(merge_reference_points([old_run, new_run])) == ["chance", "late_fusion", "ceiling"]
    assert merge_reference_points([]) == {}
    # the same name with different values means different data: no references at all
    assert merge_reference_points([old_run, {"chance": {"micro_f1": 0.30}}]) is None


def test_a_speed_or_memory_option_never_makes_a_run_stale(tmp_path, capsys):
    """Options marked RESOURCE_ONLY (train.release_memory, TAILOR's recompute_*, AMP's activation_checkpointing)
    change no computed value, so a run trained with another value of them is still this grid's run."""
    from mmer import config as cfglib

    out = tmp_path / "b"
    args = ["benchmark", "--models", "baseline", "--datasets", "engine-toy", "--seeds", "1", "--epochs", "1", "--out", str(out)]
    assert main([*args, "--set", "train.release_memory=true"]) == 0
    capsys.readouterr()
    assert main(args) == 0
    assert "complete, skipped" in capsys.readouterr().out
    tailor = cfglib.resolve("tailor", "synth-dyadic", None, [], {})
    amp = cfglib.resolve("amp", "synth-dyadic", None, [], {})
    assert {"model.recompute_cross", "model.recompute_unimodal", "train.release_memory"} <= cfglib.resource_only_keys(tailor)
    assert "model.activation_checkpointing" in cfglib.resource_only_keys(amp)
    assert "train.threads" not in cfglib.resource_only_keys(tailor)  # other thread counts reorder float sums


def test_extra_references_come_first_and_a_runs_stored_value_wins(tmp_path):
    """scripts/make_results.py passes the references the data code computes today: a name the runs stored keeps
    the runs' value (it describes the data they saw), the extra's order is the table's, new names are added."""
    out = tmp_path / "b"
    args = ["benchmark", "--models", "br", "--datasets", "synth-dyadic", "--seeds", "1", "--out", str(out)]
    assert main([*args, "--set", "data.options.size=tiny"]) == 0
    spec = BenchmarkSpec(out=out, models=["br"], datasets=["synth-dyadic"], seeds=[1], overrides=["data.options.size=tiny"])
    stored = tabulate(spec).tables.tables[0]
    stored_rows = {r.label: r.cells["micro_f1"].mean for r in stored.rows if r.reference}
    assert "ceiling (reference)" in stored_rows
    extra = {"new point": {"micro_f1": 0.5}, "ceiling": {"micro_f1": 0.0}}
    rows = [r for r in tabulate(spec, {"synth-dyadic": extra}).tables.tables[0].rows if r.reference]
    labels = [r.label for r in rows]
    assert labels[:2] == ["new point (reference)", "ceiling (reference)"]
    assert set(labels) == set(stored_rows) | {"new point (reference)"}
    assert rows[1].cells["micro_f1"].mean == stored_rows["ceiling (reference)"]  # the run's value, not 0.0


def test_a_run_saved_before_select_mode_auto_is_still_this_grids_run(tmp_path, capsys):
    """Runs saved `train.select_mode: max` (the old default); `auto` means the same for micro_f1, so such a run is
    complete, not stale. A run that selected on another metric stays stale."""
    out = tmp_path / "b"
    args = ["benchmark", "--models", "baseline", "--datasets", "engine-toy", "--seeds", "1", "--epochs", "1", "--out", str(out)]
    assert main(args) == 0
    saved = out / "runs" / "engine-toy" / "baseline" / "seed1" / rundir.CONFIG
    text = saved.read_text()
    assert "select_mode: auto" in text
    saved.write_text(text.replace("select_mode: auto", "select_mode: max"))
    capsys.readouterr()
    assert main(args) == 0
    assert "complete, skipped" in capsys.readouterr().out
    saved.write_text(text.replace("select_metric: micro_f1", "select_metric: hamming_loss"))
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "train.select_metric 'hamming_loss' -> 'micro_f1'" in err and "select_mode" not in err  # auto on both sides
