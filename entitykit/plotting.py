"""Charts people read: training curves (losses, validation APe) and precision–recall curves.

Drawn with matplotlib's object API on its Agg canvas (no pyplot, no global backend switch, no
display needed); matplotlib is imported inside the functions, so importing entitykit stays fast.
Colours are the Okabe–Ito colour-blind-safe set; when a chart has more series than colours, the
line style changes too, so no two series look alike. Legends sit outside the axes, where they
cannot hide a curve.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision
# deficiency. Yellow (#F0E442) is left out: too pale for a thin line on white.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
LINE_STYLES = ("-", "--", "-.", ":")
DPI = 100


def series_style(k: int) -> dict:
    """Colour and line style of the k-th series: 7 colours × 4 styles, 28 distinct looks, and
    consecutive series always differ in colour."""
    return {"color": OKABE_ITO[k % len(OKABE_ITO)], "linestyle": LINE_STYLES[(k // len(OKABE_ITO)) % len(LINE_STYLES)]}


def _figure(width_px: int, height_px: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _wrapped_title(text: str, width_px: int, fontsize_pt: float = 12.0) -> str:
    """``text`` broken into lines that fit ``width_px`` (a line's width estimated at 0.6 em per
    character, DejaVu Sans' mean advance is ~0.55 em): a long title is wrapped, never clipped."""
    per_line = max(20, int(0.95 * width_px / (0.6 * fontsize_pt * DPI / 72)))
    return "\n".join(textwrap.fill(line, per_line) for line in text.split("\n"))


def png_name_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot name a plot (they are PNG images: a ``.jpg`` name would hold PNG bytes)."""
    suffix = Path(path).suffix
    return None if suffix.lower() == ".png" else f"plots are PNG images: give a .png file name, not {suffix or 'no suffix'!r}"


def _save(fig, path: str | Path) -> None:
    # no bbox_inches="tight": the PNG is exactly the size asked for; the constrained layout makes room
    fig.savefig(path, format="png", dpi=DPI, facecolor="white")


def _finite(xs, ys, positive: bool) -> tuple[list[float], list[float]]:
    px, py = [], []
    for x, y in zip(xs, ys):
        if y is None or x is None:
            continue
        y = float(y)
        if math.isfinite(y) and (not positive or y > 0):
            px.append(float(x))
            py.append(y)
    return px, py


def _default_ylabel(panel: dict, log_y: bool) -> str:
    title = str(panel.get("title", ""))
    if log_y:
        return ("loss" if "loss" in title.lower() else "value") + " (log scale)"
    return title or "value"


def line_chart(panels: list[dict], path: str | Path, *, width: int = 720, height: int = 420) -> None:
    """One chart per panel, side by side, written as a PNG of ``width × len(panels)`` by ``height`` px.

    A panel: ``{"title", "xlabel", "series": {name: (xs, ys)}, "log_y"?, "ylabel"?}``. Missing and
    non-finite values are skipped (on a log axis also values ≤ 0). Without ``ylabel`` the y axis
    is named after the panel (``"loss (log scale)"`` for a log-scale loss panel). A panel whose
    values all lie in [0, 1] (APe, recall, …) starts its y axis at 0.
    """
    _save(line_chart_figure(panels, width=width, height=height), path)


def line_chart_figure(panels: list[dict], *, width: int = 720, height: int = 420):
    """The matplotlib Figure that :func:`line_chart` saves."""
    fig = _figure(width * max(1, len(panels)), height)
    axes = fig.subplots(1, max(1, len(panels)), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        log_y = bool(panel.get("log_y", False))
        drawn: list[float] = []
        for k, (name, (xs, ys)) in enumerate(panel["series"].items()):
            px, py = _finite(xs, ys, log_y)
            if not px:
                continue
            drawn.extend(py)
            ax.plot(px, py, label=str(name), linewidth=1.6, marker="o" if len(px) < 30 else None, markersize=3,
                    **series_style(k))
        ax.set_title(str(panel.get("title", "")))
        ax.set_xlabel(str(panel.get("xlabel", "")))
        ax.set_ylabel(str(panel.get("ylabel") or _default_ylabel(panel, log_y)))
        ax.grid(True, which="major", color="#e4e4e4", linewidth=0.8)
        if not drawn:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="#666666")
            continue
        if log_y:
            from matplotlib.ticker import FuncFormatter  # noqa: PLC0415

            ax.set_yscale("log")
            # plain numbers (0.6, 2, 30), not 6×10⁻¹; over less than ~1.5 decades the 2× and 5× minor
            # ticks are labelled too, so a short range still has numbers on it
            short = math.log10(max(drawn) / min(drawn)) < 1.5
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(FuncFormatter(
                lambda v, _: f"{v:g}" if short and f"{v:.0e}"[0] in "25" else ""))
            ax.grid(True, which="minor", color="#f2f2f2", linewidth=0.5)
        elif min(drawn) >= 0 and max(drawn) <= 1:
            ax.set_ylim(0, max(max(drawn) * 1.08, 0.05))
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize="small",
                  frameon=False, handlelength=2.6)
    return fig


def training_curves(metrics: Sequence[dict], path: str | Path) -> bool:
    """``curves.png`` of a run from its ``metrics.jsonl`` rows: the loss terms per iteration (log
    scale) and, when the run was validated, APe / APe50 / APe75. False (nothing written) when no
    row has a loss."""
    train_rows = [m for m in metrics if "loss" in m]
    val_rows = [m for m in metrics if "val/APe" in m]
    if not train_rows:
        return False
    loss_keys = [k for k in train_rows[0] if k.startswith("loss")]
    panels = [{"title": "training losses", "xlabel": "iteration", "ylabel": "loss (log scale)", "log_y": True,
               "series": {k: ([m["iter"] for m in train_rows], [m.get(k) for m in train_rows]) for k in loss_keys}}]
    if val_rows:
        panels.append({"title": "validation APe", "xlabel": "iteration", "ylabel": "APe (0–1)",
                       "series": {k: ([m["iter"] for m in val_rows], [m.get(f"val/{k}") for m in val_rows])
                                  for k in ("APe", "APe50", "APe75")}})
    line_chart(panels, path)
    return True


# ---------------------------------------------------------------------------------------------
# precision–recall


def format_ap(ap: float | None) -> str:
    """An AP in percent with two decimals (``0.0042`` → ``"0.42"``); ``"n/a"`` when undefined."""
    if ap is None or not math.isfinite(ap) or ap < 0:
        return "n/a"
    return f"{100 * ap:.2f}"


def pr_legend_label(iou: float, ap: float | None) -> str:
    """The legend entry of one PR curve: ``"IoU 0.50   AP 40.12"``."""
    return f"IoU {iou:.2f}   AP {format_ap(ap)}"


EMPHASISED_IOUS = (0.50, 0.75)
_THIN_COLOURS = tuple(OKABE_ITO[i] for i in (0, 2, 3, 4, 5))  # black and vermillion are the emphasised two
_DASHES = ("--", "-.", ":", (0, (6, 2, 1, 2, 1, 2)))


def pr_curves(precision, recall_thresholds, iou_thresholds, path: str | Path, *, title: str = "",
              summary: str = "", width: int = 720, height: int = 540) -> None:
    """Precision against recall, one curve per IoU threshold, as a PNG of ``width × height`` px.

    precision: T×R array (T IoU thresholds, R recall thresholds), −1 where undefined (pycocotools'
    convention); a curve that is undefined everywhere is left out. The curves at IoU 0.50 and 0.75
    (the APe50 / APe75 ones) are drawn thick and solid, the others thin, each in its own colour
    and dash pattern. The legend, outside the axes, gives each curve's AP in percent with two
    decimals; ``summary`` (e.g. the overall APe) is a second title line.
    """
    _save(pr_curves_figure(precision, recall_thresholds, iou_thresholds, title=title, summary=summary,
                           width=width, height=height), path)


def pr_curves_figure(precision, recall_thresholds, iou_thresholds, *, title: str = "", summary: str = "",
                     width: int = 720, height: int = 540):
    """The matplotlib Figure that :func:`pr_curves` saves."""
    import numpy as np  # noqa: PLC0415

    prec = np.asarray(precision, dtype=float)
    rec = np.asarray(recall_thresholds, dtype=float)
    fig = _figure(width, height)
    ax = fig.subplots()
    thin = 0
    for t, iou in enumerate(iou_thresholds):
        q = prec[t]
        defined = q > -1
        if not defined.any():
            continue
        ap = float(q[defined].mean())
        strong = any(abs(float(iou) - e) < 1e-9 for e in EMPHASISED_IOUS)
        if strong:
            style = {"color": "#000000" if abs(float(iou) - 0.5) < 1e-9 else "#D55E00", "linestyle": "-",
                     "linewidth": 2.8, "zorder": 3}
        else:
            # 5 colours × 4 dash patterns: (j mod 5, j mod 4) differs for every pair of the 8 thin curves
            style = {"color": _THIN_COLOURS[thin % len(_THIN_COLOURS)], "linestyle": _DASHES[thin % len(_DASHES)],
                     "linewidth": 1.4, "zorder": 2}
            thin += 1
        ax.plot(rec, np.where(defined, q, np.nan), label=pr_legend_label(float(iou), ap), **style)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)  # a curve at precision 0 stays visible above the axis
    ax.set_xlabel("recall")
    ax.set_ylabel("precision (interpolated)")
    # a figure title (over axes and legend), wrapped to the figure's width: Boundary APe's is long
    fig.suptitle(_wrapped_title("\n".join(x for x in (title or "precision–recall curves", summary) if x), width),
                 fontsize=12)
    ax.grid(True, color="#e4e4e4", linewidth=0.8)
    if not ax.lines:
        ax.text(0.5, 0.5, "no defined curve (no ground truth in this area range)", ha="center", va="center",
                transform=ax.transAxes, color="#666666")
        return fig
    leg = ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize="small",
                    frameon=False, handlelength=3.2, title="IoU threshold   AP (%)", title_fontsize="small")
    leg.set_alignment("left")  # title flush with the entries
    return fig
