"""Encodings: exact round trips inside the range, InputValidationError outside it, before any sharing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from prana.engine.encoding import INT32_MAX, FixedPointEncoding, IntegerEncoding
from prana.errors import InputValidationError


@given(values=st.lists(st.integers(0, INT32_MAX), min_size=1, max_size=50))
def test_integer_round_trip(values):
    encoding = IntegerEncoding()
    encoded = encoding.encode(np.array(values), column="v")
    assert encoded.dtype == np.int32
    np.testing.assert_array_equal(encoding.decode(encoded), values)


@given(cents=st.lists(st.integers(0, 10**9), min_size=1, max_size=20))
def test_decimals_round_trip(cents):
    encoding = IntegerEncoding(decimals=2)
    values = np.array(cents) / 100
    np.testing.assert_array_equal(encoding.encode(values, column="v"), cents)


@given(value=st.one_of(st.integers(INT32_MAX + 1, 2**62), st.integers(-2**62, -1)))
def test_out_of_range_is_refused(value):
    with pytest.raises(InputValidationError, match="row 3 of f.csv, column 'v'"):
        IntegerEncoding().encode(np.array([1, value]), column="v", source="f.csv", row_offset=2)


def test_messages_never_quote_the_value():
    with pytest.raises(InputValidationError) as caught:
        IntegerEncoding().encode(np.array([5, 987654321987]), column="income", source="t.csv", row_offset=2)
    assert "987654321987" not in str(caught.value)
    with pytest.raises(InputValidationError, match="negative"):
        IntegerEncoding().encode(np.array([-3]), column="income")
    with pytest.raises(InputValidationError, match="more than 0 decimals"):
        IntegerEncoding().encode(np.array([1.5]), column="income")
    with pytest.raises(InputValidationError, match="not a finite number"):
        IntegerEncoding().encode(np.array([1.0, np.nan]), column="income")
    with pytest.raises(InputValidationError, match="not numeric"):
        IntegerEncoding().encode(np.array(["a"]), column="income")


def test_fixed_point_bounds():
    encoding = FixedPointEncoding(fraction_bits=18, bound=1000.0)
    assert encoding.encode(np.array([999.5, -1000.0]), column="x").dtype == np.float64
    with pytest.raises(InputValidationError, match="fixed-point range"):
        encoding.encode(np.array([1000.5]), column="x")
    with pytest.raises(InputValidationError, match="does not fit"):
        FixedPointEncoding(fraction_bits=18, bound=2.0**50)
