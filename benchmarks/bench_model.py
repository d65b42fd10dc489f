"""Training step and inference of EntityModel (r50_1x) beside torchvision's FCOS-ResNet50-FPN.

Same input size, batch and thread count, in the same run. Timing: both models live in one process
and their calls alternate, so load from other processes hits both alike; the table shows the
fastest call (least disturbed) and the median. Peak memory: each (model, mode) in a fresh
subprocess — peak RSS on CPU, torch.cuda.max_memory_allocated on CUDA. No weights are downloaded.

    python benchmarks/bench_model.py [--size 512] [--batch 2] [--iters 5] [--threads 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

MODELS = ("entitykit", "torchvision", "torchvision-frozen")


def _targets(batch: int, size: int, device):
    import torch

    out = []
    for _ in range(batch):
        masks = torch.zeros(4, size, size, dtype=torch.bool, device=device)
        s = size // 8
        for i, (x, y, w, h) in enumerate([(1, 1, 3, 2), (4, 1, 3, 3), (1, 4, 2, 3), (0, 0, 8, 8)]):
            masks[i, y * s:(y + h) * s, x * s:(x + w) * s] = True
        masks[3] &= ~masks[:3].any(0)  # a "stuff" entity around the things: all disjoint
        out.append(masks)
    return out


def build(name: str, size: int, batch: int, device, forced: bool):
    """(model, train_call, infer_call) for one benchmark subject."""
    import torch

    torch.manual_seed(0)
    images = torch.rand(batch, 3, size, size, device=device)
    masks = _targets(batch, size, device)
    if name == "entitykit":
        from entitykit.model import EntityModel, get_config

        model = EntityModel(get_config("r50_1x", **({"score_thresh": 0.0} if forced else {}))).to(device)
        targets = [{"masks": m} for m in masks]
        return model, (lambda: sum(model(images, targets).values())), (lambda: model(images))
    from torchvision.models.detection import fcos_resnet50_fpn
    from torchvision.ops import masks_to_boxes

    kwargs = {"min_size": size, "max_size": size, **({"score_thresh": 0.0} if forced else {})}
    if name == "torchvision":  # as asked: no weights, so torchvision picks trainable BatchNorm2d
        model = fcos_resnet50_fpn(weights=None, weights_backbone=None, trainable_backbone_layers=3, **kwargs)
    else:  # what fcos_resnet50_fpn builds around a pretrained backbone: FrozenBatchNorm2d, like r50_1x
        from torchvision.models import resnet50
        from torchvision.models.detection import FCOS
        from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
        from torchvision.ops import FrozenBatchNorm2d
        from torchvision.ops.feature_pyramid_network import LastLevelP6P7

        trunk = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
        model = FCOS(_resnet_fpn_extractor(trunk, 3, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(256, 256)),
                     num_classes=91, **kwargs)
    model = model.to(device)
    targets = [{"boxes": masks_to_boxes(m), "labels": torch.ones(len(m), dtype=torch.int64, device=device)}
               for m in masks]
    image_list = list(images)
    return model, (lambda: sum(model(image_list, targets).values())), (lambda: model(image_list))


def make_step(model, train_call, infer_call, mode: str):
    import torch

    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)

    def step():
        if mode == "train":
            model.train()
            loss = train_call()
            opt.zero_grad()
            loss.backward()
            opt.step()
            return None
        model.eval()
        with torch.no_grad():
            return infer_call()

    return step


def time_mode(mode: str, args) -> dict:
    """Alternate the models call by call; returns per-model lists of seconds and detection counts."""
    import torch

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    forced = mode == "infer-forced"
    names = MODELS if mode != "infer-forced" else MODELS[:2]
    steps = {n: make_step(*build(n, args.size, args.batch, dev, forced), "train" if mode == "train" else "infer")
             for n in names}
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times, dets = {n: [] for n in names}, {}
    for n in names:  # warm-up
        out = steps[n]()
        dets[n] = [len(o["scores"]) for o in out] if out is not None else None
    sync()
    for _ in range(args.iters):
        for n in names:
            t = time.perf_counter()
            steps[n]()
            sync()
            times[n].append(time.perf_counter() - t)
    return {"times": times, "detections": dets}


def memory_case(name: str, mode: str, args) -> float:
    import torch

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    step = make_step(*build(name, args.size, args.batch, dev, mode == "infer-forced"),
                     "train" if mode == "train" else "infer")
    step()
    step()
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(args, *extra) -> dict:
    opts = [f"--{k}={getattr(args, k)}" for k in ("size", "batch", "iters", "threads", "device")]
    proc = subprocess.run([sys.executable, __file__, *opts, *extra], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"{extra} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--time-mode", help=argparse.SUPPRESS)
    ap.add_argument("--memory", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.time_mode:
        print(json.dumps(time_mode(args.time_mode, args)))
        return
    if args.memory:
        name, mode = args.memory.split(":")
        print(json.dumps({"mib": memory_case(name, mode, args)}))
        return

    modes = ("train", "infer", "infer-forced")
    timing = {}
    for mode in modes:
        timing[mode] = _child(args, f"--time-mode={mode}")
        print(f"  timed {mode}", file=sys.stderr, flush=True)
    memory = {}
    for mode in ("train", "infer-forced"):
        for name in MODELS[:2]:
            memory[(name, mode)] = _child(args, f"--memory={name}:{mode}")["mib"]
    print("  measured memory", file=sys.stderr, flush=True)

    mem_kind = "peak CUDA MiB" if args.device.startswith("cuda") else "peak RSS MiB"
    print(f"\nsize {args.size}x{args.size}, batch {args.batch}, device {args.device}, threads {args.threads}, "
          f"{args.iters} alternating calls per model (fastest / median)")
    print(f"{'what':34s} {'entitykit r50_1x':>20s} {'torchvision FCOS':>20s} {'ratio':>12s} {'goal':>5s}")
    labels = {"train": ("training step (s)", "1.5"), "infer": ("inference, default thresholds (s)", "1.3"),
              "infer-forced": ("inference, 100 detections (s)", "1.3")}
    for mode in modes:
        t = timing[mode]["times"]
        a, b = t["entitykit"], t["torchvision"]
        label, goal = labels[mode]
        print(f"{label:34s} {min(a):9.3f} /{statistics.median(a):8.3f} {min(b):9.3f} /{statistics.median(b):8.3f} "
              f"{min(a) / min(b):5.2f} /{statistics.median(a) / statistics.median(b):5.2f} {goal:>5s}")
    for mode in ("train", "infer-forced"):
        a, b = memory[("entitykit", mode)], memory[("torchvision", mode)]
        print(f"{mem_kind + ', ' + mode:34s} {a:20.0f} {b:20.0f} {a / b:12.2f}")
    print("torchvision FCOS with FrozenBatchNorm2d (its pretrained-backbone setup, as entitykit r50_1x):")
    for mode in ("train", "infer"):
        a, b = timing[mode]["times"]["entitykit"], timing[mode]["times"]["torchvision-frozen"]
        print(f"{labels[mode][0]:34s} {min(a):9.3f} /{statistics.median(a):8.3f} {min(b):9.3f} /{statistics.median(b):8.3f} "
              f"{min(a) / min(b):5.2f} /{statistics.median(a) / statistics.median(b):5.2f}")
    for mode in ("infer", "infer-forced"):
        d = timing[mode]["detections"]
        print(f"detections per image ({mode}): entitykit {d['entitykit']}, torchvision {d['torchvision']}")


if __name__ == "__main__":
    main()
