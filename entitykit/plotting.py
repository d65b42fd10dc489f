"""Small line charts drawn with Pillow (no plotting library needed for a loss or PR curve)."""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

# tab10 then the light half of tab20: a full-model run logs 11 loss terms, all distinct up to 20
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
           (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
           (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229)]


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= n:
            step *= m
            break
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def line_chart(panels: list[dict], path: str | Path, *, width: int = 640, height: int = 360) -> None:
    """One chart per panel, side by side. A panel: {title, xlabel, series: {name: (xs, ys)}, log_y?}."""
    img = Image.new("RGB", (width * len(panels), height), "white")
    draw = ImageDraw.Draw(img)
    for p, panel in enumerate(panels):
        ox = p * width
        left, right, top, bottom = ox + 60, ox + width - 20, 30, height - 45
        draw.text((ox + 60, 8), panel.get("title", ""), fill="black")
        pts = [(x, y) for xs, ys in panel["series"].values() for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
        if not pts:
            continue
        log_y = panel.get("log_y", False) and all(y > 0 for _, y in pts)
        f = (lambda v: math.log10(v)) if log_y else (lambda v: v)
        x0, x1 = min(x for x, _ in pts), max(x for x, _ in pts)
        y0, y1 = min(f(y) for _, y in pts), max(f(y) for _, y in pts)
        if x1 == x0:
            x1 = x0 + 1
        if y1 == y0:
            y1 = y0 + 1
        sx = lambda x: left + (x - x0) / (x1 - x0) * (right - left)  # noqa: E731
        sy = lambda y: bottom - (f(y) - y0) / (y1 - y0) * (bottom - top)  # noqa: E731
        draw.rectangle([left, top, right, bottom], outline=(180, 180, 180))
        for t in _ticks(y0, y1):
            yy = bottom - (t - y0) / (y1 - y0) * (bottom - top)
            draw.line([left, yy, right, yy], fill=(235, 235, 235))
            draw.text((ox + 4, yy - 6), f"{10 ** t:.3g}" if log_y else f"{t:.3g}", fill="black")
        for t in _ticks(x0, x1):
            xx = sx(t)
            draw.text((xx - 10, bottom + 4), f"{t:g}", fill="black")
        draw.text((left + (right - left) // 2 - 20, bottom + 22), panel.get("xlabel", ""), fill="black")
        for k, (name, (xs, ys)) in enumerate(panel["series"].items()):
            colour = PALETTE[k % len(PALETTE)]
            line = [(sx(x), sy(y)) for x, y in zip(xs, ys) if y is not None and math.isfinite(y) and (not log_y or y > 0)]
            if len(line) > 1:
                draw.line(line, fill=colour, width=2)
            for q in line if len(line) < 30 else []:
                draw.ellipse([q[0] - 2, q[1] - 2, q[0] + 2, q[1] + 2], fill=colour)
        # the legend last, on white, so the curves do not run through it
        names = list(panel["series"])
        draw.rectangle([right - 156, top + 2, right - 2, top + 8 + 14 * len(names)], fill="white",
                       outline=(200, 200, 200))
        for k, name in enumerate(names):
            draw.text((right - 150, top + 6 + 14 * k), name, fill=PALETTE[k % len(PALETTE)])
    img.save(path, format="PNG")
