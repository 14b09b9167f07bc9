"""Guard bands: the output C lives inside a larger storage, so that a write outside it shows.

:class:`OutputLayout` places the M x N output (row-major, or column-major for a case with
``transpose_c``) in a storage with ``BLOCK_M`` guard rows above and below it, ``BLOCK_N``
guard columns on either side (a tile's rows and columns past the matrix, with their mask
dropped, land there) and, for a ``strided`` case, :data:`C_PADDING` more elements at the end of
each stored row. Every element outside the view holds :data:`GUARD`; the view itself starts as
NaN. After a run, any guard element that no longer holds :data:`GUARD` was written by the
kernel, and :meth:`OutputLayout.written` names it by its place in C's index space.
"""

import dataclasses

import numpy as np
import torch

# What every element outside the output holds: exact in fp16, bf16 and fp32, and not an integer,
# so the exact-output run (integer inputs, integer outputs) never writes it.
GUARD = -0.3125
# Extra elements at the end of each stored row of C in a strided case.
C_PADDING = 8


@dataclasses.dataclass(frozen=True)
class OutputLayout:
    """Where the ``m x n`` output lies in its guarded storage (see the module docstring)."""

    m: int
    n: int
    row_guard: int
    column_guard: int
    transposed: bool
    padding: int

    @classmethod
    def of(cls, config, case):
        """The layout of ``case``'s output for ``config``."""
        return cls(
            config.m,
            config.n,
            config.block_m,
            config.block_n,
            case.transpose_c,
            C_PADDING if case.strided else 0,
        )

    @property
    def shape(self):
        """The storage's shape: stored rows are C's rows, or C's columns when transposed."""
        rows, columns = (self.m + 2 * self.row_guard, self.n + 2 * self.column_guard)
        if self.transposed:
            return columns, rows + self.padding
        return rows, columns + self.padding

    @property
    def offset(self):
        """The storage index of C[0, 0]."""
        first_row, first_column = (self.row_guard, self.column_guard)
        if self.transposed:
            first_row, first_column = first_column, first_row
        return first_row * self.shape[1] + first_column

    @property
    def strides(self):
        """C's strides in the storage."""
        return (1, self.shape[1]) if self.transposed else (self.shape[1], 1)

    def view(self, storage):
        """The ``m x n`` output inside ``storage`` (a tensor or array of :attr:`shape`)."""
        rows = slice(self.row_guard, self.row_guard + self.m)
        columns = slice(self.column_guard, self.column_guard + self.n)
        return storage[columns, rows].T if self.transposed else storage[rows, columns]

    def allocate(self, dtype, device):
        """A storage of :data:`GUARD` with a NaN-filled view: ``(storage, output view)``."""
        storage = torch.full(self.shape, GUARD, dtype=dtype, device=device)
        output = self.view(storage)
        output.fill_(float("nan"))
        return storage, output

    def storage_of(self, output):
        """The storage behind ``output`` when it is this layout's view (what :meth:`allocate`
        returned); None for a tensor a kernel made itself."""
        size = self.shape[0] * self.shape[1]
        if (
            tuple(output.shape) != (self.m, self.n)
            or output.stride() != self.strides
            or output.storage_offset() != self.offset
            or output.untyped_storage().nbytes() != size * output.element_size()
        ):
            return None
        storage = torch.empty(0, dtype=output.dtype, device=output.device)
        return storage.set_(output.untyped_storage(), 0, self.shape, (self.shape[1], 1))

    def place(self, row, column):
        """C's ``(i, j)`` of storage element ``(row, column)`` (outside ``[0, m) x [0, n)`` for a
        guard element)."""
        if self.transposed:
            return column - self.row_guard, row - self.column_guard
        return row - self.row_guard, column - self.column_guard

    def written(self, storage):
        """C's ``(i, j)`` of every guard element of ``storage`` that no longer holds
        :data:`GUARD`, in C's row-major order."""
        changed = (storage != GUARD).cpu()  # a NaN written there counts: NaN != GUARD
        self.view(changed).fill_(False)
        rows, columns = changed.nonzero().numpy().T
        i, j = self.place(rows, columns)
        order = np.lexsort((j, i))
        return [(int(i[k]), int(j[k])) for k in order]

    def describe(self, i, j):
        """One line for a written guard element, e.g. ``"C[64, 3] written: row 64 is outside
        M = 64 (guard band)"``."""
        if not 0 <= i < self.m:
            where = f"row {i} is outside M = {self.m}"
        else:
            where = f"column {j} is outside N = {self.n}"
        past_row = j - self.n if not self.transposed else i - self.m
        guard = self.column_guard if not self.transposed else self.row_guard
        band = "leading-dimension padding" if past_row >= guard else "guard band"
        return f"C[{i}, {j}] written: {where} ({band})"
