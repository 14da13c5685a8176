"""Tests for facecloak.imageio: every bad input is refused clearly, every odd
input is decoded to the right pixels, and writing is atomic and private."""

from __future__ import annotations

import dataclasses
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms, ImageFile

from facecloak.imageio import (
    ImageError,
    grey_to_uint8,
    icc_colour_space,
    is_inside,
    iter_inputs,
    load_image,
    output_path_for,
    save_image,
    strip_exif,
)

GPS = ExifTags.IFD.GPSInfo
EXIF_IFD = ExifTags.IFD.Exif
MAKER_NOTE = ExifTags.Base.MakerNote
SERIAL = ExifTags.Base.BodySerialNumber
ORIENTATION = ExifTags.Base.Orientation
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/"'
    b' tiff:Orientation="6"><mwg-rs:Regions><mwg-rs:Name>Alice Example</mwg-rs:Name></mwg-rs:Regions>'
    b"</rdf:Description></rdf:RDF></x:xmpmeta>"
)
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def noise(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8).squeeze()


def private_exif() -> Image.Exif:
    """EXIF carrying place, camera identity and owner, as a phone would write."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "PhoneCo"
    exif[ExifTags.Base.Artist] = "Alice Example"
    exif[ExifTags.Base.XResolution] = 300.0
    exif[ORIENTATION] = 1
    exif.get_ifd(GPS).update({ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (48.0, 51.0, 29.0)})
    exif.get_ifd(EXIF_IFD).update({MAKER_NOTE: b"MAKERNOTE-SECRET", SERIAL: "SN-123456789",
                                   ExifTags.Base.ColorSpace: 1})
    return exif


def raw(path: Path) -> bytes:
    return path.read_bytes()


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if ".tmp-" in p.name]


# ----------------------------------------------------------------------- refusals


def test_zero_byte_file_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.touch()
    with pytest.raises(ImageError, match="empty") as err:
        load_image(path)
    assert str(path) in str(err.value)


def test_missing_file_and_folder_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_truncated_jpeg_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    Image.fromarray(noise(256, 256)).save(path, quality=90)
    path.write_bytes(raw(path)[: path.stat().st_size // 2])
    with pytest.raises(ImageError, match="truncated or corrupt") as err:
        load_image(path)
    assert "Re-download" in str(err.value)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_refused_even_if_someone_enabled_truncated_loading(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    path = tmp_path / "cut.png"
    Image.fromarray(noise(128, 128)).save(path)
    path.write_bytes(raw(path)[:-4000])
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


@pytest.mark.parametrize("name, data", [
    ("random.jpg", np.random.default_rng(1).bytes(5000)),
    ("notes.png", "just some text, not a picture\n".encode() * 20),
])
def test_non_images_refused(tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ImageError, match="not a recognised image") as err:
        load_image(path)
    assert name in str(err.value) and "Convert it" in str(err.value)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares huge dimensions with almost no data: a bomb's header."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(100_000, 100_000))
    with pytest.raises(ImageError, match="too large.*decompression bomb") as err:
        load_image(path)
    assert "max_pixels" in str(err.value)


@pytest.mark.parametrize("side", [40, 100])  # 1.6x (Pillow would only warn) and 10x the limit
def test_pixel_limit_is_exact_and_configurable(tmp_path: Path, side: int, recwarn) -> None:
    path = tmp_path / "big.png"
    Image.fromarray(noise(side, side)).save(path)
    with pytest.raises(ImageError, match="too large"):
        load_image(path, max_pixels=1000)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]
    assert load_image(path, max_pixels=side * side).rgb.shape == (side, side, 3)
    assert load_image(path, max_pixels=None).rgb.shape == (side, side, 3)


def test_large_legit_image_above_pillow_global_limit_loads(tmp_path: Path, monkeypatch) -> None:
    # Pillow's own limit (here lowered to 100 px) must not override ours.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = tmp_path / "legit.png"
    Image.fromarray(noise(60, 50)).save(path)
    assert load_image(path, max_pixels=10_000).rgb.shape == (60, 50, 3)
    assert Image.MAX_IMAGE_PIXELS == 100  # restored


def test_animated_gif_refused(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue", "green")]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    with pytest.raises(ImageError, match="animated images are not supported.*3 frames") as err:
        load_image(path)
    assert "xtract frames first" in str(err.value)


@pytest.mark.parametrize("ext", ["webp", "png"])
def test_animated_webp_and_apng_refused(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"anim.{ext}"
    frames = [Image.fromarray(noise(16, 16, seed=i)) for i in range(2)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    with pytest.raises(ImageError, match="animated images are not supported"):
        load_image(path)


def test_single_frame_gif_loads_and_mpo_reads_primary_picture(tmp_path: Path) -> None:
    gif = tmp_path / "still.gif"
    Image.new("RGB", (8, 6), (255, 0, 0)).save(gif)
    assert load_image(gif).rgb[0, 0].tolist() == [255, 0, 0]
    mpo = tmp_path / "camera.jpg"
    Image.new("RGB", (32, 24), (0, 0, 255)).save(
        mpo, "MPO", save_all=True, append_images=[Image.new("RGB", (8, 8))])
    img = load_image(mpo)
    assert img.format == "JPEG" and img.rgb.shape == (24, 32, 3)
    assert np.abs(img.rgb.astype(int) - [0, 0, 255]).max() <= 3


# ----------------------------------------------------------------------- colour modes


def test_16bit_greyscale_png(tmp_path: Path) -> None:
    grey16 = np.array([[0, 257, 65535], [32896, 1000, 40000]], dtype=np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(grey16).save(path)
    img = load_image(path)
    assert img.mode.startswith("I") and img.alpha is None
    expected = np.rint(grey16 / 257).astype(np.uint8)
    assert img.rgb.dtype == np.uint8 and img.rgb.shape == (2, 3, 3)
    np.testing.assert_array_equal(img.rgb, np.repeat(expected[..., None], 3, axis=2))
    assert expected.tolist() == [[0, 1, 255], [128, 4, 156]]


def test_grey_to_uint8_float_and_int() -> None:
    np.testing.assert_array_equal(grey_to_uint8(np.array([0.0, 0.5, 1.0], np.float32)), [0, 128, 255])
    np.testing.assert_array_equal(grey_to_uint8(np.array([-5.0, 100.0, 300.0])), [0, 100, 255])
    np.testing.assert_array_equal(grey_to_uint8(np.array([-1, 65535, 70000], np.int32)), [0, 255, 255])


@pytest.mark.parametrize("mode, ext", [("L", "png"), ("I", "tif"), ("F", "tif"), ("I;16", "pgm")])
def test_greyscale_modes_replicate_to_rgb(tmp_path: Path, mode: str, ext: str) -> None:
    grey8 = noise(12, 10, c=1)
    values = {"L": grey8, "I": grey8.astype(np.int32) * 257, "F": grey8 / 255.0,
              "I;16": grey8.astype(np.uint16) * 257}[mode]
    path = tmp_path / f"grey.{ext}"
    Image.fromarray(values.astype({"L": np.uint8, "I": np.int32, "F": np.float32, "I;16": np.uint16}[mode])).save(path)
    img = load_image(path)
    np.testing.assert_array_equal(img.rgb, np.repeat(grey8[..., None], 3, axis=2))


def test_la_keeps_alpha(tmp_path: Path) -> None:
    la = np.dstack([noise(8, 9, c=1), np.arange(72, dtype=np.uint8).reshape(8, 9)])
    path = tmp_path / "la.png"
    Image.fromarray(la, "LA").save(path)
    img = load_image(path)
    np.testing.assert_array_equal(img.alpha, la[..., 1])
    np.testing.assert_array_equal(img.rgb[..., 2], la[..., 0])


def test_cmyk_jpeg_converted_to_rgb(tmp_path: Path) -> None:
    cmyk = np.zeros((16, 64, 4), np.uint8)
    cmyk[:, :16] = (255, 0, 0, 0)     # cyan
    cmyk[:, 16:32] = (0, 255, 255, 0)  # red
    cmyk[:, 32:48] = (0, 0, 0, 255)    # black
    cmyk[:, 48:] = (0, 0, 0, 0)        # white (paper)
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(cmyk, "CMYK").save(path, quality=100)
    img = load_image(path)
    assert img.mode == "CMYK" and img.icc_profile is None
    centres = img.rgb[8, [8, 24, 40, 56]].astype(int)
    np.testing.assert_allclose(centres, [[0, 255, 255], [255, 0, 0], [0, 0, 0], [255, 255, 255]], atol=6)


def test_cmyk_with_broken_cmyk_profile_falls_back(tmp_path: Path) -> None:
    fake_icc = b"\0" * 16 + b"CMYK" + b"\0" * 200
    path = tmp_path / "cmyk_icc.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(path, icc_profile=fake_icc, quality=100)
    img = load_image(path)
    assert img.icc_profile is None  # a CMYK profile must never be attached to RGB pixels
    np.testing.assert_allclose(img.rgb[4, 4].astype(int), [255, 0, 0], atol=6)


def test_rgba_png_round_trip_keeps_alpha(tmp_path: Path) -> None:
    rgba = noise(20, 30, c=4)
    src = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(src)
    img = load_image(src)
    np.testing.assert_array_equal(img.rgb, rgba[..., :3])
    np.testing.assert_array_equal(img.alpha, rgba[..., 3])
    out = save_image(tmp_path / "out.png", img)
    with Image.open(out) as back:
        assert back.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(back), rgba)


def test_rgba_to_jpeg_composites_over_white(tmp_path: Path) -> None:
    rgb = np.zeros((16, 16, 3), np.uint8)
    alpha = np.zeros((16, 16), np.uint8)
    alpha[:, 8:] = 255
    out = save_image(tmp_path / "flat.jpg", rgb, alpha=alpha)
    back = np.asarray(Image.open(out)).astype(int)
    assert back[8, 2].min() >= 250 and back[8, 13].max() <= 5


def test_rgba_webp_lossless_round_trip(tmp_path: Path) -> None:
    rgba = noise(12, 14, c=4)
    out = save_image(tmp_path / "a.webp", rgba, quality=100)
    img = load_image(out)
    assert img.format == "WEBP"
    np.testing.assert_array_equal(img.rgb, rgba[..., :3])
    np.testing.assert_array_equal(img.alpha, rgba[..., 3])


def test_palette_png_with_and_without_transparency(tmp_path: Path) -> None:
    index = np.array([[0, 1], [2, 1]], np.uint8)
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (3 * 253)
    pal = Image.fromarray(index, "P")
    pal.putpalette(palette)
    plain, clear = tmp_path / "pal.png", tmp_path / "pal_t.png"
    pal.save(plain)
    pal.save(clear, transparency=1)
    a, b = load_image(plain), load_image(clear)
    assert a.mode == b.mode == "P"
    assert a.alpha is None
    expected = [[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [0, 255, 0]]]
    assert a.rgb.tolist() == expected and b.rgb.tolist() == expected
    assert b.alpha.tolist() == [[255, 0], [255, 0]]


# ----------------------------------------------------------------------- orientation


def test_exif_orientation_6_applied_and_written_as_1(tmp_path: Path) -> None:
    stored = np.zeros((20, 40, 3), np.uint8)  # H=20, W=40 as stored
    stored[:5, :5] = 255                       # marker at stored top-left
    exif = Image.Exif()
    exif[ORIENTATION] = 6                      # "rotate 90 degrees clockwise to display"
    src = tmp_path / "rot.png"
    Image.fromarray(stored).save(src, exif=exif)
    img = load_image(src)
    assert img.orientation == 6 and img.rgb.shape == (40, 20, 3)
    np.testing.assert_array_equal(img.rgb, np.rot90(stored, k=-1))
    assert img.rgb[:5, -5:].min() == 255        # top-left went to top-right
    for ext in ("jpg", "png", "webp"):
        out = save_image(tmp_path / f"out.{ext}", img)
        with Image.open(out) as back:
            assert back.size == (20, 40)
            assert back.getexif()[ORIENTATION] == 1
        again = load_image(out)
        assert again.rgb.shape == (40, 20, 3) and again.orientation == 1


def test_keep_metadata_sets_xmp_orientation_to_1(tmp_path: Path) -> None:
    exif = private_exif()
    exif[ORIENTATION] = 6
    src = tmp_path / "rot.jpg"
    Image.fromarray(noise(10, 20)).save(src, exif=exif, xmp=XMP)
    out = save_image(tmp_path / "out.jpg", load_image(src), keep_metadata=True)
    with Image.open(out) as back:
        assert back.size == (10, 20)
        assert back.getexif()[ORIENTATION] == 1
        assert b'tiff:Orientation="1"' in back.info["xmp"]
        assert b'tiff:Orientation="6"' not in back.info["xmp"]


# ----------------------------------------------------------------------- metadata


def make_private_source(tmp_path: Path, ext: str) -> Path:
    src = tmp_path / f"private.{ext}"
    im = Image.fromarray(noise(24, 32))
    if ext == "jpg":
        im.save(src, exif=private_exif(), xmp=XMP, icc_profile=SRGB_ICC, comment=b"shot at Alice's home")
    elif ext == "webp":
        im.save(src, exif=private_exif(), xmp=XMP, icc_profile=SRGB_ICC, lossless=True)
    else:
        from PIL import PngImagePlugin
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", XMP.decode())
        info.add_text("Author", "Alice Example")
        im.save(src, exif=private_exif(), icc_profile=SRGB_ICC, pnginfo=info)
    return src


SECRETS = (b"SN-123456789", b"MAKERNOTE-SECRET", b"Alice Example", b"mwg-rs", b"PhoneCo")


@pytest.mark.parametrize("ext", ["jpg", "png", "webp"])
def test_default_strips_identity_metadata_keeps_icc(tmp_path: Path, ext: str) -> None:
    src = make_private_source(tmp_path, ext)
    assert all(s in raw(src) for s in SECRETS)  # the fixture really carries them
    img = load_image(src)
    assert img.icc_profile == SRGB_ICC and img.xmp and b"mwg-rs" in img.xmp
    out = save_image(tmp_path / f"out.{ext}", img)
    data = raw(out)
    assert not [s for s in SECRETS if s in data]
    with Image.open(out) as back:
        exif = back.getexif()
        assert back.info.get("icc_profile") == SRGB_ICC
        assert not back.info.get("xmp") and not back.info.get("comment") and "Author" not in back.info
        assert exif.get_ifd(GPS) == {} and MAKER_NOTE not in exif.get_ifd(EXIF_IFD)
        assert exif[ORIENTATION] == 1 and float(exif[ExifTags.Base.XResolution]) == 300.0
        assert exif.get_ifd(EXIF_IFD).get(ExifTags.Base.ColorSpace) == 1


@pytest.mark.parametrize("ext", ["jpg", "png", "webp"])
def test_keep_metadata_keeps_gps_xmp_but_not_makernote(tmp_path: Path, ext: str) -> None:
    src = make_private_source(tmp_path, ext)
    out = save_image(tmp_path / f"out.{ext}", load_image(src), keep_metadata=True)
    data = raw(out)
    assert all(s in data for s in SECRETS if s != b"MAKERNOTE-SECRET")
    assert b"MAKERNOTE-SECRET" not in data  # vendors hide preview JPEGs in it
    with Image.open(out) as back:
        exif = back.getexif()
        assert exif.get_ifd(GPS)[ExifTags.GPS.GPSLatitudeRef] == "N"
        assert MAKER_NOTE not in exif.get_ifd(EXIF_IFD) and exif.get_ifd(EXIF_IFD)[SERIAL] == "SN-123456789"
        assert exif[ORIENTATION] == 1 and back.info.get("icc_profile") == SRGB_ICC


def jpeg_bytes(rgb: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def exif_with_previews(thumb: bytes, maker_preview: bytes) -> bytes:
    """A hand-built little-endian EXIF block as cameras write it: IFD0 (Artist, Exif pointer),
    an Exif IFD whose MakerNote embeds a preview JPEG, and IFD1 holding a JPEG thumbnail."""
    def entry(tag, typ, count, value):
        return struct.pack("<HHII", tag, typ, count, value)

    maker = b"Vendor\x00\x00" + maker_preview
    ifd0, exif_ifd, ifd1 = 8, 38, 56  # offsets: 2 + 12 n + 4 bytes per IFD
    thumb_at, maker_at = 98, 98 + len(thumb)
    out = b"II*\x00" + struct.pack("<I", ifd0)
    out += struct.pack("<H", 2) + entry(0x013B, 2, 4, int.from_bytes(b"Ann\x00", "little")) + entry(0x8769, 4, 1, exif_ifd) + struct.pack("<I", ifd1)
    out += struct.pack("<H", 1) + entry(0x927C, 7, len(maker), maker_at) + struct.pack("<I", 0)
    out += struct.pack("<H", 3) + entry(0x0103, 3, 1, 6) + entry(0x0201, 4, 1, thumb_at) + entry(0x0202, 4, 1, len(thumb)) + struct.pack("<I", 0)
    assert len(out) == thumb_at
    return b"Exif\x00\x00" + out + thumb + maker


def xmp_with_previews(preview_b64: str) -> bytes:
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:xmpGImg="http://ns.adobe.com/xap/1.0/g/img/"'
        ' xmlns:GImage="http://ns.google.com/photos/1.0/image/" xmlns:dc="http://purl.org/dc/elements/1.1/"'
        f' GImage:Mime="image/jpeg" GImage:Data="{preview_b64}">'
        '<dc:creator>Ann Keep</dc:creator>'
        '<xmp:Thumbnails><rdf:Alt><rdf:li rdf:parseType="Resource"><xmpGImg:format>JPEG</xmpGImg:format>'
        f'<xmpGImg:image>{preview_b64}</xmpGImg:image></rdf:li></rdf:Alt></xmp:Thumbnails>'
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    ).encode()


def test_keep_metadata_drops_every_embedded_preview(tmp_path: Path) -> None:
    """Issue 12: previews of the unprotected photo in IFD1, the MakerNote and XMP must go."""
    import base64

    face = noise(24, 32)
    preview = jpeg_bytes(face)
    src = tmp_path / "camera.jpg"
    Image.fromarray(face).save(src, exif=exif_with_previews(preview, preview), xmp=xmp_with_previews(base64.b64encode(preview).decode()))
    data = raw(src)
    assert data.count(b"\xff\xd8\xff") == 3 and b"/9j/" in data  # main picture + IFD1 + MakerNote; XMP base64
    with Image.open(src) as im:
        assert im.getexif().get_ifd(ExifTags.IFD.IFD1).get(0x0202) == len(preview)  # Pillow sees the thumbnail
    for ext in ("jpg", "png", "webp"):
        out = save_image(tmp_path / f"out.{ext}", load_image(src), keep_metadata=True)
        data = raw(out)
        assert data.count(b"\xff\xd8\xff") == (1 if ext == "jpg" else 0), ext
        assert b"/9j/" not in data and b"Thumbnails" not in data and b"Vendor" not in data
        assert b"Ann Keep" in data  # the rest of the kept metadata is still there
        with Image.open(out) as back:
            assert back.getexif().get(0x013B) == "Ann" and not back.getexif().get_ifd(ExifTags.IFD.IFD1)


def test_png_raw_profile_blobs_are_not_kept(tmp_path: Path) -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    blob = exif_with_previews(jpeg_bytes(noise(8, 8)), b"")  # ImageMagick's hex EXIF, thumbnail and all
    info.add_text("Raw profile type exif", f"\nexif\n{len(blob):8d}\n{blob.hex()}")
    info.add_text("Comment", "keep me")
    src = tmp_path / "magick.png"
    Image.fromarray(noise(8, 8)).save(src, pnginfo=info)
    out = save_image(tmp_path / "out.png", load_image(src), keep_metadata=True)
    assert raw(out).count(b"\xff\xd8\xff") == 0 and jpeg_bytes(noise(8, 8)).hex()[:40].encode() not in raw(out)
    with Image.open(out) as back:
        assert back.text.get("Comment") == "keep me" and not [k for k in back.text if k.startswith("Raw profile")]
        assert back.getexif().get(0x013B) == "Ann"  # the EXIF itself is kept, minus its thumbnail


def test_strip_exif_is_pure_allowlist() -> None:
    exif = private_exif()
    exif[ORIENTATION] = 8
    before = exif.tobytes()
    clean = strip_exif(exif)
    assert exif.tobytes() == before  # input untouched
    assert set(clean) <= {ORIENTATION, ExifTags.Base.XResolution, EXIF_IFD}
    reread = Image.Exif()
    reread.load(clean.tobytes())
    assert reread[ORIENTATION] == 1 and ExifTags.Base.Make not in reread and ExifTags.Base.Artist not in reread
    assert reread.get_ifd(GPS) == {} and reread.get_ifd(EXIF_IFD) == {ExifTags.Base.ColorSpace: 1}
    assert dict(strip_exif(None)) == {ORIENTATION: 1}


def test_non_rgb_icc_profiles_are_not_kept(tmp_path: Path) -> None:
    assert icc_colour_space(SRGB_ICC) == "RGB"
    grey_icc = SRGB_ICC[:16] + b"GRAY" + SRGB_ICC[20:]
    path = tmp_path / "grey.png"
    Image.fromarray(noise(4, 4, c=1)).save(path, icc_profile=grey_icc)
    assert load_image(path).icc_profile is None


# ----------------------------------------------------------------------- atomic writes


def test_atomic_write_success_leaves_no_temp(tmp_path: Path) -> None:
    out = save_image(tmp_path / "deep" / "er" / "x.png", noise(8, 8))
    assert out.exists() and temp_files(tmp_path) == []
    np.testing.assert_array_equal(load_image(out).rgb, noise(8, 8))


def test_unwritable_folder_raises_naming_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("I am a file")
    target = blocker / "out.png"
    with pytest.raises(ImageError, match="cannot write") as err:
        save_image(target, noise(8, 8))
    assert str(target) in str(err.value) and "output folder" in str(err.value)
    assert blocker.read_text() == "I am a file" and temp_files(tmp_path) == []


def test_failed_encode_leaves_original_untouched(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "keep.png"
    Image.fromarray(noise(8, 8, seed=3)).save(target)
    before = raw(target)

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG half written")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(ImageError, match="disk full"):
        save_image(target, noise(8, 8, seed=4))
    monkeypatch.undo()
    assert raw(target) == before and temp_files(tmp_path) == []


def test_save_validates_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        save_image(tmp_path / "x.png", noise(8, 8).astype(np.float32))
    with pytest.raises(ImageError, match="unsupported output format"):
        save_image(tmp_path / "x.png", noise(8, 8), fmt="gif")
    with pytest.raises(ImageError, match="too large for WEBP"):
        save_image(tmp_path / "x.webp", np.zeros((1, 20_000, 3), np.uint8))


def test_replace_pixels_keeps_format_and_metadata(tmp_path: Path) -> None:
    src = make_private_source(tmp_path, "jpg")
    img = load_image(src)
    protected = dataclasses.replace(img, rgb=255 - img.rgb)
    out = save_image(tmp_path / "no_ext", protected)  # no extension: source format
    with Image.open(out) as back:
        assert back.format == "JPEG" and back.info.get("icc_profile") == SRGB_ICC


# ----------------------------------------------------------------------- paths


def test_unicode_paths(tmp_path: Path) -> None:
    folder = tmp_path / "données 写真"
    src = folder / "фото é 😀.png"
    save_image(src, noise(6, 7))
    assert [p for p, _ in iter_inputs([folder], recursive=False)] == [src]
    out = output_path_for(src, folder, tmp_path / "выход", suffix="_cloak")
    save_image(out, load_image(src))
    assert out.name == "фото é 😀_cloak.png"
    np.testing.assert_array_equal(load_image(out).rgb, noise(6, 7))


def test_output_path_mirrors_tree(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    assert output_path_for(src / "a" / "b.JPG", src, dst) == dst / "a" / "b.JPG"
    assert output_path_for(src / "a" / "b.jpeg", src, dst, "_c", fmt="jpg") == dst / "a" / "b_c.jpeg"
    assert output_path_for(src / "a" / "b.jpg", src, dst, fmt="png") == dst / "a" / "b.png"
    assert output_path_for(src / "x.gif", src, dst) == dst / "x.png"
    assert output_path_for(src / "x.tiff", src, dst, fmt="webp") == dst / "x.webp"
    single = src / "one.webp"  # a file given directly: its own name under out_root
    assert output_path_for(single, single, dst) == dst / "one.webp"
    with pytest.raises(ImageError, match="overwrite the input"):
        output_path_for(src / "a.png", src, src)
    assert output_path_for(src / "a.png", src, src, suffix="_c") == src / "a_c.png"


def test_is_inside(tmp_path: Path) -> None:
    assert is_inside(tmp_path / "in" / "out", tmp_path / "in")
    assert is_inside(tmp_path / "in", tmp_path / "in")
    assert not is_inside(tmp_path / "input2", tmp_path / "in")
    assert is_inside(tmp_path / "in" / ".." / "in" / "x", tmp_path / "in")


def test_iter_inputs_expands_and_skips_output_folder(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    for rel in ["b.JPG", "a.png", "notes.txt", ".hidden.jpg", "._a.jpg", "sub/c.webp", "sub/deep/d.tiff",
                ".cache/e.png", "cloaked/a.png", "cloaked/sub/c.webp"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    out = root / "cloaked"
    flat = [(p.relative_to(root).as_posix(), r) for p, r in iter_inputs([root], recursive=False, exclude_dir=out)]
    assert flat == [("a.png", root), ("b.JPG", root)]
    deep = [p.relative_to(root).as_posix() for p, _ in iter_inputs([root], recursive=True, exclude_dir=out)]
    assert deep == ["a.png", "b.JPG", "sub/c.webp", "sub/deep/d.tiff"]
    # an explicitly named file is yielded whatever its extension; duplicates once
    mixed = list(iter_inputs([root / "notes.txt", root, root / "a.png"], recursive=False))
    assert [p.name for p, _ in mixed] == ["notes.txt", "a.png", "b.JPG"]
    assert mixed[0][1] == root
    with pytest.raises(ImageError, match="no such file or folder"):
        list(iter_inputs([tmp_path / "missing"], recursive=True))
