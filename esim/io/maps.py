"""Read one measured 2-D map (an SPM channel, an SEM image, an EDX map) from the formats users
bring: Gwyddion Simple Field (``.gsf``), Gwyddion native (``.gwy``, via ``gwyfile``), TIFF (via
``tifffile``) and NumPy (``.npy``).

A ``.gwy`` file holds many channels: name one with ``FILE.gwy#TITLE`` (the channel's title as
Gwyddion shows it, exact case; it may hold ``#``) or ``FILE.gwy#N`` (channel number N, for titles
that several channels share); a title wins over a number.  A file with a single channel needs no
title.  ``.gsf`` and ``.gwy`` carry the pixel size and the units; TIFF and ``.npy`` carry neither
reliably, so their pixel size must be given and their values are taken to be in the unprefixed SI
unit the caller expects.

Every failure raises :class:`esim.errors.InputFileError` naming the file.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from esim.errors import InputFileError

__all__ = ["MapChannel", "read_map", "SUFFIXES", "CC_SIDES"]

SUFFIXES = (".gsf", ".gwy", ".tif", ".tiff", ".npy")
# where the current collector lies in a measured map file (its orientation on disk)
CC_SIDES = ("first-row", "last-row", "first-column", "last-column")

# unit spellings accepted for each unprefixed SI unit (Gwyddion writes "Ohm"; some tools "Ω")
_UNIT_ALIASES = {"ohm": "Ohm", "Ω": "Ohm", "ohms": "Ohm", "v": "V", "a": "A", "m": "m",
                 "counts": "counts", "count": "counts"}


@dataclass(frozen=True, eq=False)
class MapChannel:
    """One 2-D map and what is known about it.

    Attributes
    ----------
    data : (ny, nx) float64, ``z_unit``
        Row 0 first, as stored in the file.
    pixel_size_m : float, m
        Pixel size along the rows (x, the column index).
    pixel_size_y_m : float, m
        Pixel size down the columns (y, the row index).
    z_unit : str
        The unit stored in the file, normalised (``"Ohm"``, ``"V"``, ``"A"``, ...), or ``""`` if
        the file has none (TIFF, ``.npy``, or an empty unit).
    source : str
        The file (and ``#channel``) it came from, for messages and reports.
    """

    data: np.ndarray
    pixel_size_m: float
    pixel_size_y_m: float
    z_unit: str
    source: str

    def __repr__(self) -> str:
        return (f"MapChannel({self.source!r}, shape={self.data.shape}, "
                f"pixel_size_m={self.pixel_size_m:.3g}, z_unit={self.z_unit!r})")

    @property
    def extent_m(self) -> tuple[float, float]:
        """(height, width) of the map, m."""
        ny, nx = self.data.shape
        return ny * self.pixel_size_y_m, nx * self.pixel_size_m


def normalise_unit(unit: str) -> str:
    """Gwyddion/SI unit text in one spelling (``"ohm"`` -> ``"Ohm"``); unknown units unchanged."""
    u = (unit or "").strip()
    return _UNIT_ALIASES.get(u.lower(), _UNIT_ALIASES.get(u, u))


def _split_spec(spec: str | os.PathLike) -> tuple[Path, str | None]:
    """``FILE.gwy#SEL`` -> (FILE.gwy, SEL), split at the first ``.gwy#`` (any case), so that a
    channel title may itself hold ``#``; any other spec -> (spec, None)."""
    text = os.fspath(spec)
    m = re.search(r"\.gwy#", text, flags=re.IGNORECASE)
    if m:
        return Path(text[:m.start() + 4]), text[m.end():]
    return Path(text), None


def _gwy_title(value: object, number: int) -> str:
    """A channel title as text.  gwyfile writes a one-character title as a char and reads it back
    as that byte's int value; a missing or empty title becomes ``"channel N"``."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 256:
        value = chr(value)
    elif isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", errors="replace")
    text = "" if value is None else str(value)
    return text if text else f"channel {number}"


def _gwy_channels(obj) -> list[tuple[int, str, object]]:
    """(number, title, data field) of every ``/N/data`` data field in a .gwy container, by N."""
    from gwyfile.objects import GwyDataField

    out = []
    for key, value in obj.items():
        m = re.fullmatch(r"/(\d+)/data", str(key))
        if m and isinstance(value, GwyDataField):
            n = int(m.group(1))
            out.append((n, _gwy_title(obj.get(f"/{n}/data/title"), n), value))
    return sorted(out, key=lambda c: c[0])


def _list_channels(channels: list[tuple[int, str, object]]) -> str:
    return ", ".join(f"{n}: {t!r}" for n, t, _ in channels)


def _read_gwy(path: Path, title: str | None) -> tuple[np.ndarray, float, float, str, str]:
    """Read one channel of a .gwy file.  ``title`` selects it: a channel whose title is exactly
    ``title`` (case-sensitive; refused if several carry it), else, for a whole number, the channel
    of that number (``#N``); ``None`` is allowed only for a file of one channel."""
    import gwyfile

    try:
        obj = gwyfile.load(str(path))
        channels = _gwy_channels(obj)
    except Exception as exc:  # gwyfile raises bare ValueError/struct.error on corrupt files
        raise InputFileError(f"{path}: not a readable Gwyddion .gwy file "
                             f"({str(exc) or type(exc).__name__})") from exc
    if not channels:
        raise InputFileError(f"{path}: the .gwy file holds no data channel")
    if title is None:
        if len(channels) > 1:
            raise InputFileError(f"{path}: the .gwy file holds {len(channels)} channels; name one "
                                 f"as {path}#TITLE or {path}#N, with N: TITLE one of "
                                 f"{_list_channels(channels)}")
        _, title, f = channels[0]
        source = f"{path}#{title}"
    else:
        hits = [c for c in channels if c[1] == title]
        if len(hits) > 1:
            numbers = [n for n, _, _ in hits]
            raise InputFileError(
                f"{path}: {len(hits)} channels are titled {title!r} (channels "
                f"{', '.join(map(str, numbers))}); name one by its number, as "
                f"{' or '.join(f'{path}#{n}' for n in numbers)}")
        if not hits and re.fullmatch(r"[0-9]+", title):
            hits = [c for c in channels if c[0] == int(title)]
        if not hits:
            raise InputFileError(f"{path}: no channel titled {title!r}; the file holds channels "
                                 f"{_list_channels(channels)} (name one as {path}#TITLE or "
                                 f"{path}#N)")
        # the spec that selects it again: the title, or the number it was selected by
        source = f"{path}#{title}"
        f = hits[0][2]
    try:
        data = np.asarray(f.data, dtype=np.float64)
        ny, nx = data.shape
        xreal, yreal = float(f["xreal"]), float(f["yreal"])
    except (KeyError, ValueError, TypeError) as exc:
        raise InputFileError(f"{source}: malformed data field ({exc})") from exc
    # a unit object may leave out an empty unit string, a field its empty unit object (Gwyddion
    # reads both as no unit)
    unit_xy = f["si_unit_xy"].get("unitstr", "") if "si_unit_xy" in f else ""
    unit_z = f["si_unit_z"].get("unitstr", "") if "si_unit_z" in f else ""
    if normalise_unit(unit_xy) not in ("m", ""):
        raise InputFileError(f"{source}: lateral unit {unit_xy!r}; expected metres ('m')")
    if normalise_unit(unit_xy) == "":  # pixels of no known size: read_map asks for one
        return data, None, None, str(unit_z), source
    return data, abs(xreal) / nx, abs(yreal) / ny, str(unit_z), source


def read_map(spec: str | os.PathLike, *, pixel_size_m: float | None = None) -> MapChannel:
    """Read one 2-D map.

    Parameters
    ----------
    spec : str or path-like
        ``FILE.gsf``, ``FILE.gwy``, ``FILE.gwy#TITLE`` or ``FILE.gwy#N``, ``FILE.tif[f]``,
        ``FILE.npy``.
    pixel_size_m : float, m, optional
        Required for TIFF and ``.npy``, and for a ``.gsf``/``.gwy`` that gives no lateral unit
        (Gwyddion's "no unit": pixels) or no extent; for one that does, it must agree with the
        file's own (within 1 %) if given.

    Returns
    -------
    MapChannel

    Raises
    ------
    InputFileError
        Missing or unreadable file, unknown suffix, not 2-D, no finite value, a pixel size
        missing or in conflict with the file's.
    """
    path, title = _split_spec(spec)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputFileError(f"{path}: unknown map format {suffix!r}; esim reads "
                             f"{', '.join(SUFFIXES)}")
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    source = str(path)
    unit = ""
    px = py = None
    no_size = f"{path}: {suffix} files carry no reliable pixel size"
    if suffix == ".gsf":
        from esim.io.gsf import read_gsf

        ch = read_gsf(path)
        if normalise_unit(ch.xy_unit) not in ("m", ""):
            raise InputFileError(f"{path}: XYUnits {ch.xy_unit!r}; expected metres ('m')")
        data, unit = np.asarray(ch.data, np.float64), ch.z_unit
        if ch.lateral_known and normalise_unit(ch.xy_unit) == "m":
            px, py = ch.pixel_size_m, ch.pixel_size_y_m
        else:
            extent = "given" if ch.lateral_known else "missing or zero"
            no_size = (f"{path}: the file gives no lateral size in metres (XYUnits "
                       f"{ch.xy_unit!r}, XReal/YReal {extent})")
    elif suffix == ".gwy":
        data, px, py, unit, source = _read_gwy(path, title)
        if px is None:
            no_size = f"{source}: the channel gives no lateral unit (si_unit_xy empty)"
    elif suffix in (".tif", ".tiff"):
        import tifffile

        try:
            data = np.asarray(tifffile.imread(path), dtype=np.float64)
        except Exception as exc:  # tifffile raises several types on corrupt files
            raise InputFileError(f"{path}: not a readable TIFF ({exc})") from exc
    else:
        try:
            data = np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
        except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty file
            raise InputFileError(f"{path}: not a readable .npy array "
                                 f"({str(exc) or type(exc).__name__})") from exc
    if data.ndim != 2:
        raise InputFileError(f"{path}: expected a 2-D map, got shape {data.shape}")
    if data.size == 0 or not np.isfinite(data).any():
        raise InputFileError(f"{path}: the map holds no finite value")
    if px is None:
        if pixel_size_m is None:
            raise InputFileError(f"{no_size}; give it (--pixel-size-m)")
        px = py = float(pixel_size_m)
    elif pixel_size_m is not None and not math.isclose(px, pixel_size_m, rel_tol=0.01):
        raise InputFileError(f"{path}: pixel size {px:.4g} m in the file, {pixel_size_m:.4g} m "
                             "given")
    if not (px > 0 and py > 0 and math.isfinite(px) and math.isfinite(py)):
        raise InputFileError(f"{path}: pixel size must be positive and finite, got "
                             f"{px!r} x {py!r} m")
    return MapChannel(data=data, pixel_size_m=float(px), pixel_size_y_m=float(py),
                      z_unit=normalise_unit(unit), source=source)
