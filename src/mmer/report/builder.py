"""`mmer report --run R --out DIR`: every figure a run supports, plus an index saying what was skipped and why.

Run-file figures always work. Analysis figures need the model's `analysis()` keys (models/base.py); a figure
whose keys the model does not return is skipped with a note, never faked. The test split is used throughout.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmer.engine import rundir
from mmer.engine.trainer import check_compatible, load_run, load_run_data
from mmer.errors import DataError
from mmer.io import make_output_dir, refuse_foreign_outputs, write_text
from mmer.report import analysis, figures, plotting

INDEX = "index.md"
INDEX_HEADING = "# Report: "
FIGURES = {
    "training_curves.png": "training losses, validation metrics and learning rate per epoch (history.csv)",
    "per_label.png": "test precision, recall and F1 of every label (metrics.json)",
    "label_cooccurrence.png": "P(label j | label i) in the gold and in the predicted test labels (predictions_test.csv)",
    "tsne_common_specific.png": "t-SNE of commonality vs specificity features by modality (analysis keys common, specific)",
    "tsne_reconstructed.png": "t-SNE of reconstruction embeddings by modality and by emotion (analysis key reconstructed)",
    "modality_label.png": "which modality each label relies on (analysis key modality_label)",
    "label_correlation.png": "learned label-to-label dependency (analysis key label_correlation)",
    "discriminator.png": "modality discriminator probabilities per source modality (analysis key discriminator_probs)",
}


@dataclass
class Report:
    written: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # figure file -> reason


def build_report(run_dir: str | Path, out: str | Path, tsne_samples: int = 300, seed: int = 0, root: str | None = None) -> Report:
    """Draw every figure the finished run at `run_dir` supports into `out` (t-SNE on at most `tsne_samples` test
    samples, seeded), and write the index of what was drawn and what was skipped, with the reason."""
    plotting.require_matplotlib("mmer report")
    run_dir, out = rundir.require_run_dir(run_dir), Path(out)
    if not rundir.is_complete(run_dir):
        raise DataError(f"{run_dir} is not a finished run (needs {rundir.METRICS} and {rundir.BEST})")
    report = Report()
    loaded = load_run(run_dir)
    name = f"{loaded.cfg.model_name} on {loaded.spec.name} ({run_dir.name})"
    label_names = list(loaded.spec.label_names)
    history = rundir.read_history(run_dir)  # everything the run-file figures need, read before writing
    test = rundir.read_test_metrics(run_dir)
    gold, predicted = read_predictions(run_dir / rundir.PREDICTIONS, label_names)
    refuse_foreign_outputs(out, [*FIGURES, INDEX], is_report(out), "mmer report")
    make_output_dir(out)

    if len(history) > 1 or any(k.startswith("train_loss") for k in history[0]):
        report.written.append(figures.training_curves(history, name, out / "training_curves.png"))
    else:
        report.skipped["training_curves.png"] = f"{loaded.cfg.model_name} was fitted in one pass (one history row, no losses): nothing to plot per epoch"
    report.written.append(figures.per_label_scores(test["per_label"], test, name, out / "per_label.png"))
    report.written.append(figures.label_cooccurrence(gold, predicted, label_names, name, out / "label_cooccurrence.png"))

    cfg = loaded.cfg
    bundle = load_run_data(loaded, root)
    check_compatible(loaded.spec, bundle.spec, bundle.source)
    data = analysis.collect(loaded.model, bundle.splits["test"], cfg.data.eval_batch_size)
    missing = f"{cfg.model_name}.analysis() does not return"
    rng = np.random.default_rng(seed)
    n = len(data.labels)
    index = np.sort(rng.choice(n, size=min(n, tsne_samples), replace=False))
    plans = [
        ("tsne_common_specific.png", ("common", "specific"), lambda p: figures.tsne_common_specific(data, index, seed, name, p)),
        ("tsne_reconstructed.png", ("reconstructed",), lambda p: figures.tsne_reconstructed(data, index, seed, name, p)),
        ("modality_label.png", ("modality_label",), lambda p: figures.modality_label_dependency(data, name, p)),
        ("label_correlation.png", ("label_correlation",), lambda p: figures.label_correlation(data, name, p)),
        ("discriminator.png", ("discriminator_probs",), lambda p: figures.discriminator_probabilities(data, name, p)),
    ]
    for filename, keys, draw in plans:
        absent = [k for k in keys if not data.has(k)]
        if absent:
            report.skipped[filename] = f"{missing} {', '.join(repr(k) for k in absent)}"
        elif filename == "tsne_common_specific.png" and data.arrays["common"].shape[2] != data.arrays["specific"].shape[2]:
            report.skipped[filename] = "'common' and 'specific' have different feature sizes, so they cannot share one t-SNE"
        else:
            report.written.append(draw(out / filename))
    write_text(out / INDEX, index_markdown(name, report))
    return report


def read_predictions(path: Path, label_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Gold and predicted 0/1 matrices [N, C] from predictions_test.csv (sets joined by ';')."""
    position = {n: j for j, n in enumerate(label_names)}
    gold, predicted = [], []
    if not path.is_file():
        raise DataError(f"{path}: missing (the run's test predictions)")
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        for row in csv.DictReader(fh):
            for sets, column in ((gold, "gold"), (predicted, "predicted")):
                vec = np.zeros(len(label_names))
                if row.get(column) is None:
                    raise DataError(f"{path}: column '{column}' is missing or short")
                for label in filter(None, row[column].split(";")):
                    if label not in position:
                        raise DataError(f"{path}: column '{column}' names label '{label}', which the run does not have")
                    vec[position[label]] = 1
                sets.append(vec)
    if not gold:
        raise DataError(f"{path}: no predictions")
    return np.array(gold), np.array(predicted)


def is_report(out: Path) -> bool:
    """Whether `out` holds an earlier `mmer report` (its index.md starts with the report heading)."""
    try:
        with (out / INDEX).open(encoding="utf-8") as fh:
            return fh.readline().startswith(INDEX_HEADING)
    except (OSError, UnicodeDecodeError):
        return False


def index_markdown(name: str, report: Report) -> str:
    lines = [f"{INDEX_HEADING}{name}", ""]
    for path in report.written:
        lines += [f"## {path.name}", "", FIGURES.get(path.name, ""), "", f"![{path.stem}]({path.name})", ""]
    if report.skipped:
        lines += ["## Skipped", ""]
        lines += [f"- `{f}`: {reason}" for f, reason in report.skipped.items()]
        lines.append("")
    return "\n".join(lines)
