"""SimResult: everything one simulated launch produced, with summaries and exports."""

import dataclasses

from . import trace


@dataclasses.dataclass(frozen=True)
class SimResult:
    """The outcome of :func:`refsim.simulate`.

    ``records``: one :class:`~refsim.trace.WorkRecord` per work item, by program then step
    (split-K's reduction launch last). ``fixups``: one :class:`~refsim.simulator.Fixup` per
    split tile. ``deadlock``: None, or a :class:`~refsim.simulator.Deadlock`. ``output`` and
    ``partials`` are set when input arrays were given (see :mod:`refsim.numerics`).
    """

    config: object
    plan: object
    records: list
    fixups: list
    deadlock: object
    makespan_us: float
    busy_us: list
    output: object = None
    partials: list = None

    @property
    def tflops(self):
        """Predicted throughput, 2*M*N*K over the makespan (0 for a deadlocked run)."""
        if self.deadlock is not None or self.makespan_us <= 0:
            return 0.0
        return self.config.flops / (self.makespan_us * 1e6)

    def xcd_utilisation(self):
        """Per XCD: busy CU time over (CUs of the XCD x makespan)."""
        c = self.config
        per_xcd = c.cus // c.xcds
        span = self.makespan_us or 1.0
        return [
            sum(self.busy_us[x * per_xcd : (x + 1) * per_xcd]) / (per_xcd * span)
            for x in range(c.xcds)
        ]

    def summary_dict(self):
        c = self.config
        longest = max(self.fixups, key=lambda f: f.wait_us, default=None)
        if longest is not None and longest.wait_us <= 0:
            longest = None
        return {
            "problem": {"m": c.m, "n": c.n, "k": c.k, "dtype": c.dtype},
            "device": c.profile.name,
            "cus": c.cus,
            "xcds": c.xcds,
            "strategy": c.strategy,
            "fixup": c.fixup if c.strategy == "streamk" else None,
            "blocks": [c.block_m, c.block_n, c.block_k],
            "group_m": c.group_m,
            "grid": c.grid,
            "tiles": c.total_tiles,
            "iters_per_tile": c.iters_per_tile,
            "dp_tiles": c.dp_tiles,
            "sk_tiles": c.sk_tiles if c.strategy == "streamk" else 0,
            "split_k": c.split_k if c.strategy == "split_k" else None,
            "work_items": len(self.records),
            "makespan_us": self.makespan_us,
            "tflops": self.tflops,
            "xcd_utilisation": self.xcd_utilisation(),
            "fixups": len(self.fixups),
            "longest_wait_us": longest.wait_us if longest else 0.0,
            "longest_wait_tile": longest.tile if longest else None,
            "deadlock": str(self.deadlock) if self.deadlock else None,
        }

    def summary(self):
        """A short human-readable report."""
        s = self.summary_dict()
        c = self.config
        lines = [
            f"GEMM {c.m}x{c.n}x{c.k} {c.dtype} on {s['device']} ({c.cus} CUs, {c.xcds} XCDs)",
            f"strategy {c.strategy}"
            + (f", fixup {c.fixup}" if c.strategy == "streamk" else "")
            + (f", split_k {c.split_k}" if c.strategy == "split_k" else "")
            + f", blocks {c.block_m}x{c.block_n}x{c.block_k}, group_m {c.group_m}, grid {c.grid}",
            f"tiles {c.total_tiles} ({c.num_pid_m}x{c.num_pid_n}), {c.iters_per_tile} K-iterations each: "
            + (
                f"each split {c.split_k} ways"
                if c.strategy == "split_k" and c.split_k > 1
                else f"{s['dp_tiles']} DP, {s['sk_tiles']} SK"
            )
            + f"; {s['work_items']} work items",
            f"makespan {self.makespan_us:.2f} us, predicted {self.tflops:.1f} TFLOP/s",
            "XCD utilisation " + " ".join(f"{u:.0%}" for u in s["xcd_utilisation"]),
            f"fixups {s['fixups']}, longest wait {s['longest_wait_us']:.2f} us"
            + (f" (tile {s['longest_wait_tile']})" if s["longest_wait_tile"] is not None else ""),
        ]
        if self.deadlock is not None:
            lines.append(str(self.deadlock))
        return "\n".join(lines)

    def to_chrome_trace(self, path):
        trace.write_chrome_trace(self.records, path, metadata=self.summary_dict())

    def plot_gantt(self, path):
        c = self.config
        trace.plot_gantt(
            self.records,
            path,
            title=f"{c.strategy} {c.m}x{c.n}x{c.k} on {c.profile.name}: {self.makespan_us:.1f} us",
        )
