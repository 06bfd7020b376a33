"""`mmer benchmark`: run models x datasets x seeds (and ablation rows), then tabulate the results.

- `ablations.py`  ablation files: named override sets, one table each
- `grid.py`       the run grid, its directory layout, and running it (skip complete runs, resume interrupted ones)
- `results.py`    one row per finished run (results.csv)
- `stats.py`      mean and sample std over seeds; paired comparison with a t-based confidence interval
- `tables.py`     paper-style tables rendered as Markdown, CSV and LaTeX
- `summary.py`    the tables a grid's results give: per dataset, ablation, paired comparison, robustness
- `runner.py`     the whole benchmark: plan, run, collect, write every output
"""
