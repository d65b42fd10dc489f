"""Reading image files: the one place that decides what an image's pixels and size are.

Every command reads photos through :func:`read_image` and image sizes through
:func:`read_header` (check, pack, both training sources, predict, edit, export, visualisation),
and label PNGs (panoptic PNGs, Cityscapes / ADE20K label maps, id maps) through
:func:`read_label_png`. The rules, once:

- **EXIF orientation** is applied (as detectron2's ``read_image`` and phone-photo viewers do), so
  the size of an image is its *displayed* size. ``exif=False`` reads the stored pixels instead,
  for datasets annotated on the un-rotated bitmap; a size check names the orientation tag when
  the declared size matches only the stored one (:func:`size_problem`).
- **Modes**: 16-bit grey is scaled to 8 bits (÷257, so 65535 → 255), 32-bit integer grey
  likewise when its values fit 16 bits (else by its maximum), float grey by 255 when it lies in
  [0, 1]; grey, grey+alpha, palette (with or without transparency), CMYK and RGBA become RGB
  (alpha dropped: the colour stored under transparent pixels is kept).
- **Size limit**: an image whose pixel count exceeds :func:`entitykit.limits.max_pixels` is refused
  from its header, before any pixel is decoded (a PNG bomb never allocates).
- Failures (missing file, not an image, truncated data) are a :class:`EntityKitError` naming the
  file (and the item, when given).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import EntityKitError
from .limits import check_pixels

EXIF_ORIENTATION_TAG = 0x0112
# orientation values 5..8 swap width and height (rotations by ±90°, transpositions)
_SWAPS = {5, 6, 7, 8}
_ORIENTATION_WORDS = {2: "mirrored", 3: "rotated 180°", 4: "flipped", 5: "transposed", 6: "rotated 90° clockwise",
                      7: "transversed", 8: "rotated 90° counter-clockwise"}

Image.MAX_IMAGE_PIXELS = None  # the limit is ours (entitykit.limits), checked from the header with a clear message

Source = str | Path | bytes


@dataclass(frozen=True)
class ImageHeader:
    """What an image file says about itself, without decoding its pixels.

    ``height``/``width``: the size entitykit uses (displayed size when EXIF is applied);
    ``stored_height``/``stored_width``: the bitmap as stored; ``orientation``: the EXIF tag (1 = none).
    """

    height: int
    width: int
    stored_height: int
    stored_width: int
    orientation: int
    mode: str
    format: str | None


def _name(source: Source, name: str | Path | None) -> str:
    if name is not None:
        return str(name)
    return "<image bytes>" if isinstance(source, bytes) else str(source)


def _open(source: Source, name: str, item: str | None) -> Image.Image:
    try:
        return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except FileNotFoundError:
        raise EntityKitError("image file not found", name, item) from None
    except IsADirectoryError:
        raise EntityKitError("is a folder, not an image file", name, item) from None
    except Image.UnidentifiedImageError:
        raise EntityKitError("cannot read image: not an image file PIL knows (unknown format, empty or corrupt)",
                             name, item) from None
    except (OSError, ValueError, SyntaxError) as e:
        raise EntityKitError(f"cannot read image: {e}", name, item) from None


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1 = none) from what the header holds, never decoding pixels: PIL's
    PNG ``getexif`` decodes the whole image to look for an eXIf chunk after the pixel data, so a
    PNG's orientation is read from the chunks before it only (where the PNG specification puts
    eXIf), by every reader alike (:func:`read_header`, :func:`read_image`)."""
    if im.format == "PNG" and "exif" not in im.info:
        return 1
    try:
        value = im.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001  (a corrupt EXIF block: PIL raises many kinds; the pixels may be fine)
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _header(im: Image.Image, exif: bool) -> ImageHeader:
    w, h = im.size
    tag = _orientation(im)
    dh, dw = (w, h) if exif and tag in _SWAPS else (h, w)
    return ImageHeader(dh, dw, h, w, tag, im.mode, im.format)


def read_header(source: Source, *, exif: bool = True, name: str | Path | None = None,
                item: str | None = None) -> ImageHeader:
    """The image's size and mode from its header (no pixel decoding); refuses sizes over the limit.

    Raises :class:`EntityKitError` naming ``name`` (default: the path) and ``item``.
    """
    label = _name(source, name)
    with _open(source, label, item) as im:
        header = _header(im, exif)
    check_pixels(header.stored_height, header.stored_width, label, item)
    return header


def read_image(source: Source, *, exif: bool = True, name: str | Path | None = None,
               item: str | None = None, expect: tuple[int, int] | None = None) -> np.ndarray:
    """An image file (path or its bytes) → H×W×3 uint8 RGB, C-contiguous and writable.

    ``exif``: apply the EXIF orientation (default) or keep the stored pixels. ``expect``: the
    (height, width) a dataset declares; a different size is refused before decoding, with
    :func:`size_problem`'s message. See the module docstring for modes and limits. Raises
    :class:`EntityKitError` naming the file (``name``, default the path) and ``item``.
    """
    label = _name(source, name)
    with _open(source, label, item) as im:
        w, h = im.size
        check_pixels(h, w, label, item)
        if expect is not None:
            problem = size_problem(_header(im, exif), *expect, exif=exif)
            if problem:
                raise EntityKitError(problem, label, item)
        orientation = _orientation(im) if exif else 1  # from the header, as read_header reads it
        try:
            im.load()
            if orientation != 1:
                im = ImageOps.exif_transpose(im)
            return to_rgb(im)
        except EntityKitError:
            raise
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            raise EntityKitError(f"cannot decode image: {e}", label, item) from None


def to_rgb(im: Image.Image) -> np.ndarray:
    """A loaded PIL image of any mode → H×W×3 uint8 RGB (the rules of the module docstring)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float64)
            top = float(np.nanmax(arr)) if arr.size else 0.0
            arr = np.floor(np.nan_to_num(arr * (255.0 if top <= 1.0 else 1.0), nan=0.0) + 0.5)  # round half up
        else:
            arr = arr.astype(np.int64)
            top = int(arr.max()) if arr.size else 0
            if im.mode.startswith("I;16") or top <= 0xFFFF:
                arr = (arr + 128) // 257  # 0..65535 → 0..255, rounded
            else:
                arr = arr * 255 // max(top, 1)
        g = np.clip(arr, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.array(im, dtype=np.uint8)  # one writable copy


def size_problem(header: ImageHeader, height: int, width: int, *, exif: bool = True,
                 declared_by: str = "the dataset") -> str | None:
    """None when the image is ``height``×``width`` as read (EXIF applied unless ``exif=False``);
    else the message ("image is W×H, ``declared_by`` says w×h"), naming the orientation tag when
    only the stored bitmap matches."""
    if (header.height, header.width) == (height, width):
        return None
    text = f"image is {header.width}×{header.height}, {declared_by} says {width}×{height}"
    if exif and header.orientation != 1 and (header.stored_height, header.stored_width) == (height, width):
        how = _ORIENTATION_WORDS.get(header.orientation, "re-oriented")
        return (f"{text}: the size declared is the stored bitmap's, but EXIF orientation {header.orientation} "
                f"({how}) makes it {header.width}×{header.height}; if the masks were drawn on the stored "
                "bitmap, read it with --ignore-exif (exif=False)")
    if header.orientation != 1:
        text += f" (EXIF orientation {header.orientation} {'applied' if exif else 'ignored'})"
    return text


def read_label_png(path: str | Path, *, what: str = "label PNG", item: str | None = None) -> tuple[np.ndarray, str]:
    """A label map PNG (panoptic RGB, 8/16/32-bit grey, palette indices) → (array as stored, PIL mode).

    No conversion and no EXIF (labels are stored pixel for pixel); the size limit applies before
    decoding. Raises :class:`EntityKitError` naming the file and ``item``.
    """
    label = str(path)
    try:
        im = Image.open(path)
    except FileNotFoundError:
        raise EntityKitError(f"{what} not found", label, item) from None
    except IsADirectoryError:
        raise EntityKitError(f"{what} is a folder, not a file", label, item) from None
    except Image.UnidentifiedImageError:
        raise EntityKitError(f"{what} is not an image (empty or corrupt file)", label, item) from None
    except (OSError, ValueError, SyntaxError) as e:
        raise EntityKitError(f"cannot read {what}: {e}", label, item) from None
    with im:
        w, h = im.size
        check_pixels(h, w, label, item)
        try:
            return np.asarray(im), im.mode
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            raise EntityKitError(f"cannot decode {what}: {e}", label, item) from None

