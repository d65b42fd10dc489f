"""Naming output files after input file names: the one rule every writer uses.

Id maps (``idmaps``, ``convert --id-maps``, ``predict``), overlays and cutouts are named after the
image's ``file_name`` (or its path below an input folder). Those names come from users' files and
labelling tools: absolute paths (``/srv/labels/x.jpg``), ``../`` parts, Windows separators and drive
letters, control characters, names too long for the file system, and names that differ only by
suffix (``a.jpg`` / ``a.png``) or by case. :func:`output_names` turns a list of them into relative
names that

- always stay inside the output folder (no absolute path, no ``..``, no empty part);
- never collide with each other, compared case-insensitively (macOS and Windows), also not as a
  file against a folder of the same name;
- depend only on the list, in order (same input, same names).

Writers append their own suffix (``.png``) and record the mapping image → file in their index
file (``id_maps.json``, ``predictions.json``), so a reader never has to guess a name.

The coloured preview of the id map named ``name`` is :func:`preview_name` (``previews/<name>.png``),
for every writer: ``predict`` keeps its id maps in the sibling folder ``id_maps/``; the id-map
writers that put id maps at the top of their folder (``idmaps``, ``convert --id-maps``) reserve the
folder ``previews`` (``output_names(..., reserved=[PREVIEWS])``), so no id map can land where a
preview goes.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from .errors import EntityKitError

PREVIEWS = "previews"  # the folder of the coloured previews of id maps
ID_MAPS_JSON = "id_maps.json"  # the index `entitykit idmaps` writes beside the id maps (no scores)
MAX_PART_BYTES = 200  # below the usual 255-byte limit, leaving room for a suffix and "~k"
_BAD_CHARS = {c: "_" for c in (*map(chr, range(32)), "\x7f", ":", "\\", "*", "?", '"', "<", ">", "|")}
_TRANS = str.maketrans(_BAD_CHARS)


def _safe_part(part: str) -> str:
    part = part.translate(_TRANS).strip() or "_"
    if not part.strip("."):  # "..", "...": never a parent or the folder itself
        return "_" * len(part)
    raw = part.encode("utf-8")
    if len(raw) > MAX_PART_BYTES:
        digest = hashlib.sha1(raw).hexdigest()[:10]
        head = raw[: MAX_PART_BYTES - 11].decode("utf-8", "ignore")
        part = f"{head}-{digest}"
    return part


def safe_relative(name: str) -> str:
    """A relative posix path built from ``name`` that cannot leave the folder it is joined to."""
    text = str(name).replace("\\", "/")
    if len(text) >= 2 and text[1] == ":" and text[0].isalpha():  # C:/… → C/…
        text = text[0] + text[2:]
    parts = [p for p in text.split("/") if p not in ("", ".")]
    return "/".join(_safe_part(p) for p in parts) or "image"


def _stem(rel: str) -> str:
    head, _, last = rel.rpartition("/")
    stem = last.rsplit(".", 1)[0] if "." in last.lstrip("_") else last
    if not stem.strip("."):  # "..a" → "." is no name: keep the whole part
        stem = last
    return f"{head}/{stem}" if head else stem


def output_names(names: Sequence[str], *, suffix: str = ".png", reserved: Sequence[str] = ()) -> list[str]:
    """Collision-free relative output names (without ``suffix``) for input file names, in order.

    A name loses its last suffix (``a.b.c.jpg`` → ``a.b.c``) unless that makes it collide, then it
    keeps it (``a.jpg``, ``a.png``); anything still taken — or whose file (name + ``suffix``) would be a folder another name
    needs — gets ``~2``, ``~3``, … See the module docstring for the guarantees.
    ``reserved``: top-level folder names the writer keeps for itself (:data:`PREVIEWS`); a name
    inside one of them (compared case-insensitively) moves to ``<folder>_/…`` (``previews/a.jpg`` →
    ``previews_/a``), then the rules above apply.
    """
    safe = [safe_relative(n) for n in names]
    if reserved:
        taken = {r.lower() for r in reserved}
        safe = [f"{s.split('/', 1)[0]}_/{s.split('/', 1)[1]}" if "/" in s and s.split("/", 1)[0].lower() in taken
                else s for s in safe]
    stems = [_stem(s) for s in safe]
    counts = Counter(s.lower() for s in stems)
    folders = {"/".join(s.lower().split("/")[:k]) for s in safe + stems for k in range(1, s.count("/") + 1)}
    used: set[str] = set()
    out = []
    for s, stem in zip(safe, stems):
        cand = stem if counts[stem.lower()] == 1 else s
        name, k = cand, 2
        while name.lower() in used or (name + suffix).lower() in folders:
            name = f"{cand}~{k}"
            k += 1
        used.add(name.lower())
        out.append(name)
    return out


def preview_name(name: str) -> str:
    """The relative file of the coloured preview of the id map named ``name`` (an :func:`output_names`
    name): ``previews/<name>.png``."""
    return f"{PREVIEWS}/{name}.png"


def inside(folder: str | Path, rel: str) -> Path:
    """``folder / rel``, refusing (EntityKitError) any result that is not below ``folder``."""
    base = Path(folder)
    target = base / rel
    try:
        target.resolve().relative_to(base.resolve())
    except ValueError:
        raise EntityKitError(f"output name {rel!r} would leave the output folder", base) from None
    return target
