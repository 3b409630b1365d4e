"""Channel selection in Gwyddion native ``.gwy`` files (``FILE.gwy#TITLE``, ``FILE.gwy#N``):
shared titles are refused, not collapsed; one-letter titles (which gwyfile reads back as an int)
and titles holding ``#`` can be selected; every failure is an InputFileError naming the channels."""

from __future__ import annotations

import numpy as np
import pytest

from esim.errors import InputFileError
from esim.io.maps import read_map

gwyfile = pytest.importorskip("gwyfile")
from gwyfile.objects import GwyContainer, GwyDataField, GwySIUnit  # noqa: E402

PX = 5e-8  # m


def _field(data: np.ndarray, unit: str) -> GwyDataField:
    ny, nx = data.shape
    return GwyDataField(np.array(data, np.float64), xreal=nx * PX, yreal=ny * PX,
                        si_unit_xy=GwySIUnit(unitstr="m"), si_unit_z=GwySIUnit(unitstr=unit))


def _write(path, channels) -> str:
    """channels: (title or None, data, unit) in channel order 0, 1, ...; returns the path."""
    c = GwyContainer()
    for k, (title, data, unit) in enumerate(channels):
        c[f"/{k}/data"] = _field(data, unit)
        if title is not None:
            c[f"/{k}/data/title"] = title
    c.tofile(str(path))
    return str(path)


def _map(value: float, shape=(4, 5)) -> np.ndarray:
    return np.full(shape, value) + np.arange(shape[1])


def test_duplicate_titles_are_refused_and_selectable_by_number(tmp_path):
    fwd, bwd = _map(1e6), _map(1e8)  # forward and backward scans, both titled SSRM
    f = _write(tmp_path / "dup.gwy", [("SSRM", fwd, "Ohm"), ("SSRM", bwd, "Ohm")])
    with pytest.raises(InputFileError) as err:
        read_map(f"{f}#SSRM")
    msg = str(err.value)
    assert "dup.gwy" in msg and "'SSRM'" in msg and "#0" in msg and "#1" in msg
    with pytest.raises(InputFileError, match="2 channels"):  # no title: one file, two channels
        read_map(f)
    a, b = read_map(f"{f}#0"), read_map(f"{f}#1")
    np.testing.assert_array_equal(a.data, fwd)
    np.testing.assert_array_equal(b.data, bwd)
    assert a.z_unit == b.z_unit == "Ohm" and a.pixel_size_m == pytest.approx(PX)
    assert a.source.endswith("dup.gwy#0") and b.source.endswith("dup.gwy#1")


def test_one_letter_title(tmp_path):
    ssrm, s = _map(1e6), _map(3.0)
    f = _write(tmp_path / "edx.gwy", [("SSRM", ssrm, "Ohm"), ("S", s, "")])
    np.testing.assert_array_equal(read_map(f"{f}#S").data, s)
    np.testing.assert_array_equal(read_map(f"{f}#SSRM").data, ssrm)
    with pytest.raises(InputFileError) as err:  # a missed lookup: an esim error, not a TypeError
        read_map(f"{f}#Ni")
    msg = str(err.value)
    assert "edx.gwy" in msg and "0: 'SSRM'" in msg and "1: 'S'" in msg
    with pytest.raises(InputFileError, match="1: 'S'"):
        read_map(f)


def test_title_holding_a_hash(tmp_path):
    k1, k2 = _map(0.1), _map(0.2)
    f = _write(tmp_path / "kpfm.gwy", [("KPFM #1", k1, "V"), ("KPFM #2", k2, "V")])
    np.testing.assert_array_equal(read_map(f"{f}#KPFM #2").data, k2)
    np.testing.assert_array_equal(read_map(f"{f}#KPFM #1").data, k1)
    with pytest.raises(InputFileError, match="no channel titled 'KPFM #3'"):
        read_map(f"{f}#KPFM #3")


def test_no_selector_with_two_channels_lists_both(tmp_path):
    f = _write(tmp_path / "scan.gwy", [("Topo", _map(1e-8), "m"), ("SSRM", _map(1e6), "Ohm")])
    with pytest.raises(InputFileError) as err:
        read_map(f)
    msg = str(err.value)
    assert "scan.gwy" in msg and "0: 'Topo'" in msg and "1: 'SSRM'" in msg


def test_title_wins_over_number_and_untitled_channels(tmp_path):
    # channel 0 is titled "1"; #1 is that title, channel 1 is reached by its own title
    a, b, c = _map(1.0), _map(2.0), _map(3.0)
    f = _write(tmp_path / "num.gwy", [("1", a, "V"), ("Z", b, "V"), (None, c, "V")])
    np.testing.assert_array_equal(read_map(f"{f}#1").data, a)
    np.testing.assert_array_equal(read_map(f"{f}#Z").data, b)
    np.testing.assert_array_equal(read_map(f"{f}#2").data, c)  # no title: by number
    with pytest.raises(InputFileError, match="2: 'channel 2'"):
        read_map(f"{f}#9")


def test_single_channel_needs_no_selector(tmp_path):
    data = _map(1e6)
    f = _write(tmp_path / "one.gwy", [("SSRM", data, "Ohm")])
    ch = read_map(f)
    np.testing.assert_array_equal(ch.data, data)
    assert ch.z_unit == "Ohm" and ch.source.endswith("one.gwy#SSRM")
    assert ch.pixel_size_m == pytest.approx(PX) and ch.pixel_size_y_m == pytest.approx(PX)
    upper = _write(tmp_path / "UP.GWY", [("SSRM", data, "Ohm")])  # suffix in any case
    np.testing.assert_array_equal(read_map(f"{upper}#SSRM").data, data)
    # a lone channel with no title, or a one-letter one, is still one channel
    bare = read_map(_write(tmp_path / "bare.gwy", [(None, data, "Ohm")]))
    np.testing.assert_array_equal(bare.data, data)
    assert bare.source.endswith("bare.gwy#channel 0")
    assert read_map(_write(tmp_path / "s.gwy", [("S", data, "")])).source.endswith("s.gwy#S")


def test_a_channel_without_a_lateral_unit_needs_a_pixel_size(tmp_path):
    """An empty si_unit_xy is no unit in Gwyddion (pixels), not metres."""
    c = GwyContainer()
    c["/0/data"] = GwyDataField(np.ones((3, 4)), xreal=4.0, yreal=3.0,
                                si_unit_xy=GwySIUnit(unitstr=""), si_unit_z=GwySIUnit(unitstr="V"))
    c["/0/data/title"] = "KPFM"
    c.tofile(str(tmp_path / "px.gwy"))
    with pytest.raises(InputFileError, match=r"px.gwy#KPFM: the channel gives no lateral unit"
                                             r".*--pixel-size-m"):
        read_map(f"{tmp_path / 'px.gwy'}#KPFM")
    ch = read_map(f"{tmp_path / 'px.gwy'}#KPFM", pixel_size_m=2e-8)
    assert (ch.pixel_size_m, ch.z_unit) == (2e-8, "V")
