"""Pictures of id maps: overlays with boundaries and id labels, coloured previews, RGBA cutouts.

Images are H×W×3 uint8 RGB arrays, id maps H×W integer arrays (0 = no entity).

Colours: entities that touch (or come within ``reach`` pixels of each other) never share a
colour. The id map's adjacency graph is coloured greedily (most neighbours first, each entity
taking the least-used colour its neighbours do not have), over matplotlib's qualitative palettes
(tab10, then tab20's light half, tab20b, tab20c; more distinct colours are made only for an
entity with more neighbours than that). Colours depend only on the id map, so the overlay and
the preview of one image agree, and a second run gives the same pictures.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

DEFAULT_ALPHA = 0.35  # the photo stays visible under the tint
_LABEL_PIXELS = 1_000_000  # label positions are found on an id map subsampled to about this size


# matplotlib's qualitative palettes tab10, tab20 (its light half), tab20b and tab20c, greys and repeats
# left out, written out so that drawing an id-map preview does not import matplotlib (data commands
# such as `entitykit idmaps` stay light; tests/test_pictures.py checks the values against matplotlib).
_PALETTE = (
    "1f77b4 ff7f0e 2ca02c d62728 9467bd 8c564b e377c2 bcbd22 17becf "  # tab10
    "aec7e8 ffbb78 98df8a ff9896 c5b0d5 c49c94 f7b6d2 dbdb8d 9edae5 "  # tab20, light half
    "393b79 5254a3 6b6ecf 9c9ede 637939 8ca252 b5cf6b cedb9c 8c6d31 bd9e39 e7ba52 e7cb94 "  # tab20b
    "843c39 ad494a d6616b e7969c 7b4173 a55194 ce6dbd de9ed6 "
    "3182bd 6baed6 9ecae1 c6dbef e6550d fd8d3c fdae6b fdd0a2 31a354 74c476 a1d99b c7e9c0 "  # tab20c
    "756bb1 9e9ac8 bcbddc"
).split()


def distinct_colors(n: int) -> np.ndarray:
    """n×3 uint8, all rows different: matplotlib's tab10, tab20's light half, tab20b, tab20c (greys left out),
    then (only for n > 53) further colours from a fixed random sequence, each unlike those before."""
    base: list[tuple[int, int, int]] = [(int(h[:2], 16), int(h[2:4], 16), int(h[4:], 16)) for h in _PALETTE]
    rng = np.random.default_rng(0)
    while len(base) < n:
        c = tuple(int(v) for v in rng.integers(30, 256, 3))
        if c not in base:
            base.append(c)
    return np.array(base[:n], np.uint8).reshape(n, 3)


def adjacent_pairs(id_map: np.ndarray, reach: int = 2) -> np.ndarray:
    """K×2 int64, the distinct id pairs (a < b, both > 0) with pixels within ``reach`` pixels of each
    other along a row, a column or a diagonal (so entities separated by a thin void line count)."""
    ids = np.asarray(id_map)
    pairs = []
    for d in range(1, max(1, reach) + 1):
        for a, b in ((ids[:, :-d], ids[:, d:]), (ids[:-d, :], ids[d:, :]),
                     (ids[:-d, :-d], ids[d:, d:]), (ids[:-d, d:], ids[d:, :-d])):
            diff = a != b  # few pixels: the comparisons with 0 run on those only
            x, y = a[diff].astype(np.int64), b[diff].astype(np.int64)
            keep = (x > 0) & (y > 0)
            if keep.any():
                x, y = x[keep], y[keep]
                pairs.append(np.unique((np.minimum(x, y) << 32) | np.maximum(x, y)))
    if not pairs:
        return np.zeros((0, 2), np.int64)
    codes = np.unique(np.concatenate(pairs))
    return np.stack([codes >> 32, codes & 0xFFFFFFFF], axis=1)


def color_classes(ids: Sequence[int], pairs: np.ndarray) -> dict[int, int]:
    """A colour index per id such that every pair in ``pairs`` gets two different indices.

    Greedy, entities with the most neighbours first (ties: smaller id); each takes, among the
    indices its coloured neighbours do not use, the one used least so far (ties: the smaller), so
    the whole palette gets used rather than the same four colours. Never more than
    max(9, largest degree + 1) indices (9: tab10 without its grey).
    """
    nbrs: dict[int, set[int]] = {int(i): set() for i in ids}
    for a, b in pairs.tolist():
        if a in nbrs and b in nbrs:
            nbrs[a].add(b)
            nbrs[b].add(a)
    k = max([9] + [len(v) + 1 for v in nbrs.values()])
    used = np.zeros(k, np.int64)
    out: dict[int, int] = {}
    for i in sorted(nbrs, key=lambda i: (-len(nbrs[i]), i)):
        free = np.ones(k, bool)
        free[[out[j] for j in nbrs[i] if j in out]] = False
        c = int(np.flatnonzero(free)[np.argmin(used[free])])
        out[i] = c
        used[c] += 1
    return out


def entity_ids(id_map: np.ndarray) -> list[int]:
    """The ids > 0 present in the map, ascending (a count per id, not a sort, for ordinary ids)."""
    id_map = np.asarray(id_map)
    if id_map.size == 0:
        return []
    if int(id_map.min()) < 0:
        raise ValueError("id map has negative ids")
    if int(id_map.max()) <= 1 << 20:
        return [int(i) for i in np.flatnonzero(np.bincount(id_map.ravel())) if i > 0]
    return [int(i) for i in np.unique(id_map) if i > 0]


def entity_colors(id_map: np.ndarray, *, reach: int = 2) -> dict[int, tuple[int, int, int]]:
    """The colour of every id in the map (0 excluded): touching entities always differ."""
    ids = entity_ids(id_map)
    classes = color_classes(ids, adjacent_pairs(id_map, reach))
    colors = distinct_colors(max(classes.values(), default=0) + 1)
    return {i: tuple(int(v) for v in colors[c]) for i, c in classes.items()}


def _lut(id_map: np.ndarray, colors: dict[int, tuple[int, int, int]], void=(0, 0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """(index map, K×3 colour table) with table[index] = colour; id maps with huge ids are compacted."""
    top = int(id_map.max()) if id_map.size else 0
    if top <= 1 << 20:
        table = np.empty((top + 1, 3), np.uint8)
        table[:] = void
        for i, c in colors.items():
            if 0 <= i <= top:  # colours of ids not in this map are not needed
                table[i] = c
        return id_map, table
    keys, index = np.unique(id_map, return_inverse=True)
    table = np.array([colors.get(int(k), void) for k in keys], np.uint8).reshape(-1, 3)
    return index.reshape(id_map.shape), table


def preview(id_map: np.ndarray, *, colors: dict[int, tuple[int, int, int]] | None = None) -> np.ndarray:
    """H×W×3 uint8: each entity in its colour (:func:`entity_colors`), no entity black. Equal ids,
    equal colours; touching entities, different colours."""
    id_map = np.asarray(id_map)
    index, table = _lut(id_map, entity_colors(id_map) if colors is None else colors)
    return table[index]


def write_preview_png(path: str | Path, id_map: np.ndarray, *,
                      colors: dict[int, tuple[int, int, int]] | None = None) -> None:
    """Save :func:`preview` (what a 16-bit id map looks like to a person) as an 8-bit PNG.

    The pixels are those of :func:`preview` (``colors`` as there). Stored as a palette PNG (one byte
    per pixel, the colours in its palette, index 0 black for no entity) when the picture has at most
    256 colours, as it nearly always does (one colour per colour class, not per entity): about a
    third faster to write and smaller than RGB, and shown in colour by every viewer. Otherwise RGB.
    """
    from PIL import Image  # noqa: PLC0415

    id_map = np.asarray(id_map)
    if colors is None:
        colors = entity_colors(id_map)
    used = sorted(set(colors.values()) - {(0, 0, 0)})
    if len(used) >= 256:
        Image.fromarray(preview(id_map, colors=colors), "RGB").save(path)
        return
    slot = {c: i + 1 for i, c in enumerate(used)}
    index, table = _lut(id_map, {k: (slot.get(c, 0), 0, 0) for k, c in colors.items()})
    image = Image.fromarray(table[:, 0][index], "P")
    image.putpalette([0, 0, 0, *(v for c in used for v in c)])
    image.save(path)


def boundaries(id_map: np.ndarray, thickness: int = 1) -> np.ndarray:
    """H×W bool: pixels whose right or lower neighbour has another id (entity–entity and entity–void
    edges), grown to ``thickness`` pixels."""
    edge = np.zeros(id_map.shape, bool)
    dx = id_map[:, 1:] != id_map[:, :-1]
    dy = id_map[1:, :] != id_map[:-1, :]
    edge[:, :-1] |= dx
    edge[:, 1:] |= dx
    edge[:-1, :] |= dy
    edge[1:, :] |= dy
    for _ in range(max(0, thickness - 1)):
        grown = edge.copy()
        grown[:, 1:] |= edge[:, :-1]
        grown[:, :-1] |= edge[:, 1:]
        grown[1:, :] |= edge[:-1, :]
        grown[:-1, :] |= edge[1:, :]
        edge = grown
    return edge


def label_points(id_map: np.ndarray) -> dict[int, tuple[int, int]]:
    """For every id, a pixel (row, col) of that entity as far as possible from its boundary (and
    from the image border): where a label inside the entity is easiest to see.

    One Euclidean distance transform (scipy) for all entities. Maps above about a megapixel are
    subsampled first; an entity too thin to survive that gets its own first pixel instead.
    """
    from scipy import ndimage  # noqa: PLC0415

    h, w = id_map.shape
    step = max(1, math.ceil(math.sqrt(h * w / _LABEL_PIXELS)))
    small = id_map[step // 2 :: step, step // 2 :: step]
    inner = (small > 0) & ~boundaries(small, 1)
    inner[[0, -1], :] = False
    inner[:, [0, -1]] = False
    dist = ndimage.distance_transform_edt(inner)
    ids = entity_ids(id_map)
    present = set(entity_ids(small))
    kept = [i for i in ids if i in present]
    found = ndimage.maximum_position(dist, labels=small, index=kept) if kept else []
    out = {i: (int(r) * step + step // 2, int(c) * step + step // 2) for i, (r, c) in zip(kept, found)}
    for i in ids:
        if i not in out:
            rows, cols = np.nonzero(id_map == i)
            out[i] = (int(rows[0]), int(cols[0]))
    return out


def _font(size: int):
    from PIL import ImageFont  # noqa: PLC0415

    try:
        import matplotlib  # noqa: PLC0415

        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"), size)
    except (ImportError, OSError):
        return ImageFont.load_default(size)


def label_text(entity_id: int, score: float | None = None) -> str:
    """What an entity's label says: its id (as in predictions.json), and its score when known."""
    return f"{entity_id}" if score is None else f"{entity_id}: {score:.2f}"


def _area_of(id_map: np.ndarray, ids: Sequence[int]) -> dict[int, int]:
    if id_map.size and int(id_map.max()) <= 1 << 20:
        counts = np.bincount(id_map.ravel())
        return {k: int(counts[k]) for k in ids}
    keys, counts = np.unique(id_map, return_counts=True)
    found = dict(zip(keys.tolist(), counts.tolist()))
    return {k: int(found.get(k, 0)) for k in ids}


def _font_size(shape: tuple[int, int]) -> int:
    return int(min(48, max(11, round(min(shape) / 28))))


def place_labels(id_map: np.ndarray, *, scores: Sequence[float] | dict[int, float] | None = None,
                 font_size: int | None = None) -> list[tuple[int, int, int, int, int, str]]:
    """Where :func:`draw_labels` puts each label: ``(left, top, width, height, id, text)`` boxes.

    Each box is centred on its entity's :func:`label_points` pixel (moved inside the image when
    that is near the border), and its centre is always on the entity. Labels never cover each other:
    large entities are labelled first; a label that would cover one already placed moves by a box
    height or width to a spot still on its entity, then shrinks to the id alone; a label that finds
    no free spot is left out (only in crowded pictures: predictions.json lists every id).
    ``scores``: entity k's score is ``scores[k - 1]`` (a sequence, as ``PredictedImage.scores``)
    or ``scores[k]`` (a dict).
    """
    from PIL import Image, ImageDraw  # noqa: PLC0415

    h, w = id_map.shape
    points = label_points(id_map)
    if not points:
        return []
    size = font_size or _font_size((h, w))
    font = _font(size)
    pad = max(2, size // 5)
    measure = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    area = _area_of(id_map, list(points))
    placed: list[tuple[int, int, int, int, int, str]] = []

    def free(left: int, top: int, bw: int, bh: int) -> bool:
        return all(left >= pl + pw or pl >= left + bw or top >= pt + ph or pt >= top + bh
                   for pl, pt, pw, ph, _, _ in placed)

    for k in sorted(points, key=lambda k: (-area[k], k)):
        r, c = points[k]
        score = None
        if scores is not None:
            if isinstance(scores, dict):
                score = scores.get(k)
            elif 0 < k <= len(scores):
                score = float(scores[k - 1])
        for text in [label_text(k, score)] + ([label_text(k)] if score is not None else []):
            x0, y0, x1, y1 = measure.textbbox((0, 0), text, font=font)
            bw, bh = min(w, x1 - x0 + 2 * pad), min(h, y1 - y0 + 2 * pad)
            spot = None
            for dy, dx in ((0, 0), (bh, 0), (-bh, 0), (0, bw // 2), (0, -bw // 2), (bh, bw // 2), (bh, -bw // 2),
                           (-bh, bw // 2), (-bh, -bw // 2), (2 * bh, 0), (-2 * bh, 0)):
                left = min(max(0, c + dx - bw // 2), w - bw)  # inside the image …
                top = min(max(0, r + dy - bh // 2), h - bh)
                if id_map[top + bh // 2, left + bw // 2] == k and free(left, top, bw, bh):  # … centred on the entity
                    spot = (left, top)
                    break
            if spot is not None:
                placed.append((spot[0], spot[1], bw, bh, k, text))
                break
    return placed


def draw_labels(image: np.ndarray, id_map: np.ndarray, colors: dict[int, tuple[int, int, int]], *,
                scores: Sequence[float] | dict[int, float] | None = None, font_size: int | None = None) -> np.ndarray:
    """The image with the labels of :func:`place_labels`: white text on a dark box framed in the
    entity's colour."""
    from PIL import Image, ImageDraw  # noqa: PLC0415

    size = font_size or _font_size(id_map.shape)
    font = _font(size)
    pad = max(2, size // 5)
    measure = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    out = image.copy()
    for left, top, bw, bh, k, text in place_labels(id_map, scores=scores, font_size=size):
        x0, y0, _, _ = measure.textbbox((0, 0), text, font=font)
        # each label is composited into its own box only: the cost does not grow with the image
        label = Image.new("RGBA", (bw, bh), (0, 0, 0, 0))
        draw = ImageDraw.Draw(label)
        draw.rectangle([0, 0, bw - 1, bh - 1], fill=(0, 0, 0, 185),
                       outline=tuple(colors.get(k, (255, 255, 255))) + (255,), width=max(1, size // 10))
        draw.text((pad - x0, pad - y0), text, font=font, fill=(255, 255, 255, 255))
        box = Image.fromarray(out[top : top + bh, left : left + bw]).convert("RGBA")
        out[top : top + bh, left : left + bw] = np.asarray(Image.alpha_composite(box, label).convert("RGB"))
    return out


def overlay(image: np.ndarray, id_map: np.ndarray, *, alpha: float = DEFAULT_ALPHA,
            boundary_color: tuple[int, int, int] | None = None, thickness: int | None = None,
            labels: bool = True, scores: Sequence[float] | dict[int, float] | None = None,
            font_size: int | None = None, colors: dict[int, tuple[int, int, int]] | None = None) -> np.ndarray:
    """The photo with every entity tinted in its colour, its boundary drawn, and its id labelled.

    alpha: fill opacity, 0 (photo only) … 1 (solid colour); entity pixels become
    ``(1 - alpha)·photo + alpha·colour``. Pixels of no entity keep their colour.
    boundary_color: None draws each entity's edge, inside the entity, in its own colour at full
    strength (so two touching entities show a two-coloured line); an RGB triple draws all edges in
    that colour. ``thickness`` defaults to 1 px per 300 px of the short side (at least 1).
    labels: put ``id`` (``id: score`` with ``scores``) at each entity's most interior pixel, the id
    that ``entitykit edit --point`` picks and ``predictions.json`` lists.
    colors: id → RGB, as :func:`entity_colors` returns (computed when not given).
    """
    if image.shape[:2] != id_map.shape:
        raise ValueError(f"image {image.shape[:2]} and id map {id_map.shape} differ in size")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    if colors is None:
        colors = entity_colors(id_map)
    index, table = _lut(id_map, colors)
    table16 = table.astype(np.uint16)
    a = int(round(alpha * 256))
    out = image.copy()
    step = max(1, (1 << 20) // max(1, id_map.shape[1]))  # about a million pixels at a time
    for y in range(0, id_map.shape[0], step):
        ids = index[y : y + step]
        tinted = (image[y : y + step].astype(np.uint16) * (256 - a) + table16[ids] * a + 128) >> 8
        on = id_map[y : y + step] > 0
        out[y : y + step][on] = tinted[on].astype(np.uint8)
    if thickness is None:
        thickness = max(1, round(min(id_map.shape) / 300))
    edge = boundaries(id_map, thickness)
    if boundary_color is None:
        edge &= id_map > 0
        out[edge] = table[index[edge]]
    else:
        out[edge] = boundary_color
    if labels:
        out = draw_labels(out, id_map, colors, scores=scores, font_size=font_size)
    return out


def cutout_crops(image: np.ndarray, id_map: np.ndarray, boxes: Sequence[Sequence[int]],
                 ids: Sequence[int]) -> Iterator[np.ndarray]:
    """For each entity id and its [x, y, w, h] box: an h×w×4 RGBA crop, alpha 255 on the entity, 0 elsewhere."""
    for (x, y, w, h), k in zip(boxes, ids):
        x, y, w, h = int(x), int(y), int(w), int(h)
        crop = np.empty((h, w, 4), np.uint8)
        crop[:, :, :3] = image[y : y + h, x : x + w]
        np.multiply(id_map[y : y + h, x : x + w] == k, 255, out=crop[:, :, 3], casting="unsafe")
        yield crop
