"""Regenerate docs/results.md and its figures from a real benchmark run on the synthetic data.

    .venv/bin/python scripts/make_results.py                       # every registered model, seeds 1,2,3
    .venv/bin/python scripts/make_results.py --retrain ramer,carat # after those models changed behaviour

What it does (docs/benchmark.md, "Results in the docs"):
1. `mmer benchmark` on synth-party and synth-dyadic (default size) with --missing-matrix; finished runs in --out
   are kept and skipped, so an interrupted regeneration resumes. Runs whose config changed since (a new preset,
   other --epochs) are removed and retrained. A model whose code changed behaviour with the same config must be
   retrained explicitly: --retrain removes its runs from --out first. Nothing outside --out is deleted.
2. `mmer report` on seed 1 of the report model(s) on each dataset.
3. docs/results.md: the benchmark tables, the robustness plots and report figures, cost per run, the machine
   load while it ran, and the papers' published numbers on the real corpora for context.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mmer import config as cfglib
from mmer.benchmark import grid
from mmer.benchmark.runner import BenchmarkResult, BenchmarkSpec, run_benchmark
from mmer.benchmark.tables import HEADERS
from mmer.io import write_text
from mmer.registry import MODELS
from mmer.report.builder import FIGURES, build_report

REPO = Path(__file__).resolve().parent.parent
DATASETS = ("synth-party", "synth-dyadic")
LIKE = {"synth-party": "MEmoR-like, multi-party", "synth-dyadic": "CMU-MOSEI-like, one speaker"}
FLAGSHIPS = ("ramer", "carat", "tailor", "amp")
PUBLISHED = Path(__file__).with_name("published_numbers.yaml")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="all", help="comma-separated models (default: every registered model)")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epochs", type=int, default=10, help="epochs of gradient-trained models (default 10; classic models fit once)")
    p.add_argument("--missing-repeats", type=int, default=3, help="seeds averaged per missing rate")
    p.add_argument("--out", default=str(REPO / "runs" / "results"), help="benchmark folder (kept between regenerations)")
    p.add_argument("--doc", default=str(REPO / "docs" / "results.md"))
    p.add_argument("--figures", default=str(REPO / "docs" / "figures" / "results"), help="replaced on every regeneration")
    p.add_argument("--report-models", default="auto", help="models whose seed-1 runs get report figures (default: the first flagship present, else baseline)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every run (repeatable), e.g. train.threads=1 to run two benchmarks side by side")
    p.add_argument("--retrain", default="", help="comma-separated models whose runs in --out are removed and retrained")
    return p.parse_args(argv)


def load_average() -> str:
    return " / ".join(f"{v:.1f}" for v in os.getloadavg())


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + (" (with uncommitted changes)" if dirty else "")


def remove_runs(out: Path, models: list[str]) -> None:
    for dataset in DATASETS:
        for model in models:
            for folder in sorted((out / grid.RUNS / dataset).glob(f"{model}")) + sorted((out / grid.RUNS / dataset).glob(f"{model}__*")):
                print(f"removing {folder} (--retrain {model})")
                shutil.rmtree(folder)


def remove_stale(spec: BenchmarkSpec) -> None:
    """Runs in --out trained with another config than today's (a preset changed) are this script's own cache:
    remove them so they are retrained, instead of failing as `mmer benchmark` does for a user's folder."""
    specs = grid.build_specs(spec.models, spec.datasets, spec.seeds, spec.overrides)
    for run in grid.plan(specs, spec.out, spec.epochs, spec.roots):
        if run.status == "stale":
            print(f"removing {run.run_dir}: trained with another config than today's, so it is retrained")
            shutil.rmtree(run.run_dir)


def report_models(choice: str, models: list[str]) -> list[str]:
    if choice != "auto":
        return [m.strip() for m in choice.split(",") if m.strip()]
    flagship = [m for m in FLAGSHIPS if m in models]
    return flagship[:1] or (["baseline"] if "baseline" in models else models[:1])


def cost_table(result: BenchmarkResult) -> str:
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in result.results:
        grouped[(row["dataset"], row["entry"])].append(row)
    lines = [
        "| dataset | model | runs | parameters | train s / run | wall s / run | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for (dataset, entry), rows in grouped.items():
        train, wall, rss = (_mean(rows, key) for key in ("train_seconds", "wall_seconds", "peak_rss_mb"))
        lines.append(f"| {dataset} | {entry} | {len(rows)} | {int(rows[0]['parameters']):,} | {train:.1f} | {wall:.1f} | {rss:.0f} |")
    return "\n".join(lines)


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    return float(np.mean([float(r[key]) for r in rows if r[key] != ""]))


def published_section() -> list[str]:
    data = yaml.safe_load(PUBLISHED.read_text())
    lines = [
        "## Published numbers on the real corpora (context only)",
        "",
        "**These are other data.** The papers' test results on CMU-MOSEI, M3ED and MEmoR, as reported in RAMer "
        "(IJCAI 2025) Tables 1-3 for the methods mmer implements. They are *not* comparable with the synthetic scores above; "
        "read them for the ordering of the methods and the size of the gaps. P and R are as printed (the official codes swap "
        f"precision and recall). Source file: `scripts/{PUBLISHED.name}`.",
    ]
    for table in data["tables"]:
        cols = table["columns"]
        lines += ["", f"**{table['title']}** (the synthetic counterpart is `{table['like']}`)", ""]
        lines += ["| Method | " + " | ".join(HEADERS[c] for c in cols) + " |", "|---|" + "---:|" * len(cols)]
        lines += [f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + " |" for name, values in table["rows"].items()]
    return lines


def not_run(models: list[str]) -> str:
    others = [m for m in MODELS.names() if m not in models]
    return f" (registered but not in this run: {', '.join(others)}; `--models all` includes them)" if others else ""


def presets_line(models: list[str]) -> str:
    have = [m for m in models if all(cfglib.preset_path(m, d) for d in DATASETS)]
    without = [m for m in models if m not in have]
    return f"used for {', '.join(have) or 'none'}; none for {', '.join(without) or 'none'}"


def figure_block(folder: Path, doc_dir: Path, title: str) -> list[str]:
    lines = [f"#### {title}", ""]
    for name, what in FIGURES.items():
        if (folder / name).is_file():
            lines += [f"![{what}]({os.path.relpath(folder / name, doc_dir)})", ""]
    index = (folder / "index.md").read_text()
    if "## Skipped" in index:
        lines += ["Not drawn:", "", index.split("## Skipped", 1)[1].strip(), ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started, load_before, t0 = datetime.datetime.now(), load_average(), time.time()
    models = MODELS.names() if args.models == "all" else [m.strip() for m in args.models.split(",") if m.strip()]
    out, doc, figures = Path(args.out), Path(args.doc), Path(args.figures)
    remove_runs(out, [m.strip() for m in args.retrain.split(",") if m.strip()])
    reported = report_models(args.report_models, models)
    compare = [(m, "baseline") for m in reported if m != "baseline" and "baseline" in models]
    seeds = [int(s) for s in args.seeds.split(",")]
    command = f"scripts/make_results.py --models {','.join(models)} --seeds {args.seeds} --epochs {args.epochs} --missing-repeats {args.missing_repeats}"
    command += "".join(f" --set {o}" for o in args.overrides)
    spec = BenchmarkSpec(
        out=out, models=models, datasets=list(DATASETS), seeds=seeds, epochs=args.epochs, overrides=args.overrides, compare=compare,
        missing_matrix=True, missing_repeats=args.missing_repeats, command=command,
    )  # fmt: skip
    remove_stale(spec)
    result = run_benchmark(spec)
    if result.failures:
        print(f"{len(result.failures)} run(s) failed; docs/results.md is not written from a partial benchmark", file=sys.stderr)
        return 1
    if figures.exists():
        shutil.rmtree(figures)
    figures.mkdir(parents=True)
    for dataset in DATASETS:
        shutil.copy(out / f"robustness_{dataset}.png", figures / f"robustness_{dataset}.png")
        for model in reported:
            build_report(grid.RunSpec(model, dataset, seeds[0]).run_dir(out), figures / dataset / model)
    elapsed = time.time() - t0
    assert result.tables is not None
    doc_dir = doc.parent
    lines = [
        "# Results on the synthetic benchmark",
        "",
        "> Generated by `.venv/bin/python scripts/make_results.py` (docs/benchmark.md); do not edit by hand. Regenerate it "
        "whenever a model changes behaviour (`--retrain MODEL` retrains that model's runs).",
        "",
        f"- Run: {started:%Y-%m-%d %H:%M}, commit {git_revision()}; `{command}` into `{os.path.relpath(out, REPO)}`.",
        f"- Models: {', '.join(models)}{not_run(models)}. Seeds {args.seeds}; {args.epochs} epochs for gradient-trained models "
        "(their presets' other settings; classic models fit once); default synthetic sizes (docs/synthetic.md); CPU.",
        f"- Machine: {os.cpu_count()} cores shared with other jobs; load average (1/5/15 min) {load_before} at the start and "
        f"{load_average()} at the end; this regeneration took {elapsed / 60:.1f} min ({result.trained} runs trained, the rest reused). "
        "Timings are therefore rough.",
        f"- Presets (`src/mmer/configs/<model>/<dataset>.yaml`): {presets_line(models)}. A model without a preset trains with the "
        "engine defaults (docs/engine.md), which the epoch budget above may not bring to convergence: see its training curves.",
        "- Every score is a test metric of the best-on-validation checkpoint: mean ± sample std over seeds (ddof=1). "
        "Rows in italics are the dataset's reference points (docs/synthetic.md): `chance`, `target_only` (an oracle without "
        "context), `ceiling` (the Bayes oracle); read a model's score between them.",
        '- Real data (music-emotions, mosei-text, meld; the same networks through their real-data presets): '
        'docs/real_data.md, "Results".',
    ]
    for dataset in DATASETS:
        lines += ["", f"## {dataset} ({LIKE[dataset]})", ""]
        for block in result.tables.sections[dataset]:
            lines += [block, ""]
        lines += [f"![robustness on {dataset}]({os.path.relpath(figures / f'robustness_{dataset}.png', doc_dir)})", ""]
        for model in reported:
            lines += figure_block(figures / dataset / model, doc_dir, f"Figures: {model}, seed {seeds[0]} (`mmer report`)")
    lines += ["## Cost per run", "", cost_table(result), "", *published_section(), ""]
    write_text(doc, "\n".join(lines))
    print(f"wrote {doc} and {figures} in {elapsed / 60:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
