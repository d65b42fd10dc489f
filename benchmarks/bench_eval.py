"""APe scorer benchmark: entitykit vs pycocotools, faster-coco-eval and hotcoco on one synthetic set.

    python benchmarks/bench_eval.py                    # 5,000 images, all scorers, one process each
    python benchmarks/bench_eval.py --images 500 --scorers entitykit,pycocotools
    python benchmarks/bench_eval.py --repeat 3         # median and spread over 3 rounds

The data (seeded, COCO-val-scale by default: 5,000 images, ~25 GT and ~61 non-overlapping
predictions per image, about a third each small / medium / large GT, score ties, 0.5% crowd GT,
RLE in COCO JSON) is generated once (~35 s) and cached in --data-dir. Each scorer
runs in its own fresh process: total = read both JSON files + evaluate + accumulate + summarize;
peak memory = the process's peak RSS. All scorers must give the same 12 numbers (checked).
Peers are a benchmark-only extra: pip install -c constraints.txt faster-coco-eval hotcoco
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCORERS = ("entitykit", "pycocotools", "faster-coco-eval", "hotcoco")


def make_data(data_dir: Path, images: int, seed: int, sources: int = 1) -> tuple[Path, Path]:
    sys.path.insert(0, str(ROOT))
    gt_path, res_path = data_dir / "gt.json", data_dir / "results.json"
    if gt_path.exists() and res_path.exists():
        return gt_path, res_path
    from entitykit.evaluation.synthetic import synth_coco
    from entitykit.fileio import write_json

    t = time.perf_counter()
    gt, res = synth_coco(images, seed=seed, sources=("coco", "ade20k", "cityscapes", "mapillary")[:sources])
    write_json(gt_path, gt)
    write_json(res_path, res)
    print(f"generated {images} images, {len(gt['annotations'])} GT, {len(res)} predictions "
          f"in {time.perf_counter() - t:.0f} s -> {data_dir}", file=sys.stderr)
    return gt_path, res_path


# ---------------------------------------------------------------------------------------------
# one scorer, inside its own process


def _run_one(name: str, gt_path: str, res_path: str, threads: int) -> dict:
    import contextlib
    import io
    import resource

    t0 = time.perf_counter()
    quiet = contextlib.redirect_stdout(io.StringIO())
    if name == "entitykit":
        sys.path.insert(0, str(ROOT))
        from entitykit.evaluation import evaluate

        r = evaluate(gt_path, res_path, workers=threads)
        stats = list(r.stats)
        t_eval = r.timings.get("evaluate", float("nan"))
    elif name == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        with quiet:
            gt = COCO(gt_path)
            dt = gt.loadRes(res_path)
            e = COCOeval(gt, dt, "segm")
            t1 = time.perf_counter()
            e.evaluate()
            t_eval = time.perf_counter() - t1
            e.accumulate()
            e.summarize()
        stats = list(map(float, e.stats))
    elif name == "faster-coco-eval":
        from faster_coco_eval import COCO, COCOeval_faster

        with quiet:
            gt = COCO(gt_path)
            dt = gt.loadRes(res_path)
            e = COCOeval_faster(gt, dt, "segm", rle_iou_max_workers=threads)
            t1 = time.perf_counter()
            e.evaluate()
            t_eval = time.perf_counter() - t1
            e.accumulate()
            e.summarize()
        stats = list(map(float, e.stats))
    elif name == "hotcoco":
        os.environ.setdefault("RAYON_NUM_THREADS", str(threads))
        from hotcoco import COCO, COCOeval

        with quiet:
            gt = COCO(gt_path)
            dt = gt.load_res(res_path)
            e = COCOeval(gt, dt, "segm")
            t1 = time.perf_counter()
            e.evaluate()
            t_eval = time.perf_counter() - t1
            e.accumulate()
            e.summarize()
        stats = list(map(float, e.stats))
    else:
        raise SystemExit(f"unknown scorer {name}")
    total = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"scorer": name, "total_s": total, "evaluate_s": t_eval, "cpu_s": ru.ru_utime + ru.ru_stime,
            "peak_rss_mb": ru.ru_maxrss / 1024, "stats": stats}


def run_in_subprocess(name: str, gt: Path, res: Path, threads: int) -> dict:
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, "--_child", name, str(gt), str(res), str(threads)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        return {"scorer": name, "error": (p.stderr or p.stdout).strip().splitlines()[-1:] or ["failed"]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_child":
        _, _, name, gt, res, threads = sys.argv
        print(json.dumps(_run_one(name, gt, res, int(threads))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", type=Path, default=None, help="cache for the synthetic set (default: /tmp)")
    ap.add_argument("--sources", type=int, default=1, help="sources the images cycle through; >1 adds "
                    "entitykit's per-source breakdown (work the peers do not do); COCO val is one source")
    ap.add_argument("--scorers", default=",".join(SCORERS))
    ap.add_argument("--threads", type=int, default=2, help="threads per scorer (all peers get the same)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds; each round runs every scorer once")
    ap.add_argument("--json", type=Path, default=None, help="also write every measurement here")
    args = ap.parse_args()
    data_dir = args.data_dir or Path(f"/tmp/entitykit-bench-{args.images}-{args.seed}-{args.sources}src")
    gt, res = make_data(data_dir, args.images, args.seed, args.sources)
    names = [s.strip() for s in args.scorers.split(",") if s.strip()]
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for rnd in range(args.repeat):
        for n in names:
            r = run_in_subprocess(n, gt, res, args.threads)
            runs[n].append(r)
            msg = r.get("error") or (f"total {r['total_s']:.2f} s, evaluate {r['evaluate_s']:.2f} s, "
                                     f"cpu {r['cpu_s']:.2f} s, {r['peak_rss_mb']:.0f} MB")
            print(f"round {rnd + 1} {n}: {msg}", file=sys.stderr)
    ref = None
    rows = []
    for n in names:
        ok = [r for r in runs[n] if "error" not in r]
        if not ok:
            rows.append((n, None))
            continue
        if ref is None and n == "pycocotools":
            ref = ok[0]["stats"]
        rows.append((n, ok))
    base = next((statistics.median(r["total_s"] for r in ok) for n, ok in rows if n == "pycocotools" and ok), None)
    first = next((ok[0]["stats"] for _, ok in rows if ok), None)
    print(f"\n{args.images} images, {args.threads} threads, {args.repeat} round(s); median [min–max]")
    print("| scorer | total s | evaluate s | CPU s (user+sys) | peak RSS MB | × pycocotools | same 12 numbers |")
    print("|---|---|---|---|---|---|---|")
    for n, ok in rows:
        if ok is None:
            print(f"| {n} | failed: {runs[n][0].get('error')} | | | | |")
            continue
        tot = [r["total_s"] for r in ok]
        ev = [r["evaluate_s"] for r in ok]
        cpu = [r["cpu_s"] for r in ok]
        mem = [r["peak_rss_mb"] for r in ok]
        med = statistics.median(tot)
        speed = f"{base / med:.1f}" if base else "n/a"
        same = all(max(abs(a - b) for a, b in zip(r["stats"], first)) <= 1e-12 for r in ok)
        print(f"| {n} | {med:.2f} [{min(tot):.2f}–{max(tot):.2f}] | {statistics.median(ev):.2f} | "
              f"{statistics.median(cpu):.2f} [{min(cpu):.2f}–{max(cpu):.2f}] | "
              f"{statistics.median(mem):.0f} | {speed} | {'yes' if same else 'NO'} |")
    if first:
        print("stats:", " ".join(f"{x:.4f}" for x in first))
    # the ratio within one round (same machine load) is the fair comparison
    if "entitykit" in names and all(runs[n] and "error" not in runs[n][0] for n in names):
        for rnd in range(args.repeat):
            ek = runs["entitykit"][rnd]
            if "error" in ek:
                continue
            parts = [f"{n} {runs[n][rnd]['total_s'] / ek['total_s']:.1f}×" for n in names
                     if n != "entitykit" and "error" not in runs[n][rnd]]
            print(f"round {rnd + 1}: entitykit {ek['total_s']:.2f} s; others take " + ", ".join(parts))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
