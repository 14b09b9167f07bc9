"""Running a sweep on a Dask cluster: batches of configurations in, one Parquet part per batch out.

The client expands the spec, drops the configurations already in the output dataset, cuts the
rest into batches and submits one task per batch; each finished batch is written (by the
client, so workers need no shared filesystem) as one atomic part file. An interrupted sweep
loses only the batches in flight; running it again finishes the rest.
"""

import contextlib
import dataclasses
import logging
import math
import os
import sys
from collections.abc import Iterator
from typing import Any

from .. import __version__
from ..config import GemmConfig
from . import results
from .spec import OPTION_FIELDS, config_key, load_spec

# Where the profiles' numbers come from: every profile is built from datasheets; no calibration
# fitted on a real GPU exists yet.
CALIBRATION = "datasheet"
# Simulations take ~10 ms and a Dask task costs ~1 ms to schedule, so 16 configurations a batch
# keep the overhead small; 8 batches per worker keep the workers evenly busy to the end; 256 a
# batch bound what an interruption loses.
MIN_BATCH = 16
MAX_BATCH = 256
BATCHES_PER_WORKER = 8


@dataclasses.dataclass(frozen=True)
class SweepSummary:
    """What one run of a sweep did."""

    configurations: int  # in the spec
    already_done: int  # skipped: their keys were in the output already
    simulated: int  # new rows written by this run
    refused: int  # new rows with an error
    parts: int  # part files written by this run


def simulate_row(requested: dict[str, Any]) -> dict[str, Any]:
    """The results row of one requested configuration (see :mod:`refsim.sweep.results`)."""
    from ..api import simulate

    row: dict[str, Any] = dict.fromkeys(results.SCHEMA.names)
    row.update((name, requested.get(name)) for name in OPTION_FIELDS)
    row.update(key=config_key(requested), calibration=CALIBRATION, refsim_version=__version__)
    try:
        config = GemmConfig(**requested)
        result = simulate(config)
    except ValueError as exc:
        row["error"] = str(exc)
        return row
    waits = [fixup.wait_us for fixup in result.fixups]
    row.update(
        makespan_us=result.makespan_us,
        tflops=result.tflops if result.deadlock is None else None,
        xcd_utilisation=result.xcd_utilisation(),
        longest_fixup_wait_us=max(waits, default=0.0),
        deadlock=result.deadlock is not None,
        coverage_errors=[str(error) for error in result.coverage_errors],
    )
    row.update(
        used_grid=config.grid,
        used_sk_tiles=config.sk_tiles or 0,
        used_block_m=config.block_m,
        used_block_n=config.block_n,
        used_block_k=config.block_k,
    )
    return row


def run_batch(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of a batch of requested configurations (one Dask task)."""
    return [simulate_row(requested) for requested in batch]


def batch_size(configurations: int, workers: int) -> int:
    """Configurations per task: about BATCHES_PER_WORKER per worker, within the bounds above."""
    wanted = math.ceil(configurations / (max(1, workers) * BATCHES_PER_WORKER))
    return max(MIN_BATCH, min(MAX_BATCH, wanted))


def batches(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def run_sweep(
    spec_path: str,
    out: str,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    size: int | None = None,
    progress: bool = True,
) -> SweepSummary:
    """Run the sweep of YAML spec ``spec_path`` into dataset ``out``, resuming what is there.

    ``scheduler``: the address of a running Dask scheduler (``tcp://host:port``); without it an
    embedded LocalCluster runs ``workers`` processes (default: one per core) of one thread.
    ``size``: configurations per batch (default: :func:`batch_size`). Bad specs raise
    :class:`~refsim.sweep.spec.SpecError` and a path that is not a results dataset
    :class:`~refsim.sweep.results.NotResultsError`, both before anything runs.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers: {workers} is not a positive number of workers")
    if size is not None and size < 1:
        raise ValueError(f"batch size: {size} is not a positive number of configurations")
    if scheduler is not None and workers is not None:
        raise ValueError("give either a scheduler address or a number of workers, not both")
    configurations = load_spec(spec_path)
    results.check_dataset(out, may_be_new=True)
    os.makedirs(out, exist_ok=True)
    results.remove_stale_temporaries(out)
    done = results.done_keys(out)
    todo = [c for c in configurations if config_key(c) not in done]
    summary = dict(
        configurations=len(configurations),
        already_done=len(configurations) - len(todo),
        simulated=0,
        refused=0,
        parts=0,
    )
    if todo:
        with _client(scheduler, workers) as client:
            _run(client, todo, out, size, progress, summary)
    return SweepSummary(**summary)


@contextlib.contextmanager
def _client(scheduler: str | None, workers: int | None) -> Iterator[Any]:
    """A Dask client of the cluster at ``scheduler``, or of a new embedded one (closed with it)."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _run(
    client: Any,
    todo: list[dict[str, Any]],
    out: str,
    size: int | None,
    progress: bool,
    summary: dict[str, int],
) -> None:
    """Submit ``todo`` in batches and write each batch's rows as it finishes."""
    from distributed import as_completed
    from tqdm import tqdm

    workers = sum(client.nthreads().values())
    tasks = client.map(
        run_batch, list(batches(todo, size or batch_size(len(todo), workers))), pure=False
    )
    with tqdm(total=len(todo), unit="config", file=sys.stderr, disable=not progress) as bar:
        for task in as_completed(tasks):
            rows = task.result()
            results.write_part(out, rows)
            task.release()
            summary["parts"] += 1
            summary["simulated"] += len(rows)
            summary["refused"] += sum(row.get("error") is not None for row in rows)
            bar.update(len(rows))
