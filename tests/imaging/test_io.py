"""Robust image input and atomic output."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import portrait_stylize as ps
from portrait_stylize.errors import ImageTooLargeError, InvalidImageError
from portrait_stylize.imaging.io import is_complete_image, load_image, save_image


def _gradient(w=48, h=32) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256], -1).astype(np.uint8)


def test_exif_orientation_is_applied(tmp_path):
    arr = _gradient()
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif, quality=100)
    loaded = load_image(path)
    assert loaded.size == (32, 48)
    expected = np.rot90(arr, k=-1)
    assert np.abs(np.asarray(loaded, dtype=int) - expected).mean() < 4
    assert ps.load_style("toon")(path).size == (32, 48)


@pytest.mark.parametrize("mode", ["L", "1", "P", "CMYK", "LA"])
def test_modes_are_converted(tmp_path, mode):
    src = Image.fromarray(_gradient()).convert(mode)
    suffix = ".jpg" if mode == "CMYK" else ".png"
    path = tmp_path / f"img{suffix}"
    src.save(path)
    loaded = load_image(path)
    assert loaded.mode == ("RGBA" if mode == "LA" else "RGB") and loaded.size == (48, 32)
    if mode == "CMYK":
        assert np.abs(np.asarray(loaded, dtype=int) - _gradient()).mean() < 12


def test_palette_with_transparency_becomes_rgba(tmp_path):
    img = Image.fromarray(_gradient()).convert("P")
    img.info["transparency"] = 0
    path = tmp_path / "p.png"
    img.save(path, transparency=0)
    assert load_image(path).mode == "RGBA"


def test_16bit_grey_is_scaled_not_clipped(tmp_path):
    arr = np.array([[0, 32896, 65535, 1000]], dtype=np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(arr).save(path)
    loaded = np.asarray(load_image(path))[..., 0]
    assert loaded.tolist() == [[0, 128, 255, 4]]


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is text, not a picture")
    with pytest.raises(InvalidImageError, match=r"notes\.png: not an image"):
        load_image(path)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(InvalidImageError, match=r"empty\.jpg: the file is empty"):
        load_image(empty)
    with pytest.raises(InvalidImageError, match="no such file"):
        load_image(tmp_path / "missing.jpg")


def test_truncated_file(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(_gradient(256, 256)).save(path, quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InvalidImageError, match=r"cut\.jpg: the image data is truncated"):
        load_image(path)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width x height`` but carries no pixel data (a decompression bomb stand-in)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_decompression_bomb_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(10_000, 6_000))
    with pytest.raises(ImageTooLargeError, match="60,000,000 pixels exceeds the limit of 50,000,000 pixels"):
        load_image(path)
    with pytest.raises(ImageTooLargeError, match="1,536 pixels exceeds the limit of 100 pixels"):
        load_image(_gradient(), max_pixels=100)
    path.write_bytes(_png_header_only(30_000, 30_000))  # beyond Pillow's own hard limit
    with pytest.raises(ImageTooLargeError):
        load_image(path, max_pixels=None)


def test_save_is_atomic_and_keeps_previous_result(tmp_path, monkeypatch):
    target = tmp_path / "result.png"
    Image.fromarray(_gradient()).save(target)
    before = target.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        # Fail mid-write: half a PNG reaches whatever file the save was given, then the disk fills.
        with open(fp, "wb") as fh:
            fh.write(before[: len(before) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(Image.new("RGB", (4, 4)), target)
    assert target.read_bytes() == before  # a save that wrote to the target itself would fail here
    assert [p.name for p in tmp_path.iterdir()] == ["result.png"]


def test_jpeg_output_flattens_alpha_on_white(tmp_path):
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    out = Image.open(save_image(rgba, tmp_path / "flat.jpg"))
    assert out.mode == "RGB" and np.asarray(out).min() > 240
    with pytest.raises(ValueError, match="unsupported output format '.xyz'"):
        save_image(rgba, tmp_path / "x.xyz")


def test_is_complete_image_decodes_to_the_last_pixel(tmp_path):
    """What ``batch`` checks before it trusts an earlier result."""
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8))
    for suffix in (".png", ".jpg"):
        whole = tmp_path / f"whole{suffix}"
        picture.save(whole)
        data = whole.read_bytes()
        cut, empty = tmp_path / f"cut{suffix}", tmp_path / f"empty{suffix}"
        cut.write_bytes(data[: len(data) * 2 // 3])
        empty.write_bytes(b"")
        assert is_complete_image(whole) and not is_complete_image(cut) and not is_complete_image(empty)
    assert not is_complete_image(tmp_path / "missing.png")
