"""Experiments: compare models on the same data, and sweep a grid of configs.

:func:`compare` trains several models (Keras or scikit-learn baselines) on one
loaded dataset, each into its own run folder, and writes ``compare.csv``,
``compare.json`` and ``compare.png`` beside them.

:func:`run_sweep` trains one trial per config of a grid (built with
:func:`build_grid`, each config ``dataclasses.replace(base, **overrides)``)
and answers the tutorial's questions (more neurons? more layers?) with
mean ± standard deviation over seeds.  Each finished trial is recorded as
``trials/<key>.json`` in the sweep folder, written atomically, keyed by a
stable hash of its config and of the data (:func:`trial_key`), so re-running
the same sweep on the same folder skips what is done.  Trials run in this
process, in a pool of fresh local processes, or as tasks on a Ray cluster;
a seeded CPU trial computes the same numbers wherever it runs.

Training seconds exclude XLA compilation, reported beside them as
``compile_seconds``.

The modules: :mod:`.comparison`; :mod:`.grid` (assignments, grids, trial keys);
:mod:`.sweep` (running and resuming); :mod:`.executors` (here, process pool,
Ray); :mod:`.records` (rows and records read from runs); :mod:`.reports`
(tables, CSV, summaries); :mod:`.plots` (matplotlib, loaded only to draw).
"""

from digitlab.experiments._models import default_models
from digitlab.experiments.comparison import Comparison, compare
from digitlab.experiments.grid import (
    build_grid,
    data_fingerprint,
    grid_configs,
    parse_assignment,
    trial_key,
)
from digitlab.experiments.plots import plot_comparison, plot_sweep
from digitlab.experiments.records import RUN_DEPENDENT_FIELDS, comparable, comparison_row
from digitlab.experiments.reports import (
    COMPARE_CSV,
    COMPARE_JSON,
    COMPARE_PNG,
    RESULTS_CSV,
    RESULTS_JSON,
    SUMMARY_CSV,
    format_compare_table,
    format_sweep_table,
    summarize,
    write_sweep_results,
)
from digitlab.experiments.sweep import TRIALS_FOLDER, SweepResult, execute_trial, run_sweep

__all__ = [
    "COMPARE_CSV",
    "COMPARE_JSON",
    "COMPARE_PNG",
    "RESULTS_CSV",
    "RESULTS_JSON",
    "RUN_DEPENDENT_FIELDS",
    "SUMMARY_CSV",
    "TRIALS_FOLDER",
    "Comparison",
    "SweepResult",
    "build_grid",
    "comparable",
    "compare",
    "comparison_row",
    "data_fingerprint",
    "default_models",
    "execute_trial",
    "format_compare_table",
    "format_sweep_table",
    "grid_configs",
    "parse_assignment",
    "plot_comparison",
    "plot_sweep",
    "run_sweep",
    "summarize",
    "trial_key",
    "write_sweep_results",
]
