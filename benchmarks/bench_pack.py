"""Training I/O: reading a pack vs reading JPEG files + the entity JSON + its RLE masks.

    python benchmarks/bench_pack.py --images 400 --repeats 5 [--codecs]

Both readers produce, per sample in a random order, the same thing: the image file's bytes, the id
map (value k = k-th annotation, crowd included) and the per-entity ids / iscrowd. The baseline is
what a loader without a pack does: ``EntityDataset.load`` (JSON), then per sample ``open().read()``
of the JPEG and ``decode_to_id_map`` of the image's RLEs. Startup (JSON parse, pack open) is
counted in both. Each repeat runs both readers back to back and prints their ratio; the summary
gives min / median / max. "+ decode" rows also decode the JPEG to RGB pixels (PIL) in both.
Page cache is warm for both (the files were just written).

``--codecs`` compares id-map encodings (size per image, decode ms) on the same id maps.
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
import zlib
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from entitykit.convert import convert_coco_panoptic
from entitykit.dataset import EntityDataset
from entitykit.masks import decode_to_id_map
from entitykit.pack import EntityPack, decode_idmap_runs, encode_idmap_runs, pack_dataset
from entitykit.synth import write_synthetic_panoptic


def read_baseline(json_path: Path, order: np.ndarray, decode: bool) -> float:
    t = time.perf_counter()
    ds = EntityDataset.load(json_path)
    groups = ds.annotations_by_image()
    for i in order.tolist():
        img = ds.images[i]
        with open(ds.image_path(img), "rb") as f:
            data = f.read()
        anns = groups[img["id"]]
        id_map, _ = decode_to_id_map([a["segmentation"] for a in anns], range(1, len(anns) + 1), img["height"], img["width"])
        ids = np.array([a["id"] for a in anns], np.int64)
        crowd = np.array([a["iscrowd"] for a in anns], np.uint8)
        if decode:
            with Image.open(io.BytesIO(data)) as im:
                np.asarray(im.convert("RGB"))
    return time.perf_counter() - t


def read_pack(pack_dir: Path, order: np.ndarray, decode: bool) -> float:
    t = time.perf_counter()
    with EntityPack(pack_dir) as pk:
        for i in order.tolist():
            s = pk[i]
            if decode:
                s.image_array()
    return time.perf_counter() - t


def codecs(ds: EntityDataset, tmp: Path) -> None:
    maps, rles = [], []
    for img, anns in ds.iter_images():
        segs = [a["segmentation"] for a in anns]
        m, _ = decode_to_id_map(segs, range(1, len(anns) + 1), img["height"], img["width"])
        maps.append(m.astype(np.uint16))
        rles.append((img, segs))
    rows = []

    def blob_codec(name, enc, dec):
        t = time.perf_counter()
        blobs = [enc(m) for m in maps]
        te = time.perf_counter() - t
        t = time.perf_counter()
        for b, m in zip(blobs, maps):
            dec(b, m)
        td = time.perf_counter() - t
        rows.append((name, sum(len(b) for b in blobs[:]) if not isinstance(blobs[0], tuple) else sum(len(b[0]) for b in blobs), te, td))

    u16 = np.dtype("<u2")
    blob_codec("row runs + zlib 6 (chosen)", lambda m: encode_idmap_runs(m, u16, 6),
               lambda b, m: decode_idmap_runs(b[0], b[1], *m.shape, u16))
    blob_codec("row runs + zlib 1", lambda m: encode_idmap_runs(m, u16, 1),
               lambda b, m: decode_idmap_runs(b[0], b[1], *m.shape, u16))
    blob_codec("raw uint16 + zlib 6", lambda m: zlib.compress(m.tobytes(), 6),
               lambda b, m: np.frombuffer(zlib.decompress(b), np.uint16).reshape(m.shape))

    def png(m):
        bio = io.BytesIO()
        Image.fromarray(m).save(bio, format="PNG")
        return bio.getvalue()

    blob_codec("PNG 16-bit", png, lambda b, m: np.asarray(Image.open(io.BytesIO(b))))
    t = time.perf_counter()
    for img, segs in rles:
        decode_to_id_map(segs, range(1, len(segs) + 1), img["height"], img["width"])
    rows.append(("COCO RLE strings (JSON) + decode_to_id_map", sum(len(s["counts"]) for _, ss in rles for s in ss),
                 0.0, time.perf_counter() - t))
    for comp, opt in (("gzip", 4), ("lzf", None)):
        path = tmp / f"codec_{comp}.h5"
        t = time.perf_counter()
        with h5py.File(path, "w") as f:
            for i, m in enumerate(maps):
                f.create_dataset(str(i), data=m, chunks=m.shape, compression=comp, compression_opts=opt)
        te = time.perf_counter() - t
        with h5py.File(path, "r") as f:
            t = time.perf_counter()
            for i in range(len(maps)):
                f[str(i)][()]
            td = time.perf_counter() - t
        rows.append((f"HDF5 {comp} filter, one dataset per image", path.stat().st_size, te, td))
    n = len(maps)
    print(f"\nid-map codecs on {n} id maps ({maps[0].shape[1]}×{maps[0].shape[0]}):")
    print(f"{'codec':45s} {'KiB/image':>10s} {'encode ms':>10s} {'decode ms':>10s}")
    for name, size, te, td in rows:
        print(f"{name:45s} {size / n / 1024:10.1f} {te / n * 1e3:10.2f} {td / n * 1e3:10.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--segments", type=int, default=30)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--codecs", action="store_true", help="also compare id-map encodings")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        t = time.perf_counter()
        j = write_synthetic_panoptic(tmp / "data", args.images, height=args.height, width=args.width, segments=args.segments)
        ds = convert_coco_panoptic(j, image_root=tmp / "data" / "images", crowd="keep")
        json_path = tmp / "entities.json"
        ds.save(json_path)
        print(f"made {args.images} synthetic {args.width}×{args.height} images, {len(ds.annotations)} entities "
              f"in {time.perf_counter() - t:.1f}s")
        t = time.perf_counter()
        pack_dataset(json_path, tmp / "pack", shard_images=max(1, args.images // 4))
        t_pack = time.perf_counter() - t
        jpeg_bytes = sum(p.stat().st_size for p in (tmp / "data" / "images").iterdir())
        pack_bytes = sum(p.stat().st_size for p in (tmp / "pack").iterdir())
        print(f"pack: {t_pack:.1f}s to write ({args.images / t_pack:.0f} images/s, 1 process); "
              f"{pack_bytes / 2**20:.1f} MiB vs {jpeg_bytes / 2**20:.1f} MiB JPEG + {json_path.stat().st_size / 2**20:.1f} MiB JSON")

        order = np.random.default_rng(0).permutation(args.images)
        n = args.images
        for decode in (False, True):
            label = "bytes + id map + entity table" + (" + JPEG decode" if decode else "")
            base_sps, pack_sps, ratios = [], [], []
            read_pack(tmp / "pack", order, decode)  # warm-up both
            read_baseline(json_path, order, decode)
            for r in range(args.repeats):
                tb = read_baseline(json_path, order, decode)
                tp = read_pack(tmp / "pack", order, decode)
                base_sps.append(n / tb)
                pack_sps.append(n / tp)
                ratios.append(tb / tp)
                print(f"  [{label}] repeat {r + 1}: JPEG+JSON+RLE {n / tb:8.0f} samples/s   pack {n / tp:8.0f} samples/s   "
                      f"ratio {tb / tp:5.2f}×")
            fmt = lambda xs, f: f"{f.format(min(xs))} / {f.format(statistics.median(xs))} / {f.format(max(xs))}"  # noqa: E731
            print(f"{label}: samples/s min/median/max  JPEG+JSON+RLE {fmt(base_sps, '{:.0f}')}   "
                  f"pack {fmt(pack_sps, '{:.0f}')}   ratio {fmt(ratios, '{:.2f}')}×")
        if args.codecs:
            codecs(ds, tmp)


if __name__ == "__main__":
    main()
