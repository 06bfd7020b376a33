"""The training engine through the CLI and the Python API, on the tiny `engine-toy` dataset."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmer import config as cfglib
from mmer.cli import main
from mmer.engine import trainer
from mmer.engine.checkpoint import load_checkpoint
from mmer.errors import DataError, DivergenceError
from mmer.metrics import compute_metrics
from mmer.models.baseline import LateFusionBaseline
from tests.interrupt import interrupt_after_first_epoch

TRAIN = ["train", "--model", "baseline", "--dataset", "engine-toy", "--quiet", "--set", "data.batch_size=16", "--set", "train.lr=3e-3"]


def train(out: Path, *extra: str) -> int:
    return main([*TRAIN, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "r"
    assert train(out, "--epochs", "3") == 0
    return out


def test_train_writes_the_full_run_directory(run):
    for name in ("config.yaml", "best.pt", "last.pt", "history.csv", "metrics.json", "predictions_test.csv", "train.log", "run_info.json"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == {"valid", "test"}
    for split in metrics.values():
        assert {"acc", "hamming_loss", "precision", "recall", "micro_f1", "macro_f1", "weighted_f1", "per_label"} <= set(split)
        assert set(split["per_label"]) == {"a", "b", "c"}
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert {"train_loss_bce", "train_loss", "valid_micro_f1", "lr", "best"} <= set(rows[0])
    assert metrics["test"]["micro_f1"] > 0.6  # the toy data is learnable


def test_predictions_have_one_row_per_test_sample_in_order(run):
    rows = list(csv.DictReader((run / "predictions_test.csv").open()))
    assert [r["id"] for r in rows] == [f"3-{i}" for i in range(41)]
    assert set(rows[0]) == {"id", "p_a", "p_b", "p_c", "predicted", "gold"}


def test_evaluate_reproduces_metrics_json_exactly(run, capsys):
    saved = json.loads((run / "metrics.json").read_text())
    loaded = trainer.load_run(run)
    for split in ("valid", "test"):
        assert trainer.evaluate_run(loaded, split) == saved[split]
    assert main(["evaluate", "--run", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == saved["test"]


def test_evaluate_with_dropped_modality_changes_predictions(run, capsys):
    assert main(["evaluate", "--run", str(run), "--drop-modalities", "t", "--json"]) == 0
    dropped = json.loads(capsys.readouterr().out)
    assert dropped != json.loads((run / "metrics.json").read_text())["test"]


def test_checkpoints_are_self_describing_and_weights_only(run):
    ckpt = torch.load(run / "best.pt", weights_only=True)
    assert ckpt["label_names"] == ["a", "b", "c"]
    assert ckpt["config"]["model_name"] == "baseline"
    assert ckpt["mmer_version"]
    assert {"optimizer_state", "scheduler_state", "rng"} <= set(load_checkpoint(run / "last.pt"))


def test_predict_writes_csv_and_refuses_to_overwrite(run, tmp_path, capsys):
    out = tmp_path / "p.csv"
    assert main(["predict", "--run", str(run), "--dataset", "engine-toy", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 42
    out.write_text("mine")
    assert main(["predict", "--run", str(run), "--dataset", "engine-toy", "--out", str(out)]) == 2
    assert out.read_text() == "mine"
    assert "--overwrite" in capsys.readouterr().err


def test_existing_run_directory_is_never_reused(run, capsys):
    before = (run / "metrics.json").read_text()
    assert train(run, "--epochs", "1") == 2
    assert "--resume" in capsys.readouterr().err
    assert (run / "metrics.json").read_text() == before


def test_same_seed_gives_identical_metrics(tmp_path, run):
    assert train(tmp_path / "again", "--epochs", "3") == 0
    assert (tmp_path / "again" / "metrics.json").read_text() == (run / "metrics.json").read_text()


def test_resume_after_interruption_equals_uninterrupted(tmp_path, run, monkeypatch):
    interrupt_after_first_epoch(monkeypatch)
    out = tmp_path / "interrupted"
    assert train(out, "--epochs", "3") == 130
    assert (out / "last.pt").is_file() and not (out / "metrics.json").exists()
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0
    assert (out / "metrics.json").read_text() == (run / "metrics.json").read_text()
    assert (out / "history.csv").read_text().splitlines()[1:] != []
    # the resumed run counts its updates on from the interrupted one (what StepContext.step reports to models)
    assert load_checkpoint(out / "last.pt")["global_step"] == load_checkpoint(run / "last.pt")["global_step"] == 3 * 6


def test_fast_dev_run_writes_only_a_log(tmp_path):
    out = tmp_path / "fdr"
    assert train(out, "--fast-dev-run") == 0
    assert sorted(p.name for p in out.iterdir()) == ["train.log"]


def test_divergence_guard_names_the_loss_component(tmp_path, monkeypatch):
    original = LateFusionBaseline.forward

    def nan_forward(self, batch):
        out = original(self, batch)
        if self.training:
            out.losses["bce"] = out.losses["bce"] * float("nan")
        return out

    monkeypatch.setattr(LateFusionBaseline, "forward", nan_forward)
    cfg = cfglib.resolve("baseline", "engine-toy", flags={"train.epochs": 1})
    with pytest.raises(DivergenceError, match="'bce'"):
        trainer.fit(cfg, tmp_path / "nan", quiet=True)


def test_unknown_model_and_bad_config_are_one_line_errors(tmp_path, capsys):
    assert main(["train", "--model", "ramr", "--dataset", "engine-toy", "--out", str(tmp_path / "x")]) == 2
    assert main([*TRAIN, "--out", str(tmp_path / "y"), "--set", "train.lrr=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "unknown model 'ramr'" in err[0] and "train.lrr" in err[1] and "did you mean 'lr'" in err[1]
    assert not (tmp_path / "y").exists()


@pytest.mark.parametrize("model", ["br", "cc", "lp"])
def test_classic_baselines_train_and_reload(model, tmp_path):
    out = tmp_path / model
    assert main(["train", "--model", model, "--dataset", "engine-toy", "--out", str(out), "--quiet"]) == 0
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test"]["micro_f1"] > 0.6
    assert trainer.evaluate_run(trainer.load_run(out), "test") == saved["test"]


def test_two_process_data_parallel_fit_evaluates_every_sample_once(tmp_path):
    script = tmp_path / "run_mmer.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})\n"
        "from tests.engine import toy_data  # registers engine-toy\n"
        "from mmer.cli import main\n"
        "raise SystemExit(main(sys.argv[1:]))\n"
    )
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), *TRAIN, "--out", str(out), "--epochs", "1", "--devices", "2", "--device", "cpu", "--set", "train.threads=1"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads((out / "run_info.json").read_text())
    assert info["processes"] == 2
    ids = [r["id"] for r in csv.DictReader((out / "predictions_test.csv").open())]
    assert ids == [f"3-{i}" for i in range(41)]  # 41 samples over 2 processes: uneven shards, nothing lost or doubled
    metrics = json.loads((out / "metrics.json").read_text())
    from tests.engine.toy_data import make_split

    true_support = make_split(37, 2).labels.sum(dim=0).int().tolist()  # the valid split, counted directly
    assert [metrics["valid"]["per_label"][n]["support"] for n in ("a", "b", "c")] == true_support


class _Payload:
    def __reduce__(self):
        return (os.getcwd, ())


def _copy_run(run: Path, dest: Path) -> Path:
    dest.mkdir()
    for name in ("config.yaml", "best.pt", "last.pt", "metrics.json", "history.csv"):
        (dest / name).write_bytes((run / name).read_bytes())
    return dest


def test_bad_checkpoints_are_one_clear_error_naming_the_file(run, tmp_path, capsys):
    text = _copy_run(run, tmp_path / "text")
    (text / "best.pt").write_text("not a checkpoint\n")
    objects = _copy_run(run, tmp_path / "objects")
    torch.save({"format": "x", "payload": _Payload()}, objects / "best.pt")
    no_spec = _copy_run(run, tmp_path / "no_spec")
    ckpt = load_checkpoint(no_spec / "best.pt")
    torch.save({k: v for k, v in ckpt.items() if k != "data_spec"}, no_spec / "best.pt")
    wrong_state = _copy_run(run, tmp_path / "wrong_state")
    torch.save({**ckpt, "model_state": {"head.weight": torch.zeros(1)}}, wrong_state / "best.pt")
    expected = {
        text: "refused: not a checkpoint of tensors and plain values",
        objects: "refused: not a checkpoint of tensors and plain values",
        no_spec: "checkpoint lacks field(s) data_spec",
        wrong_state: "field 'model_state' does not fit the model its config builds",
    }
    for folder, message in expected.items():
        assert main(["evaluate", "--run", str(folder)]) == 2
        err = capsys.readouterr().err
        assert str(folder / "best.pt") in err and message in err, err
        assert "weights_only" not in err and "Traceback" not in err  # never advise the unsafe load


def test_an_out_path_that_is_a_file_is_refused_and_kept(tmp_path, capsys):
    mine = tmp_path / "notes.txt"
    mine.write_text("mine\n")
    assert train(mine) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    for out in (mine / "sub", mine):
        assert main(["data", "synth", "--preset", "synth-dyadic", "--size", "tiny", "--out", str(out)]) == 2
        assert "exists and is not a directory" in capsys.readouterr().err
    assert mine.read_text() == "mine\n"


def test_fast_dev_run_refuses_a_run_folder(run, tmp_path, capsys):
    log = (run / "train.log").read_text()
    assert train(run, "--fast-dev-run") == 2
    assert "holds more than a fast-dev-run log" in capsys.readouterr().err
    assert (run / "train.log").read_text() == log
    smoke = tmp_path / "smoke"
    assert train(smoke, "--fast-dev-run") == 0 and train(smoke, "--fast-dev-run") == 0  # earlier smoke logs are fine


def test_a_run_whose_set_up_fails_leaves_no_folder_so_the_retry_works(tmp_path, capsys):
    out = tmp_path / "r"
    assert train(out, "--set", "model.num_heads=3") == 2  # the model cannot be built: d_model 64 is not divisible by 3
    assert "divisible by model.num_heads" in capsys.readouterr().err
    assert not out.exists()
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine\n")
    assert train(keep / "r", "--set", "model.num_heads=3") == 2
    assert [p.name for p in keep.iterdir()] == ["notes.txt"]


def test_predict_reads_the_runs_own_data_options(tmp_path, capsys):
    """A run trained on tiny synth-dyadic is predicted on tiny synth-dyadic, not on the default size."""
    run_dir = tmp_path / "tiny"
    args = ["train", "--model", "baseline", "--dataset", "synth-dyadic", "--set", "data.options.size=tiny", "--epochs", "1", "--quiet", "--out", str(run_dir)]
    assert main(args) == 0
    for extra in ([], ["--dataset", "synth-dyadic"]):
        out = tmp_path / f"p{len(extra)}.csv"
        assert main(["predict", "--run", str(run_dir), *extra, "--out", str(out)]) == 0
        assert out.read_text() == (run_dir / "predictions_test.csv").read_text()  # the run's 24 test samples
    assert "wrote 24 predictions" in capsys.readouterr().out


def test_evaluate_reads_a_moved_data_folder_with_root(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["data", "synth", "--preset", "synth-dyadic", "--size", "tiny", "--quiet", "--out", str(data)]) == 0
    run_dir = tmp_path / "run"
    assert main(["train", "--model", "br", "--dataset", "npz", "--root", str(data), "--quiet", "--out", str(run_dir)]) == 0
    data.rename(tmp_path / "moved")
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run_dir)]) == 2
    assert "meta.json" in capsys.readouterr().err
    assert main(["evaluate", "--run", str(run_dir), "--root", str(tmp_path / "moved"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads((run_dir / "metrics.json").read_text())["test"]


@pytest.mark.parametrize("quiet", [True, False])
def test_quiet_silences_lightnings_set_up_lines(tmp_path, capfd, caplog, quiet):
    """--quiet prints the metric table only; without it Lightning's precision line stays (a user's choice shown)."""
    args = ["train", "--model", "baseline", "--dataset", "engine-toy", "--epochs", "1", "--precision", "bf16", "--out", str(tmp_path / "r")]
    assert main([*args, *(["--quiet"] if quiet else [])]) == 0
    shown = capfd.readouterr().err + caplog.text  # Lightning logs to stderr; pytest captures its log records
    assert ("bfloat16" in shown) is not quiet


@pytest.mark.parametrize("patience", [1, 2])
def test_patience_stops_and_the_run_is_scored_with_the_selected_epoch(tmp_path, monkeypatch, patience):
    """Only epoch 1 counts as an improvement here, so training stops `patience` epochs later, and metrics.json
    (and the test predictions) come from best.pt's epoch-1 weights, not from the last epoch's."""
    monkeypatch.setattr(trainer, "is_better", lambda new, best, mode: best is None)
    out = tmp_path / "r"
    assert train(out, "--epochs", "5", "--set", f"train.patience={patience}") == 0
    with (out / "history.csv").open() as fh:
        history = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in history] == list(range(1, patience + 2))
    assert [int(r["best"]) for r in history] == [1] + [0] * patience
    assert float(history[-1]["valid_micro_f1"]) != float(history[0]["valid_micro_f1"])  # the epochs do differ
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["valid"]["micro_f1"] == pytest.approx(float(history[0]["valid_micro_f1"]), abs=1e-6)
    assert json.loads((out / "run_info.json").read_text())["best_epoch"] == 1


def test_the_models_threshold_decides_every_prediction_and_metric(tmp_path):
    """`model.threshold` (CARAT's presets use 0.25) is what predictions_test.csv and metrics.json apply, not 0.5."""
    out = tmp_path / "r"
    assert train(out, "--epochs", "2", "--set", "model.threshold=0.3") == 0
    with (out / "predictions_test.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    names = [c[2:] for c in rows[0] if c.startswith("p_")]
    probs = np.array([[float(r[f"p_{n}"]) for n in names] for r in rows])  # [N, C]

    def as_sets(decisions: np.ndarray) -> list[str]:
        return [";".join(n for n, on in zip(names, row) if on) for row in decisions]

    assert [r["predicted"] for r in rows] == as_sets(probs > 0.3) != as_sets(probs > 0.5)
    gold = np.array([[n in r["gold"].split(";") for n in names] for r in rows])
    expected = compute_metrics(gold, probs > 0.3, names)
    saved = json.loads((out / "metrics.json").read_text())["test"]
    assert saved["micro_f1"] == pytest.approx(expected["micro_f1"]) and saved["acc"] == pytest.approx(expected["acc"])


@pytest.mark.parametrize("clip", ["1.0", "null"])
def test_a_non_finite_gradient_with_finite_losses_stops_the_run(tmp_path, monkeypatch, clip):
    """Losses can be finite while a gradient is not (e.g. sqrt at 0); the step must not write NaN into the weights,
    with or without gradient clipping."""
    original = LateFusionBaseline.forward

    def nan_gradient_forward(self, batch):
        out = original(self, batch)
        if self.training:  # value 0, gradient 0 * inf = NaN
            out.losses["bce"] = out.losses["bce"] + torch.sqrt(next(self.parameters()) * 0).sum() * 0
        return out

    monkeypatch.setattr(LateFusionBaseline, "forward", nan_gradient_forward)
    cfg = cfglib.resolve("baseline", "engine-toy", overrides=[f"train.grad_clip={clip}"], flags={"train.epochs": 1})
    with pytest.raises(DivergenceError, match="gradient norm is non-finite at epoch 1, step 1"):
        trainer.fit(cfg, tmp_path / "nan_grad", quiet=True)


def test_a_foreign_or_newer_checkpoint_file_is_refused(tmp_path):
    """A loadable file that mmer did not write (or a future format) must not be read as a run's checkpoint."""
    torch.save({"model_state": {}}, tmp_path / "foreign.pt")
    with pytest.raises(DataError, match="not an mmer checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    torch.save({"format": "mmer-checkpoint", "version": 99}, tmp_path / "newer.pt")
    with pytest.raises(DataError, match="version 99 is not supported"):
        load_checkpoint(tmp_path / "newer.pt")


def test_selecting_on_hamming_loss_keeps_the_epoch_with_the_lowest_loss(tmp_path):
    """`train.select_mode: auto` lets the metric decide the direction; 'max' with hamming_loss is refused."""
    out = tmp_path / "r"
    assert train(out, "--epochs", "4", "--set", "train.select_metric=hamming_loss") == 0
    with (out / "history.csv").open() as fh:
        losses = [float(r["valid_hamming_loss"]) for r in csv.DictReader(fh)]
    assert len(set(losses)) > 1  # the epochs differ
    best = min(range(len(losses)), key=lambda i: (losses[i], i))  # ties keep the earlier epoch
    assert json.loads((out / "run_info.json").read_text())["best_epoch"] == best + 1
    assert json.loads((out / "metrics.json").read_text())["valid"]["hamming_loss"] == pytest.approx(losses[best], abs=1e-6)
