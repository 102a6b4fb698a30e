"""Run folders: their schema (:mod:`digitlab.runs.schema`) and reading and
writing them (:mod:`digitlab.runs.folder`)."""

from digitlab.runs.folder import (
    Run,
    check_run_dir,
    default_run_dir,
    load_classifier,
    load_run,
    now,
    save_run,
    versions,
)
from digitlab.runs.schema import (
    CONFIG_FILE,
    HISTORY_FILE,
    INFO_FILE,
    METRICS_FILE,
    REPORT_FILES,
    DataInfo,
    History,
    Metrics,
    RunInfo,
)

__all__ = [
    "CONFIG_FILE",
    "HISTORY_FILE",
    "INFO_FILE",
    "METRICS_FILE",
    "REPORT_FILES",
    "DataInfo",
    "History",
    "Metrics",
    "Run",
    "RunInfo",
    "check_run_dir",
    "default_run_dir",
    "load_classifier",
    "load_run",
    "now",
    "save_run",
    "versions",
]
