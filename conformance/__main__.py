"""``python -m conformance --device cpu|cuda [--set quick|full] [--cases FILE] [--report DIR]``.

Runs the cases against the project's kernels and the known-wrong mutants, each case in a worker
process (``--jobs`` of them), prints a table, writes JSON and Markdown to ``--report``, and exits
non-zero on any failure (a case failing, or a mutant not caught with its expected cause). A
kernel that crashes, or makes no progress for ``--hang-timeout`` seconds, fails its case and the
run goes on. ``--kernel module:factory`` checks the kernel that ``factory()`` builds instead, on
the cases as its schedule follows them, without mutants. A bad invocation -- an unknown option,
a case file that cannot be read, a report folder that cannot be written, a ``--kernel`` that
builds no kernel, nothing to check (a case file with no case, a kernel whose schedule makes
every case invalid, a shard with no case) -- exits 2 with one line.
"""

import argparse
import os
import pickle
import sys
import tempfile
import time

from .backend import select_backend


def _shard(text):
    """``I/N`` -> ``(I, N)`` with ``1 <= I <= N``."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        index, count = 0, 0
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"expected I/N with 1 <= I <= N, not {text!r}")
    return index, count


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m conformance",
        description="Check the kernels against refsim, and that known-wrong kernels are caught.",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        required=True,
        help="cpu: Triton's interpreter; cuda: the GPU",
    )
    parser.add_argument(
        "--set",
        dest="case_set",
        choices=("quick", "full"),
        default=None,
        help="named case set (default: quick on cpu, full on cuda)",
    )
    parser.add_argument(
        "--cases", metavar="FILE", help="a JSON file of cases instead of a named set"
    )
    parser.add_argument(
        "--kernel",
        metavar="MODULE:FACTORY",
        help="check the KernelUnderTest that FACTORY() builds instead of the project's kernels "
        "(no mutants)",
    )
    parser.add_argument("--report", metavar="DIR", help="folder for report.json and report.md")
    parser.add_argument(
        "--determinism-runs",
        type=int,
        default=3,
        metavar="N",
        help="launches on the same random inputs that must agree bit for bit",
    )
    parser.add_argument("--no-mutants", action="store_true", help="skip the known-wrong kernels")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="worker processes (each compiles its own kernels; try one per core)",
    )
    parser.add_argument(
        "--hang-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds a kernel launch may run before its case counts as hung",
    )
    parser.add_argument(
        "--shard",
        type=_shard,
        default=(1, 1),
        metavar="I/N",
        help="run every N-th case starting at the I-th (mutants go with shard 1)",
    )
    return parser


def _writable(folder):
    """Create ``folder`` if needed and prove a file can be written in it, so that a run does not
    end, after all its work, unable to write its report."""
    try:
        os.makedirs(folder, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise ValueError(f"--report {folder}: cannot write there: {exc.strerror}") from None


def _kernel_cases(spec, cases):
    """``(cases, skipped)``: the cases as the kernel that factory ``spec`` builds follows them
    (:func:`conformance.cases.follow`); ValueError with one line when it builds no kernel, or
    its ``follows`` cannot travel to a worker process. Imports the kernel's module: call it
    once the backend is selected."""
    from .cases import follow
    from .runner import load_kernel

    try:
        kut = load_kernel(spec)
        pickle.dumps(kut.follows)
    except ValueError as exc:
        raise ValueError(f"--kernel {spec}: {exc}") from None
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        raise ValueError(
            f"--kernel {spec}: its follows cannot be sent to a worker process (a follows "
            f"function or schedule hook must be a module-level function): {exc}"
        ) from None
    return follow(cases, kut.follows or {})


def _shard_of(cases, shard):
    """Every ``N``-th of ``cases`` starting at the ``I``-th, for ``shard = (I, N)``; ValueError
    with one line when that leaves none (more shards than cases)."""
    index, count = shard
    mine = cases[index - 1 :: count]
    if not mine:
        raise ValueError(
            f"--shard {index}/{count}: no case falls in this shard, of {len(cases)} in all; "
            f"use at most {len(cases)} shards"
        )
    return mine


def main(argv=None):
    """The command line; exit code 0 (all well), 1 (a failure) or 2 (a bad invocation).

    It sets ``TRITON_INTERPRET`` for its device before any kernel module is imported, and puts
    the caller's value back on return, so that a Python caller (a test) keeps its own backend
    for the kernels it jits afterwards.
    """
    saved = os.environ.get("TRITON_INTERPRET")
    try:
        return _main(argv)
    finally:
        if saved is None:
            os.environ.pop("TRITON_INTERPRET", None)
        else:
            os.environ["TRITON_INTERPRET"] = saved


def _main(argv):
    args = _parser().parse_args(argv)
    if args.determinism_runs < 2 or args.jobs < 1:
        print(
            "conformance: error: --determinism-runs must be at least 2 and --jobs at least 1",
            file=sys.stderr,
        )
        return 2
    if not args.hang_timeout > 0:
        print("conformance: error: --hang-timeout must be above 0 seconds", file=sys.stderr)
        return 2
    select_backend(args.device)  # before anything imports a kernel module
    import torch
    from tqdm import tqdm

    from . import report
    from .cases import full_set, load_cases, quick_set
    from .mutants import MUTANTS, mutants_for
    from .runner import run_cases, run_parallel

    case_set = args.case_set or ("quick" if args.device == "cpu" else "full")
    try:
        if args.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda but no GPU is visible")
        if args.cases and args.case_set:
            raise ValueError("pass --cases or --set, not both")
        if args.cases:
            try:
                cases = load_cases(args.cases)
            except OSError as exc:
                raise ValueError(f"--cases {args.cases}: cannot read it: {exc.strerror}") from None
        elif case_set == "quick":
            cases = quick_set()
        elif args.device == "cpu":
            raise ValueError("the full set is for a GPU (--device cuda); the CPU runs --set quick")
        else:
            cases = full_set(torch.cuda.get_device_properties(0).multi_processor_count)
        if not cases:
            raise ValueError(f"--cases {args.cases}: the file lists no case")
        for case in cases:
            try:
                case.config()
            except (ValueError, TypeError) as exc:
                raise ValueError(f"case {case.name}: {exc}") from None
        if args.kernel:
            cases, skipped = _kernel_cases(args.kernel, cases)
            for name, reason in skipped:
                print(f"skipped case {name}: the kernel's schedule makes it invalid: {reason}")
            if not cases:
                raise ValueError(
                    f"--kernel {args.kernel}: its schedule makes every case invalid "
                    "(each skipped above), so nothing would be checked"
                )
        cases = _shard_of(cases, args.shard)
        if args.report:
            _writable(args.report)
    except ValueError as exc:
        print(f"conformance: error: {exc}", file=sys.stderr)
        return 2
    index, count = args.shard
    mutants = () if args.no_mutants or args.kernel or index != 1 else mutants_for(args.device)
    started = time.monotonic()
    with tqdm(total=len(cases) + len(mutants), unit="case", file=sys.stderr) as bar:
        step = lambda result: (bar.set_postfix_str(result.case.name[:30]), bar.update())
        if args.kernel:
            mutant_results = []
            case_results = run_cases(
                cases,
                args.device,
                args.kernel,
                args.determinism_runs,
                step,
                args.jobs,
                args.hang_timeout,
            )
        else:
            case_results, mutant_results = run_parallel(
                cases,
                mutants,
                args.device,
                args.jobs,
                args.determinism_runs,
                step,
                args.hang_timeout,
            )
    print(report.table(case_results, mutant_results))
    gpu_only = [m.name for m in MUTANTS if mutants and m not in mutants]
    left = ", ".join(gpu_only) + " (their paths run only on a GPU)" if gpu_only else ""
    if left:
        print(f"mutants not run on {args.device}: {left}")
    if args.report:
        env = report.environment(args.device)
        env.update(
            **({"cases": args.cases} if args.cases else {"set": case_set}),
            shard=f"{index}/{count}",
            jobs=args.jobs,
            wall_seconds=round(time.monotonic() - started, 1),
        )
        if args.kernel:
            env["kernel"] = args.kernel
        if left:
            env["mutants_not_run"] = left
        report.write(args.report, env, case_results, mutant_results)
        print(f"report written to {args.report}/report.json and report.md")
    totals = report.totals(case_results, mutant_results)
    bad = totals["failed"] + totals["mutants"] - totals["mutants_caught_with_right_cause"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
