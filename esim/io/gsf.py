"""Gwyddion Simple Field (``.gsf``) export and import: one channel per file.

The format (gwyddion.net user guide, "Gwyddion Simple Field"):

* the magic line ``Gwyddion Simple Field 1.0`` and LF;
* ``name = value`` header lines, each ending in LF, UTF-8, no NUL byte; ``XRes`` and ``YRes``
  required; ``XReal``, ``YReal``, ``XOffset``, ``YOffset``, ``XYUnits``, ``ZUnits`` and ``Title``
  optional; custom keys allowed;
* 1 to 4 NUL bytes, so that the data start at a multiple of 4 bytes (an already aligned header
  still gets 4);
* ``XRes * YRes`` little-endian float32, row-major, shape ``(YRes, XRes)``, and nothing after.

esim writes the format itself (so that the ``gsffile`` library, which the tests use to read
esim's files, is an independent check), with lengths in metres and unprefixed SI units (``m``,
``Ohm``, ``A``, ``V``).  Floats are written with ``repr`` so they read back bit-exactly; the pixel
sizes are also stored in the custom keys ``esim_PixelSizeX`` / ``esim_PixelSizeY`` because
``XReal / XRes`` may differ from the pixel size by one rounding.

Examples
--------
>>> import numpy as np, tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "ssrm.gsf"
>>> write_gsf(path, np.full((2, 3), 2e9), pixel_size_m=50e-9, z_unit="Ohm", title="SSRM")
>>> ch = read_gsf(path)
>>> ch.data.shape, ch.pixel_size_m, ch.z_unit, ch.title
((2, 3), 5e-08, 'Ohm', 'SSRM')
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from esim.errors import InputFileError, InvalidParameters
from esim.io.atomic import atomic_path

__all__ = ["GsfChannel", "write_gsf", "read_gsf", "MAGIC"]

MAGIC = b"Gwyddion Simple Field 1.0\n"
_DTYPE = np.dtype("<f4")
_F32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True, eq=False)
class GsfChannel:
    """One channel read from a ``.gsf`` file.

    Attributes
    ----------
    data : (ny, nx) float32, ``z_unit``
        The map, row-major, row 0 first as stored.
    pixel_size_m : float, ``xy_unit``
        Pixel size along x (``XReal / XRes`` unless esim's exact key is present).
    pixel_size_y_m : float, ``xy_unit``
        Pixel size along y (equal to ``pixel_size_m`` for esim's files).
    z_unit : str
        ``ZUnits`` ("" when absent).
    xy_unit : str
        ``XYUnits`` ("" when absent: no unit, as Gwyddion reads it; its own export leaves the
        line out for unitless data); lengths here are in this unit, metres for esim's files.
    title : str
        ``Title`` ("" when absent).
    x_offset_m, y_offset_m : float, ``xy_unit``
        ``XOffset`` and ``YOffset`` (0 when absent).
    extra : dict str -> str
        Custom header keys, as text.
    lateral_known : bool
        Whether the file gives its lateral extent: ``XReal`` and ``YReal`` present, finite and
        non-zero.  Otherwise the pixel sizes are Gwyddion's defaults (extent 1 per axis) and
        carry no information.  A negative extent is taken by its size, as Gwyddion does.
    """

    data: np.ndarray
    pixel_size_m: float
    pixel_size_y_m: float
    z_unit: str
    xy_unit: str
    title: str
    x_offset_m: float = 0.0
    y_offset_m: float = 0.0
    extra: dict = field(default_factory=dict)
    lateral_known: bool = True

    def __repr__(self) -> str:
        return (f"GsfChannel(data={self.data.shape} {self.data.dtype}, "
                f"pixel_size_m={self.pixel_size_m!r}, z_unit={self.z_unit!r}, "
                f"xy_unit={self.xy_unit!r}, title={self.title!r})")


def _check_text(value, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidParameters(f"{name}: expected a str, got {type(value).__name__}")
    bad = [c for c in ("\n", "\r", "\0") if c in value]
    if bad:
        raise InvalidParameters(f"{name}: must not contain line breaks or NUL, got {value!r}")
    if "=" in value:  # Gwyddion splits a header line at its first "=", gsffile at every one
        raise InvalidParameters(f"{name}: must not contain '=' (a GSF header line is "
                                f"'Key = Value'; readers such as gsffile split at every '='), "
                                f"got {value!r}")
    if value != value.strip():
        raise InvalidParameters(f"{name}: leading or trailing whitespace would be lost, "
                                f"got {value!r}")
    return value


def _check_float(value, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidParameters(f"{name}: expected a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise InvalidParameters(f"{name}: must be finite, got {v!r}")
    if positive and not v > 0:
        raise InvalidParameters(f"{name}: must be > 0, got {v!r}")
    return v


def _header_bytes(nx: int, ny: int, px: float, py: float, z_unit: str, title: str,
                  x_off: float, y_off: float) -> bytes:
    """Magic line, header lines and the 1-4 NUL bytes of padding."""
    lines = [
        f"XRes = {nx}",
        f"YRes = {ny}",
        f"XReal = {nx * px!r}",
        f"YReal = {ny * py!r}",
        f"XOffset = {x_off!r}",
        f"YOffset = {y_off!r}",
        "XYUnits = m",
        f"ZUnits = {z_unit}",
        f"Title = {title}",
        f"esim_PixelSizeX = {px!r}",
        f"esim_PixelSizeY = {py!r}",
    ]
    head = MAGIC + "".join(line + "\n" for line in lines).encode("utf-8")
    return head + b"\0" * (4 - len(head) % 4)


def write_gsf(path: str | os.PathLike, data, *, pixel_size_m: float | tuple[float, float],
              z_unit: str, title: str, x_offset_m: float = 0.0, y_offset_m: float = 0.0) -> None:
    """Write one map to a Gwyddion Simple Field file, atomically.

    Parameters
    ----------
    path : str or path-like
        Target file (``.gsf``); written to a temporary file beside it, then renamed.
    data : (ny, nx) array_like real, ``z_unit``
        Finite values within float32 range; stored as little-endian float32.
    pixel_size_m : float or (float, float), m
        Pixel size, or ``(dy, dx)`` for non-square pixels; ``> 0``.
    z_unit : str
        Unprefixed SI unit of the values: ``"Ohm"``, ``"A"``, ``"V"``, ``""`` for counts.
    title : str
        Channel title (one line).
    x_offset_m, y_offset_m : float, m
        Position of the map's corner.

    Raises
    ------
    InvalidParameters
        Not 2-D, empty, non-finite or beyond float32 range, bad pixel size or text.
    """
    a = np.asarray(data)
    if a.ndim != 2:
        raise InvalidParameters(f"data: expected a 2-D (ny, nx) array, got shape {a.shape}")
    if a.size == 0:
        raise InvalidParameters(f"data: empty array (zero pixels), shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)
            or a.dtype == np.bool_):
        raise InvalidParameters(f"data: expected real numbers, got dtype {a.dtype}")
    a64 = a.astype(np.float64)
    if not np.isfinite(a64).all():
        raise InvalidParameters("data: contains NaN or infinite values; mask or clip them first")
    if (np.abs(a64) > _F32_MAX).any():
        raise InvalidParameters(f"data: values beyond the float32 range (|x| > {_F32_MAX:.3g})")
    if isinstance(pixel_size_m, (tuple, list)):
        if len(pixel_size_m) != 2:
            raise InvalidParameters(f"pixel_size_m: expected a float or (dy, dx), "
                                    f"got {pixel_size_m!r}")
        py = _check_float(pixel_size_m[0], "pixel_size_m[0] (dy)", positive=True)
        px = _check_float(pixel_size_m[1], "pixel_size_m[1] (dx)", positive=True)
    else:
        px = py = _check_float(pixel_size_m, "pixel_size_m", positive=True)
    x_off = _check_float(x_offset_m, "x_offset_m")
    y_off = _check_float(y_offset_m, "y_offset_m")
    z_unit = _check_text(z_unit, "z_unit")
    title = _check_text(title, "title")
    ny, nx = a.shape
    payload = _header_bytes(nx, ny, px, py, z_unit, title, x_off, y_off) + \
        np.ascontiguousarray(a64, dtype=_DTYPE).tobytes()
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)


def _parse_float(header: dict, key: str, default: float, path: Path) -> float:
    if key not in header:
        return default
    try:
        return float(header[key])
    except ValueError:
        raise InputFileError(f"{path}: header {key} = {header[key]!r} is not a number") from None


def read_gsf(path: str | os.PathLike) -> GsfChannel:
    """Read one channel from a Gwyddion Simple Field file.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    GsfChannel
        Data as (YRes, XRes) float32 with pixel size, units, title and offsets.

    Raises
    ------
    InputFileError
        The file is missing or unreadable, lacks the magic line, has a malformed header,
        wrong padding, or a data size that does not match ``XRes * YRes``; the message names it.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read GSF file ({exc.strerror or exc})") from exc
    if not raw.startswith(MAGIC):
        raise InputFileError(f"{path}: not a Gwyddion Simple Field file "
                             f"(no 'Gwyddion Simple Field 1.0' magic line)")
    end = raw.find(b"\0", len(MAGIC))
    if end < 0:
        raise InputFileError(f"{path}: header is not terminated by NUL padding")
    data_start = end + (4 - end % 4)
    if raw[end:data_start] != b"\0" * (data_start - end):
        raise InputFileError(f"{path}: bad NUL padding after the header")
    try:
        text = raw[len(MAGIC):end].decode("utf-8")
    except UnicodeDecodeError:
        raise InputFileError(f"{path}: header is not UTF-8") from None
    header: dict[str, str] = {}
    for n, line in enumerate(text.split("\n"), start=2):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise InputFileError(f"{path}: header line {n} is not 'name = value': {line!r}")
        header[name.strip()] = value.strip()
    try:
        nx, ny = int(header["XRes"]), int(header["YRes"])
    except KeyError as exc:
        raise InputFileError(f"{path}: required header key {exc.args[0]} missing") from None
    except ValueError:
        raise InputFileError(f"{path}: XRes/YRes are not integers") from None
    if nx <= 0 or ny <= 0:
        raise InputFileError(f"{path}: XRes and YRes must be positive, got {nx} x {ny}")
    n_bytes = nx * ny * _DTYPE.itemsize
    if len(raw) - data_start != n_bytes:
        raise InputFileError(f"{path}: expected {n_bytes} bytes of float32 data for "
                             f"{nx} x {ny}, found {len(raw) - data_start}")
    data = np.frombuffer(raw, dtype=_DTYPE, count=nx * ny, offset=data_start)
    data = data.reshape(ny, nx).astype(np.float32)  # native-endian, writeable copy
    x_real = abs(_parse_float(header, "XReal", math.nan, path))
    y_real = abs(_parse_float(header, "YReal", math.nan, path))
    lateral_known = all(math.isfinite(r) and r > 0 for r in (x_real, y_real))
    if not lateral_known:  # Gwyddion's defaults; read_map asks for the pixel size
        x_real = x_real if math.isfinite(x_real) and x_real > 0 else 1.0
        y_real = y_real if math.isfinite(y_real) and y_real > 0 else 1.0
    px = _parse_float(header, "esim_PixelSizeX", x_real / nx, path)
    py = _parse_float(header, "esim_PixelSizeY", y_real / ny, path)
    # trust esim's exact keys only if they agree with XReal / YReal (the file may have been edited)
    if not math.isclose(px * nx, x_real, rel_tol=1e-9):
        px = x_real / nx
    if not math.isclose(py * ny, y_real, rel_tol=1e-9):
        py = y_real / ny
    known = {"XRes", "YRes", "XReal", "YReal", "XOffset", "YOffset", "XYUnits", "ZUnits", "Title",
             "esim_PixelSizeX", "esim_PixelSizeY"}
    return GsfChannel(
        data=data, pixel_size_m=px, pixel_size_y_m=py,
        z_unit=header.get("ZUnits", ""), xy_unit=header.get("XYUnits", ""),
        title=header.get("Title", ""),
        x_offset_m=_parse_float(header, "XOffset", 0.0, path),
        y_offset_m=_parse_float(header, "YOffset", 0.0, path),
        extra={k: v for k, v in header.items() if k not in known},
        lateral_known=lateral_known,
    )
