"""CSV text of a table given by its columns, formatted a column at a time.

A per-particle table has one row per particle; formatting it column by column keeps the loop
over particles inside numpy (``astype(str)``, ``np.char``) instead of in Python.

Formatting rules:
* floats: the shortest repr that reads back to the same float64 (``repr(float(v))``, e.g.
  ``0.1``, ``1e+20``, ``inf``); NaN is written as an empty field, "no value";
* integers and booleans: as integers;
* strings (and any other objects, as ``str()``, so None reads "None"): as they are, quoted as
  RFC 4180 (and Python's :mod:`csv`) does when they hold a comma, a double quote or a line
  break.  Give numbers as numeric arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from esim.errors import InvalidParameters

__all__ = ["csv_text"]


def _column_text(name: str, values: Any) -> np.ndarray:
    a = np.asarray(values)
    if a.ndim != 1:
        raise InvalidParameters(
            f"csv column {name!r}: must be one-dimensional, got shape {a.shape}")
    if a.dtype.kind == "f":
        s = a.astype(np.float64).astype(str)
        s[np.isnan(a)] = ""
        return s
    if a.dtype.kind == "b":
        return a.astype(np.int64).astype(str)
    if a.dtype.kind in "iu":
        return a.astype(str)
    s = a.astype(str)
    special = np.zeros(s.shape, bool)
    for ch in (",", '"', "\n", "\r"):
        special |= np.char.find(s, ch) >= 0
    if special.any():
        q = np.char.replace(s[special], '"', '""')
        s = s.astype(object)  # quoted strings may be longer than the fixed-width dtype
        s[special] = np.char.add(np.char.add('"', q), '"')
        s = s.astype(str)
    return s


def csv_text(columns: Mapping[str, Any]) -> str:
    """CSV text (header line first, ``\\n`` line ends) of equal-length columns.

    Parameters
    ----------
    columns : mapping of str to (N,) array_like
        Column name (with its unit, e.g. ``"z_m"``) to its values, in column order.

    Returns
    -------
    str

    Examples
    --------
    >>> table = {"particle": [3, 7], "z_m": [1.5e-6, float("nan")], "phase": ["NMC", "a,b"]}
    >>> print(csv_text(table), end="")
    particle,z_m,phase
    3,1.5e-06,NMC
    7,,"a,b"
    """
    names = list(columns)
    if not names:
        raise InvalidParameters("csv: no columns")
    texts = [_column_text(k, v) for k, v in columns.items()]
    n = {t.size for t in texts}
    if len(n) != 1:
        raise InvalidParameters(
            "csv: columns differ in length: "
            + ", ".join(f"{k} {t.size}" for k, t in zip(names, texts, strict=True)))
    header = _column_text("header", np.array(names, dtype=str))
    rows = texts[0]
    if len(texts) == 1:  # an empty line would read as no row: quote a lone empty field, as csv does
        rows = np.where(rows == "", '""', rows)
    for t in texts[1:]:  # a loop over columns; each step joins every row at once
        rows = np.char.add(np.char.add(rows, ","), t)
    body = "\n".join(rows.tolist()) + "\n" if rows.size else ""
    return ",".join(header.tolist()) + "\n" + body
