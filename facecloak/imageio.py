"""Robust image reading and writing for ``facecloak protect``.

Users feed the protect command anything, so this module turns every odd input
into one of two outcomes: a :class:`LoadedImage` holding upright 8-bit RGB
pixels (plus alpha and the metadata needed to write a faithful copy), or an
:class:`ImageError` whose message names the file, the cause, and what to do.

Policies, in one place:

* **Decoding.** Truncated files are refused (Pillow's ``LOAD_TRUNCATED_IMAGES``
  is forced off while decoding). Images above ``max_pixels`` (default 100 MP)
  are refused as possible decompression bombs. Animated GIF/WebP/APNG and
  multi-page TIFFs are refused; multi-picture JPEGs (MPO, common from phones
  and cameras) are read as their first, primary picture.
* **Colour.** Everything becomes 8-bit RGB: greyscale is replicated, 16-bit
  and 32-bit integer greyscale (``I;16``, ``I``) is scaled by 1/257, float
  greyscale (``F``) is taken as [0, 1] when it fits there and clipped to
  [0, 255] otherwise, CMYK is converted through its embedded ICC profile when it
  has one. Only an RGB ICC profile is kept (a CMYK or grey profile would be
  wrong for RGB pixels).
* **Orientation.** The EXIF orientation is applied to the pixels on load, and
  every written file says orientation = 1 (EXIF, and XMP when XMP is kept), so
  no viewer rotates twice.
* **Metadata on write.** By default only the ICC profile, the resolution and
  orientation = 1 survive: GPS, MakerNote, serial numbers, owner/artist names,
  dates, XMP (including face regions), IPTC, comments and PNG text chunks are
  dropped. ``keep_metadata=True`` keeps EXIF, XMP, comments and PNG text, still
  with orientation = 1. Embedded previews, which would show the *unprotected*
  face, are never written, kept metadata or not: the EXIF thumbnail (IFD1), the
  MakerNote (vendors hide preview JPEGs in it, in formats we cannot edit), EXIF
  sub-IFDs and Photoshop resources, XMP thumbnails and any base64 JPEG/PNG in
  XMP (e.g. Google's ``GImage:Data``), and PNG "Raw profile" blobs. IPTC is
  never written (Pillow cannot write it).
* **Formats on write.** JPEG, PNG and WebP. Other inputs (GIF, BMP, TIFF,
  PGM/PPM) are written as PNG, which is lossless and so keeps the cloak intact.
  JPEG has no alpha: transparent pixels are composited over white.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import secrets
import struct
import threading
import warnings
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, PngImagePlugin

DEFAULT_MAX_PIXELS = 100_000_000
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".pgm", ".ppm"}
)
WRITABLE_FORMATS = ("JPEG", "PNG", "WEBP")
_FORMAT_ALIASES = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
_FORMAT_EXT = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
# Encoder size limits, checked up front so the user gets advice, not a codec error.
_MAX_SIDE = {"JPEG": 65_535, "WEBP": 16_383, "PNG": 2**31 - 1}

_ORIENTATION = ExifTags.Base.Orientation
# EXIF tags that say nothing about who, where or with what camera.
_SAFE_BASE_TAGS = (
    ExifTags.Base.XResolution,
    ExifTags.Base.YResolution,
    ExifTags.Base.ResolutionUnit,
)
_SAFE_EXIF_IFD_TAGS = (ExifTags.Base.ColorSpace,)
_XMP_ORIENTATION = (
    re.compile(rb'tiff:Orientation="[0-9]"'),
    re.compile(rb"<tiff:Orientation>[0-9]</tiff:Orientation>"),
)
_XMP_ORIENTATION_UPRIGHT = (b'tiff:Orientation="1"', b"<tiff:Orientation>1</tiff:Orientation>")
# Where previews hide: EXIF tags (MakerNote, SubIFDs, Photoshop image resources) and XMP.
_PREVIEW_EXIF_TAGS = (ExifTags.Base.MakerNote,)
_PREVIEW_BASE_TAGS = (0x014A, 0x8649)  # SubIFDs, Photoshop ImageResources (thumbnail resource 1036)
_B64_IMAGE = rb"\s*(?:/9j/|iVBORw0KGgo|R0lGOD|UklGR)"  # base64 of JPEG, PNG, GIF, RIFF/WebP magic
_XMP_PREVIEWS = (
    # <xmp:Thumbnails>...</xmp:Thumbnails> (any prefix), with everything inside it
    re.compile(rb"<([\w.-]+):Thumbnails\b[^>]*?(?:/>|>.*?</\1:Thumbnails>)", re.S),
    # any element whose text is a base64 image: <GImage:Data>/9j/...</GImage:Data>
    re.compile(rb"<([\w.-]+:[\w.-]+)\b[^>]*>" + _B64_IMAGE + rb"[^<]*</\1>", re.S),
    # any attribute whose value is a base64 image: GImage:Data="/9j/..."
    re.compile(rb"\s[\w.-]+:[\w.-]+\s*=\s*\"" + _B64_IMAGE + rb"[^\"]*\"", re.S),
    re.compile(rb"\s[\w.-]+:[\w.-]+\s*=\s*'" + _B64_IMAGE + rb"[^']*'", re.S),
)
# Pillow plugins raise any of these on malformed input.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError,
                  KeyError, TypeError, zlib.error, MemoryError)
# Pillow's bomb limit and truncation switch are process globals; serialise our
# temporary changes to them.
_PILLOW_GLOBALS_LOCK = threading.Lock()


class ImageError(Exception):
    """A user-facing image problem: names the file, the cause and what to do."""

    def __init__(self, path: str | os.PathLike, cause: str, hint: str) -> None:
        self.path, self.cause, self.hint = Path(path), cause, hint
        super().__init__(f"{self.path}: {cause}. {hint}")


@dataclasses.dataclass
class LoadedImage:
    """An upright 8-bit RGB image plus what is needed to write a faithful copy.

    To save processed pixels with the original's metadata, replace them:
    ``save_image(out, dataclasses.replace(loaded, rgb=protected))``.

    Attributes:
        rgb: (H, W, 3) uint8, EXIF orientation already applied.
        alpha: (H, W) uint8 or None.
        format: Pillow format name of the source ("JPEG", "PNG", "WEBP", ...).
        mode: Pillow mode of the source ("RGB", "CMYK", "I;16", "P", ...).
        icc_profile: RGB ICC profile bytes, or None (treat as sRGB).
        exif: the source EXIF (orientation still as in the file), or None.
        xmp: raw XMP packet, or None.
        comment: JPEG/GIF comment, or None.
        text: PNG text chunks (without XMP).
        dpi: (x, y) resolution, or None.
        orientation: EXIF orientation of the source (1 = upright).
        path: the file it came from.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    format: str = "PNG"
    mode: str = "RGB"
    icc_profile: bytes | None = None
    exif: Image.Exif | None = None
    xmp: bytes | None = None
    comment: bytes | None = None
    text: dict[str, str] = dataclasses.field(default_factory=dict)
    dpi: tuple[float, float] | None = None
    orientation: int = 1
    path: Path | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.rgb.shape[1], self.rgb.shape[0]


# --------------------------------------------------------------------------- loading


def load_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Read an image file into an upright 8-bit RGB :class:`LoadedImage`.

    Args:
        path: file to read.
        max_pixels: refuse images with more than this many pixels (width x
            height) as possible decompression bombs; None disables the check.

    Raises:
        ImageError: missing, empty, unreadable, non-image, corrupt, truncated,
            too large, animated or multi-page files.
    """
    path = Path(path)
    _check_readable_file(path)
    with _PILLOW_GLOBALS_LOCK, _pillow_limits(max_pixels):
        try:
            with Image.open(path) as im:
                return _decode(im, path, max_pixels)
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise _too_large(path, None, max_pixels) from err
        except Image.UnidentifiedImageError as err:
            raise ImageError(
                path, f"not a recognised image (is it really a {path.suffix or 'picture'} file?)",
                "Convert it to JPEG or PNG, or remove it from the input.",
            ) from err
        except PermissionError as err:
            raise ImageError(path, "permission denied", "Check the file permissions.") from err
        except _DECODE_ERRORS as err:
            raise ImageError(
                path, f"the image data is truncated or corrupt ({err})",
                "Re-download or re-export the file.",
            ) from err


def _check_readable_file(path: Path) -> None:
    if not path.exists():
        raise ImageError(path, "no such file", "Check the path.")
    if path.is_dir():
        raise ImageError(path, "is a folder, not an image file", "Pass image files, or the folder as input.")
    if path.stat().st_size == 0:
        raise ImageError(path, "the file is empty (0 bytes)", "Re-download or re-export it.")


@contextlib.contextmanager
def _pillow_limits(max_pixels: int | None) -> Iterator[None]:
    """Temporarily set Pillow's bomb limit and forbid truncated images.

    Pillow warns above MAX_IMAGE_PIXELS and errors above twice that; the
    warning is escalated so ``max_pixels`` is the real limit. Hold the lock.
    """
    saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = max_pixels, False
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _too_large(path: Path, size: tuple[int, int] | None, max_pixels: int | None) -> ImageError:
    dims = f"{size[0]}x{size[1]} = {size[0] * size[1] / 1e6:.0f} MP, " if size else ""
    return ImageError(
        path, f"the image is too large ({dims}above the limit of {(max_pixels or 0) / 1e6:g} MP; "
        "it may be a decompression bomb)",
        "If you trust the file, raise the pixel limit (max_pixels / --max-pixels); "
        "otherwise downscale it first.",
    )


def _decode(im: Image.Image, path: Path, max_pixels: int | None) -> LoadedImage:
    fmt = im.format or "PNG"
    if max_pixels is not None and im.width * im.height > max_pixels:
        raise _too_large(path, im.size, max_pixels)
    n_frames = getattr(im, "n_frames", 1)
    if n_frames > 1 and fmt == "MPO":
        im.seek(0)  # the primary picture; the rest are previews or depth maps
        fmt = "JPEG"
    elif n_frames > 1 and fmt in ("GIF", "PNG", "WEBP"):
        raise ImageError(path, f"animated images are not supported ({n_frames} frames)",
                         "Extract frames first (e.g. `ffmpeg -i in.gif frame_%04d.png`).")
    elif n_frames > 1:
        raise ImageError(path, f"multi-page images are not supported ({n_frames} pages)",
                         "Split the pages into separate files first.")
    im.load()
    exif = im.getexif()
    orientation = int(exif.get(_ORIENTATION, 1) or 1)
    info = dict(im.info)
    mode = im.mode
    upright = ImageOps.exif_transpose(im) if orientation != 1 else im
    rgb, alpha, icc = _to_rgb8(upright, info.get("icc_profile"), path)
    return LoadedImage(
        rgb=rgb, alpha=alpha, format=fmt, mode=mode, icc_profile=icc,
        exif=exif if len(exif) else None, xmp=_xmp_bytes(info), comment=_comment(info),
        text=_png_text(im), dpi=_dpi(info), orientation=orientation, path=path,
    )


def _to_rgb8(im: Image.Image, icc: bytes | None, path: Path) -> tuple[np.ndarray, np.ndarray | None, bytes | None]:
    """Convert any Pillow mode to (rgb uint8 HxWx3, alpha uint8 HxW or None, RGB ICC or None)."""
    space = icc_colour_space(icc)
    if im.mode == "CMYK":
        return _cmyk_to_rgb(im, icc if space == "CMYK" else None), None, None
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        grey = grey_to_uint8(np.asarray(im))
        return np.repeat(grey[..., None], 3, axis=2), None, None
    if im.mode == "P" or "transparency" in im.info:
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode not in ("RGB", "RGBA", "L", "LA"):
        try:
            im = im.convert("RGBA" if im.mode in ("PA", "La", "RGBa") else "RGB")
        except ValueError as err:
            raise ImageError(path, f"unsupported colour mode {im.mode}", "Convert it to RGB first.") from err
    arr = np.asarray(im)
    if arr.ndim == 2:
        arr = arr[..., None]
    colour = arr[..., :3] if arr.shape[2] >= 3 else np.repeat(arr[..., :1], 3, axis=2)
    alpha = arr[..., -1].copy() if arr.shape[2] in (2, 4) else None
    return np.ascontiguousarray(colour, dtype=np.uint8), alpha, icc if space == "RGB" else None


def grey_to_uint8(grey: np.ndarray) -> np.ndarray:
    """Map high-bit-depth greyscale to uint8.

    Integers are taken as 16-bit: ``round(clip(v, 0, 65535) / 257)`` (257 =
    65535/255, so 0->0 and 65535->255). Floats in [0, 1] become ``round(255 v)``;
    other floats are clipped to [0, 255].
    """
    if np.issubdtype(grey.dtype, np.floating):
        finite = np.nan_to_num(grey.astype(np.float64))
        scale = 255.0 if finite.size and finite.min() >= 0 and finite.max() <= 1 else 1.0
        return np.clip(np.rint(finite * scale), 0, 255).astype(np.uint8)
    return np.rint(np.clip(grey.astype(np.float64), 0, 65535) / 257.0).astype(np.uint8)


def _cmyk_to_rgb(im: Image.Image, icc: bytes | None) -> np.ndarray:
    """CMYK -> sRGB through the embedded profile; Pillow's naive formula without one."""
    try:
        from PIL import ImageCms
    except ImportError:  # Pillow built without littlecms
        icc = None
    if icc is not None:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            out = ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
            if out is not None:
                return np.asarray(out, dtype=np.uint8).copy()
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            pass  # a broken profile is no reason to refuse the photo
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def icc_colour_space(icc: bytes | None) -> str | None:
    """Colour space of an ICC profile ("RGB", "CMYK", "GRAY", ...), from header bytes 16-19."""
    if not icc or len(icc) < 20:
        return None
    return icc[16:20].decode("ascii", "replace").strip()


def _xmp_bytes(info: dict) -> bytes | None:
    xmp = info.get("xmp") or info.get("XML:com.adobe.xmp")
    return xmp.encode("utf-8") if isinstance(xmp, str) else xmp or None


def _comment(info: dict) -> bytes | None:
    comment = info.get("comment")
    return comment.encode("utf-8") if isinstance(comment, str) else comment or None


def _png_text(im: Image.Image) -> dict[str, str]:
    text = getattr(im, "text", None) or {}
    return {k: v for k, v in text.items() if k != "XML:com.adobe.xmp" and isinstance(v, str)}


def _dpi(info: dict) -> tuple[float, float] | None:
    dpi = info.get("dpi")
    return (float(dpi[0]), float(dpi[1])) if dpi else None


# --------------------------------------------------------------------------- metadata


def strip_exif(exif: Image.Exif | None) -> Image.Exif:
    """Return a new EXIF with only identity-free tags and orientation = 1.

    Kept: resolution (X/Y/unit) and the Exif-IFD ColorSpace. Everything else
    goes: GPS IFD, MakerNote, Make/Model, serial numbers, owner/artist,
    copyright, dates, unique IDs, the thumbnail.
    """
    out = Image.Exif()
    out[_ORIENTATION] = 1
    if exif is None:
        return out
    for tag in _SAFE_BASE_TAGS:
        if tag in exif:
            out[tag] = exif[tag]
    exif_ifd = exif.get_ifd(ExifTags.IFD.Exif)
    safe = {tag: exif_ifd[tag] for tag in _SAFE_EXIF_IFD_TAGS if tag in exif_ifd}
    if safe:
        out.get_ifd(ExifTags.IFD.Exif).update(safe)
    return out


def upright_exif(exif: Image.Exif | None) -> Image.Exif:
    """Return a copy of ``exif`` with orientation = 1 and no embedded previews.

    Kept: IFD0, the Exif, GPS and Interop IFDs. Dropped: the thumbnail (IFD1), the MakerNote,
    SubIFDs and Photoshop image resources, where cameras and editors store preview images.
    """
    out = Image.Exif()
    if exif is not None and len(exif):
        out.load(exif.tobytes())
    for tag in _PREVIEW_BASE_TAGS:
        out.pop(tag, None)
    exif_ifd = out.get_ifd(ExifTags.IFD.Exif)
    for tag in _PREVIEW_EXIF_TAGS:
        exif_ifd.pop(tag, None)
    out[_ORIENTATION] = 1
    return out


def upright_xmp(xmp: bytes) -> bytes:
    """Rewrite any ``tiff:Orientation`` in an XMP packet to 1 (pixels are already upright)."""
    for pattern, upright in zip(_XMP_ORIENTATION, _XMP_ORIENTATION_UPRIGHT):
        xmp = pattern.sub(upright, xmp)
    return xmp


def xmp_without_previews(xmp: bytes) -> bytes:
    """Remove embedded images from an XMP packet: ``xmp:Thumbnails`` and every element or
    attribute whose value is a base64 JPEG/PNG/GIF/WebP (``/9j/``, ``iVBORw0KGgo``, ...)."""
    for pattern in _XMP_PREVIEWS:
        xmp = pattern.sub(b"", xmp)
    return xmp


def text_without_previews(text: dict[str, str]) -> dict[str, str]:
    """PNG text chunks minus ImageMagick's "Raw profile type ..." blobs (hex EXIF/XMP/APP1 with
    their thumbnails) and any value that is a base64 image."""
    return {k: v for k, v in text.items()
            if not k.lower().startswith("raw profile type") and not re.match(_B64_IMAGE.decode(), v)}


# --------------------------------------------------------------------------- saving


def normalize_format(fmt: str) -> str:
    """"jpg"/"jpeg"/"png"/"webp" (any case) -> Pillow's "JPEG"/"PNG"/"WEBP"."""
    name = _FORMAT_ALIASES.get(fmt.lower().lstrip("."))
    if name is None:
        raise ValueError(f"unsupported output format {fmt!r}; choose one of jpg, png, webp")
    return name


def output_format(source_format: str | None, path: str | os.PathLike | None = None, fmt: str | None = None) -> str:
    """Pick the format to write: explicit ``fmt``, else the destination's extension,
    else the source format when writable, else PNG (lossless keeps the cloak)."""
    if fmt:
        return normalize_format(fmt)
    suffix = Path(path).suffix.lower() if path is not None else ""
    if suffix in (".jpg", ".jpeg", ".png", ".webp"):
        return normalize_format(suffix)
    if suffix in IMAGE_EXTENSIONS:
        raise ValueError(f"cannot write {suffix} files; use .jpg, .png or .webp")
    source = (source_format or "").upper()
    return source if source in WRITABLE_FORMATS else "PNG"


def save_image(
    path: str | os.PathLike,
    img: LoadedImage | np.ndarray,
    fmt: str | None = None,
    quality: int = 95,
    keep_metadata: bool = False,
    alpha: np.ndarray | None = None,
) -> Path:
    """Write an image atomically and return its path.

    Args:
        path: destination; missing parent folders are created.
        img: a :class:`LoadedImage` (its metadata is used), or an (H, W, 3)
            uint8 RGB / (H, W, 4) RGBA array.
        fmt: "jpg", "png" or "webp"; None picks from the extension of
            ``path``, then the source format (see :func:`output_format`).
        quality: JPEG/WebP quality 1-100 (WebP 100 = lossless). JPEG is
            written 4:4:4 because 4:2:0 would blur the colour part of the cloak.
        keep_metadata: keep EXIF, XMP, comments and PNG text (orientation = 1
            either way). False keeps only ICC, resolution and orientation = 1.
        alpha: (H, W) uint8 alpha for an RGB array ``img``.

    The file is written as ``.<name>.tmp-XXXXXXXX`` beside the destination,
    fsynced, then renamed over it, so readers never see half a file and a
    failure leaves any existing file untouched. JPEG has no alpha channel:
    transparent pixels are composited over white.

    Raises:
        ImageError: the folder cannot be written, or the image is too large
            for the chosen format.
    """
    path = Path(path)
    loaded = img if isinstance(img, LoadedImage) else _from_array(img, alpha)
    try:
        name = output_format(loaded.format if isinstance(img, LoadedImage) else None, path, fmt)
    except ValueError as err:
        raise ImageError(path, str(err), "Pick another extension or pass fmt.") from err
    _check_encodable(path, name, loaded.size)
    pil = _to_pil(loaded, name)
    params = _save_params(loaded, name, quality, keep_metadata)
    _atomic_write(path, lambda f: pil.save(f, format=name, **params))
    return path


def _from_array(arr: np.ndarray, alpha: np.ndarray | None) -> LoadedImage:
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected (H, W, 3|4) uint8 array, got {arr.shape} {arr.dtype}")
    if arr.shape[2] == 4:
        arr, alpha = arr[..., :3], arr[..., 3]
    if alpha is not None and alpha.shape != arr.shape[:2]:
        raise ValueError(f"alpha shape {alpha.shape} does not match image {arr.shape[:2]}")
    return LoadedImage(rgb=arr, alpha=alpha, format="PNG")


def _check_encodable(path: Path, fmt: str, size: tuple[int, int]) -> None:
    if max(size) > _MAX_SIDE[fmt]:
        raise ImageError(path, f"{size[0]}x{size[1]} is too large for {fmt} (max side {_MAX_SIDE[fmt]})",
                         "Write PNG instead (--format png) or downscale.")


def _to_pil(img: LoadedImage, fmt: str) -> Image.Image:
    rgb = np.ascontiguousarray(img.rgb, dtype=np.uint8)
    if img.alpha is None:
        return Image.fromarray(rgb)
    if fmt == "JPEG":
        # out = a*rgb + (1-a)*white, a = alpha/255
        a = img.alpha.astype(np.float32)[..., None] / 255.0
        return Image.fromarray(np.rint(rgb * a + 255.0 * (1.0 - a)).astype(np.uint8))
    return Image.fromarray(np.dstack([rgb, img.alpha]).astype(np.uint8))


def _save_params(img: LoadedImage, fmt: str, quality: int, keep: bool) -> dict:
    exif = upright_exif(img.exif) if keep else strip_exif(img.exif)
    params: dict = {"exif": exif.tobytes()}
    if img.icc_profile:
        params["icc_profile"] = img.icc_profile
    if img.dpi:
        params["dpi"] = img.dpi
    xmp = xmp_without_previews(upright_xmp(img.xmp)) if keep and img.xmp else None
    if fmt == "JPEG":
        params.update(quality=quality, subsampling=0)
        if xmp:
            params["xmp"] = xmp
        if keep and img.comment:
            params["comment"] = img.comment
    elif fmt == "WEBP":
        params.update(quality=quality, lossless=quality >= 100, exact=img.alpha is not None)
        if xmp:
            params["xmp"] = xmp
    elif fmt == "PNG" and keep:
        info = PngImagePlugin.PngInfo()
        for key, value in text_without_previews(img.text).items():
            info.add_itxt(key, value)
        if xmp:
            info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", "replace"))
        params["pnginfo"] = info
    return params


def _atomic_write(path: Path, write) -> None:
    """Write via a temp file in the destination folder, fsync, then os.replace."""
    folder = path.parent
    unwritable = "Choose an output folder you can write to."
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temp(folder, path.name)
    except OSError as err:
        raise ImageError(path, f"cannot write to folder {folder} ({err.strerror or err})", unwritable) from err
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise ImageError(path, f"cannot write the file ({err})", unwritable) from err
        raise
    _fsync_dir(folder)


def _create_temp(folder: Path, name: str) -> tuple[int, Path]:
    # O_EXCL with mode 0o666 lets the umask decide permissions, like a normal write.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = folder / f".{name[:100]}.tmp-{secrets.token_hex(4)}"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable; not possible on every platform, so best effort."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- paths


def is_inside(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """True when ``path`` is ``folder`` or lies under it (after resolving links)."""
    p, f = Path(path).resolve(), Path(folder).resolve()
    return p == f or f in p.parents


def output_path_for(
    input: str | os.PathLike,
    in_root: str | os.PathLike,
    out_root: str | os.PathLike,
    suffix: str = "",
    fmt: str | None = None,
) -> Path:
    """Where the protected copy of ``input`` goes: the same relative path under
    ``out_root``, with ``suffix`` added to the stem and the extension of the
    output format (the input's own extension when it stays the same format).

    Example: ``output_path_for("in/a/b.jpg", "in", "out", "_cloaked")`` ->
    ``out/a/b_cloaked.jpg``. A ``.gif``/``.bmp``/``.tif`` input becomes ``.png``.

    Raises:
        ImageError: the result would overwrite the input itself.
    """
    input, in_root = Path(input), Path(in_root)
    rel = input.relative_to(in_root) if in_root != input else Path(input.name)
    out = Path(out_root) / rel.with_name(output_name(input.name, suffix, fmt))
    if out.resolve() == input.resolve():
        raise ImageError(input, "the output would overwrite the input",
                         "Choose a different output folder or add a suffix.")
    return out


def output_name(name: str, suffix: str = "", fmt: str | None = None) -> str:
    """The file name of the protected copy of a file called ``name``: stem + ``suffix`` + the
    output format's extension (the input's own extension when the format stays the same; a
    format that cannot be written becomes PNG). ``output_name("b.gif", "_c")`` -> ``b_c.png``."""
    stem, ext = os.path.splitext(name)
    target = output_format(None, None, fmt) if fmt else None
    in_fmt = _FORMAT_ALIASES.get(ext.lower().lstrip("."))
    if target is None and in_fmt is None:
        target = "PNG"
    if target is not None and target != in_fmt:
        ext = _FORMAT_EXT[target]
    return f"{stem}{suffix}{ext}"


def is_image_name(name: str) -> bool:
    """A file a folder walk takes as a photo: an image extension (any case), not hidden
    (".name": macOS "._IMG.jpg" forks, our own temp files)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def iter_inputs(
    paths: Iterable[str | os.PathLike],
    recursive: bool,
    exclude_dir: str | os.PathLike | None = None,
) -> Iterator[tuple[Path, Path]]:
    """Expand files and folders into ``(image_path, root)`` pairs, sorted per folder.

    A file is yielded as given (``root`` = its folder), whatever its extension,
    so that load_image can say what is wrong with it. Folders yield files with
    an image extension (``IMAGE_EXTENSIONS``, any case) with ``root`` = that
    folder; sub-folders only when ``recursive``. Hidden files and folders
    (".name", e.g. macOS "._IMG.jpg" resource forks and our own temp files)
    and anything inside ``exclude_dir`` (the output folder) are skipped. Each
    file is yielded once.

    Raises:
        ImageError: a path does not exist.
    """
    seen: set[Path] = set()
    for given in paths:
        given = Path(given)
        if given.is_dir():
            found = _walk(given, recursive, exclude_dir)
        elif given.exists():
            found = iter([given])
        else:
            raise ImageError(given, "no such file or folder", "Check the path.")
        root = given if given.is_dir() else given.parent
        for path in found:
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                yield path, root


def _walk(folder: Path, recursive: bool, exclude_dir: str | os.PathLike | None) -> Iterator[Path]:
    excluded = Path(exclude_dir).resolve() if exclude_dir is not None else None
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        if excluded is not None and is_inside(here, excluded):
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if recursive and not d.startswith("."))
        for name in sorted(filenames):
            if is_image_name(name):
                yield here / name
