"""The ``refsim`` command line: ``refsim simulate M N K ...``, ``refsim devices``, ``refsim
calibrate`` (measure the local GPU, :mod:`refsim.calibration`), ``refsim compare M N K ...``
(the local GPU's measured timeline beside the prediction, :mod:`refsim.compare`), and the sweep
commands ``refsim sweep SPEC.yaml --out RESULTS.parquet`` (:mod:`refsim.sweep`), ``refsim best``,
``refsim table`` and ``refsim heatmap`` (answers from the results, :mod:`refsim.sweep.answers`).

The options of ``simulate`` are :class:`~refsim.config.GemmConfig`'s fields, read from the
dataclass: ``--name-with-dashes`` for field ``name_with_dashes``, ``--block BMxBNxBK`` for the
three block fields, with each field's help text and default.
"""

import argparse
import dataclasses
import importlib
import importlib.util
import json
import os
import re
import signal
import sys
import typing
from typing import Any

from . import __version__, compare, simulate, trace
from .calibration import for_profile, save
from .config import DEFAULT_BLOCKS, FIELD_NAMES, GemmConfig, option_strategies
from .hardware import DEFAULT_DEVICE, PROFILES
from .strategies import strategy_options

SIZES = {"m": "M", "n": "N", "k": "K"}
RUN_FLAGS = {"jitter": "--jitter", "seed": "--seed"}


def _flag(name: str) -> str:
    """The command-line spelling of GemmConfig field or run option ``name``."""
    if name in SIZES:
        return SIZES[name]
    if name in DEFAULT_BLOCKS:
        return "--block"
    return "--" + name.replace("_", "-")


FLAGS = {name: _flag(name) for name in FIELD_NAMES + tuple(RUN_FLAGS)}


class UsageError(Exception):
    """Bad input from the command line: reported as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _blocks(text: str) -> tuple[int, ...]:
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not BMxBNxBK, e.g. 256x256x64")
    return tuple(int(p) for p in parts)


def _value_type(field: dataclasses.Field) -> type:
    """``int``, ``bool`` or ``str``: what the field holds, leaving out None and profiles."""
    kinds = set(typing.get_args(field.type)) or {field.type}
    return next((kind for kind in (bool, int) if kind in kinds), str)


def _help(field: dataclasses.Field) -> str:
    text = field.metadata["help"]
    if field.metadata["choices"]:
        text += f"; one of {', '.join(field.metadata['choices'])}"
    default = field.metadata.get("strategy_default", field.default)
    if isinstance(default, bool):
        text += f" (default {'on' if default else 'off'})"
    elif default is not None:
        text += f" (default {default})"
    if field.name in strategy_options():
        text += f"; {' and '.join(option_strategies(field.name))} only"
    return text


def _add_sizes(parser: argparse.ArgumentParser) -> None:
    """The positional M, N, K, with GemmConfig's words for each."""
    for field in dataclasses.fields(GemmConfig):
        if field.name in SIZES:
            parser.add_argument(SIZES[field.name], type=int, help=field.metadata["help"])


def _add_config_options(sim: argparse.ArgumentParser) -> None:
    """One option per GemmConfig field (``--block`` for the three block fields)."""
    default_blocks = "x".join(map(str, DEFAULT_BLOCKS.values()))
    sim.add_argument(
        "--block",
        type=_blocks,
        default=argparse.SUPPRESS,
        metavar="BMxBNxBK",
        help=f"block sizes (default {default_blocks}, each fitted to a smaller dimension)",
    )
    for field in dataclasses.fields(GemmConfig):
        if not field.init or field.name in SIZES or field.name in DEFAULT_BLOCKS:
            continue
        kind = _value_type(field)
        options: dict[str, Any] = {"default": argparse.SUPPRESS, "help": _help(field)}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        else:
            options.update(type=kind, metavar="N" if kind is int else "NAME")
        sim.add_argument(FLAGS[field.name], dest=field.name, **options)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="refsim", description="Simulate tiled GEMM schedules on GPUs.")
    parser.add_argument("--version", action="version", version=f"refsim {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sim = commands.add_parser("simulate", help="simulate one GEMM launch and print a summary")
    _add_sizes(sim)
    _add_config_options(sim)
    sim.add_argument(
        "--jitter", type=float, default=0.0, metavar="X", help="per-CU slowdown spread in [0, 1)"
    )
    sim.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the jitter")
    sim.add_argument("--trace", metavar="OUT.json", help="write a Chrome/Perfetto trace")
    sim.add_argument(
        "--gantt",
        metavar="OUT.png",
        help=f"write a Gantt chart ({', '.join(trace.GANTT_FORMATS)}; needs matplotlib)",
    )
    sim.add_argument("--json", action="store_true", help="print the summary as JSON")
    clock = sim.add_mutually_exclusive_group()
    clock.add_argument(
        "--calibration",
        metavar="FILE.json",
        help="time with this calibration (default: the one refsim ships for the device, if any)",
    )
    clock.add_argument(
        "--no-calibration",
        dest="calibration",
        action="store_false",
        help="time with the device's datasheet numbers",
    )
    calibrate = commands.add_parser(
        "calibrate", help="measure the local GPU and fit the cost model's parameters"
    )
    calibrate.add_argument("--device", default="cuda", help="the torch device (default cuda)")
    calibrate.add_argument(
        "--out", metavar="FILE.json", help="where to write it (default calibration-PROFILE.json)"
    )
    calibrate.add_argument(
        "--repeats", type=_positive, default=3, metavar="N", help="traced runs per problem"
    )
    _add_compare_command(commands)
    devices = commands.add_parser("devices", help="list the hardware profiles")
    devices.add_argument("--json", action="store_true", help="print every field as JSON")
    _add_sweep_commands(commands)
    return parser


def _add_compare_command(commands: Any) -> None:
    """``compare``: ``simulate``'s sizes and config options, the torch device and the outputs."""
    command = commands.add_parser(
        "compare", help="run a config's kernel on a local torch device beside refsim's prediction"
    )
    _add_sizes(command)
    _add_config_options(command)
    command.add_argument(
        "--on",
        choices=("cuda", "cpu"),
        default="cuda",
        help="the torch device that runs the kernel (default cuda; cpu runs Triton's "
        "interpreter, whose clock counts steps, and needs TRITON_INTERPRET=1)",
    )
    command.add_argument(
        "--trace",
        required=True,
        metavar="OUT.json",
        help="write both timelines to one Chrome/Perfetto trace",
    )
    command.add_argument(
        "--gantt",
        metavar="STEM",
        help="write STEM-measured.png and STEM-predicted.png on one time axis (needs matplotlib)",
    )


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def _add_sweep_commands(commands: Any) -> None:
    """``sweep`` and the commands that answer questions from its results."""
    sweep = commands.add_parser(
        "sweep", help="simulate every configuration of a YAML spec on a Dask cluster"
    )
    sweep.add_argument("spec", metavar="SPEC.yaml", help="the spec (see refsim.sweep.spec)")
    sweep.add_argument(
        "--out",
        required=True,
        metavar="RESULTS.parquet",
        help="results dataset directory; a re-run skips the configurations already there",
    )
    cluster = sweep.add_mutually_exclusive_group()
    cluster.add_argument(
        "--scheduler", metavar="ADDRESS", help="a running Dask scheduler, e.g. tcp://host:7786"
    )
    cluster.add_argument(
        "--workers",
        type=_positive,
        metavar="N",
        help="worker processes of the embedded cluster (default: one per core)",
    )
    sweep.add_argument(
        "--batch-size",
        type=_positive,
        metavar="N",
        help="configurations per task and part file (default: by the sweep's size)",
    )
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    best = commands.add_parser("best", help="the best configuration per shape of sweep results")
    best.add_argument("results", metavar="RESULTS.parquet")
    best.add_argument(
        "--by",
        default="shape",
        choices=("shape", "strategy"),
        help="group the rows by (default shape)",
    )
    best.add_argument("--json", action="store_true", help="print the rows as JSON")
    table = commands.add_parser("table", help="a per-device lookup table from sweep results")
    table.add_argument("results", metavar="RESULTS.parquet")
    table.add_argument("--device", required=True, help="the device of the table")
    table.add_argument("--out", required=True, metavar="TABLE.json", help="where to write it")
    heatmap = commands.add_parser("heatmap", help="a heatmap of the best strategy at one K")
    heatmap.add_argument("results", metavar="RESULTS.parquet")
    heatmap.add_argument("--k", type=_positive, required=True, metavar="K", help="the K to plot")
    heatmap.add_argument("--out", required=True, metavar="OUT.png", help="where to write it")
    heatmap.add_argument("--device", help="the device to plot, when the results hold several")
    heatmap.add_argument("--dtype", help="the dtype to plot, when the results hold several")


def _calibration_dict(profile: str) -> dict | None:
    calibration = for_profile(profile)
    return None if calibration is None else calibration.to_dict()


def _clock(profile: str) -> str:
    """Where a profile's times come from: its shipped calibration, or the datasheet."""
    calibration = for_profile(profile)
    return "datasheet" if calibration is None else calibration.describe()


def _devices(as_json: bool) -> None:
    if as_json:
        profiles = [
            dict(
                dataclasses.asdict(p),
                default=p.name == DEFAULT_DEVICE,
                calibration=_calibration_dict(p.name),
            )
            for p in PROFILES.values()
        ]
        print(json.dumps(profiles, indent=2))
        return
    rows = [
        (
            "name",
            "vendor",
            "CUs",
            "XCDs",
            "MHz",
            "bf16 TF/s",
            "fp32 TF/s",
            "HBM GB/s",
            "L2/XCD MiB",
            "clock",
        )
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
                _clock(p.name),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())


def _simulate(args: argparse.Namespace) -> int:
    options = {name: getattr(args, name) for name in FIELD_NAMES if hasattr(args, name)}
    if hasattr(args, "block"):
        options.update(zip(DEFAULT_BLOCKS, args.block))
    res = simulate(
        args.M,
        args.N,
        args.K,
        jitter=args.jitter,
        seed=args.seed,
        calibration=getattr(args, "calibration", None),
        **options,
    )
    _print_summary(json.dumps(res.summary_dict(), indent=2) if args.json else res.summary())
    if args.trace:
        res.to_chrome_trace(args.trace)
        print(f"trace written to {args.trace}", file=sys.stderr)
    if args.gantt:
        res.plot_gantt(args.gantt)
        print(f"Gantt chart written to {args.gantt}", file=sys.stderr)
    return 1 if res.deadlock is not None or res.coverage_errors else 0


def _kernels_torch(command: str) -> Any:
    """torch, for a command that runs the kernels; UsageError when torch or Triton is missing.
    Imported by name: refsim itself stays free of torch (and of its type checking)."""
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("triton") is None:
        raise UsageError(f"{command} runs the kernels: install torch and triton")
    return importlib.import_module("torch")


def _calibrate(args: argparse.Namespace) -> int:
    """Measure the local GPU (``kernels.calibrate``) and write the calibration."""
    torch = _kernels_torch("calibrate")
    if not str(args.device).startswith("cuda"):
        raise UsageError(f"calibrate --device {args.device}: it measures a CUDA GPU (cuda, cuda:N)")
    if not torch.cuda.is_available():
        raise UsageError(
            f"calibrate --device {args.device}: needs a CUDA GPU "
            "(torch.cuda.is_available() is False)"
        )
    measure = importlib.import_module("kernels.calibrate").measure
    found = measure(args.device, repeats=args.repeats, progress=print)
    path = args.out or f"calibration-{found.profile}.json"
    save(found, path)
    print(f"calibration of {found.profile} ({found.gpu}) written to {path}", file=sys.stderr)
    return 0


INPUT_SEED = 0  # of compare's random inputs: the same inputs on every run


def _compare(args: argparse.Namespace) -> int:
    """Run the config's kernel on ``args.on`` (a warm-up run, then the traced one), simulate
    it, print the comparison and write the trace and charts (:mod:`refsim.compare`). The
    config comes from the options as ``simulate`` builds it."""
    _check_output("--trace", args.trace, ("json",))
    gantt_paths = compare.gantt_pair_paths(args.gantt) if args.gantt else ()
    for path in gantt_paths:
        _check_output("--gantt", path, ("png",))
    if gantt_paths and importlib.util.find_spec("matplotlib") is None:
        raise UsageError(f"--gantt needs matplotlib: {trace.MATPLOTLIB_INSTALL}")
    if args.on == "cpu" and os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        # asked before torch and the kernels load (seconds): the same test as kernels.backend's
        raise UsageError("compare --on cpu runs Triton's interpreter: set TRITON_INTERPRET=1")
    torch = _kernels_torch("compare")
    options = {name: getattr(args, name) for name in FIELD_NAMES if hasattr(args, name)}
    if hasattr(args, "block"):
        options.update(zip(DEFAULT_BLOCKS, args.block))
    if args.on == "cuda" and not torch.cuda.is_available():
        raise UsageError("compare --on cuda: needs a CUDA GPU (torch.cuda.is_available() is False)")
    if args.on == "cuda" and "device" not in options:
        # the local GPU's profile and SM count, unless the options name another profile
        device_profile = importlib.import_module("kernels.device").device_profile
        profile, units = device_profile(torch.cuda.current_device())
        options.update(device=profile, cus=options.get("cus", units))
        if profile.vendor == "nvidia":
            options.setdefault("xcds", 1)
    config = GemmConfig(args.M, args.N, args.K, **options)
    prediction = simulate(config)  # first: it refuses runs beyond refsim's limits at once
    device = torch.device(args.on)
    measured = _measured_records(torch, config, device)
    predicted = prediction.records
    c = config
    problem = f"{c.strategy}{f' ({c.fixup})' if c.fixup else ''} {c.m}x{c.n}x{c.k} {c.dtype}"
    measured_on = (
        torch.cuda.get_device_name(device)
        if args.on == "cuda"
        else "the CPU (Triton's interpreter: its times count steps, not us)"
    )
    lines = [f"{problem}: predicted on {c.profile.name} ({c.cus} CUs), measured on {measured_on}"]
    lines += compare.comparison_lines(measured, predicted, measured_in_steps=args.on == "cpu")
    if prediction.deadlock is not None:
        lines.append(f"refsim predicts a {str(prediction.deadlock).splitlines()[0]}")
    _print_summary("\n".join(lines))
    metadata = {
        "refsim": prediction.summary_dict(),
        "measured_on": measured_on,
        "measured_makespan_us": compare.makespan_us(measured),
        "predicted_makespan_us": compare.makespan_us(predicted),
    }
    compare.write_comparison(measured, predicted, args.trace, metadata)
    print(f"trace written to {args.trace}", file=sys.stderr)
    if gantt_paths:
        compare.plot_gantt_pair(measured, predicted, args.gantt, problem)
        print(f"Gantt charts written to {' and '.join(gantt_paths)}", file=sys.stderr)
    return 0


def _measured_records(torch: Any, config: GemmConfig, device: Any) -> list:
    """The work records of ``config``'s kernel on ``device`` with random inputs, from a traced
    run after a warm-up run."""
    dtype = importlib.import_module("kernels.dtypes").TORCH_DTYPES[config.dtype]
    generator = torch.Generator().manual_seed(INPUT_SEED)
    a, b = (
        torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
        for shape in ((config.m, config.k), (config.k, config.n))
    )
    # The atomic fixup adds partials with fp32 atomics in arrival order: it needs an fp32
    # output and gives up determinism.
    atomic = config.protocol is not None and config.protocol.atomic
    out = torch.empty((config.m, config.n), dtype=torch.float32, device=device) if atomic else None
    run = importlib.import_module("kernels").run
    # The warm-up is traced too: tracing is a compile-time switch, so it compiles this kernel.
    run(config, a, b, out=out, deterministic=not atomic, trace=True)
    return run(config, a, b, out=out, deterministic=not atomic, trace=True).records


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _sweep_package() -> Any:
    """:mod:`refsim.sweep`, or RuntimeError saying how to install what it needs."""
    try:
        return importlib.import_module(".sweep", __package__)
    except ImportError as exc:
        raise RuntimeError(
            f"the sweep commands need the sweep extra ({exc.name} is missing): "
            "pip install 'refsim[sweep]'"
        ) from None


def _sweep(args: argparse.Namespace) -> int:
    """Run the sweep; a Ctrl-C or SIGTERM keeps the finished parts and says how to resume."""
    run_sweep = _sweep_package().run_sweep
    _check_folder(args.out)
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        done = run_sweep(
            args.spec,
            args.out,
            scheduler=args.scheduler,
            workers=args.workers,
            size=args.batch_size,
            progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        print(
            f"refsim: interrupted; the finished batches are in {args.out}: "
            "run the same command again to finish the sweep",
            file=sys.stderr,
        )
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(
        f"{done.configurations} configurations: {done.simulated} simulated "
        f"({done.refused} refused), {done.already_done} already in {args.out}"
    )
    return 0


def _answer(args: argparse.Namespace) -> int:
    """``best``, ``table`` or ``heatmap``: an answer from the results at ``args.results``."""
    _sweep_package().results.check_dataset(args.results)
    from .sweep import answers

    if args.command in ("table", "heatmap"):
        _check_folder(args.out)
    if args.command == "best":
        rows = answers.best(args.results, by=args.by)
        _print_summary(json.dumps(rows, indent=1) if args.json else answers.format_best(rows))
    elif args.command == "table":
        table = answers.table(args.results, args.device)
        with open(args.out, "w") as file:
            json.dump(table, file, indent=1)
        print(f"table written to {args.out}")
    else:
        try:
            answers.heatmap(args.results, args.k, args.out, device=args.device, dtype=args.dtype)
        except answers.AmbiguousChoice as exc:
            raise UsageError(
                f"K={args.k} has rows of {exc.field}s {', '.join(exc.values)}: "
                f"pick one with --{exc.field}"
            ) from None
        print(f"heatmap written to {args.out}")
    return 0


def _print_summary(text: str) -> None:
    """Print to stdout; a reader that leaves early (``| head``) ends the printing quietly."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Point stdout at /dev/null so that the flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _flag_names(message: str) -> str:
    """Say ``--sk-hybrid``/``M`` where the library says ``sk_hybrid``/``m``."""
    names = "|".join(sorted(FLAGS, key=len, reverse=True))
    return re.sub(rf"\b({names})=", lambda match: FLAGS[match.group(1)] + "=", message)


def _check_output(flag: str, path: str | None, formats: tuple[str, ...]) -> None:
    """Fail before simulating if an output file has an unknown format or cannot be written
    (without creating it)."""
    if path is None:
        return
    suffix = os.path.splitext(path)[1].lower().lstrip(".")
    if suffix not in formats:
        raise UsageError(
            f"{flag} {path}: name the file *.{', *.'.join(formats)} (the format it is written in)"
        )
    if os.path.isdir(path):
        raise OSError(f"cannot write {path}: it is a folder")
    _check_folder(path)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise OSError(f"cannot write {path}: permission denied")


def _check_folder(path: str) -> None:
    """Fail unless the folder that would hold ``path`` exists and is writable (creating
    nothing): outputs never create missing folders."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OSError(f"cannot write {path}: no folder {folder}")
    if not os.access(folder, os.W_OK):
        raise OSError(f"cannot write {path}: permission denied")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 deadlock or lost work predicted, 2 bad input,
    130 a sweep interrupted)."""
    command = None
    try:
        args = _parser().parse_args(argv)
        command = args.command
        if args.command == "devices":
            _devices(args.json)
            return 0
        if args.command == "calibrate":
            _check_output("--out", args.out, ("json",))
            return _calibrate(args)
        if args.command == "compare":
            return _compare(args)
        if args.command in SWEEP_COMMANDS:
            return SWEEP_COMMANDS[args.command](args)
        _check_output("--trace", args.trace, ("json",))
        _check_output("--gantt", args.gantt, trace.GANTT_FORMATS)
        if args.gantt and importlib.util.find_spec("matplotlib") is None:
            raise UsageError(f"--gantt needs matplotlib: {trace.MATPLOTLIB_INSTALL}")
        return _simulate(args)
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else 0
    except (UsageError, ValueError, OSError, RuntimeError) as exc:
        message = str(exc) if command in SWEEP_COMMANDS else _flag_names(str(exc))
        print(f"refsim: error: {message}", file=sys.stderr)
        return 2


SWEEP_COMMANDS = {"sweep": _sweep, "best": _answer, "table": _answer, "heatmap": _answer}


if __name__ == "__main__":
    raise SystemExit(main())
