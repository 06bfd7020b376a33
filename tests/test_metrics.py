import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score, precision_score, recall_score

from mmer.metrics import binarize, compute_metrics, format_table, is_better

NAMES = ["x", "y", "z"]


def test_hand_computed_case():
    y = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 0]])
    p = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1]])
    m = compute_metrics(y, p, NAMES)
    # per sample Jaccard: 1/3, 1, 0 (empty/empty counts 0), 0/3 -> mean 1/3
    assert m["acc"] == pytest.approx(1 / 3)
    # cells: TP = 2 (s0 x, s1 y), FP = 2 (s0 y, s3 z), FN = 3 (s0 z, s3 x, s3 y)
    assert m["precision"] == pytest.approx(2 / 4)
    assert m["recall"] == pytest.approx(2 / 5)
    assert m["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 3))
    assert m["hamming_loss"] == pytest.approx(5 / 12)
    # per label F1: x: tp1 fp0 fn1 -> 2/3; y: tp1 fp1 fn1 -> 1/2; z: tp0 fp1 fn1 -> 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert m["weighted_f1"] == pytest.approx((2 * 2 / 3 + 2 * 1 / 2 + 1 * 0) / 5)  # true supports 2, 2, 1
    assert m["per_label"]["x"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}


def test_precision_is_not_swapped_with_recall():
    y = np.array([[1, 1, 1]])
    p = np.array([[1, 0, 0]])  # one of three found, no false alarm
    m = compute_metrics(y, p, NAMES)
    assert m["precision"] == 1.0 and m["recall"] == pytest.approx(1 / 3)


def test_agrees_with_scikit_learn_on_random_matrices():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (200, 3))
    p = rng.integers(0, 2, (200, 3))
    m = compute_metrics(y, p, NAMES)
    assert m["acc"] == pytest.approx(jaccard_score(y, p, average="samples", zero_division=0))
    assert m["precision"] == pytest.approx(precision_score(y, p, average="micro"))
    assert m["recall"] == pytest.approx(recall_score(y, p, average="micro"))
    assert m["macro_f1"] == pytest.approx(f1_score(y, p, average="macro"))
    assert m["weighted_f1"] == pytest.approx(f1_score(y, p, average="weighted"))


def test_no_predictions_and_no_labels_give_zero_not_errors():
    m = compute_metrics(np.zeros((3, 3), int), np.zeros((3, 3), int), NAMES)
    assert m["acc"] == 0.0 and m["micro_f1"] == 0.0 and m["hamming_loss"] == 0.0


def test_binarize_is_strictly_greater_than():
    assert binarize(np.array([[0.5, 0.51, 0.25]]), 0.5).tolist() == [[0, 1, 0]]


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="must be equal"):
        compute_metrics(np.zeros((2, 3)), np.zeros((3, 3)), NAMES)


def test_selection_rule_and_table():
    assert is_better(0.5, None, "max") and not is_better(0.5, 0.5, "max")
    assert is_better(0.1, 0.2, "min") and not is_better(0.2, 0.2, "min")  # ties keep the earlier
    m = compute_metrics(np.eye(3, dtype=int), np.eye(3, dtype=int), NAMES)
    table = format_table({"test": m})
    assert table.splitlines()[2].startswith("| test | 1.0000")


@pytest.mark.parametrize("names", [["x", "y"], ["w", "x", "y", "z"]])
def test_label_names_must_match_the_label_columns(names):
    y = np.eye(3, dtype=int)
    with pytest.raises(ValueError, match=f"3 label columns but {len(names)} label names"):
        compute_metrics(y, y, names)
