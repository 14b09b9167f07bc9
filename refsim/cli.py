"""The ``refsim`` command line: ``refsim simulate M N K ...`` and ``refsim devices``."""

import argparse
import json
import os
import re
import sys

from . import simulate
from .config import FIXUPS, SK_HYBRIDS, STRATEGIES
from .hardware import DEFAULT_DEVICE, PROFILES

CLI_NAMES = {
    "m": "M",
    "n": "N",
    "k": "K",
    "block_m": "--block",
    "block_n": "--block",
    "block_k": "--block",
}
CLI_NAMES.update(
    {
        name: "--" + name.replace("_", "-")
        for name in (
            "cus",
            "xcds",
            "grid",
            "fixup",
            "strategy",
            "device",
            "dtype",
            "jitter",
            "seed",
            "group_m",
            "sk_tiles",
            "sk_hybrid",
            "split_k",
            "counters_per_xcd",
            "global_counter",
        )
    }
)


class UsageError(Exception):
    """Bad input from the command line: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _blocks(text):
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not BMxBNxBK, e.g. 256x256x64")
    return tuple(int(p) for p in parts)


def _parser():
    parser = _Parser(prog="refsim", description="Simulate tiled GEMM schedules on GPUs.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sim = commands.add_parser("simulate", help="simulate one GEMM launch and print a summary")
    for dim in ("M", "N", "K"):
        sim.add_argument(dim, type=int)
    sim.add_argument("--cus", type=int, help="CUs/SMs to use (default: the device's)")
    sim.add_argument("--xcds", type=int, help="XCDs (default: the device's)")
    sim.add_argument("--device", default=DEFAULT_DEVICE, help=f"one of {', '.join(PROFILES)}")
    sim.add_argument("--strategy", default="streamk", help=f"one of {', '.join(STRATEGIES)}")
    sim.add_argument("--block", type=_blocks, default=(256, 256, 64), help="BMxBNxBK (256x256x64)")
    sim.add_argument("--group-m", type=int, default=8)
    sim.add_argument("--fixup", default="owner-waits", help=f"one of {', '.join(FIXUPS)}")
    sim.add_argument("--sk-tiles", type=int, help="Stream-K tiles (default: by --sk-hybrid)")
    sim.add_argument("--sk-hybrid", default="two-tile", help=f"one of {', '.join(SK_HYBRIDS)}")
    sim.add_argument("--grid", type=int, help="programs to launch (default: by strategy)")
    sim.add_argument("--split-k", type=int, help="split-K factor (strategy split_k)")
    sim.add_argument(
        "--counters-per-xcd", type=int, default=1, help="work-stealing counters per XCD"
    )
    sim.add_argument("--global-counter", action="store_true", help="work stealing: one counter")
    sim.add_argument("--dtype", default="bf16", help="fp16, bf16 or fp32")
    sim.add_argument("--jitter", type=float, default=0.0, help="per-CU slowdown spread in [0, 1)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--trace", metavar="OUT.json", help="write a Chrome/Perfetto trace")
    sim.add_argument("--gantt", metavar="OUT.png", help="write a Gantt chart (needs matplotlib)")
    sim.add_argument("--json", action="store_true", help="print the summary as JSON")
    commands.add_parser("devices", help="list the hardware profiles")
    return parser


def _devices():
    rows = [
        ("name", "vendor", "CUs", "XCDs", "MHz", "bf16 TF/s", "fp32 TF/s", "HBM GB/s", "L2/XCD MiB")
    ]
    for p in PROFILES.values():
        rows.append(
            (
                p.name + (" (default)" if p.name == DEFAULT_DEVICE else ""),
                p.vendor,
                str(p.cus),
                str(p.xcds),
                str(p.clock_mhz),
                f"{p.peak_tflops['bf16']:.1f}",
                f"{p.peak_tflops['fp32']:.1f}",
                f"{p.hbm_gbps:.0f}",
                f"{p.l2_mib_per_xcd:g}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())


def _simulate(args):
    bm, bn, bk = args.block
    res = simulate(
        args.M,
        args.N,
        args.K,
        args.cus,
        device=args.device,
        strategy=args.strategy,
        block_m=bm,
        block_n=bn,
        block_k=bk,
        group_m=args.group_m,
        xcds=args.xcds,
        grid=args.grid,
        sk_tiles=args.sk_tiles,
        sk_hybrid=args.sk_hybrid,
        fixup=args.fixup,
        counters_per_xcd=args.counters_per_xcd,
        global_counter=args.global_counter,
        split_k=args.split_k,
        dtype=args.dtype,
        jitter=args.jitter,
        seed=args.seed,
    )
    if args.json:
        print(json.dumps(res.summary_dict(), indent=2))
    else:
        print(res.summary())
    if args.trace:
        res.to_chrome_trace(args.trace)
        print(f"trace written to {args.trace}", file=sys.stderr)
    if args.gantt:
        res.plot_gantt(args.gantt)
        print(f"Gantt chart written to {args.gantt}", file=sys.stderr)
    return 1 if res.deadlock is not None else 0


def _flag_names(message):
    """Say ``--sk-hybrid``/``M`` where the library says ``sk_hybrid``/``m``."""
    return re.sub(
        r"\b(m|n|k|[a-z]+_[a-z_]+|cus|xcds|grid|fixup|strategy|device|dtype|jitter|seed)=",
        lambda match: CLI_NAMES.get(match.group(1), match.group(1)) + "=",
        message,
    )


def _check_writable(path):
    """Fail before simulating if an output file cannot be written (without creating it)."""
    if path is None:
        return
    if os.path.isdir(path):
        raise OSError(f"cannot write {path}: it is a folder")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OSError(f"cannot write {path}: no folder {folder}")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise OSError(f"cannot write {path}: permission denied")


def main(argv=None):
    """Entry point; returns the exit code (0 ok, 1 deadlock predicted, 2 bad input)."""
    try:
        args = _parser().parse_args(argv)
        if args.command == "devices":
            _devices()
            return 0
        _check_writable(args.trace)
        _check_writable(args.gantt)
        return _simulate(args)
    except SystemExit as exc:  # --help
        return exc.code
    except (UsageError, ValueError, OSError, RuntimeError) as exc:
        print(f"refsim: error: {_flag_names(str(exc))}", file=sys.stderr)
        return 2
