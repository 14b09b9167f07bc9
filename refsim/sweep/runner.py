"""Running a sweep on a Dask cluster: batches of configurations in, one Parquet part per batch out.

The client expands the spec, drops the configurations already in the output dataset, cuts the
rest into batches and submits one task per batch; each finished batch is written (by the
client, so workers need no shared filesystem) as one atomic part file. An interrupted sweep
loses only the batches in flight; running it again finishes the rest.

The configurations to run and the calibration go to the workers once (``Client.scatter``); a
task names only its slice of them, so the graph stays a few bytes per task however large the
spec (Dask warns about graphs over 10 MiB).
"""

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import sys
from collections.abc import Iterator
from typing import Any

from .. import __version__
from ..calibration import Calibration, for_profile
from ..config import GemmConfig
from ..hardware import DEFAULT_DEVICE, get_profile
from . import results
from .spec import OPTION_FIELDS, CalibrationChoice, config_key, load_sweep

# The ``calibration`` of a row simulated with none: the profile's datasheet numbers.
DATASHEET = "datasheet"
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


def calibration_label(calibration: Calibration | None) -> str:
    """How a row names the calibration it was simulated with: ``datasheet`` for none, else its
    profile, GPU, date and the start of the SHA-256 of its contents (refits keep the date)."""
    if calibration is None:
        return DATASHEET
    text = json.dumps(calibration.to_dict(), sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"{calibration.profile} {calibration.describe()} sha256:{digest}"


def expected_label(device: str | None, choice: CalibrationChoice) -> str:
    """The calibration label of a row of ``device`` (null: the default) swept with ``choice``."""
    if choice is False:
        return DATASHEET
    if isinstance(choice, Calibration):
        return calibration_label(choice)
    return calibration_label(for_profile(get_profile(device or DEFAULT_DEVICE).name))


def simulate_row(
    requested: dict[str, Any], calibration: CalibrationChoice = None
) -> dict[str, Any]:
    """The results row of one requested configuration (see :mod:`refsim.sweep.results`),
    simulated with ``calibration`` (as :func:`refsim.simulate` takes it: None for the profile's
    shipped one)."""
    from ..api import calibration_for, simulate

    row: dict[str, Any] = dict.fromkeys(results.SCHEMA.names)
    row.update((name, requested.get(name)) for name in OPTION_FIELDS)
    row.update(key=config_key(requested), refsim_version=__version__)
    try:
        config = GemmConfig(**requested)
        used = calibration_for(config, calibration)
        result = simulate(config, calibration=False if used is None else used)
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
        calibration=calibration_label(used),
        used_strategy=config.strategy,
        used_grid=config.grid,
        used_sk_tiles=config.sk_tiles or 0,
        used_block_m=config.block_m,
        used_block_n=config.block_n,
        used_block_k=config.block_k,
    )
    return row


def run_batch(
    batch: list[dict[str, Any]], calibration: CalibrationChoice = None
) -> list[dict[str, Any]]:
    """The rows of a batch of requested configurations."""
    return [simulate_row(requested, calibration) for requested in batch]


def run_slice(
    shared: tuple[list[dict[str, Any]], CalibrationChoice], start: int, stop: int
) -> list[dict[str, Any]]:
    """The rows of ``todo[start:stop]`` of the scattered ``(todo, calibration)`` (one task)."""
    todo, calibration = shared
    return run_batch(todo[start:stop], calibration)


def batch_size(configurations: int, workers: int) -> int:
    """Configurations per task: about BATCHES_PER_WORKER per worker, within the bounds above."""
    wanted = math.ceil(configurations / (max(1, workers) * BATCHES_PER_WORKER))
    return max(MIN_BATCH, min(MAX_BATCH, wanted))


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
    sweep = load_sweep(spec_path)
    configurations = sweep.configurations
    results.check_dataset(out, may_be_new=True)
    if not os.path.isdir(out):
        os.mkdir(out)  # not its parents: a missing folder is a mistyped path
    results.remove_stale_temporaries(out)
    done = results.done_keys(out)
    _check_calibration(out, sweep.calibration)
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
            _run(client, todo, out, size, progress, summary, calibration=sweep.calibration)
    return SweepSummary(**summary)


def _check_calibration(out: str, choice: CalibrationChoice) -> None:
    """ValueError when dataset ``out`` holds rows simulated with another calibration than the
    one this run would use for them: resuming would mix the two under one set of keys."""
    for device, label in results.calibrations(out):
        wanted = expected_label(device, choice)
        if label != wanted:
            raise ValueError(
                f"{out} holds rows simulated with calibration {label!r}, and this spec would "
                f"use {wanted!r}: sweep into another --out, or set the spec's calibration"
            )


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
    calibration: CalibrationChoice = None,
) -> None:
    """Scatter ``todo`` once, submit one small task per batch of it and write each batch's rows
    as it finishes."""
    from distributed import as_completed
    from tqdm import tqdm

    workers = sum(client.nthreads().values())
    step = size or batch_size(len(todo), workers)
    # a list of one item: scatter sends each item of a list as its own piece of data
    [shared] = client.scatter([(todo, calibration)], broadcast=True, hash=False)
    starts = range(0, len(todo), step)
    tasks = client.map(
        run_slice,
        [shared] * len(starts),
        list(starts),
        [start + step for start in starts],
        pure=False,
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
    shared.release()
