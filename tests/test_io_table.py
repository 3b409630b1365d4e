"""esim.io.table.csv_text: column-wise CSV formatting reads back exactly with Python's csv."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from esim.errors import InvalidParameters
from esim.io.table import csv_text


def _read(text):
    return list(csv.reader(io.StringIO(text)))


def test_floats_round_trip_exactly_and_nan_is_an_empty_field():
    rng = np.random.default_rng(3)
    x = np.r_[rng.lognormal(0.0, 20.0, 500) * rng.choice([-1, 1], 500), 0.0, np.inf, -np.inf,
              np.nan, 5e-324, 1.7976931348623157e308]
    rows = _read(csv_text({"x_m": x}))
    assert rows[0] == ["x_m"]
    got = [r[0] for r in rows[1:]]
    assert got[-3] == ""  # NaN: no value
    assert got[:-3] + got[-2:] == [repr(float(v)) for v in np.r_[x[:-3], x[-2:]]]
    back = np.array([float(v) if v else np.nan for v in got])
    np.testing.assert_array_equal(back, x)


def test_strings_are_quoted_like_the_csv_module_and_ints_stay_ints():
    names = np.array(["plain", "a,b", 'say "hi"', "two\nlines", ""])
    text = csv_text({"set": names, "n": np.arange(5, dtype=np.int32),
                     "ok": np.array([True, False, True, False, True])})
    ref = io.StringIO()
    w = csv.writer(ref, lineterminator="\n")
    w.writerow(["set", "n", "ok"])
    w.writerows([[s, k, int(b)] for k, (s, b) in enumerate(zip(names, [1, 0, 1, 0, 1]))])
    assert text == ref.getvalue()
    assert [r[0] for r in _read(text)[1:]] == names.tolist()


def test_unsigned_integers_above_int64_are_not_wrapped():
    big = np.array([2**63, 2**64 - 1], dtype=np.uint64)
    assert csv_text({"n": big}).splitlines()[1:] == [str(2**63), str(2**64 - 1)]


def test_empty_table_is_its_header_and_bad_columns_are_refused():
    assert csv_text({"a_m": [], "b": np.array([], str)}) == "a_m,b\n"
    with pytest.raises(InvalidParameters, match="differ in length: a 2, b 3"):
        csv_text({"a": [1, 2], "b": [1, 2, 3]})
    with pytest.raises(InvalidParameters, match="'a'.*one-dimensional"):
        csv_text({"a": np.zeros((2, 2))})
    with pytest.raises(InvalidParameters, match="no columns"):
        csv_text({})
