"""Entity-based image editing: pick an entity by a point, then cut it out, blur the rest, or recolor it.

These are the editing uses that motivate entity segmentation (one entity per pixel, no category
needed). Images are H×W×3 uint8 RGB arrays, id maps H×W integer arrays (0 = no entity), masks
H×W bool arrays. Only numpy is needed; blurs are FFT convolutions, so their cost does not grow
with the blur radius.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import EntityKitError

OPS = ("cutout", "bokeh", "recolor")


# ---------------------------------------------------------------------------------------------
# Picking


def entity_at(id_map: np.ndarray, x: float, y: float) -> int:
    """The entity id under pixel (x, y) (x = column, y = row; fractions are floored).

    A point outside the image or on no entity is an EntityKitError; the latter names the
    nearest entity and its distance, so the user can correct the point.
    """
    h, w = id_map.shape
    col, row = math.floor(x), math.floor(y)
    if not (0 <= col < w and 0 <= row < h):
        raise EntityKitError(f"point ({x:g}, {y:g}) is outside the {w}×{h} image (x in 0..{w - 1}, y in 0..{h - 1})")
    k = int(id_map[row, col])
    if k > 0:
        return k
    rows, cols = np.nonzero(id_map)
    if rows.size == 0:
        raise EntityKitError(f"point ({x:g}, {y:g}) is on no entity: the id map has no entities")
    d2 = (rows.astype(np.int64) - row) ** 2 + (cols.astype(np.int64) - col) ** 2
    i = int(np.argmin(d2))
    raise EntityKitError(
        f"point ({x:g}, {y:g}) is on no entity (id 0); nearest is entity {int(id_map[rows[i], cols[i]])} "
        f"at ({int(cols[i])}, {int(rows[i])}), {math.sqrt(float(d2[i])):.1f} px away")


def entity_mask(id_map: np.ndarray, entity_id: int) -> np.ndarray:
    mask = id_map == entity_id
    if not mask.any():
        raise EntityKitError(f"entity {entity_id} has no pixels in the id map")
    return mask


def _check(image: np.ndarray, mask: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise EntityKitError(f"expected an H×W×3 uint8 RGB image, got {image.shape} {image.dtype}")
    if mask.shape != image.shape[:2]:
        raise EntityKitError(f"mask/id map is {mask.shape[1]}×{mask.shape[0]} but the image is "
                             f"{image.shape[1]}×{image.shape[0]}")


# ---------------------------------------------------------------------------------------------
# Cutout


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """[x, y, w, h] of the mask's pixels."""
    rows = np.flatnonzero(mask.any(1))
    cols = np.flatnonzero(mask.any(0))
    if rows.size == 0:
        raise EntityKitError("empty mask")
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def cutout(image: np.ndarray, mask: np.ndarray, *, crop: bool = False) -> np.ndarray:
    """RGBA: the image's colours, alpha 255 on the mask and 0 elsewhere (cropped to its box if ``crop``)."""
    mask = np.asarray(mask, bool)
    _check(image, mask)
    out = np.empty(image.shape[:2] + (4,), np.uint8)
    out[:, :, :3] = image
    out[:, :, 3] = np.where(mask, 255, 0)
    if crop:
        x, y, w, h = mask_box(mask)
        out = out[y : y + h, x : x + w].copy()
    return out


# ---------------------------------------------------------------------------------------------
# Blur


def _fast_len(n: int) -> int:
    """Smallest 2^a·3^b·5^c ≥ n (FFT-friendly)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def disk_kernel(radius: float) -> np.ndarray:
    """A normalised, anti-aliased disk: the point-spread function of an out-of-focus lens."""
    r = max(float(radius), 0.5)
    n = int(math.ceil(r))
    yy, xx = np.mgrid[-n : n + 1, -n : n + 1]
    k = np.clip(r + 0.5 - np.hypot(xx, yy), 0.0, 1.0)
    return k / k.sum()


def convolve(planes: np.ndarray, kernel: np.ndarray, *, tile: int = 1024) -> np.ndarray:
    """'Same'-size convolution of H×W or H×W×C arrays with an odd square kernel, edges mirrored.

    FFT-based, one plane and one ``tile``×``tile`` block at a time (overlap-save), so memory
    stays at about one float32 plane plus a few blocks, whatever the image size.
    """
    squeeze = planes.ndim == 2
    if squeeze:
        planes = planes[:, :, None]
    h, w, c = planes.shape
    r = kernel.shape[0] // 2
    spectra: dict[tuple[int, int], np.ndarray] = {}
    out = np.empty((h, w, c), np.float32)
    for i in range(c):
        padded = np.pad(planes[:, :, i].astype(np.float32), r, mode="symmetric")
        for y0 in range(0, h, tile):
            th = min(tile, h - y0)
            for x0 in range(0, w, tile):
                tw = min(tile, w - x0)
                block = padded[y0 : y0 + th + 2 * r, x0 : x0 + tw + 2 * r]
                size = (_fast_len(block.shape[0]), _fast_len(block.shape[1]))
                if size not in spectra:
                    spectra[size] = np.fft.rfft2(kernel, s=size)
                full = np.fft.irfft2(np.fft.rfft2(block, s=size) * spectra[size], s=size)
                out[y0 : y0 + th, x0 : x0 + tw, i] = full[2 * r : 2 * r + th, 2 * r : 2 * r + tw]
    return out[:, :, 0] if squeeze else out


def bokeh(image: np.ndarray, mask: np.ndarray, *, blur: float = 12.0, feather: float | None = None) -> np.ndarray:
    """Keep the entity sharp and blur everything else with a lens-like disk of radius ``blur`` px.

    The background is blurred without the entity's colours (normalised convolution), so no halo
    of the entity spreads into it. ``feather`` (default blur/4, at least 1 px) softens the edge
    outward only: the entity's own pixels are returned unchanged, bit for bit.
    """
    mask = np.asarray(mask, bool)
    _check(image, mask)
    if blur < 0:
        raise EntityKitError(f"blur radius must be ≥ 0, got {blur}")
    if blur == 0 or mask.all():
        return image.copy()
    feather = max(1.0, blur / 4) if feather is None else float(feather)
    if feather < 0:
        raise EntityKitError(f"feather must be ≥ 0, got {feather}")
    kernel = disk_kernel(blur)
    bg = (~mask).astype(np.float32)
    den = np.maximum(convolve(bg, kernel), 1e-6)  # > 0 on every background pixel (kernel centre)
    if feather > 0:
        alpha = np.clip(2.0 * convolve(mask.astype(np.float32), disk_kernel(feather)), 0.0, 1.0)
    else:
        alpha = np.zeros(mask.shape, np.float32)
    alpha[mask] = 1.0
    out = np.empty_like(image)
    for c in range(3):  # one channel at a time: memory stays a few float planes
        plane = image[:, :, c].astype(np.float32)
        blurred = convolve(plane * bg, kernel)
        blurred /= den
        plane -= blurred  # in place: alpha·plane + (1 − alpha)·blurred
        plane *= alpha
        plane += blurred
        np.clip(np.rint(plane, out=plane), 0, 255, out=plane)
        out[:, :, c] = plane
    out[mask] = image[mask]
    return out


# ---------------------------------------------------------------------------------------------
# Recolor


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """N×3 floats in 0..1 → N×3 (hue in turns 0..1, saturation, value)."""
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    v = rgb.max(1)
    c = v - rgb.min(1)
    safe = np.where(c > 0, c, 1.0)
    h = np.where(v == r, ((g - b) / safe) % 6.0, np.where(v == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    h = np.where(c > 0, h / 6.0, 0.0)
    s = np.where(v > 0, c / np.where(v > 0, v, 1.0), 0.0)
    return np.stack((h, s, v), 1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    h, s, v = hsv[:, 0] % 1.0, hsv[:, 1], hsv[:, 2]
    out = np.empty_like(hsv)
    for col, n in enumerate((5.0, 3.0, 1.0)):
        k = (n + h * 6.0) % 6.0
        out[:, col] = v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return out


def recolor(image: np.ndarray, mask: np.ndarray, *, hue: float = 0.3) -> np.ndarray:
    """Rotate the hue of the entity's pixels by ``hue`` turns (0.5 = opposite colour).

    Saturation and value are kept, so shading and texture survive; grey pixels have no hue and
    stay as they are. Pixels outside the mask are untouched.
    """
    mask = np.asarray(mask, bool)
    _check(image, mask)
    out = image.copy()
    step = max(1, (1 << 20) // max(1, mask.shape[1]))  # about a million pixels at a time
    for y in range(0, mask.shape[0], step):
        m = mask[y : y + step]
        if not m.any():
            continue
        hsv = rgb_to_hsv(image[y : y + step][m].astype(np.float64) / 255.0)
        hsv[:, 0] = (hsv[:, 0] + float(hue)) % 1.0
        out[y : y + step][m] = np.clip(np.round(hsv_to_rgb(hsv) * 255.0), 0, 255).astype(np.uint8)
    return out


# ---------------------------------------------------------------------------------------------
# One call


def edit_image(image: np.ndarray, id_map: np.ndarray, point: tuple[float, float], op: str, *,
               hue: float = 0.3, blur: float = 12.0, feather: float | None = None, crop: bool = False
               ) -> tuple[np.ndarray, int]:
    """Pick the entity at ``point`` = (x, y) and apply ``op``; returns (result, entity id).

    cutout → H×W×4 RGBA (or its box with ``crop``); bokeh and recolor → H×W×3 RGB.
    """
    if op not in OPS:
        raise EntityKitError(f"unknown edit {op!r}; choose one of {', '.join(OPS)}")
    for name, v in (("point x", point[0]), ("point y", point[1]), ("hue", hue), ("blur", blur),
                    ("feather", 0.0 if feather is None else feather)):
        if not math.isfinite(float(v)):
            raise EntityKitError(f"{name} must be a finite number, got {v}")
    if not 0 <= blur <= max(image.shape[:2]):
        raise EntityKitError(f"blur radius must be between 0 and the image's longest side ({max(image.shape[:2])} px), "
                             f"got {blur:g}")
    if feather is not None and not 0 <= feather <= max(image.shape[:2]):
        raise EntityKitError(f"feather must be between 0 and the image's longest side ({max(image.shape[:2])} px), "
                             f"got {feather:g}")
    if image.shape[:2] != id_map.shape:
        raise EntityKitError(f"id map is {id_map.shape[1]}×{id_map.shape[0]} but the image is "
                             f"{image.shape[1]}×{image.shape[0]} (EXIF orientation applied)")
    k = entity_at(id_map, *point)
    mask = id_map == k
    if op == "cutout":
        return cutout(image, mask, crop=crop), k
    if op == "bokeh":
        return bokeh(image, mask, blur=blur, feather=feather), k
    return recolor(image, mask, hue=hue), k
