"""Paper-style tables: mean ± sample std over seeds, best value in bold, rendered as Markdown, LaTeX and CSV.

Layouts follow the papers' tables:
    mosei  Acc, P, R, Micro-F1                (CMU-MOSEI / M3ED: RAMer Tables 2-3, CARAT, TAILOR, AMP)
    memor  Micro-F1, Macro-F1, Weighted-F1    (MEmoR: RAMer Table 1)
    all    every metric of the suite
`auto` picks `memor` for multi-party data with more than two persons per clip (MEmoR's protocol) and `mosei`
otherwise. The CSV always carries every metric, whatever the layout shows.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

from mmer.benchmark.stats import Summary
from mmer.data.dataset import DataSpec
from mmer.metrics import LOWER_IS_BETTER, METRIC_KEYS

HEADERS = {
    "acc": "Acc",
    "hamming_loss": "HL",
    "precision": "P",
    "recall": "R",
    "micro_f1": "Micro-F1",
    "macro_f1": "Macro-F1",
    "weighted_f1": "Weighted-F1",
}
LAYOUTS: dict[str, tuple[str, ...]] = {
    "mosei": ("acc", "precision", "recall", "micro_f1"),
    "memor": ("micro_f1", "macro_f1", "weighted_f1"),
    "all": METRIC_KEYS,
}
DIGITS = 3
STD_NOTE = "mean ± sample standard deviation over the n seeds (ddof=1, i.e. divided by n-1; n=1: the single value)"


def layout_for(spec: DataSpec | None, style: str = "auto") -> tuple[str, ...]:
    if style != "auto":
        return LAYOUTS[style]
    if spec is not None and spec.multi_party and spec.max_persons > 2:
        return LAYOUTS["memor"]
    return LAYOUTS["mosei"]


@dataclass
class Row:
    label: str
    cells: dict[str, Summary]  # metric -> summary over seeds (every metric available, not only the shown ones)
    reference: bool = False  # a dataset reference point (chance, ceiling), not a model: never bold


@dataclass
class Table:
    title: str
    caption: str
    columns: tuple[str, ...]  # the cell keys shown (metric names for metric tables)
    rows: list[Row] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=lambda: dict(HEADERS))  # column key -> header text
    row_header: str = "Method"

    def header(self, column: str) -> str:
        return self.headers.get(column, column)

    def best(self) -> set[tuple[int, str]]:
        """(row index, column) of the best model mean per shown column, compared at the printed precision
        (ties are all bold); higher is better except for hamming_loss."""
        marks = set()
        for column in self.columns:
            scored = [(i, round(r.cells[column].mean, DIGITS)) for i, r in enumerate(self.rows) if not r.reference and column in r.cells]
            if not scored:
                continue
            pick = min if column in LOWER_IS_BETTER else max
            target = pick(v for _, v in scored)
            marks.update((i, column) for i, v in scored if v == target)
        return marks


def format_summary(s: Summary) -> str:
    if s.n < 2 or math.isnan(s.std):
        return f"{s.mean:.{DIGITS}f}"
    return f"{s.mean:.{DIGITS}f} ± {s.std:.{DIGITS}f}"


def _n(row: Row) -> str:
    if row.reference or not row.cells:
        return "–"
    return str(max(s.n for s in row.cells.values()))


def to_markdown(table: Table) -> str:
    best = table.best()
    lines = [f"**{table.title}.** {table.caption}", ""]
    lines.append("| " + " | ".join([table.row_header, "n", *(table.header(c) for c in table.columns)]) + " |")
    lines.append("|---|---:|" + "---:|" * len(table.columns))
    for i, row in enumerate(table.rows):
        label = row.label.replace("|", "\\|")
        cells = []
        for m in table.columns:
            text = format_summary(row.cells[m]) if m in row.cells else "–"
            cells.append(f"**{text}**" if (i, m) in best else text)
        lines.append("| " + " | ".join([f"*{label}*" if row.reference else label, _n(row), *cells]) + " |")
    return "\n".join(lines)


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "−": "-"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def to_latex(table: Table, label: str = "") -> str:
    """A booktabs table (needs \\usepackage{booktabs}); reference rows below a rule, in italics."""
    best = table.best()
    out = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(table.title)}. {latex_escape(table.caption)}}}",
    ]
    if label:
        out.append(rf"\label{{{label}}}")
    out += [r"\begin{tabular}{lr" + "c" * len(table.columns) + "}", r"\toprule"]
    out.append(" & ".join([latex_escape(table.row_header), "$n$", *(latex_escape(table.header(c)) for c in table.columns)]) + r" \\")
    out.append(r"\midrule")
    models = [(i, r) for i, r in enumerate(table.rows) if not r.reference]
    references = [(i, r) for i, r in enumerate(table.rows) if r.reference]
    for group_index, group in enumerate((models, references)):
        if group_index and group:
            out.append(r"\midrule")
        for i, row in group:
            cells = []
            for m in table.columns:
                if m not in row.cells:
                    cells.append("--")
                    continue
                s = row.cells[m]
                text = f"{s.mean:.{DIGITS}f}" if s.n < 2 or math.isnan(s.std) else rf"{s.mean:.{DIGITS}f} \pm {s.std:.{DIGITS}f}"
                cells.append(rf"$\mathbf{{{text}}}$" if (i, m) in best else f"${text}$")
            name = rf"\textit{{{latex_escape(row.label)}}}" if row.reference else latex_escape(row.label)
            out.append(" & ".join([name, "--" if _n(row) == "–" else _n(row), *cells]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out)


def tables_csv(tables: list[Table], keys: tuple[str, ...] = METRIC_KEYS) -> str:
    """Long CSV: one line per table row, `<key>_mean` and `<key>_std` for every key in `keys` (all metrics by
    default, whatever the tables show); std empty for n=1."""
    buf = io.StringIO()
    columns = ["table", "row", "reference", "n", *(f"{k}_{stat}" for k in keys for stat in ("mean", "std"))]
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for table in tables:
        for row in table.rows:
            record: dict[str, object] = {"table": table.title, "row": row.label, "reference": int(row.reference), "n": "" if row.reference else _n(row)}
            for k in keys:
                s = row.cells.get(k)
                record[f"{k}_mean"] = "" if s is None else f"{s.mean:.6f}"
                record[f"{k}_std"] = "" if s is None or math.isnan(s.std) else f"{s.std:.6f}"
            writer.writerow(record)
    return buf.getvalue()
