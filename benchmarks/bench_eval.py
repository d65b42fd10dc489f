"""APe scorer benchmark: entitykit (library and CLI) against vernier, ultrafast-pycocotools, hotcoco,
faster-coco-eval and pycocotools, on a small, a COCO-val-scale and a high-resolution set, in one run.

    python benchmarks/bench_eval.py                          # three sets, every scorer, 3 rounds
    python benchmarks/bench_eval.py --sets small             # 300 images only (mask and boundary rows)
    python benchmarks/bench_eval.py --sets coco --set-dir coco=/tmp/b5000 --repeat 1 --skip-slow
    python benchmarks/bench_eval.py --sets hires --hires-images 100 --repeat 1
    python benchmarks/bench_eval.py --scorers entitykit,entitykit-cli,vernier --json runs.json

Sets (seeded, ``entitykit.evaluation.synthetic``; one category, so every scorer is class-agnostic):

- small: 300 COCO-size images (``synth_coco``: ~25 GT and ~61 non-overlapping predictions each,
  about a third each small / medium / large GT, score ties, 0.5 % crowd GT);
- coco: 5,000 such images (COCO val scale: ~124k GT, ~316k predictions);
- hires: 500 images of 3,000×2,000 px with ~90 GT and ~100 predictions each (``synth_coco_hires``).

Each set is generated once (the time is printed) and cached under ``--data-dir`` (``gt.json``,
``results.json``; ``--set-dir NAME=PATH`` points at a folder written before, e.g. by an earlier
version of this script). The scored results file is ``results_bbox.json``: the same results with
each mask's tight ``bbox``, as every detectron2 / mmdetection segm results file carries (vernier
reads no result without one). Every scorer then applies pycocotools' ``loadRes`` rule, box area for
the S/M/L ranges (entitykit: ``area_rule="auto"``). ``--no-bbox`` scores ``results.json`` instead
(mask areas; vernier cannot run then).

Each scorer runs in its own fresh process, the rounds interleaved (round 1: every set, every scorer;
then round 2, …). Measured per run, by the parent (``os.wait4``): ``process s``, the wall time of
the whole process from its start (interpreter start-up, imports, reading both JSON files, evaluate,
accumulate, summarize) and its peak RSS; inside the process, ``in-process s``, the same minus the
interpreter start-up. ``entitykit-cli`` is the ``entitykit eval GT RESULTS --json - -q`` command
(stats read from its JSON on stdout), so its process time is what a user waits for. The 12 numbers
of every run are compared with the reference of the set: pycocotools when it ran, else the first
scorer that ran (boundary rows: vernier, strict parity mode, the installable boundary-iou-api
reference). Boundary rows (``--iou boundary``, dilation ratio 0.02) run on the small set when the
installed entitykit has ``evaluate(iou="boundary")``.

Threads: every scorer gets ``--threads`` (default 2) where it has a setting, listed in the table
(pycocotools is single-threaded). Peers are a benchmark-only extra:
``pip install -e '.[bench]'`` (vernier, ultrafast-pycocotools, hotcoco, faster-coco-eval, pycocotools).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCORERS = ("entitykit", "entitykit-cli", "vernier", "ultrafast-pycocotools", "hotcoco", "faster-coco-eval",
           "pycocotools")
SLOW = ("pycocotools",)  # left out of the large sets with --skip-slow
SLOW_BOUNDARY = ("ultrafast-pycocotools",)  # its boundary IoU took ~1 s per image here (and differs): --skip-slow
BOUNDARY_SCORERS = ("entitykit", "entitykit-cli", "vernier", "ultrafast-pycocotools", "faster-coco-eval")
SETS = ("small", "coco", "hires")


def thread_setting(name: str, iou: str, threads: int) -> str:
    """How ``threads`` reaches each scorer (the table's threads column)."""
    return {
        "entitykit": f"workers={threads}",
        "entitykit-cli": f"--workers {threads}",
        "vernier": f"num_threads={threads}",
        "ultrafast-pycocotools": f"RAYON_NUM_THREADS={threads}",
        "hotcoco": f"RAYON_NUM_THREADS={threads}",
        "faster-coco-eval": f"rle_iou_max_workers={threads}" + (f", boundary_cpu_count={threads}"
                                                               if iou == "boundary" else ""),
        "pycocotools": "1 (single-threaded)",
    }[name]


# ---------------------------------------------------------------------------------------------
# the data


def make_data(data_dir: Path, kind: str, images: int, seed: int, sources: int = 1,
              hires_size: tuple[int, int] = (2000, 3000), coarse: int = 4) -> dict:
    """Generate (or find cached) ``gt.json`` and ``results.json`` in ``data_dir``, and derive
    ``results_bbox.json``; returns the paths and what it cost."""
    sys.path.insert(0, str(ROOT))
    from entitykit.fileio import write_json

    gt_path, res_path, bbox_path = data_dir / "gt.json", data_dir / "results.json", data_dir / "results_bbox.json"
    info: dict = {"gt": gt_path, "results": res_path, "results_bbox": bbox_path, "generated_s": None}
    if not (gt_path.exists() and res_path.exists()):
        from entitykit.evaluation.synthetic import synth_coco, synth_coco_hires

        names = ("coco", "ade20k", "cityscapes", "mapillary")[:sources]
        t = time.perf_counter()
        if kind == "hires":
            gt, res = synth_coco_hires(images, seed=seed, size=hires_size, coarse=coarse, sources=names)
        else:
            gt, res = synth_coco(images, seed=seed, sources=names)
        t_gen = time.perf_counter() - t
        data_dir.mkdir(parents=True, exist_ok=True)
        write_json(gt_path, gt)
        write_json(res_path, res)
        info["generated_s"] = t_gen
        info["written_s"] = time.perf_counter() - t - t_gen
        del gt, res
    if not bbox_path.exists():  # the box pycocotools' loadRes would give a result without one (mask.toBbox)
        from pycocotools import mask as mask_utils

        res = json.loads(res_path.read_text())
        boxes = mask_utils.toBbox([dict(r["segmentation"], counts=r["segmentation"]["counts"].encode("ascii"))
                                   for r in res]).tolist()
        for r, b in zip(res, boxes):
            r["bbox"] = [float(v) for v in b]
        write_json(bbox_path, res)
        del res
    gt = json.loads(gt_path.read_text())
    info["images"] = len(gt["images"])
    info["gt_entities"] = len(gt["annotations"])
    sizes = {(i["height"], i["width"]) for i in gt["images"]}
    info["size"] = "×".join(map(str, max(sizes)[::-1])) if len(sizes) == 1 else "COCO sizes"
    info["predictions"] = len(json.loads(res_path.read_text()))
    info["mb"] = (gt_path.stat().st_size + bbox_path.stat().st_size) / 1e6
    return info


# ---------------------------------------------------------------------------------------------
# one scorer, inside its own process


def _run_one(name: str, iou: str, gt_path: str, res_path: str, threads: int) -> dict:
    import contextlib
    import io
    import resource

    t0 = time.perf_counter()
    quiet = contextlib.redirect_stdout(io.StringIO())
    if name == "entitykit":
        sys.path.insert(0, str(ROOT))
        from entitykit.evaluation import evaluate

        r = evaluate(gt_path, res_path, workers=threads, **({"iou": "boundary"} if iou == "boundary" else {}))
        stats = list(map(float, r.stats))
    elif name == "vernier":
        from vernier.instance import Boundary, Evaluator, Segm

        with open(gt_path, "rb") as f:
            gt_bytes = f.read()
        with open(res_path, "rb") as f:
            res_bytes = f.read()
        ev = Evaluator(iou=Boundary(dilation_ratio=0.02) if iou == "boundary" else Segm(), parity_mode="strict")
        stats = list(map(float, ev.evaluate(gt_bytes, res_bytes, num_threads=threads).stats))
    elif name in ("pycocotools", "ultrafast-pycocotools", "faster-coco-eval", "hotcoco"):
        kind = "boundary" if iou == "boundary" else "segm"
        with quiet:
            if name == "pycocotools":
                from pycocotools.coco import COCO
                from pycocotools.cocoeval import COCOeval

                gt = COCO(gt_path)
                e = COCOeval(gt, gt.loadRes(res_path), kind)
            elif name == "ultrafast-pycocotools":
                from ultrafast_pycocotools import COCO, COCOeval

                gt = COCO(gt_path)
                e = COCOeval(gt, gt.loadRes(res_path), kind)
            elif name == "faster-coco-eval":
                from faster_coco_eval import COCO, COCOeval_faster

                gt = COCO(gt_path)
                e = COCOeval_faster(gt, gt.loadRes(res_path), kind, rle_iou_max_workers=threads,
                                    boundary_cpu_count=threads, print_function=lambda *a, **k: None)
            else:
                from hotcoco import COCO, COCOeval

                gt = COCO(gt_path)
                e = COCOeval(gt, gt.load_res(res_path), kind)
            e.evaluate()
            e.accumulate()
            e.summarize()
        stats = list(map(float, e.stats))
    else:
        raise SystemExit(f"unknown scorer {name}")
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"in_process_s": time.perf_counter() - t0, "self_peak_rss_mb": ru.ru_maxrss / 1024, "stats": stats}


def _entitykit_command() -> list[str]:
    script = Path(sys.executable).with_name("entitykit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "entitykit"]


def run_in_subprocess(name: str, iou: str, gt: Path, res: Path, threads: int, timeout: float) -> dict:
    """One fresh process; wall time and peak RSS from the parent (``os.wait4``)."""
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads))
    if name == "entitykit-cli":
        cmd = [*_entitykit_command(), "eval", str(gt), str(res), "--json", "-", "-q", "--workers", str(threads)]
        if iou == "boundary":
            cmd += ["--iou", "boundary"]
    else:
        cmd = [sys.executable, __file__, "--_child", name, iou, str(gt), str(res), str(threads)]
    out_f = open(_tmp_file("out"), "w+b")  # files, not pipes: a large --json - never blocks the child
    err_f = open(_tmp_file("err"), "w+b")
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, env=env)
    deadline = t0 + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            p.kill()
            pid, status, ru = os.wait4(p.pid, 0)
            p.returncode = -9
            return {"scorer": name, "iou": iou, "error": f"timed out after {timeout:.0f} s"}
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    out_f.seek(0)
    err_f.seek(0)
    stdout, stderr = out_f.read().decode(errors="replace"), err_f.read().decode(errors="replace")
    out_f.close()
    err_f.close()
    rec = {"scorer": name, "iou": iou, "process_s": wall, "peak_rss_mb": ru.ru_maxrss / 1024}
    if p.returncode != 0:
        lines = (stderr or stdout).strip().splitlines()
        return {**rec, "error": (lines[-1] if lines else f"exit {p.returncode}")[:200]}
    try:
        if name == "entitykit-cli":
            rec["stats"] = [float(x) for x in json.loads(stdout)["stats"]]
            rec["in_process_s"] = None
        else:
            rec.update(json.loads(stdout.strip().splitlines()[-1]))
    except (ValueError, KeyError, IndexError) as e:
        return {**rec, "error": f"unreadable output: {e}"}
    return rec


_TMP: list[Path] = []


def _tmp_file(tag: str) -> Path:
    import tempfile

    if not _TMP:
        _TMP.append(Path(tempfile.mkdtemp(prefix="bench_eval.")))
    return _TMP[0] / tag


def entitykit_has_boundary() -> bool:
    sys.path.insert(0, str(ROOT))
    import inspect

    from entitykit.evaluation import evaluate

    return "iou" in inspect.signature(evaluate).parameters


def _in_child(*args: str) -> object:
    """Run this script with ``args`` in a fresh process and return the JSON it prints last.

    The parent stays lean on purpose: a child's peak RSS as the kernel reports it (``wait4``) is at
    least the parent's peak at the time of the spawn (the spawned process starts from the parent's
    memory map, vfork / fork then exec), so the parent never loads a set or imports numpy."""
    p = subprocess.run([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed (exit {p.returncode})")
    return json.loads(p.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# the table


def _med(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}–{max(values):.2f}]"


def _same(stats: list[float], ref: list[float] | None) -> str:
    if ref is None:
        return "n/a"
    diff = max(abs(a - b) for a, b in zip(stats, ref))
    return "identical" if diff == 0.0 else f"NO (max diff {diff:.1e})"


def _reference(iou: str, by_scorer: dict) -> tuple[str | None, list[float] | None]:
    """The scorer whose first successful run the others are compared with, and its 12 numbers:
    pycocotools (mask) or vernier strict (boundary) when it ran, else the first scorer that ran."""
    ok = {n: [r for r in rs if "error" not in r] for n, rs in by_scorer.items()}
    name = next((n for n in (("vernier",) if iou == "boundary" else ("pycocotools",)) if ok.get(n)), None)
    name = name or next((n for n in by_scorer if ok[n]), None)
    return name, (ok[name][0]["stats"] if name else None)


def _goals(set_name: str, med: dict, peers: dict, mem: dict) -> list[str]:
    """Issue #12's goals for this set, met or not, from the medians (process time, start-up included)."""
    fastest = min(peers.values())
    ours = [n for n in ("entitykit", "entitykit-cli") if n in med]
    lowest_peer = min(v for n, v in mem.items() if not n.startswith("entitykit"))
    out = []
    if set_name == "coco":
        speed = all(fastest / med[n] >= 1.5 for n in ours)
        out.append(f"goal coco: ≥ 1.5× the fastest peer ({', '.join(f'{n} {fastest / med[n]:.2f}×' for n in ours)}) "
                   f"→ {'met' if speed else 'NOT met'}")
    if set_name == "small":
        speed = all(med[n] < fastest for n in ours)
        out.append(f"goal small: faster than every peer, CLI included → {'met' if speed else 'NOT met'}")
    if set_name in ("coco", "hires"):
        low = all(mem[n] < lowest_peer for n in ours)
        out.append(f"goal {set_name}: lowest peak memory → {'met' if low else 'NOT met'} "
                   f"({', '.join(f'{n} {mem[n]:,.0f} MB' for n in ours)}; lowest peer {lowest_peer:,.0f} MB)")
    if set_name == "small":
        low = all(mem[n] <= 1.5 * min(mem.values()) for n in ours)
        out.append(f"goal small: peak memory within 1.5× of the lowest → {'met' if low else 'NOT met'}")
    return out


def print_tables(data: dict, runs: dict, args) -> None:
    print(f"\n{args.repeat} interleaved round(s), each scorer in a fresh process, {args.threads} threads where a "
          f"scorer has a setting; median [min–max]; results {'with' if not args.no_bbox else 'without'} bbox")
    print("| set | IoU | scorer | threads | process s (start-up incl.) | in-process s | peak RSS MB "
          "| same 12 numbers |")
    print("|---|---|---|---|---|---|---|---|")
    summary_lines = []
    for (set_name, iou), by_scorer in runs.items():
        info = data[set_name]
        ok = {n: [r for r in rs if "error" not in r] for n, rs in by_scorer.items()}
        ref_name, ref = _reference(iou, by_scorer)
        label = f"{set_name} ({info['images']:,} img, {info['size']})"
        for n, rs in by_scorer.items():
            good = ok[n]
            if not good:
                print(f"| {label} | {iou} | {n} | {thread_setting(n, iou, args.threads)} | failed: "
                      f"{rs[0].get('error') if rs else 'not run'} | | | |")
                continue
            inproc = [r["in_process_s"] for r in good if r.get("in_process_s") is not None]
            same = sorted({_same(r["stats"], ref) for r in good})
            tag = " (reference)" if n == ref_name else ""
            print(f"| {label} | {iou} | {n} | {thread_setting(n, iou, args.threads)} | "
                  f"{_med([r['process_s'] for r in good])} | {_med(inproc) if inproc else '—'} | "
                  f"{statistics.median(r['peak_rss_mb'] for r in good):,.0f} | {', '.join(same)}{tag} |")
        # entitykit against the fastest peer, by median process time, and per round (same load)
        med = {n: statistics.median(r["process_s"] for r in ok[n]) for n in by_scorer if ok[n]}
        peers = {n: t for n, t in med.items() if not n.startswith("entitykit")}
        mem = {n: statistics.median(r["peak_rss_mb"] for r in ok[n]) for n in by_scorer if ok[n]}
        if peers:
            fastest = min(peers, key=peers.get)
            lowest = min(mem, key=mem.get)
            for n in ("entitykit", "entitykit-cli"):
                if n in med:
                    rounds = [peer["process_s"] / mine["process_s"] for mine, peer in
                              zip(by_scorer[n], by_scorer[fastest]) if "error" not in mine and "error" not in peer]
                    summary_lines.append(
                        f"{set_name}/{iou}: {n} {med[n]:.2f} s vs fastest peer {fastest} {peers[fastest]:.2f} s "
                        f"→ {peers[fastest] / med[n]:.2f}× (per round: {', '.join(f'{x:.2f}×' for x in rounds)}); "
                        f"peak RSS {mem[n]:,.0f} MB, lowest {lowest} {mem[lowest]:,.0f} MB")
            if iou == "mask":
                summary_lines.extend(_goals(set_name, med, peers, mem))
    print()
    for line in summary_lines:
        print(line)
    print()
    for set_name, info in data.items():
        gen = (f"generated in {info['generated_s']:.1f} s (+{info['written_s']:.1f} s writing JSON)"
               if info.get("generated_s") is not None else "cached")
        print(f"set {set_name}: {info['images']:,} images ({info['size']}), {info['gt_entities']:,} GT, "
              f"{info['predictions']:,} predictions, {info['mb']:.0f} MB of JSON; {gen}; {info['dir']}")
    for (set_name, iou), by_scorer in runs.items():
        ref_name, ref = _reference(iou, by_scorer)
        if ref:
            print(f"stats {set_name}/{iou} ({ref_name}): " + " ".join(f"{x:.4f}" for x in ref))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_child":
        _, _, name, iou, gt, res, threads = sys.argv
        print(json.dumps(_run_one(name, iou, gt, res, int(threads))))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--_prepare":
        _, _, d, kind, images, seed, sources, h, w, coarse = sys.argv
        info = make_data(Path(d), kind, int(images), int(seed), int(sources), (int(h), int(w)), int(coarse))
        print(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in info.items()}))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--_has_boundary":
        print(json.dumps(entitykit_has_boundary()))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, from {', '.join(SETS)}")
    ap.add_argument("--small-images", type=int, default=300)
    ap.add_argument("--images", type=int, default=5000, help="images of the COCO-val-scale set")
    ap.add_argument("--hires-images", type=int, default=500)
    ap.add_argument("--hires-size", default="3000x2000", help="WIDTHxHEIGHT of the high-resolution images")
    ap.add_argument("--hires-coarse", type=int, default=4, help="paint the high-resolution set on a grid this "
                    "many times smaller (entitykit.evaluation.synthetic)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sources", type=int, default=1, help="sources the images cycle through; >1 adds "
                    "entitykit's per-source breakdown (work the peers do not do); COCO val is one source")
    ap.add_argument("--data-dir", type=Path, default=Path("/tmp/entitykit-bench"), help="cache of the sets")
    ap.add_argument("--set-dir", action="append", default=[], metavar="NAME=PATH",
                    help="use (or fill) this folder for set NAME, e.g. coco=/tmp/b5000")
    ap.add_argument("--scorers", default=",".join(SCORERS))
    ap.add_argument("--skip-slow", action="store_true", help=f"run {', '.join(SLOW)} on the small set only, and "
                    f"no boundary rows for {', '.join(SLOW_BOUNDARY)}")
    ap.add_argument("--no-boundary", action="store_true", help="no boundary rows")
    ap.add_argument("--no-bbox", action="store_true", help="score results without bbox (mask areas; no vernier)")
    ap.add_argument("--threads", type=int, default=2, help="threads per scorer (all peers get the same)")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; each round runs every scorer once")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per scorer run")
    ap.add_argument("--json", type=Path, default=None, help="also write every measurement here")
    args = ap.parse_args()

    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [s for s in sets if s not in SETS]
    if unknown:
        ap.error(f"unknown set(s) {unknown}; choose from {SETS}")
    names = [s.strip() for s in args.scorers.split(",") if s.strip()]
    if [n for n in names if n not in SCORERS]:
        ap.error(f"unknown scorer(s) {[n for n in names if n not in SCORERS]}; choose from {SCORERS}")
    if args.no_bbox and "vernier" in names:
        names.remove("vernier")
        print("--no-bbox: vernier left out (it reads no result without a bbox)", file=sys.stderr)
    w, h = (int(v) for v in args.hires_size.lower().split("x"))
    dirs = dict(d.split("=", 1) for d in args.set_dir)
    counts = {"small": args.small_images, "coco": args.images, "hires": args.hires_images}
    data: dict[str, dict] = {}
    for s in sets:
        tag = f"{s}-{counts[s]}-s{args.seed}-{args.sources}src" + (f"-{w}x{h}-c{args.hires_coarse}" if s == "hires" else "")
        d = Path(dirs.get(s, args.data_dir / tag))
        print(f"set {s}: {d} …", file=sys.stderr)
        data[s] = _in_child("--_prepare", str(d), s, str(counts[s]), str(args.seed), str(args.sources), str(h), str(w),
                            str(args.hires_coarse))
        data[s]["dir"] = str(d)

    jobs: dict[tuple[str, str], list[str]] = {}
    for s in sets:
        jobs[(s, "mask")] = [n for n in names if not (args.skip_slow and n in SLOW and s != "small")]
    if "small" in sets and not args.no_boundary:
        if _in_child("--_has_boundary"):
            jobs[("small", "boundary")] = [n for n in names if n in BOUNDARY_SCORERS
                                           and not (args.skip_slow and n in SLOW_BOUNDARY)]
        else:
            print("this entitykit has no evaluate(iou='boundary'): no boundary rows", file=sys.stderr)
    runs: dict[tuple[str, str], dict[str, list[dict]]] = {k: {n: [] for n in v} for k, v in jobs.items()}
    # Byte-compile entitykit's sources first, as installing a package does: the peers come with
    # their .pyc files, and an editable checkout run with PYTHONDONTWRITEBYTECODE=1 (set here)
    # would otherwise compile ~20 modules in every run (measured: ~0.1 s of a 0.5 s CLI run).
    import compileall

    compileall.compile_dir(str(ROOT / "entitykit"), quiet=1)
    for rnd in range(args.repeat):
        for (s, iou), scorer_names in jobs.items():
            res = data[s]["results"] if args.no_bbox else data[s]["results_bbox"]
            for n in scorer_names:
                r = run_in_subprocess(n, iou, data[s]["gt"], res, args.threads, args.timeout)
                runs[(s, iou)][n].append(r)
                msg = r.get("error") or f"{r['process_s']:.2f} s, {r['peak_rss_mb']:.0f} MB"
                print(f"round {rnd + 1} {s}/{iou} {n}: {msg}", file=sys.stderr, flush=True)
    print_tables(data, runs, args)
    import resource

    print(f"(the benchmark's own process peaked at {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB: "
          "no child's peak RSS can read lower)")
    if args.json:
        args.json.write_text(json.dumps({f"{s}/{iou}": v for (s, iou), v in runs.items()}, indent=1))
    for t in _TMP:
        shutil.rmtree(t, ignore_errors=True)


if __name__ == "__main__":
    main()
