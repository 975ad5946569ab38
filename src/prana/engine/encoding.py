"""Explicit encodings of real-world numbers into the integers the MPC ring holds, with range checks.

An encoding is declared once per input column. `encode` checks every value *before* anything is shared
and raises `InputValidationError` naming the column and the row (never the value). Rows are positions in
the array plus `row_offset`: callers that read a file pass `row_offset=1`, so that "row N" is the N-th data
row, counted from 1, the header not counted (the convention of every prana message). Two kinds:

- `IntegerEncoding(decimals=d, minimum=a, maximum=b)`: x is stored as round(x * 10**d), which must be an
  exact integer (a cell with more decimals than declared is refused, not silently rounded) and lie in
  [a, b]. Comparisons of two values in the same encoding are exact.
- `FixedPointEncoding(fraction_bits=f, bound=B)`: SPU's own fixed point (x * 2**f in the ring); the check is
  |x| <= B, chosen so that products and sums in the program cannot overflow the ring.

The ring is 32 or 64 bits (`RING_BITS`); an encoding says which ring it needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prana.errors import InputValidationError

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask.reshape(-1))[0])


def _where(column: str, source: str | None, row: int, row_offset: int) -> str:
    place = f"row {row + row_offset} of {source}" if source else f"row {row + row_offset}"
    return f"{place}, column {column!r}"


@dataclass(frozen=True)
class IntegerEncoding:
    """Exact decimal numbers scaled to integers in a declared range."""

    decimals: int = 0
    minimum: int = 0
    maximum: int = INT32_MAX
    dtype: str = "int32"

    def __post_init__(self) -> None:
        limit = INT32_MAX if self.dtype == "int32" else INT64_MAX
        if not 0 <= self.decimals <= 9:
            raise InputValidationError("an integer encoding takes between 0 and 9 decimals")
        if not -limit <= self.minimum <= self.maximum <= limit:
            raise InputValidationError(f"the encoding range [{self.minimum}, {self.maximum}] does not fit "
                                       f"{self.dtype}")

    @property
    def scale(self) -> int:
        return 10**self.decimals

    @property
    def largest(self) -> float:
        """The largest real value this encoding holds."""
        return self.maximum / self.scale

    @property
    def smallest(self) -> float:
        return self.minimum / self.scale

    def encode(self, values: np.ndarray, *, column: str, source: str | None = None,
               row_offset: int = 0, decimals_advice: str = "") -> np.ndarray:
        """Scale, check and convert. Rows are counted from `row_offset` in messages; `decimals_advice` ends
        the sentence for a value with too many decimals (what the user can change, e.g. "raise --decimals")."""
        array = np.asarray(values)
        if array.dtype.kind not in "iuf":
            raise InputValidationError(f"column {column!r}{' of ' + source if source else ''} is not numeric")
        as_float = array.astype(np.float64)
        bad = ~np.isfinite(as_float)
        if bad.any():
            raise InputValidationError(f"{_where(column, source, _first(bad), row_offset)} is empty or not a "
                                       "finite number")
        if array.dtype.kind in "iu" and self.decimals == 0:
            scaled = array.astype(np.int64)
        else:
            raw = as_float * self.scale
            scaled_float = np.round(raw)
            inexact = np.abs(raw - scaled_float) > 1e-6 * np.maximum(1.0, np.abs(raw))
            if inexact.any():
                advice = f"; {decimals_advice}" if decimals_advice else ""
                raise InputValidationError(f"{_where(column, source, _first(inexact), row_offset)} has more than "
                                           f"{self.decimals} decimals{advice}")
            too_big = np.abs(scaled_float) >= 2.0**63
            if too_big.any():
                raise InputValidationError(f"{_where(column, source, _first(too_big), row_offset)} is outside the "
                                           f"encoding range [{self.smallest:g}, {self.largest:g}]")
            scaled = scaled_float.astype(np.int64)
        if self.minimum >= 0:
            negative = scaled < 0
            if negative.any():
                raise InputValidationError(f"{_where(column, source, _first(negative), row_offset)} is negative, "
                                           "which is not allowed here")
        outside = (scaled < self.minimum) | (scaled > self.maximum)
        if outside.any():
            raise InputValidationError(f"{_where(column, source, _first(outside), row_offset)} is outside the "
                                       f"encoding range [{self.smallest:g}, {self.largest:g}]")
        return scaled.astype(self.dtype)

    def decode(self, encoded: np.ndarray) -> np.ndarray:
        encoded = np.asarray(encoded, dtype=np.int64)
        return encoded if self.decimals == 0 else encoded / self.scale


@dataclass(frozen=True)
class FixedPointEncoding:
    """SPU fixed point: floats are carried as round(x * 2**fraction_bits) in the ring."""

    fraction_bits: int = 18
    bound: float = 2.0**20
    ring_bits: int = 64

    def __post_init__(self) -> None:
        if not 0 < self.fraction_bits < self.ring_bits - 2:
            raise InputValidationError("fraction_bits must leave room for an integer part")
        headroom = 2.0 ** (self.ring_bits - 2 - self.fraction_bits)
        if not 0 < self.bound <= headroom:
            raise InputValidationError(f"a fixed-point bound of {self.bound:g} does not fit the "
                                       f"{self.ring_bits}-bit ring with {self.fraction_bits} fraction bits")

    @property
    def resolution(self) -> float:
        return 2.0**-self.fraction_bits

    def encode(self, values: np.ndarray, *, column: str, source: str | None = None,
               row_offset: int = 0) -> np.ndarray:
        array = np.asarray(values)
        if array.dtype.kind not in "iuf":
            raise InputValidationError(f"column {column!r}{' of ' + source if source else ''} is not numeric")
        as_float = array.astype(np.float64)
        bad = ~np.isfinite(as_float)
        if bad.any():
            raise InputValidationError(f"{_where(column, source, _first(bad), row_offset)} is empty or not a "
                                       "finite number")
        outside = np.abs(as_float) > self.bound
        if outside.any():
            raise InputValidationError(f"{_where(column, source, _first(outside), row_offset)} is outside the "
                                       f"fixed-point range [-{self.bound:g}, {self.bound:g}]")
        return as_float.astype(np.float32 if self.ring_bits == 32 else np.float64)
