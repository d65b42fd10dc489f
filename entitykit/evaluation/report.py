"""Presenting an EvalResult: rich tables, a JSON document, a PR-curve PNG (matplotlib)."""

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
    max-dets), as drawn by pycocotools' accumulate; the legend gives each curve's AP (percent, two
    decimals). Drawn by :func:`entitykit.plotting.pr_curves`; the PNG is ``size`` (width, height) px."""
    from ..plotting import pr_curves  # noqa: PLC0415  (matplotlib is imported only when a chart is drawn)

    o = r.options
    prec = r.precision[:, :, 0, area, -1]
    title = f"APe precision–recall (area {AREA_LBL[area]}, max-dets {o['max_dets']}, overlap {o['overlap']})"
    k = 0 if area == 0 else 2 + area  # APe, or APe_s / APe_m / APe_l: the mean of the curves' APs
    summary = ""
    if r.stats[k] >= 0:
        summary = f"{r.stat_names[k]} {100 * float(r.stats[k]):.2f} (mean of the {len(IOU_THRS)} curves)"
    with atomic_path(Path(path)) as tmp:
        pr_curves(prec, REC_THRS, IOU_THRS, tmp, title=title, summary=summary, width=size[0], height=size[1])
