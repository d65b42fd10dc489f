"""Small valid inputs of every kind a command reads, built once per test module, and the checks
every bad-input case shares (exit code, no traceback, one line naming the file and the item,
nothing half-written). Used by ``test_bad_inputs.py`` (in-process) and
``test_bad_inputs_subprocess.py`` (real processes)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from panopticapi.utils import id2rgb
from PIL import Image

from entitykit.dataset import EntityDataset
from entitykit.masks import encode_id_map, encode_mask, rle_bbox, write_id_map_png

H, W = 6, 8  # every dataset image


@dataclass
class World:
    root: Path
    img: Path  # image folder of the entity datasets
    ents: Path  # entity dataset, 3 images (ids 1..3), 5 annotations (ids 1..5), image_root = img/
    ents2: Path  # a second entity dataset of other images (merge partner)
    ents_data: dict  # ents.json parsed (a template for mutations)
    panoptic: Path  # COCO panoptic JSON; PNGs in png_dir
    png_dir: Path
    pan_data: dict
    entityseg: Path  # EntitySeg-style COCO RLE JSON (class kept, string counts)
    es_data: dict
    sa1b: Path  # one SA-1B image JSON
    sa1b_data: dict
    amg: Path  # an automatic-mask-generator list (coco_rle)
    amg_data: list
    preds: Path  # entitykit predictions folder for ents (predictions.json + id maps)
    preds_data: dict
    results: Path  # COCO results list for ents
    results_data: list
    photo: Path  # a 48×64 photo (predict, edit)
    photo_idmap: Path  # its 16-bit id map (edit --id-map)
    ckpt: Path | None = None  # tiny untrained checkpoint (built on demand)


def _maps() -> list[np.ndarray]:
    maps = [np.zeros((H, W), np.int64) for _ in range(3)]
    maps[0][:3] = 1
    maps[0][3:, :4] = 2
    maps[0][4:, 5:] = 3
    maps[1][1:5, 1:7] = 5
    maps[2][2:, 2:] = 4
    return maps


def _entity_dataset(root: Path, name: str, img_dir: Path, prefix: str, seed: int, source: str = "toy") -> tuple[Path, dict]:
    img_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for i, m in enumerate(_maps(), start=1):
        fn = f"{prefix}{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(img_dir / fn, quality=95)
        images.append({"id": i, "file_name": fn, "height": H, "width": W, "source": source})
        _, rles, areas = encode_id_map(m)
        for rle, area, box in zip(rles, areas.tolist(), rle_bbox(rles).tolist()):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "segmentation": rle,
                         "area": area, "bbox": box, "iscrowd": 0, "source": source})
    ds = EntityDataset(images=images, annotations=anns, image_root=img_dir, info={"split": "train"})
    path = root / name
    ds.save(path)
    return path, json.loads(path.read_text())


def build_world(root: Path) -> World:
    root.mkdir(parents=True, exist_ok=True)
    img = root / "img"
    ents, ents_data = _entity_dataset(root, "ents.json", img, "", 0)
    ents2, _ = _entity_dataset(root, "ents2.json", root / "img2", "b", 1, "toy2")
    shutil.copy(img / "2.jpg", img / "2.png")  # a second file of the same stem (output-name collisions)

    # COCO panoptic (the converter's input and a panoptic GT for eval)
    png_dir = root / "panoptic"
    png_dir.mkdir()
    p_images, p_anns = [], []
    for i, m in enumerate(_maps(), start=1):
        pm = np.where(m > 0, m * 1000 + 7, 0)
        Image.fromarray(id2rgb(pm)).save(png_dir / f"p{i}.png")
        segs = [{"id": int(s), "category_id": 1 + int(s) % 2, "iscrowd": 0} for s in np.unique(pm) if s]
        p_images.append({"id": i, "file_name": f"{i}.jpg", "height": H, "width": W})
        p_anns.append({"image_id": i, "file_name": f"p{i}.png", "segments_info": segs})
    pan_data = {"images": p_images, "annotations": p_anns,
                "categories": [{"id": 1, "name": "thing", "isthing": 1}, {"id": 2, "name": "stuff", "isthing": 0}]}
    panoptic = root / "panoptic.json"
    panoptic.write_text(json.dumps(pan_data))

    # EntitySeg-style: string counts, class kept
    es_anns = []
    for a in ents_data["annotations"]:
        es_anns.append({"id": a["id"], "image_id": a["image_id"], "category_id": 3, "iscrowd": 0,
                        "segmentation": dict(a["segmentation"]), "area": a["area"], "bbox": a["bbox"]})
    es_data = {"images": [dict(im) for im in ents_data["images"]], "annotations": es_anns,
               "categories": [{"id": 3, "name": "thing3", "type": "thing"}]}
    entityseg = root / "entityseg.json"
    entityseg.write_text(json.dumps(es_data))

    # SAM: an SA-1B image JSON (overlapping masks) and an AMG list
    big = np.zeros((H, W), bool)
    big[1:5, 1:7] = True
    small = np.zeros((H, W), bool)
    small[2:4, 2:4] = True
    other = np.zeros((H, W), bool)
    other[5, :] = True
    sam_anns = [{"id": k + 1, "segmentation": encode_mask(m), "area": int(m.sum()), "predicted_iou": 0.9 - 0.1 * k,
                 "stability_score": 0.95} for k, m in enumerate((big, small, other))]
    sa1b_data = {"image": {"image_id": 7, "file_name": "sa_7.jpg", "height": H, "width": W}, "annotations": sam_anns}
    sam_dir = root / "sam"
    sam_dir.mkdir()
    sa1b = sam_dir / "sa_7.json"
    sa1b.write_text(json.dumps(sa1b_data))
    amg_data = [{k: v for k, v in a.items() if k != "id"} for a in sam_anns]
    amg = root / "amg.json"
    amg.write_text(json.dumps(amg_data))

    # predictions of ents: the GT itself, as id maps + scores and as COCO results
    preds = root / "preds"
    (preds / "id_maps").mkdir(parents=True)
    recs, results = [], []
    ds = EntityDataset.load(ents)
    for img_entry in ds.images:
        idm = ds.id_map(img_entry["id"])
        rel = f"id_maps/{img_entry['id']}.png"
        write_id_map_png(preds / rel, idm)
        ids = [int(v) for v in np.unique(idm) if v]
        recs.append({"image_id": img_entry["id"], "file_name": rel,
                     "segments": [{"id": k, "score": 0.9} for k in ids]})
        for k in ids:
            results.append({"image_id": img_entry["id"], "category_id": 1, "segmentation": encode_mask(idm == k),
                            "score": 0.9})
    preds_data = {"format": "entitykit-predictions", "version": 1, "images": recs}
    (preds / "predictions.json").write_text(json.dumps(preds_data))
    results_path = root / "results.json"
    results_path.write_text(json.dumps(results))

    # a photo and its id map
    photo = root / "photos" / "photo.jpg"
    photo.parent.mkdir()
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(photo, quality=90)
    idm = np.zeros((48, 64), np.int64)
    idm[10:30, 10:40] = 1
    idm[30:, :] = 2
    photo_idmap = root / "photo_idmap.png"
    write_id_map_png(photo_idmap, idm)

    return World(root, img, ents, ents2, ents_data, panoptic, png_dir, pan_data, entityseg, es_data, sa1b,
                 sa1b_data, amg, amg_data, preds, preds_data, results_path, results, photo, photo_idmap)


def tiny_checkpoint(path: Path) -> Path:
    """An untrained tiny model, fixed seed, class bias 0 so that it outputs some entities."""
    import torch

    from entitykit.model import EntityModel, get_config, save_checkpoint

    torch.manual_seed(0)
    model = EntityModel(get_config("tiny"))
    with torch.no_grad():
        model.head.cls_logits.bias.fill_(0.0)
    return save_checkpoint(model, path)


# ------------------------------------------------------------------------------------- image files
def png_bomb(path: Path, side: int = 20000) -> Path:
    """A side×side 1-bit PNG of zeros: a few hundred KB on disk, side² pixels when decoded."""
    Image.new("1", (side, side), 0).save(path, compress_level=9)
    return path


def image_variant(path: Path, kind: str, h: int = H, w: int = W) -> Path:
    """Write an image of an unusual but valid mode (or a broken file) at ``path``."""
    rng = np.random.default_rng(5)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    if kind == "missing":
        pass
    elif kind == "zero-bytes":
        path.write_bytes(b"")
    elif kind == "corrupt-png":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 255, 200, dtype=np.uint8)))
    elif kind == "corrupt-jpeg":
        buf = path.with_suffix(".tmpjpg")
        Image.fromarray(rgb).save(buf, format="JPEG")
        path.write_bytes(buf.read_bytes()[:40])
        buf.unlink()
    elif kind == "text":
        path.write_text("this is not an image\n")
    elif kind == "folder":
        path.mkdir()
    elif kind == "bomb":
        png_bomb(path, 20000)
    elif kind == "wrong-size":
        Image.fromarray(rng.integers(0, 255, (h + 2, w + 3, 3), dtype=np.uint8)).save(path, format="PNG")
    elif kind == "gray16":
        Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16)).save(path, format="PNG")
    elif kind == "palette":
        Image.fromarray(rgb).convert("P").save(path, format="PNG")
    elif kind == "palette-transparency":
        im = Image.fromarray(rgb).convert("P")
        im.info["transparency"] = 0
        im.save(path, format="PNG", transparency=0)
    elif kind == "cmyk":
        Image.fromarray(rgb).convert("CMYK").save(path, format="JPEG")
    elif kind == "la":
        Image.fromarray(rgb).convert("LA").save(path, format="PNG")
    elif kind == "rgba":
        Image.fromarray(rgb).convert("RGBA").save(path, format="PNG")
    elif kind == "gray":
        Image.fromarray(rgb).convert("L").save(path, format="PNG")
    elif kind == "int32":
        Image.fromarray(rng.integers(0, 60000, (h, w)).astype(np.int32), "I").save(path, format="TIFF")
    elif kind == "float":
        Image.fromarray(rng.random((h, w)).astype(np.float32), "F").save(path, format="TIFF")
    elif kind == "exif-rotated":  # stored w×h, EXIF orientation 6 → displayed h×w (a mismatch)
        im = Image.fromarray(rgb)
        exif = im.getexif()
        exif[0x0112] = 6
        im.save(path, format="JPEG", exif=exif.tobytes())
    else:
        raise ValueError(kind)
    return path


VALID_IMAGE_KINDS = ("gray16", "palette", "palette-transparency", "cmyk", "la", "rgba", "gray", "int32", "float")
BROKEN_IMAGE_KINDS = ("missing", "zero-bytes", "corrupt-png", "corrupt-jpeg", "text", "folder", "bomb",
                      "wrong-size", "exif-rotated")


# ------------------------------------------------------------------------------------- assertions
def tmp_leftovers(folder: Path) -> list[str]:
    """Temporary siblings (``.NAME.PID.*.tmp``) left in ``folder``."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp"))


def snapshot(path: Path) -> object:
    """What is at ``path`` now (absent / file bytes / folder listing with bytes), to compare later."""
    try:
        if not path.exists():
            return None
    except OSError:  # e.g. a name too long to look up: nothing can be there
        return None
    if path.is_file():
        return path.read_bytes()
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None) for p in sorted(path.rglob("*"))}


def last_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""
