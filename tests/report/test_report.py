"""`mmer report`: the figures a run supports, the analysis contract, and the no-matplotlib message."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from mmer.cli import main
from mmer.report.analysis import collect
from mmer.report.figures import conditional_cooccurrence, emotion_groups, modality_label_summary
from tests.engine.toy_data import make_split

RUN_FIGURES = {"training_curves.png", "per_label.png", "label_cooccurrence.png"}
ANALYSIS_FIGURES = {"tsne_common_specific.png", "tsne_reconstructed.png", "modality_label.png", "label_correlation.png", "discriminator.png"}


def train(out, model: str) -> None:
    assert main(["train", "--model", model, "--dataset", "engine-toy", "--quiet", "--set", "data.batch_size=16", "--set", "train.lr=3e-3", "--epochs", "2", "--out", str(out)]) == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    train(root / "probe", "report-probe")
    train(root / "baseline", "baseline")
    train(root / "br", "br")
    return root


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_a_model_with_every_analysis_key_gets_every_figure(runs, tmp_path, capsys):
    out = tmp_path / "fig"
    assert main(["report", "--run", str(runs / "probe"), "--out", str(out), "--tsne-samples", "40"]) == 0
    assert {p.name for p in out.glob("*.png")} == RUN_FIGURES | ANALYSIS_FIGURES
    for path in out.glob("*.png"):
        width, height = png_size(path)
        assert width >= 600 and height >= 400, path.name  # 150 dpi, several inches
    index = (out / "index.md").read_text()
    assert all(f"]({name})" in index for name in RUN_FIGURES | ANALYSIS_FIGURES) and "Skipped" not in index
    assert "skipped" not in capsys.readouterr().out


def test_figures_needing_absent_keys_are_skipped_with_a_note(runs, tmp_path, capsys):
    out = tmp_path / "fig"
    assert main(["report", "--run", str(runs / "baseline"), "--out", str(out)]) == 0
    assert {p.name for p in out.glob("*.png")} == RUN_FIGURES
    printed = capsys.readouterr().out
    assert "skipped modality_label.png: baseline.analysis() does not return 'modality_label'" in printed
    assert "`discriminator.png`: baseline.analysis() does not return 'discriminator_probs'" in (out / "index.md").read_text()


def test_a_model_fitted_in_one_pass_gets_no_training_curves(runs, tmp_path):
    out = tmp_path / "fig"
    assert main(["report", "--run", str(runs / "br"), "--out", str(out)]) == 0
    assert {p.name for p in out.glob("*.png")} == RUN_FIGURES - {"training_curves.png"}
    assert "`training_curves.png`: br was fitted in one pass" in (out / "index.md").read_text()


def test_without_matplotlib_report_says_how_to_install_it(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    assert main(["report", "--run", str(runs / "baseline"), "--out", str(tmp_path / "fig")]) == 2
    assert "pip install 'mmer[plots]'" in capsys.readouterr().err
    assert not (tmp_path / "fig").exists()


def test_report_refuses_an_unfinished_run(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    assert main(["report", "--run", str(tmp_path / "r"), "--out", str(tmp_path / "fig")]) == 2
    assert "is not a finished run" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("history.csv", None, "history.csv: missing"),
        ("history.csv", "epoch,valid_micro_f1\n", "history.csv: no epoch rows"),
        ("metrics.json", "{not json", "metrics.json: not valid JSON"),
        ("metrics.json", "{}", "metrics.json: field 'test' with its 'per_label' scores is missing"),
        ("predictions_test.csv", "id,gold\n1,a\n", "predictions_test.csv: column 'predicted' is missing"),
    ],
)
def test_a_damaged_run_file_is_named_and_nothing_is_written(runs, tmp_path, capsys, file, content, message):
    run = tmp_path / "run"
    run.mkdir()
    for path in (runs / "baseline").iterdir():
        (run / path.name).write_bytes(path.read_bytes())
    if content is None:
        (run / file).unlink()
    else:
        (run / file).write_text(content)
    assert main(["report", "--run", str(run), "--out", str(tmp_path / "fig")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "fig").exists()


def test_an_output_path_that_is_a_file_is_refused(runs, tmp_path, capsys):
    (tmp_path / "fig").write_text("mine\n")
    assert main(["report", "--run", str(runs / "baseline"), "--out", str(tmp_path / "fig")]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert (tmp_path / "fig").read_text() == "mine\n"


def test_analysis_is_collected_in_order_and_checked_against_the_contract(runs):
    from mmer.engine.trainer import load_run

    model = load_run(runs / "probe").model
    split = make_split(23, 5)
    data = collect(model, split, batch_size=10)
    assert data.arrays["common"].shape[:2] == (23, 2) and data.arrays["modality_label"].shape == (23, 2, 3)
    assert data.arrays["label_correlation"].shape == (3, 3) and np.array_equal(data.labels, split.labels.numpy())
    # the modality shares of the probe add up to its logits (minus the bias): the analysis is the model's own
    batch = split.batch(torch.arange(23))
    with torch.no_grad():
        logits = torch.logit(model(batch).probs.double()).numpy()
    assert np.allclose(data.arrays["modality_label"].sum(axis=1) + model.head.bias.detach().numpy(), logits, atol=1e-3)

    def bad_analysis(batch):
        return {"modality_label": torch.zeros(batch.size, 2, 4)}

    model.analysis = bad_analysis
    with pytest.raises(ValueError, match=r"key 'modality_label' has shape \[10, 2, 4\], expected \[10, 2, 3\]"):
        collect(model, split, batch_size=10)


def test_modality_label_summary_by_hand():
    # 3 samples, 2 modalities, 1 label; sample 2 lacks modality 0
    evidence = np.array([[[2.0], [1.0]], [[0.0], [3.0]], [[9.0], [-1.0]]])
    labels = np.array([[1], [1], [1]])
    present = np.array([[True, True], [True, True], [False, True]])
    strongest, gap = modality_label_summary(evidence, labels, present)
    assert np.allclose(strongest, [[1 / 3, 2 / 3]])  # sample 2: modality 1 wins, modality 0 is absent
    assert np.isnan(gap).all()  # no negative sample: no gap
    labels = np.array([[1], [0], [0]])
    _, gap = modality_label_summary(evidence, labels, present)
    assert np.allclose(gap, [[2.0 - 0.0, 1.0 - 1.0]])


def test_cooccurrence_and_emotion_groups_by_hand():
    y = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [0, 0, 0]])
    m = conditional_cooccurrence(y)
    assert m[0, 1] == pytest.approx(0.5) and m[1, 0] == pytest.approx(0.5) and m[1, 2] == pytest.approx(0.5) and m[2, 1] == 1.0
    assert np.isnan(np.diag(m)).all()
    groups, names = emotion_groups(y, ["a", "b", "c"])
    assert groups.tolist() == [4, 0, 4, 3] and names[3:] == ["no label", "2+ labels"]


def test_a_users_file_is_never_replaced_but_an_earlier_report_is(runs, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.md").write_text("my notes\n")
    assert main(["report", "--run", str(runs / "baseline"), "--out", str(mine)]) == 2
    assert "index.md exist(s) and are not an earlier mmer report" in capsys.readouterr().err
    assert (mine / "index.md").read_text() == "my notes\n" and [p.name for p in mine.iterdir()] == ["index.md"]
    again = tmp_path / "again"
    assert main(["report", "--run", str(runs / "baseline"), "--out", str(again)]) == 0
    assert main(["report", "--run", str(runs / "br"), "--out", str(again)]) == 0  # regenerating a report is fine
    assert (again / "index.md").read_text().startswith("# Report: br on")


def test_label_correlation_is_averaged_over_every_batch_of_the_split(runs):
    """label_correlation comes once per batch; the figure must show the whole split, not its last batch."""
    from mmer.engine.trainer import load_run

    model = load_run(runs / "probe").model
    model.analysis = lambda batch: {"label_correlation": torch.full((3, 3), float(batch.size))}
    data = collect(model, make_split(23, 5), batch_size=10)  # batches of 10, 10, 3
    assert np.allclose(data.arrays["label_correlation"], 23 / 3)


def test_cooccurrence_reads_gold_and_predicted_sets_from_their_own_columns(tmp_path):
    """The two co-occurrence panels are gold and predicted; swapping the columns would silently swap them."""
    from mmer.report.builder import read_predictions

    path = tmp_path / "predictions_test.csv"
    path.write_text("id,p_a,p_b,p_c,predicted,gold\nx,0.9,0.8,0.1,a;b,c\ny,0.1,0.1,0.1,,a;c\n")
    gold, predicted = read_predictions(path, ["a", "b", "c"])
    assert gold.tolist() == [[0, 0, 1], [1, 0, 1]]
    assert predicted.tolist() == [[1, 1, 0], [0, 0, 0]]
