"""Training step and inference of EntityModel (r50_1x) beside torchvision's FCOS-ResNet50-FPN.

Same input size and batch, same run, each case in a fresh subprocess so peak memory is its own.
Peak memory: on CPU the process's peak RSS (and its growth during the timed calls); on CUDA
torch.cuda.max_memory_allocated. No weights are downloaded (weights=None everywhere).

    python benchmarks/bench_model.py [--size 512] [--batch 2] [--iters 3] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _targets(batch: int, size: int, device):
    import torch

    out = []
    for b in range(batch):
        masks = torch.zeros(4, size, size, dtype=torch.bool, device=device)
        s = size // 8
        for i, (x, y, w, h) in enumerate([(1, 1, 3, 2), (4, 1, 3, 3), (1, 4, 2, 3), (0, 0, 8, 8)]):
            masks[i, y * s:(y + h) * s, x * s:(x + w) * s] = True
        masks[3] &= ~masks[:3].any(0)  # a "stuff" entity around the things: all disjoint
        out.append(masks)
    return out


def run_case(model_name: str, mode: str, size: int, batch: int, iters: int, threads: int, device: str,
             forced: bool) -> dict:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    images = torch.rand(batch, 3, size, size, device=dev)
    masks = _targets(batch, size, dev)
    if model_name == "entitykit":
        from entitykit.model import EntityModel, get_config

        cfg = get_config("r50_1x", **({"score_thresh": 0.0} if forced else {}))
        model = EntityModel(cfg).to(dev)
        targets = [{"masks": m} for m in masks]
        train_call = lambda: sum(model(images, targets).values())  # noqa: E731
        infer_call = lambda: model(images)  # noqa: E731
    else:
        from torchvision.models.detection import fcos_resnet50_fpn
        from torchvision.ops import masks_to_boxes

        kwargs = {"min_size": size, "max_size": size, **({"score_thresh": 0.0} if forced else {})}
        if model_name == "torchvision":  # as asked: no weights, so torchvision picks trainable BatchNorm2d
            model = fcos_resnet50_fpn(weights=None, weights_backbone=None, trainable_backbone_layers=3, **kwargs)
        else:  # "torchvision-frozen": what fcos_resnet50_fpn builds around a pretrained backbone (FrozenBN)
            from torchvision.models import resnet50
            from torchvision.models.detection import FCOS
            from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
            from torchvision.ops import FrozenBatchNorm2d
            from torchvision.ops.feature_pyramid_network import LastLevelP6P7

            trunk = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
            backbone = _resnet_fpn_extractor(trunk, 3, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256))
            model = FCOS(backbone, num_classes=91, **kwargs)
        model = model.to(dev)
        targets = [{"boxes": masks_to_boxes(m), "labels": torch.ones(len(m), dtype=torch.int64, device=dev)}
                   for m in masks]
        image_list = list(images)
        train_call = lambda: sum(model(image_list, targets).values())  # noqa: E731
        infer_call = lambda: model(image_list)  # noqa: E731
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9)

    def step():
        if mode == "train":
            model.train()
            loss = train_call()
            opt.zero_grad()
            loss.backward()
            opt.step()
        else:
            model.eval()
            with torch.no_grad():
                out = infer_call()
            return out

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    out = step()  # warm-up
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    before = _rss_mib()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        out = step()
        sync()
        times.append(time.perf_counter() - t)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_det = None
    if mode == "infer":
        n_det = [len(o["scores"]) for o in out]
    return {"model": model_name, "mode": mode, "forced": forced, "median_s": statistics.median(times),
            "min_s": min(times), "peak_rss_mib": peak_rss, "rss_before_mib": before,
            "peak_cuda_mib": torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None,
            "detections": n_det}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved repetitions of every case (noise)")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        model_name, mode, forced = args.case.split(":")
        print(json.dumps(run_case(model_name, mode, args.size, args.batch, args.iters, args.threads, args.device,
                                  forced == "forced")))
        return
    cases = ["entitykit:train:default", "torchvision:train:default", "torchvision-frozen:train:default",
             "entitykit:infer:default", "torchvision:infer:default", "torchvision-frozen:infer:default",
             "entitykit:infer:forced", "torchvision:infer:forced"]
    runs: dict[str, list[dict]] = {c: [] for c in cases}
    opts = [f"--{k}={v}" for k, v in (("size", args.size), ("batch", args.batch), ("iters", args.iters),
                                      ("threads", args.threads), ("device", args.device))]
    for r in range(args.rounds):  # interleaved, so a burst of load from elsewhere hits both models
        for case in cases:
            proc = subprocess.run([sys.executable, __file__, "--case", case, *opts], capture_output=True, text=True)
            if proc.returncode:
                sys.exit(f"{case} failed:\n{proc.stderr[-3000:]}")
            runs[case].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"  round {r + 1} {case:28s} {runs[case][-1]['median_s']:.3f} s", file=sys.stderr, flush=True)
    results = {}
    for case, rs in runs.items():  # best round per case: the least disturbed measurement
        best = min(rs, key=lambda d: d["median_s"])
        results[case] = dict(best, peak_rss_mib=max(d["peak_rss_mib"] for d in rs))

    mem = "peak_cuda_mib" if args.device.startswith("cuda") else "peak_rss_mib"
    print(f"\nsize {args.size}x{args.size}, batch {args.batch}, device {args.device}, threads {args.threads}, "
          f"median of {args.iters} calls, best of {args.rounds} interleaved rounds")
    print(f"{'what':34s} {'entitykit r50_1x':>18s} {'torchvision FCOS':>18s} {'ratio':>7s} {'goal':>6s}")
    rows = [("training step (s)", "train:default", "median_s", "1.5"),
            ("inference, default thresholds (s)", "infer:default", "median_s", "1.3"),
            ("inference, 100 detections (s)", "infer:forced", "median_s", "1.3"),
            (f"train {mem}", "train:default", mem, ""),
            (f"infer {mem} (100 dets)", "infer:forced", mem, "")]
    for label, key, field, goal in rows:
        a, b = results[f"entitykit:{key}"][field], results[f"torchvision:{key}"][field]
        print(f"{label:34s} {a:18.3f} {b:18.3f} {a / b:7.2f} {goal:>6s}")
    print("torchvision FCOS with FrozenBatchNorm2d (its pretrained-backbone setup, like entitykit r50_1x):")
    for label, key in (("training step (s)", "train:default"), ("inference, default thresholds (s)", "infer:default")):
        a, b = results[f"entitykit:{key}"]["median_s"], results[f"torchvision-frozen:{key}"]["median_s"]
        print(f"{label:34s} {a:18.3f} {b:18.3f} {a / b:7.2f}")
    for key in ("infer:default", "infer:forced"):
        print(f"detections per image ({key}): entitykit {results['entitykit:' + key]['detections']}, "
              f"torchvision {results['torchvision:' + key]['detections']}")


if __name__ == "__main__":
    main()
