"""The synchronisation check: its rules on hand-made event logs, the reference kernels (in the
interpreter's order and shuffled), and the mutants whose bug only the event log shows."""

import types

import pytest
import torch

from conformance import Case
from conformance.adapter import reference
from conformance.checks import check_addition_order
from conformance.harness import launch
from conformance.inputs import integer_inputs
from conformance.mutants import MUTANTS, build
from conformance.synchronisation import check_synchronisation
from kernels.backend import program_order, shuffled_order

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = [pytest.mark.gpu] if DEVICE == "cuda" else [pytest.mark.interpreter]

ONE_WAVE = (("sk_hybrid", "one-wave"),)
CONFIG = Case("sync", 64, 64, 80, cus=3, options=ONE_WAVE).config()
EPOCH = 7
# Program 2 stores its partial of tile 5 in slot 4 and publishes flag 2.
STORED = [(2, "store", 4, 5), (2, "publish", 2, EPOCH)]
# Programs 0 and 1 store their partials of tile 2 (slots 1 and 2) and arrive at counter 2.
ARRIVED = [(0, "store", 1, 2), (0, "arrive", 2, 0), (1, "store", 2, 2), (1, "arrive", 2, 1)]

LOGS = {  # name: (events, what else the run carries, cause or None, a fragment of the reasons)
    "waited and acquired": (
        STORED + [(1, "wait", 2, EPOCH), (1, "acquire", 2, EPOCH), (1, "load", 4, 5)],
        {},
        None,
        "events",
    ),
    "loaded without waiting": (
        STORED + [(1, "load", 4, 5)],
        {},
        "partial read before its release",
        "program 1 loaded slot 4 (stored by program 2, tile 5 (pid_m 1, pid_n 1)) without "
        "waiting on program 2's flag 2",
    ),
    "waited on another flag": (
        STORED
        + [(0, "publish", 0, EPOCH), (1, "wait", 0, EPOCH), (1, "acquire", 0, EPOCH)]
        + [(1, "load", 4, 5)],
        {},
        "partial read before its release",
        "without waiting on program 2's flag 2",
    ),
    "waits for a value nobody publishes": (
        [(1, "wait", 2, EPOCH + 1), (1, "acquire", 2, EPOCH), (1, "load", 4, 5), *STORED],
        {},
        "kernel hung",
        f"program 1 waits on flag 2 for {EPOCH + 1}, which no program of this launch publishes",
    ),
    "acquired a value other than the epoch": (
        [(1, "wait", 2, EPOCH), (1, "acquire", 2, EPOCH - 1), (1, "load", 4, 5), *STORED],
        {},
        "partial read before its release",
        f"after its wait on flag 2 read {EPOCH - 1}, not the epoch {EPOCH}",
    ),
    "flag published before the store": (
        [(2, "publish", 2, EPOCH), (2, "store", 4, 5)]
        + [(1, "wait", 2, EPOCH), (1, "acquire", 2, EPOCH), (1, "load", 4, 5)],
        {},
        "flag set before its partial is stored",
        "program 1 loaded slot 4 (stored by program 2, tile 5 (pid_m 1, pid_n 1)) but program "
        "2 published flag 2 before storing it",
    ),
    "last arrival reduces": (
        ARRIVED + [(1, "load", 1, 2), (1, "load", 2, 2)],
        {},
        None,
        "6 events",
    ),
    "reduced before the final arrival": (
        ARRIVED[:2] + [(0, "load", 1, 2), (0, "load", 2, 2)] + ARRIVED[2:],
        {},
        "partial read before its release",
        "program 0 loaded slot 2 (stored by program 1, tile 2 (pid_m 2, pid_n 0)) after "
        "arriving 1 of 2 at counter 2: it reduced before the final arrival",
    ),
    "arrived before the store": (
        [(0, "arrive", 2, 0), (0, "store", 1, 2), *ARRIVED[2:], (1, "load", 1, 2)],
        {},
        "flag set before its partial is stored",
        "but program 0 arrived at counter 2 before storing it",
    ),
    "slot nobody stored": (
        [(0, "load", 9, 2)],
        {},
        "partial read before it was written",
        "program 0 loaded slot 9 (tile 2 (pid_m 2, pid_n 0)), which no program stored",
    ),
    "flag already at the epoch": (
        STORED,
        {"epoch": EPOCH, "flags_before": torch.tensor([0, EPOCH, EPOCH - 1], dtype=torch.int32)},
        "flag held a stale epoch",
        f"flag(s) 1 held this launch's epoch {EPOCH} before it started",
    ),
    "records dropped": (
        STORED,
        {"overruns": 3},
        "record overrun",
        "3 trace record(s) or event(s) did not fit",
    ),
    "overrun without events": (
        None,
        {"overruns": 1},
        "record overrun",
        "1 trace record(s) or event(s)",
    ),
}


@pytest.mark.parametrize("name", LOGS)
def test_rules_on_hand_made_logs(name):
    events, carried, cause, fragment = LOGS[name]
    run = types.SimpleNamespace(events=events, **carried)
    finding = check_synchronisation(CONFIG, run)
    assert (finding.passed, finding.cause) == (cause is None, cause), finding.reasons
    assert any(fragment in reason for reason in finding.reasons), finding.reasons


def test_no_events_and_nothing_dropped_is_no_finding():
    assert check_synchronisation(CONFIG, types.SimpleNamespace(events=None, overruns=0)) is None
    assert check_synchronisation(CONFIG, types.SimpleNamespace()) is None


def test_the_most_serious_class_names_the_cause_and_at_most_five_reasons_are_kept():
    unwaited = [(1, "load", 4, 5)] * 6
    run = types.SimpleNamespace(events=[*unwaited, (2, "store", 4, 5)])
    finding = check_synchronisation(CONFIG, run)
    assert finding.cause == "partial never released"
    assert len(finding.reasons) == 5
    assert finding.reasons[0] == "program 2 stored partial slot(s) [4] and never released them"


SYNC_CASES = [
    Case("sync-owner-waits", 64, 64, 80, fixup="owner-waits", cus=3, options=ONE_WAVE),
    Case("sync-turnstile-remap", 80, 32, 40, fixup="turnstile", xcds=2, options=ONE_WAVE),
    Case("sync-last-arriver", 16, 32, 160, fixup="last-arriver", options=ONE_WAVE),
]


@pytest.mark.parametrize("case", SYNC_CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("seed", [None, 1, 2])
def test_the_reference_kernels_synchronise_in_any_program_order(case, seed):
    """Shuffled orders leave owner-waits and turnstile their own (required) order; last-arriver
    really runs shuffled, so another program arrives last."""
    kut, config = reference(), case.config()
    with program_order(None if seed is None else shuffled_order(seed)):
        run, _ = launch(kut, config, case, integer_inputs(case), DEVICE, trace=True)
    finding = check_synchronisation(config, run)
    assert finding.passed and run.events, finding.reasons


@pytest.mark.skipif(DEVICE == "cuda", reason="the program order is the interpreter's")
def test_last_arriver_under_shuffled_orders_adds_in_refsims_order():
    case = Case("shuffled-last-arriver", 16, 32, 160, fixup="last-arriver", options=ONE_WAVE)
    kut, config = reference(), case.config()
    reducers = set()
    for seed in (1, 2, 3, 4):
        with program_order(shuffled_order(seed)):
            order = check_addition_order(kut, case, config, DEVICE)
            run, _ = launch(kut, config, case, integer_inputs(case), DEVICE, trace=True)
        assert order.passed, order.reasons
        reducers |= {program for program, kind, _, _ in run.events if kind == "load"}
    assert len(reducers) > 1  # the shuffles changed which program reduced


SYNC_MUTANTS = {
    "flag-before-store",
    "turnstile-no-wait",
    "last-arriver-early",
    "stale-epoch",
    "trace-rows-short",
    "arrive-before-store",
}


@pytest.mark.parametrize(
    "mutant", [m for m in MUTANTS if m.name in SYNC_MUTANTS], ids=lambda m: m.name
)
def test_the_event_log_shows_each_synchronisation_mutant(mutant):
    """The second launch: a stale epoch shows only once an earlier launch set the flags."""
    kut, config = build(mutant), mutant.case.config()
    inputs = integer_inputs(mutant.case)
    launch(kut, config, mutant.case, inputs, DEVICE, trace=False)
    run, _ = launch(kut, config, mutant.case, inputs, DEVICE, trace=True)
    finding = check_synchronisation(config, run)
    assert finding.cause == mutant.expected_cause, finding.reasons
