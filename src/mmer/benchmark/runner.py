"""The whole benchmark: plan the grid, run what is missing, collect results, write every table.

Failure policy: a run that raises is reported (one line on the terminal, the traceback in DIR/benchmark.log)
and the grid goes on; at the end the tables are written from the runs that finished and the command exits
non-zero naming every failed run. `fail_fast` stops at the first failure instead. Ctrl-C stops at once; the
interrupted run keeps its last.pt and the next invocation resumes it.

Outputs in DIR: results.csv, summary.md, summary.csv, summary.tex, comparisons.csv (with --compare),
robustness_summary.csv and robustness_<dataset>.png (with --missing-matrix), benchmark.log.
"""

from __future__ import annotations

import datetime
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmer.benchmark import grid, summary
from mmer.benchmark.ablations import AblationTable, load_ablation_file
from mmer.benchmark.results import collect_row, merge_reference_points, reference_points, write_results
from mmer.benchmark.tables import LAYOUTS, STD_NOTE, Table, layout_for, tables_csv, to_latex, to_markdown
from mmer.data.dataset import DataSpec
from mmer.engine import rundir
from mmer.engine.checkpoint import load_checkpoint
from mmer.errors import ConfigError
from mmer.io import write_text

LOG = "benchmark.log"
References = dict[str, dict[str, dict[str, float]]]  # dataset -> reference name -> metric -> value


@dataclass
class BenchmarkSpec:
    out: Path
    models: list[str]
    datasets: list[str]
    seeds: list[int]
    epochs: int | None = None
    overrides: list[str] = field(default_factory=list)
    roots: dict[str, str] = field(default_factory=dict)  # dataset -> data folder
    ablations: list[str] = field(default_factory=list)  # ablation file paths or shipped names
    compare: list[tuple[str, str]] = field(default_factory=list)  # entry pairs (a, b)
    missing_matrix: bool = False
    missing_repeats: int = 1
    table_style: str = "auto"
    fail_fast: bool = False
    dry_run: bool = False
    command: str = ""  # the command line, quoted in summary.md


@dataclass
class Failure:
    run: str
    run_dir: Path
    message: str


@dataclass
class BenchmarkResult:
    planned: list[grid.PlannedRun]
    failures: list[Failure] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    trained: int = 0
    tables: BenchmarkTables | None = None


class _Log:
    """Lines to the terminal (via `echo`) and, time-stamped, to DIR/benchmark.log."""

    def __init__(self, path: Path, echo: Callable[[str], None]):
        self.path, self.echo = path, echo

    def __call__(self, message: str, detail: str = "") -> None:
        self.echo(message)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            stamp = datetime.datetime.now().isoformat(timespec="seconds")
            fh.write(f"{stamp} {message}\n" + (detail if detail.endswith("\n") or not detail else detail + "\n"))


def run_benchmark(spec: BenchmarkSpec, echo: Callable[[str], None] = print, references: References | None = None) -> BenchmarkResult:
    """Train what the grid lacks, then write the tables; `references` as in `tabulate`."""
    ablations, planned = _plan(spec)
    result = BenchmarkResult(planned)
    counts = {s: sum(p.status == s for p in planned) for s in grid.STATUSES}
    overview = f"{len(planned)} runs in {spec.out / grid.RUNS}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    if spec.dry_run:
        echo(overview)
        for p in planned:
            echo(f"  {p.status:<8} {p.spec.describe()}  {p.run_dir}" + (f"  ({p.problem})" if p.problem else ""))
        return result
    log = _Log(spec.out / LOG, echo)
    log(overview + (f"; command: {spec.command}" if spec.command else ""))
    for i, run in enumerate(planned, 1):
        prefix = f"[{i}/{len(planned)}] {run.spec.describe()}"
        if not _run_one(run, prefix, log, result, spec):
            break
    _collect(spec, ablations, result, references)
    result.written = _write_outputs(spec, result.tables, result.results)
    for path in result.written:
        echo(f"wrote {path}")
    if result.failures:
        log(f"{len(result.failures)} run(s) failed: " + "; ".join(f"{f.run}: {f.message}" for f in result.failures))
    return result


def tabulate(spec: BenchmarkSpec, references: References | None = None) -> BenchmarkResult:
    """The tables of the grid's finished runs, without training anything or writing any file: what a benchmark
    folder holds now. `references` (dataset -> name -> metrics) adds reference rows to the main tables, next to
    those stored with the runs; `spec.missing_matrix` tabulates the robustness results already computed."""
    ablations, planned = _plan(spec)
    result = BenchmarkResult(planned)
    _collect(spec, ablations, result, references)
    return result


def _plan(spec: BenchmarkSpec) -> tuple[list[AblationTable], list[grid.PlannedRun]]:
    """Check the spec, load its ablation files and inspect every run of the grid (nothing trains)."""
    _validate(spec)
    ablations = [load_ablation_file(ref) for ref in spec.ablations]
    specs = grid.build_specs(spec.models, spec.datasets, spec.seeds, spec.overrides, ablations)
    entries = {s.entry for s in specs}
    for a, b in spec.compare:
        for name in (a, b):
            if name not in entries:
                raise ConfigError(f"--compare: '{name}' is not a model or ablation variant of this grid; valid: {', '.join(sorted(entries))}")
    return ablations, grid.plan(specs, spec.out, spec.epochs, spec.roots)


def _collect(spec: BenchmarkSpec, ablations: list[AblationTable], result: BenchmarkResult, references: References | None = None) -> None:
    result.results = [collect_row(p.spec, p.run_dir, spec.out) for p in result.planned if _finished(p)]
    result.tables = build_tables(spec, ablations, result.planned, result.results, references)


def _finished(run: grid.PlannedRun) -> bool:
    """A run of this grid's config that completed (a stale run holds another config: never tabulated)."""
    return run.status not in ("stale", "blocked") and rundir.is_complete(run.run_dir)


def _validate(spec: BenchmarkSpec) -> None:
    for name, values in (("--models", spec.models), ("--datasets", spec.datasets), ("--seeds", spec.seeds)):
        if not values:
            raise ConfigError(f"{name} needs at least one value")
        if len(set(values)) != len(values):
            raise ConfigError(f"{name} lists a value twice: {values}")
    if spec.table_style not in ("auto", *LAYOUTS):
        raise ConfigError(f"--table-style must be one of auto, {', '.join(LAYOUTS)}, got {spec.table_style!r}")
    if spec.missing_repeats < 1:
        raise ConfigError(f"--missing-repeats must be >= 1, got {spec.missing_repeats}")
    if spec.epochs is not None and spec.epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {spec.epochs}")


def _run_one(run: grid.PlannedRun, prefix: str, log: _Log, result: BenchmarkResult, spec: BenchmarkSpec) -> bool:
    """Train/resume/skip one run (then its robustness matrix); False when the grid must stop."""
    if run.status in ("stale", "blocked"):
        return _fail(run, prefix, run.problem, "", log, result, spec)
    if run.status == "complete":
        log(f"{prefix}: complete, skipped")
    else:
        log(f"{prefix}: {'resuming' if run.status == 'resume' else 'training'} in {run.run_dir}")
        start = time.time()
        try:
            metrics = grid.execute(run)
        except Exception as exc:  # noqa: BLE001 - any failure of one run is reported and the grid goes on
            return _fail(run, prefix, f"{type(exc).__name__}: {exc}", traceback.format_exc(), log, result, spec)
        result.trained += 1
        test = metrics.get("test", {})
        log(f"{prefix}: done in {time.time() - start:.1f}s, test micro-F1 {test.get('micro_f1', float('nan')):.4f}")
    if spec.missing_matrix and not run.spec.variant:
        try:
            _robustness(run, spec, log, prefix)
        except Exception as exc:  # noqa: BLE001
            return _fail(run, prefix, f"missing-modality matrix: {type(exc).__name__}: {exc}", traceback.format_exc(), log, result, spec)
    return True


def _fail(run: grid.PlannedRun, prefix: str, message: str, detail: str, log: _Log, result: BenchmarkResult, spec: BenchmarkSpec) -> bool:
    result.failures.append(Failure(run.spec.describe(), run.run_dir, message))
    log(f"{prefix}: FAILED: {message}" + (f" (traceback in {spec.out / LOG})" if detail else ""), detail)
    return not spec.fail_fast


def _robustness(run: grid.PlannedRun, spec: BenchmarkSpec, log: _Log, prefix: str) -> None:
    from mmer.engine.trainer import load_run
    from mmer.report import robustness

    out = run.run_dir / robustness.RUN_SUBDIR
    previous = robustness.load(out)
    wanted = {"split": "test", "seed": 0, "repeats": spec.missing_repeats, "rates": list(robustness.RATES)}
    if previous is not None and previous.get("settings") == wanted:
        return
    start = time.time()
    result = robustness.robustness_matrix(load_run(run.run_dir), str(run.run_dir), "test", 0, spec.missing_repeats)
    robustness.write(result, out)
    log(f"{prefix}: missing-modality matrix in {time.time() - start:.1f}s -> {out}")


# ------------------------------------------------------------------------------------------------ output


def _dataset_info(planned: list[grid.PlannedRun], dataset: str) -> tuple[DataSpec | None, dict[str, dict[str, float]], str]:
    """Data spec (from a finished run's checkpoint), reference points and a note if runs disagree on them."""
    done = [p.run_dir for p in planned if p.spec.dataset == dataset and _finished(p)]
    if not done:
        return None, {}, ""
    spec = DataSpec.from_dict(load_checkpoint(done[0] / rundir.BEST)["data_spec"])
    refs = merge_reference_points([reference_points(d) for d in done])
    if refs is None:
        return spec, {}, f"Reference points differ between runs on {dataset} (different data options?); see each run_info.json."
    return spec, refs, ""


@dataclass
class BenchmarkTables:
    """Everything the summary files hold; `sections[dataset]` are that dataset's Markdown blocks."""

    sections: dict[str, list[str]] = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)  # main and ablation tables
    comparisons: list[summary.Comparison] = field(default_factory=list)
    robustness: dict[str, list[Table]] = field(default_factory=dict)  # dataset -> [by subset, by rate]


def build_tables(
    spec: BenchmarkSpec,
    ablations: list[AblationTable],
    planned: list[grid.PlannedRun],
    results: list[dict[str, Any]],
    extra_references: References | None = None,
) -> BenchmarkTables:
    """Every table of the grid's finished runs, per dataset: the main table with its reference rows, one table per
    ablation file, the paired comparisons of --compare, and (with --missing-matrix) the robustness tables."""
    built = BenchmarkTables()
    for dataset in spec.datasets:
        blocks = built.sections.setdefault(dataset, [])
        data_spec, references, note = _dataset_info(planned, dataset)
        references = {**(extra_references or {}).get(dataset, {}), **references}  # the extra's order, the runs' values
        columns = layout_for(data_spec, spec.table_style)
        main = summary.main_table(results, dataset, spec.models, columns, references)
        if not main.rows:
            blocks.append("No finished run.")
            continue
        built.tables.append(main)
        blocks += [to_markdown(main)] + ([note] if note else [])
        for ablation in ablations:
            table = summary.ablation_table(results, dataset, ablation, spec.models, columns)
            if table.rows:
                built.tables.append(table)
                blocks.append(to_markdown(table))
        for a, b in spec.compare:
            found = summary.compare(results, dataset, a, b)
            built.comparisons += found
            blocks.append(summary.comparison_markdown(found, columns) if found else f"No seed with finished runs of both {a} and {b} on {dataset}: no comparison.")
        if spec.missing_matrix:
            built.robustness[dataset] = summary.robustness_tables(_robustness_results(planned, dataset), dataset, spec.models)
            blocks += [to_markdown(t) for t in built.robustness[dataset]]
    return built


def _write_outputs(spec: BenchmarkSpec, built: BenchmarkTables, results: list[dict[str, Any]]) -> list[Path]:
    out = spec.out
    written = [out / "results.csv", out / "summary.md", out / "summary.csv", out / "summary.tex"]
    write_results(results, written[0])
    lines = [
        "# Benchmark summary",
        "",
        *([f"Generated by `{spec.command}`."] if spec.command else []),
        f"Seeds {', '.join(map(str, spec.seeds))}; every value is a test metric of the best-on-validation checkpoint, {STD_NOTE}. "
        "Per-run numbers: results.csv.",
    ]
    for dataset, blocks in built.sections.items():
        lines += ["", f"## {dataset}"]
        for block in blocks:
            lines += ["", block]
    write_text(written[1], "\n".join(lines) + "\n")
    write_text(written[2], tables_csv(built.tables))
    latex = [to_latex(t, f"tab:{_label(t.title)}") for t in built.tables + [t for ts in built.robustness.values() for t in ts]]
    write_text(written[3], "% generated by mmer benchmark; needs \\usepackage{booktabs}\n\n" + "\n\n".join(latex) + "\n")
    if built.comparisons:
        write_text(out / "comparisons.csv", summary.comparisons_csv(built.comparisons))
        written.append(out / "comparisons.csv")
    if built.robustness:
        written += _write_robustness(out, built.robustness)
    return written


def _robustness_results(planned: list[grid.PlannedRun], dataset: str) -> dict[tuple[str, str, int], dict[str, Any]]:
    from mmer.report import robustness

    found = {}
    for p in planned:
        if p.spec.dataset == dataset and not p.spec.variant and _finished(p):
            data = robustness.load(p.run_dir / robustness.RUN_SUBDIR)
            if data is not None:
                found[(dataset, p.spec.entry, p.spec.seed)] = data
    return found


def _write_robustness(out: Path, tables: dict[str, list[Table]]) -> list[Path]:
    from mmer.report import plotting, robustness

    flat = [t for ts in tables.values() for t in ts]
    written = [out / "robustness_summary.csv"]
    keys = tuple(dict.fromkeys(c for t in flat for c in t.columns))
    write_text(written[0], tables_csv(flat, keys))
    if plotting.has_matplotlib():
        for dataset, (by_subset, by_rate) in ((d, ts) for d, ts in tables.items() if len(ts) == 2):
            written.append(robustness.plot_models(by_subset, by_rate, f"Missing-modality robustness on {dataset}", out / f"robustness_{dataset}.png"))
    return written


def _label(title: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-")
