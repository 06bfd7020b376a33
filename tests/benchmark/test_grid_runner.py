"""The benchmark grid's bookkeeping without (or with one tiny) training: directory states, the results.csv row of a
run, ablation directory names, per-dataset roots, argument checks and the summary files' columns.

Mutation audit round 6: each test here failed under a plausible bug that the rest of the suite let through.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

from mmer.benchmark import grid, summary
from mmer.benchmark.ablations import load_ablation_file
from mmer.benchmark.results import COLUMNS, collect_row, reference_points, results_csv
from mmer.benchmark.runner import BenchmarkSpec, run_benchmark
from mmer.engine import rundir
from mmer.errors import ConfigError
from mmer.metrics import METRIC_KEYS
from tests.engine import toy_data  # noqa: F401  (registers `engine-toy`)

TOY = dict(models=["baseline"], datasets=["engine-toy"], seeds=[1], overrides=("data.batch_size=16",))


def toy_run(out: Path, seed: int = 1) -> grid.PlannedRun:
    specs = grid.build_specs(TOY["models"], TOY["datasets"], [seed], TOY["overrides"])
    (planned,) = grid.plan(specs, out, epochs=1)
    return planned


# --------------------------------------------------------------------------------------- directory states


def test_a_run_stopped_before_its_first_checkpoint_restarts_from_scratch(tmp_path, monkeypatch):
    """The engine writes config.yaml and train.log before the first checkpoint: such a folder (both files, same
    config) is 'restart'; executing it removes them and trains a fresh run (not a resume) in the same folder."""
    from mmer.engine import trainer

    run = toy_run(tmp_path)
    run.run_dir.mkdir(parents=True)
    (run.run_dir / rundir.CONFIG).write_text(run.cfg.to_yaml())
    (run.run_dir / rundir.LOG).write_text("an old attempt that stopped while loading data\n")
    assert grid.inspect(run.run_dir, run.cfg) == ("restart", "")
    run = toy_run(tmp_path)
    assert run.status == "restart"
    calls = []

    def fit(cfg, run_dir, **kwargs):
        calls.append((cfg, run_dir, kwargs.get("resume", False), sorted(p.name for p in run_dir.iterdir())))
        return {"test": {"micro_f1": 0.5}}

    monkeypatch.setattr(trainer, "fit", fit)
    assert grid.execute(run) == {"test": {"micro_f1": 0.5}}
    assert calls == [(run.cfg, run.run_dir, False, [])]  # the same config, from scratch, in an emptied folder


def test_resume_and_blocked_states_and_what_the_blocked_message_names(tmp_path):
    run = toy_run(tmp_path)
    run.run_dir.mkdir(parents=True)
    (run.run_dir / rundir.CONFIG).write_text(run.cfg.to_yaml())
    (run.run_dir / rundir.LAST).write_bytes(b"checkpoint")
    assert grid.inspect(run.run_dir, run.cfg) == ("resume", "")
    (run.run_dir / rundir.LAST).unlink()
    (run.run_dir / "predictions_test.csv").write_text("id\n")
    status, problem = grid.inspect(run.run_dir, run.cfg)
    assert status == "blocked"
    assert str(run.run_dir) in problem and "config.yaml, predictions_test.csv" in problem and "no last.pt" in problem
    with pytest.raises(ValueError, match="cannot execute a run in state 'blocked'"):
        grid.execute(grid.PlannedRun(run.spec, run.run_dir, run.cfg, status, problem))


def test_a_hidden_file_blocks_a_run_the_engine_could_not_restart_in(tmp_path):
    """The engine refuses a folder holding any file, hidden ones too (.DS_Store, a leftover temporary file), so
    such a folder is 'blocked' with the file named, not planned as a restart that would then fail."""
    run = toy_run(tmp_path)
    run.run_dir.mkdir(parents=True)
    (run.run_dir / rundir.CONFIG).write_text(run.cfg.to_yaml())
    (run.run_dir / ".DS_Store").write_bytes(b"\0")
    status, problem = grid.inspect(run.run_dir, run.cfg)
    assert status == "blocked" and ".DS_Store, config.yaml" in problem


@pytest.mark.parametrize(("content", "problem"), [(b"train: [\n", "is not valid YAML"), (b"\xff\xfe", "is not UTF-8 text")])
def test_a_corrupt_run_config_is_one_error_naming_the_file(tmp_path, content, problem):
    run = toy_run(tmp_path)
    run.run_dir.mkdir(parents=True)
    (run.run_dir / rundir.CONFIG).write_bytes(content)
    with pytest.raises(ConfigError, match=rf"run config {run.run_dir / rundir.CONFIG} {problem}"):
        grid.inspect(run.run_dir, run.cfg)


def test_config_difference_shows_three_keys_and_counts_the_rest():
    saved = {"train": {"epochs": 1, "lr": 0.1, "seed": 1}, "model": {"d_model": 8, "dropout": 0.0}}
    wanted = {"train": {"epochs": 2, "lr": 0.2, "seed": 3}, "model": {"d_model": 16, "dropout": 0.5}}
    text = grid.config_difference(saved, wanted)
    assert text == "model.d_model 8 -> 16, model.dropout 0.0 -> 0.5, train.epochs 1 -> 2 and 2 more"
    assert grid.config_difference(saved, wanted, limit=4).endswith("train.lr 0.1 -> 0.2 and 1 more")
    assert grid.config_difference(saved, saved) == ""


# ------------------------------------------------------------------------------------------ planning


def test_a_root_given_for_a_dataset_reaches_that_datasets_runs(tmp_path):
    """`--root npz=DIR` must end up as data.root of every npz run (and only of those)."""
    specs = grid.build_specs(["baseline"], ["engine-toy", "npz"], [1])
    planned = grid.plan(specs, tmp_path / "out", roots={"npz": str(tmp_path / "mydata")})
    assert [(p.spec.dataset, p.cfg.data.root) for p in planned] == [("engine-toy", None), ("npz", str(tmp_path / "mydata"))]
    assert planned[1].run_dir == tmp_path / "out" / "runs" / "npz" / "baseline" / "seed1"


def test_two_ablation_files_cannot_give_one_directory_two_meanings(tmp_path):
    """Row names that slugify alike in two files would share run directories: an error naming both, unless the
    rows are the same overrides (then they share the runs)."""
    a, b, c = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"
    a.write_text("low lr: [train.lr=1e-5]\n")
    b.write_text("Low-LR: [train.lr=1e-2]\n")
    c.write_text("LOW LR: [train.lr=1e-5]\n")
    tables = [load_ablation_file(str(p)) for p in (a, b, c)]
    with pytest.raises(ConfigError) as info:
        grid.build_specs(["baseline"], ["engine-toy"], [1], [], tables[:2])
    text = str(info.value)
    assert str(b) in text and str(a) in text and "'low-lr'" in text and "rename one row" in text
    same = grid.build_specs(["baseline"], ["engine-toy"], [1], [], [tables[0], tables[2]])
    assert [s.entry for s in same] == ["baseline", "baseline__low-lr"]


def test_ablation_file_names_and_rows_without_overrides(tmp_path):
    """Only '<model>_...' names a model ('baseline.yaml' applies to every model); a row left empty in YAML (null)
    is the plain model, like '[]'."""
    path = tmp_path / "baseline.yaml"
    path.write_text('"(1) low lr": [train.lr=1e-5]\n"(2) full":\n')
    table = load_ablation_file(str(path))
    assert table.model is None and [(r.name, r.overrides) for r in table.rows] == [("(1) low lr", ("train.lr=1e-5",)), ("(2) full", ())]
    specs = grid.build_specs(["baseline", "br"], ["engine-toy"], [1], [], [table])
    assert [s.entry for s in specs] == ["baseline", "baseline__1-low-lr", "br", "br__1-low-lr"]


@pytest.mark.parametrize(
    ("change", "message"),
    [({"missing_repeats": 0}, "--missing-repeats must be >= 1, got 0"), ({"epochs": 0}, "--epochs must be >= 1, got 0")],
)
def test_zero_repeats_or_epochs_fail_before_anything_is_written(tmp_path, change, message):
    spec = BenchmarkSpec(out=tmp_path / "b", models=["baseline"], datasets=["engine-toy"], seeds=[1], **change)
    with pytest.raises(ConfigError, match=message):
        run_benchmark(spec, echo=lambda _: None)
    assert not (tmp_path / "b").exists()


# ------------------------------------------------------------------------------------------- results.csv


def fake_complete_run(out: Path, entry: str = "baseline", seed: int = 3) -> Path:
    """A finished run folder as the engine leaves it, with hand-picked numbers; resumed once (3 history rows)."""
    run_dir = out / "runs" / "engine-toy" / entry / f"seed{seed}"
    run_dir.mkdir(parents=True)
    test = {k: 0.1 * (i + 1) for i, k in enumerate(METRIC_KEYS)} | {"per_label": {}}
    (run_dir / rundir.METRICS).write_text(json.dumps({"valid": test, "test": test}))
    (run_dir / rundir.BEST).write_bytes(b"")
    info = {"parameters": 1234, "best_epoch": 2, "wall_seconds": 4.5, "peak_rss_mb": 321.0,
            "reference": {"chance": {"micro_f1": 0.25, "n_samples": 41, "note": "x"}, "empty": {"note": "y"}}}  # fmt: skip
    (run_dir / rundir.RUN_INFO).write_text(json.dumps(info))
    (run_dir / rundir.HISTORY).write_text("epoch,train_loss,train_seconds\n1,0.7,1.25\n2,0.6,2.5\n3,0.5,0.25\n")
    return run_dir


def test_results_row_of_a_resumed_run(tmp_path):
    """train_seconds sums every epoch in history.csv (so it survives a resume); the other numbers come from
    run_info.json under their own names; run_dir is relative to the benchmark folder (the folder can move)."""
    out = tmp_path / "b"
    run_dir = fake_complete_run(out)
    spec = grid.RunSpec("baseline", "engine-toy", 3, "", ("data.batch_size=16", "train.lr=0.01"))
    row = collect_row(spec, run_dir, out)
    assert row["train_seconds"] == pytest.approx(4.0)
    assert (row["parameters"], row["best_epoch"], row["wall_seconds"], row["peak_rss_mb"]) == (1234, 2, 4.5, 321.0)
    assert row["run_dir"] == "runs/engine-toy/baseline/seed3"
    assert row["overrides"] == "data.batch_size=16 train.lr=0.01"
    (parsed,) = csv.DictReader(io.StringIO(results_csv([row])))
    assert tuple(parsed) == COLUMNS
    assert parsed["micro_f1"] == f"{row['micro_f1']:.6f}" and parsed["seed"] == "3" and parsed["variant"] == ""


def test_reference_points_keep_metric_values_only(tmp_path):
    run_dir = fake_complete_run(tmp_path)
    assert reference_points(run_dir) == {"chance": {"micro_f1": 0.25}}


# ------------------------------------------------------------------------------------------- summary files


def result_row(entry: str, seed: int, f1: float) -> dict:
    model, _, variant = entry.partition("__")
    return {"model": model, "variant": variant, "entry": entry, "dataset": "d", "seed": seed, **{k: f1 for k in METRIC_KEYS}}


def test_an_ablation_file_for_every_model_labels_rows_with_the_model(tmp_path):
    path = tmp_path / "lr.yaml"
    path.write_text("low lr: [train.lr=1e-5]\nfull: []\n")
    table = load_ablation_file(str(path))
    results = [result_row(e, 1, 0.5) for e in ("baseline", "baseline__low-lr", "br", "br__low-lr")]
    rows = summary.ablation_table(results, "d", table, ["baseline", "br"], ("micro_f1",)).rows
    assert [r.label for r in rows] == ["baseline: low lr", "baseline: full", "br: low lr", "br: full"]


def test_comparisons_csv_puts_each_means_under_its_own_entry():
    results = [result_row("a", s, f) for s, f in ((1, 0.6), (2, 0.8))] + [result_row("b", s, f) for s, f in ((1, 0.5), (2, 0.5))]
    found = summary.compare(results, "d", "a", "b", metrics=("micro_f1",))
    (line,) = csv.DictReader(io.StringIO(summary.comparisons_csv(found)))
    assert (line["a"], line["b"], line["n"], line["seeds"]) == ("a", "b", "2", "1 2")
    assert float(line["mean_a"]) == pytest.approx(0.7) and float(line["mean_b"]) == pytest.approx(0.5)
    assert float(line["mean_diff"]) == pytest.approx(0.2) and not math.isnan(float(line["p_value"]))


# ------------------------------------------------------------------------------------- missing-modality matrix


def test_missing_matrix_is_recomputed_when_its_repeats_change_and_reused_otherwise(tmp_path, monkeypatch):
    """A run's stored matrix is reused only when its settings (split, seed, repeats, rates) are the wanted ones."""
    from mmer.benchmark import runner
    from mmer.engine import trainer
    from mmer.report import robustness

    computed: list[int] = []

    def fake_matrix(run, name, split, seed, repeats):
        computed.append(repeats)
        metrics = {k: 0.5 for k in METRIC_KEYS}
        rates = [{"rate": r, "effective_missing": r, **metrics, **{f"{k}_std": None for k in METRIC_KEYS}} for r in robustness.RATES]
        return robustness.RobustnessResult(name, split, ("text",), seed, repeats, [{"present": "text", "size": 1, **metrics}], rates)

    monkeypatch.setattr(trainer, "load_run", lambda run_dir: None)
    monkeypatch.setattr(robustness, "robustness_matrix", fake_matrix)
    monkeypatch.setattr(robustness, "plot", lambda result, path: path)
    run = toy_run(tmp_path)
    run.run_dir.mkdir(parents=True)
    log = runner._Log(tmp_path / "b.log", lambda _: None)
    for repeats in (1, 1, 3, 3, 1):
        spec = BenchmarkSpec(out=tmp_path, models=["baseline"], datasets=["engine-toy"], seeds=[1], missing_matrix=True, missing_repeats=repeats)
        runner._robustness(run, spec, log, "[1/1]")
    assert computed == [1, 3, 1]
    assert robustness.load(run.run_dir / robustness.RUN_SUBDIR)["settings"]["repeats"] == 1


def test_result_counts_the_runs_it_trained_and_the_log_names_each(tmp_path, monkeypatch):
    """`result.trained` (quoted by scripts/make_results.py) counts the runs trained now, not the ones skipped."""
    from mmer.engine import trainer

    monkeypatch.setattr(trainer, "fit", lambda cfg, run_dir, **kw: {"test": {"micro_f1": 0.25}})
    lines: list[str] = []
    spec = BenchmarkSpec(out=tmp_path / "b", models=["baseline"], datasets=["engine-toy"], seeds=[1, 2], epochs=1)
    result = run_benchmark(spec, echo=lines.append)
    assert result.trained == 2 and result.failures == [] and result.results == []
    log = (tmp_path / "b" / "benchmark.log").read_text()
    assert "[1/2] baseline on engine-toy, seed 1: done in" in log and "[2/2] baseline on engine-toy, seed 2: training in" in log
    assert "test micro-F1 0.2500" in log and any(line.startswith("2 runs in") and "2 new" in line for line in lines)
