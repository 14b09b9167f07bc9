"""The cost model: how long a work item, a store or a fixup step takes on a simulated CU.

Per K-iteration of a ``BM x BN x BK`` block, on a CU running ``r`` resident programs::

    t_iter    = max(t_compute, t_memory)
    t_compute = 2*BM*BN*BK / (peak[dtype] / CUs_of_the_device) * r
    t_memory  = (R*BM*BK*e + C*BK*BN*e) / (HBM / X)

``e`` is the element size. L2 reuse, per XCD (one L2): the programs streaming on an XCD touch
``R`` distinct tile rows ``pid_m`` and ``C`` distinct tile columns ``pid_n``; each A and B block
is fetched from HBM once per K-step by whoever comes first and hit in L2 by the rest. The XCD
streams those blocks at its share of HBM bandwidth, ``HBM / X`` with ``X`` the XCDs that have a
program streaming, and all of its programs advance at that pace. The counts are taken when the
item starts, this item included. The model assumes the blocks in flight fit in L2 (4 MB per XCD
holds the 38 programs' 256x64 bf16 A and B blocks) and ignores DRAM page and NUMA effects.

Epilogue and fixup traffic: a program moving ``b`` bytes while ``p`` programs stream on its
XCD takes ``b * p / (HBM / X)``. A finished tile stores ``BM*BN*e`` bytes (plus ``BN*e`` of
bias); an fp32 partial stores or loads ``BM*BN*4``. Atomics and flags: an atomic returns
``atomic_latency`` after it is served; atomics on one address are served one at a time,
``atomic_interval`` apart. A flag wait ends ``atomic_latency`` after the flag is set (the poll
that sees it). Every launch costs ``launch_overhead`` before its first program starts, and a
launch that depends on the one before (split-K's reduction) the same again.

With a calibration (:mod:`refsim.calibration`) that measured the config's block and dtype,
``t_compute`` is the measured K-iteration time per resident program instead, every work item
adds the measured per-item time (which holds a whole tile's store, so that store is not added
again; the stores after a fixup still are), and the measured launch overhead, gap between
dependent launches, atomic latency and HBM bandwidth replace the profile's where measured. A
calibration's split-tile terms (:mod:`refsim.calibration`) scale the K-iterations of items
whose tile is split by ``split_iteration_factor`` (for a calibrated block only: the factor is
relative to its measured K-loop) and add ``BM*BN*4 / partial_gbps`` to every
partial stored or loaded. Its load terms (:meth:`CostModel.under_load`) stretch the part of a
K-loop that runs past ``load_after_us`` by ``1 + (load_factor - 1) * busy``.
"""


class CostModel:
    """Times in microseconds for one configuration on one profile."""

    def __init__(self, config, profile, calibration=None):
        bm, bn, bk, e = config.block_m, config.block_n, config.block_k, config.elem_bytes
        # A CU's share is the device's peak over the device's CUs: cus= below the profile's
        # count models part of the GPU, not a GPU with fewer, faster CUs.
        cu_flops_per_us = profile.peak_tflops[config.dtype] * 1e6 / profile.cus
        self.compute_iter_us = 2.0 * bm * bn * bk / cu_flops_per_us
        self.item_us = 0.0
        self.hbm_bytes_per_us = profile.hbm_gbps * 1e3
        self.a_block_bytes = float(bm * bk * e)
        self.b_block_bytes = float(bk * bn * e)
        self.tile_store_bytes = float(bm * bn * e)
        self.bias_bytes = float(bn * e)
        self.partial_bytes = float(bm * bn * 4)
        self.atomic_latency_us = profile.atomic_latency_us
        self.atomic_interval_us = profile.atomic_interval_us
        self.launch_overhead_us = profile.launch_overhead_us
        self.launch_gap_us = profile.launch_overhead_us
        self.calibrated_block = False
        self.split_iteration_factor = 1.0
        self.partial_us = 0.0
        self.load_after_us = 0.0
        self.load_factor = 1.0
        if calibration is not None:
            self._calibrate(config, calibration)

    def _calibrate(self, config, calibration):
        """Replace datasheet terms with ``calibration``'s measurements (module docstring)."""
        timing = calibration.timing(config.dtype, config.block_m, config.block_n, config.block_k)
        if timing is not None:
            self.calibrated_block = True
            self.compute_iter_us = timing.iteration_us
            self.item_us = timing.item_us
        if calibration.hbm_gbps:
            self.hbm_bytes_per_us = calibration.hbm_gbps * 1e3
        if calibration.atomic_latency_us is not None:
            self.atomic_latency_us = calibration.atomic_latency_us
        if calibration.launch_overhead_us is not None:
            self.launch_overhead_us = self.launch_gap_us = calibration.launch_overhead_us
        if calibration.launch_gap_us is not None:
            self.launch_gap_us = calibration.launch_gap_us
        if timing is not None and calibration.split_iteration_factor is not None:
            # relative to the calibrated K-loop: a datasheet one keeps its own
            self.split_iteration_factor = calibration.split_iteration_factor
        if calibration.partial_gbps:
            self.partial_us = self.partial_bytes / (calibration.partial_gbps * 1e3)
        if timing is not None and calibration.load_factor is not None:
            # relative to the calibrated K-loop, like the split factor
            self.load_factor = calibration.load_factor
            self.load_after_us = calibration.load_after_us or 0.0

    def iteration_us(self, distinct_rows, distinct_cols, active_xcds, cu_programs):
        """One K-iteration of one program (see the module docstring)."""
        xcd_bytes = distinct_rows * self.a_block_bytes + distinct_cols * self.b_block_bytes
        memory = xcd_bytes * active_xcds / self.hbm_bytes_per_us
        compute = self.compute_iter_us * cu_programs
        return compute if compute > memory else memory

    def under_load(self, loop_us, began_us, busy):
        """A K-loop of ``loop_us`` starting ``began_us`` after the first launch began, with a
        fraction ``busy`` of the SMs running programs: its part past ``load_after_us`` takes
        ``1 + (load_factor - 1) * busy`` times as long."""
        past = began_us + loop_us - self.load_after_us
        if self.load_factor == 1.0 or past <= 0.0:
            return loop_us
        stretch = 1.0 + (self.load_factor - 1.0) * busy
        before = loop_us - min(past, loop_us)
        return before + min(past, loop_us) * stretch

    def transfer_us(self, nbytes, xcd_programs, active_xcds):
        """Moving ``nbytes`` to or from HBM at this program's share of bandwidth."""
        return nbytes * xcd_programs * active_xcds / self.hbm_bytes_per_us
