"""Presenting an EvalResult: rich tables, a JSON document, a PR-curve PNG (Pillow only)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import atomic_path, write_json
from .ape import AREA_LBL, IOU_THRS, REC_THRS

JSON_FORMAT = "entitykit-eval"


def _f(x: Any) -> Any:
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return None if math.isnan(x) else x
    if isinstance(x, np.integer):
        return int(x)
    return x


def result_to_json(r, *, per_image: bool = True, curves: bool = True) -> dict:
    """Every number and the options used. precision / recall are pycocotools' arrays with the
    category axis dropped: precision[t][r][a][m], recall[t][a][m] (t: IoU thresholds, r: recall
    thresholds, a: area ranges all/small/medium/large, m: max_dets_list); -1 = undefined."""
    out: dict = {
        "format": JSON_FORMAT,
        "version": 1,
        "summary": {k: _f(v) for k, v in r.summary.items()},
        "stats": [_f(v) for v in r.stats],
        "pq": r.pq,
        "options": r.options,
        "counts": r.counts,
        "overlap": r.overlap,
        "by_source": r.by_source,
        "warnings": r.warnings,
        "timings_s": {k: round(v, 4) for k, v in r.timings.items()},
    }
    if curves:
        out["iou_thresholds"] = IOU_THRS.tolist()
        out["recall_thresholds"] = REC_THRS.tolist()
        out["area_ranges"] = list(AREA_LBL)
        out["precision"] = r.precision[:, :, 0].tolist()
        out["recall"] = r.recall[:, 0].tolist()
    if per_image:
        out["per_image"] = [{k: _f(v) for k, v in row.items()} for row in r.per_image]
    return out


def write_result_json(r, path: str | Path) -> None:
    write_json(path, result_to_json(r), indent=None)


# ---------------------------------------------------------------------------------------------
# tables


def _num(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if x < 0:
        return "n/a"
    return f"{100 * x:.2f}"


def print_report(r, console, *, worst: int = 5) -> None:
    from rich.table import Table

    o = r.options
    t = Table(title=f"APe (overlap {o['overlap']}, max-dets {o['max_dets']})",
              title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("metric")
    t.add_column("value", justify="right")
    names = r.stat_names
    for i in range(6):
        t.add_row(names[i], _num(r.stats[i]), names[6 + i], _num(r.stats[6 + i]))
    if r.pq is not None:
        t.add_row("PQ", _num(r.pq["PQ"]), "SQ / RQ", f"{_num(r.pq['SQ'])} / {_num(r.pq['RQ'])}")
    console.print(t)
    c = r.counts
    console.print(f"{c['images']} images, {c['gt_entities']} GT entities ({c['gt_crowd']} crowd), "
                  f"{c['predictions']} predictions ({o['pred_format']})", highlight=False)
    ov = r.overlap
    if ov.get("mode") == "resolve":
        console.print(f"overlap resolved in {ov['images_with_overlap']} image(s): {ov.get('predictions_changed', 0)} "
                      f"predictions changed ({ov.get('predictions_removed', 0)} removed), "
                      f"{ov.get('pixels_reassigned', 0)} pixels reassigned", highlight=False)
    elif ov.get("mode") == "allow":
        console.print(f"overlap allowed (APm, overlap-tolerant): {ov['images_with_overlap']} image(s) overlap",
                      highlight=False)
    if r.by_source:
        s = Table(title="by source", title_justify="left")
        s.add_column("source")
        s.add_column("images", justify="right")
        s.add_column("entities", justify="right")
        for n in ("APe", "APe50", "APe75"):
            s.add_column(n, justify="right")
        s.add_column(r.stat_names[8], justify="right")
        s.add_column("PQ", justify="right")
        for name, e in r.by_source.items():
            st = e["stats"]
            s.add_row(name, str(e["images"]), str(e["entities"]), _num(st["APe"]), _num(st["APe50"]),
                      _num(st["APe75"]), _num(st[r.stat_names[8]]), _num(e["pq"]["PQ"]) if "pq" in e else "—")
        console.print(s)
    if worst > 0:
        rows = r.worst_images(worst)
        if rows:
            w = Table(title=f"worst {len(rows)} images (F1 at IoU 0.5)", title_justify="left")
            for col in ("image_id", "source", "GT", "pred", "TP@.5", "FP@.5", "FN@.5", "F1@.5", "PQ"):
                w.add_column(col, justify="right" if col not in ("image_id", "source") else "left")
            for x in rows:
                w.add_row(str(x["image_id"]), str(x["source"] or ""), str(x["n_gt"]), str(x["n_pred"]),
                          str(x["tp_50"]), str(x["fp_50"]), str(x["fn_50"]), f"{x['f1_50']:.3f}",
                          f"{x['pq']:.3f}" if "pq" in x else "—")
            console.print(w)
    for msg in r.warnings:
        console.print(f"[yellow]warning:[/] {msg}", highlight=False)


# ---------------------------------------------------------------------------------------------
# PR curves


def write_pr_curves(r, path: str | Path, *, area: int = 0, size: tuple[int, int] = (720, 540)) -> None:
    """Interpolated precision vs recall at each IoU threshold (area range ``area``, largest
    max-dets), as drawn by pycocotools' accumulate; the legend gives each curve's AP."""
    from PIL import Image, ImageDraw, ImageFont

    W, H = size
    left, right, top, bottom = 70, 190, 40, 60
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    x0, y0, x1, y1 = left, top, W - right, H - bottom

    def px(rc: float, pr: float) -> tuple[float, float]:
        return x0 + rc * (x1 - x0), y1 - pr * (y1 - y0)

    for k in range(11):
        v = k / 10
        gx, _ = px(v, 0)
        _, gy = px(0, v)
        d.line([(gx, y0), (gx, y1)], fill=(232, 232, 232))
        d.line([(x0, gy), (x1, gy)], fill=(232, 232, 232))
        d.text((gx - 8, y1 + 6), f"{v:.1f}", fill="black", font=font)
        d.text((x0 - 30, gy - 6), f"{v:.1f}", fill="black", font=font)
    d.rectangle([x0, y0, x1, y1], outline="black")
    d.text(((x0 + x1) / 2 - 15, y1 + 26), "recall", fill="black", font=font)
    d.text((8, y0 - 26), "precision", fill="black", font=font)
    o = r.options
    d.text((x0, 12), f"APe PR curves, area {AREA_LBL[area]}, max-dets {o['max_dets']}, overlap {o['overlap']}",
           fill="black", font=font)
    prec = r.precision[:, :, 0, area, -1]
    n = len(IOU_THRS)
    for t in range(n):
        q = prec[t]
        if (q < 0).all():
            continue
        f = t / max(1, n - 1)
        color = (int(30 + 200 * f), int(90 + 60 * (1 - abs(2 * f - 1))), int(220 - 190 * f))
        pts = [px(float(rc), float(max(p, 0))) for rc, p in zip(REC_THRS, q)]
        d.line(pts, fill=color, width=3 if t in (0, 5) else 1)
        ap = float(np.mean(q[q > -1])) if (q > -1).any() else float("nan")
        ly = y0 + 8 + 18 * t
        d.line([(x1 + 12, ly + 6), (x1 + 36, ly + 6)], fill=color, width=3)
        d.text((x1 + 42, ly), f"IoU {IOU_THRS[t]:.2f}: {100 * ap:.1f}", fill="black", font=font)
    d.text((x1 + 12, y0 + 8 + 18 * n + 8), f"APe {100 * max(r.stats[0], 0):.2f}", fill="black", font=font)
    path = Path(path)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
