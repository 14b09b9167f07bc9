"""``refsim sweep``: many GemmConfigs simulated on a Dask cluster into a Parquet dataset.

:func:`run_sweep` runs a YAML spec (:mod:`refsim.sweep.spec`) into a results directory
(:mod:`refsim.sweep.results`), resuming what is already there; :func:`read_results` reads one
back. Needs the ``sweep`` extra (dask[distributed], pyarrow, pyyaml).
"""

from .results import NotResultsError, read_results
from .runner import SweepSummary, run_sweep
from .spec import SpecError, expand, load_spec

__all__ = [
    "NotResultsError",
    "SpecError",
    "SweepSummary",
    "expand",
    "load_spec",
    "read_results",
    "run_sweep",
]
