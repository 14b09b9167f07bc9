"""Sweep results: a Parquet dataset directory of part files, one row per configuration.

Each finished batch becomes one part file, written under a hidden temporary name and renamed,
so that a reader (or a resumed sweep) never sees half a part. Columns (:data:`SCHEMA`):

* every GemmConfig field by name: the value the spec *requested* (null when not given);
* ``key``: the configuration's canonical string (:func:`refsim.sweep.spec.config_key`), unique
  in a dataset; a resumed sweep skips the keys already present;
* ``error``: why the configuration was refused (GemmConfig or size limit), else null;
* ``makespan_us``, ``tflops`` (null when refused, deadlocked or work lost),
  ``xcd_utilisation``, ``longest_fixup_wait_us`` (0 without fixups), ``deadlock``,
  ``coverage_errors``: the simulation's outcome, all null for a refused configuration;
* ``calibration``: the calibration the row was simulated with
  (:func:`refsim.sweep.runner.calibration_label`: profile, GPU, date and a digest of its
  contents), or ``datasheet`` when none was used; null when refused; ``refsim_version``;
* ``used_grid``, ``used_sk_tiles``, ``used_block_m``, ``used_block_n``, ``used_block_k``,
  ``used_strategy``: what the built configuration derived (``used_sk_tiles`` 0 without
  Stream-K tiles; ``used_strategy`` GemmConfig's default when the spec gave none; null when
  refused). Parts written before ``used_strategy`` existed read it as null.
"""

import os
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .spec import OPTION_FIELDS, value_type

ARROW_TYPES = {int: pa.int64(), bool: pa.bool_(), str: pa.string()}
SCHEMA = pa.schema(
    [pa.field(name, ARROW_TYPES[value_type(name)]) for name in OPTION_FIELDS]
    + [
        pa.field("key", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("makespan_us", pa.float64()),
        pa.field("tflops", pa.float64()),
        pa.field("xcd_utilisation", pa.list_(pa.float64())),
        pa.field("longest_fixup_wait_us", pa.float64()),
        pa.field("deadlock", pa.bool_()),
        pa.field("coverage_errors", pa.list_(pa.string())),
        pa.field("calibration", pa.string()),
        pa.field("refsim_version", pa.string()),
    ]
    + [
        pa.field(f"used_{name}", pa.int64())
        for name in ("grid", "sk_tiles", "block_m", "block_n", "block_k")
    ]
    + [pa.field("used_strategy", pa.string())]
)
PART_PREFIX = "part-"
PART_SUFFIX = ".parquet"
TEMP_PREFIX = ".writing-"


class NotResultsError(ValueError):
    """A path that is not a sweep results dataset."""


def part_files(path: str) -> list[str]:
    """The finished part files of dataset ``path``, sorted."""
    return sorted(
        os.path.join(path, name)
        for name in os.listdir(path)
        if name.startswith(PART_PREFIX) and name.endswith(PART_SUFFIX)
    )


def check_dataset(path: str, *, may_be_new: bool = False) -> None:
    """NotResultsError unless ``path`` is a results directory holding only part files.

    ``may_be_new``: a missing or empty directory is accepted (a sweep's first run).
    """
    if not os.path.exists(path):
        if may_be_new:
            return
        raise NotResultsError(f"{path}: no such results dataset")
    if not os.path.isdir(path):
        raise NotResultsError(f"{path}: not a results dataset (a file, not a directory)")
    names = os.listdir(path)
    others = [
        name
        for name in names
        if not name.startswith(TEMP_PREFIX)
        and not (name.startswith(PART_PREFIX) and name.endswith(PART_SUFFIX))
    ]
    if others:
        raise NotResultsError(f"{path}: not a results dataset (it holds {others[0]!r})")
    if not may_be_new and not part_files(path):
        raise NotResultsError(f"{path}: not a results dataset (no part files)")


def read_results(path: str) -> pa.Table:
    """Every row of results dataset ``path`` as one pyarrow Table (``.to_pandas()`` with pandas).

    NotResultsError when ``path`` is missing or not a results dataset.
    """
    check_dataset(path)
    return pa.concat_tables([pq.read_table(part, schema=SCHEMA) for part in part_files(path)])


def done_keys(path: str) -> set[str]:
    """The keys already in dataset ``path`` (empty for a new one)."""
    if not os.path.isdir(path):
        return set()
    return {
        key
        for part in part_files(path)
        for key in pq.read_table(part, columns=["key"]).column("key").to_pylist()
    }


def calibrations(path: str) -> set[tuple[str | None, str]]:
    """The (requested device, calibration) pairs of dataset ``path``'s simulated rows."""
    if not os.path.isdir(path):
        return set()
    pairs = set()
    for part in part_files(path):
        table = pq.read_table(part, columns=["device", "calibration"])
        for device, label in zip(*(column.to_pylist() for column in table.columns)):
            if label is not None:
                pairs.add((device, label))
    return pairs


def remove_stale_temporaries(path: str) -> None:
    """Delete parts left half-written by an interrupted run (never seen by readers)."""
    for name in os.listdir(path):
        if name.startswith(TEMP_PREFIX):
            os.remove(os.path.join(path, name))


def write_part(path: str, rows: list[dict[str, Any]]) -> str:
    """Write ``rows`` as a new part of dataset ``path`` atomically; returns the part's path."""
    name = f"{PART_PREFIX}{uuid.uuid4().hex}{PART_SUFFIX}"
    temporary = os.path.join(path, TEMP_PREFIX + name)
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), temporary)
    final = os.path.join(path, name)
    os.replace(temporary, final)
    return final
