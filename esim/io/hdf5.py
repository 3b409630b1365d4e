"""Save and load esim's frozen result objects in HDF5, with their parameters and esim version.

Layout of a result file::

    /                       attrs: esim_kind, esim_version, esim_format, params_json
    /<array field>          one dataset per numpy array field (attrs: unit)
    /                       scalar fields are root attributes

Files are written atomically, and bit-reproducibly: no timestamps are stored
(``track_times=False``), so the same result gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from esim.errors import InputFileError
from esim.io.atomic import atomic_path

__all__ = ["save_result", "load_result", "FORMAT_VERSION"]

FORMAT_VERSION = 1
T = TypeVar("T")


def save_result(obj: Any, path: str | os.PathLike, *, kind: str) -> Path:
    """Write a frozen dataclass result to HDF5 at ``path`` (atomically); return the path.

    Array fields become datasets, scalar fields root attributes, a ``params`` field is stored
    as canonical JSON.  Field metadata ``unit`` is written as a dataset attribute.
    """
    import h5py

    from esim import __version__

    path = Path(path)
    with atomic_path(path) as tmp:
        # libver pinned and no timestamps: the same content gives the same bytes.
        with h5py.File(tmp, "w", libver=("earliest", "v110"), track_order=False) as h5:
            h5.attrs["esim_kind"] = kind
            h5.attrs["esim_version"] = __version__
            h5.attrs["esim_format"] = FORMAT_VERSION
            for f in dataclasses.fields(obj):
                value = getattr(obj, f.name)
                if f.metadata.get("saved") is False:  # e.g. a wall-clock time: not content
                    continue
                if f.name == "params":
                    h5.attrs["params_json"] = value.to_json()
                elif isinstance(value, np.ndarray):
                    ds = h5.create_dataset(f.name, data=value, track_times=False)
                    if f.metadata.get("unit") is not None:
                        ds.attrs["unit"] = f.metadata["unit"]
                elif value is None:
                    continue
                elif isinstance(value, (bool, int, float, str, np.generic)):
                    h5.attrs[f.name] = value
                else:
                    h5.attrs[f.name + "_json"] = json.dumps(value, sort_keys=True)
    return path


def load_result(cls: type[T], path: str | os.PathLike, *, kind: str) -> T:
    """Read a result of type ``cls`` written by :func:`save_result`.

    Raises
    ------
    InputFileError
        The file is missing, not HDF5, holds another kind of result (named in the message), or
        a format this esim does not know.
    """
    import h5py

    from esim.params import params_from_dict

    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise InputFileError(f"{path}: not a readable HDF5 file ({exc})") from None
    with h5:
        found = h5.attrs.get("esim_kind")
        if found != kind:
            raise InputFileError(f"{path}: expected an esim {kind} result, found {found!r}")
        fmt = h5.attrs.get("esim_format", FORMAT_VERSION)  # files before it: the first format
        if not isinstance(fmt, (int, np.integer)) or not 1 <= fmt <= FORMAT_VERSION:
            fmt = int(fmt) if isinstance(fmt, np.integer) else fmt
            raise InputFileError(f"{path}: esim_format {fmt!r}: this esim reads formats 1 to "
                                 f"{FORMAT_VERSION} (a newer esim wrote it?)")
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "params":
                values["params"] = params_from_dict(json.loads(h5.attrs["params_json"]))
            elif f.name in h5:
                values[f.name] = h5[f.name][()]
            elif f.name in h5.attrs:
                v = h5.attrs[f.name]
                values[f.name] = v.item() if isinstance(v, np.generic) else v
            elif f.name + "_json" in h5.attrs:
                values[f.name] = json.loads(h5.attrs[f.name + "_json"])
            elif f.default is not dataclasses.MISSING:
                values[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                values[f.name] = f.default_factory()
            else:
                raise InputFileError(f"{path}: field {f.name!r} of {kind} is missing")
    return cls(**values)
