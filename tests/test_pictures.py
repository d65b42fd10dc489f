"""The pictures people look at: training curves, PR curves, overlays and id-map previews.

Each test guards one thing a reader relies on: the charts are written at their size and are not
blank, their legends sit outside the data and give APs with two decimals, overlays keep the photo
visible at the asked opacity, touching entities never share a colour, labels sit on entities, and
every id map that ``predict`` writes has a coloured preview with one colour per id.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from entitykit.evaluation import evaluate
from entitykit.evaluation.ape import IOU_THRS, REC_THRS
from entitykit.evaluation.report import write_pr_curves
from entitykit.masks import read_id_map_png
from entitykit.model import get_config
from entitykit.plotting import (
    format_ap, line_chart, line_chart_figure, pr_curves_figure, pr_legend_label, training_curves)
from entitykit.predict import PREDICTIONS_JSON, predict
from entitykit.visualize import (
    adjacent_pairs, boundaries, entity_colors, label_points, overlay, place_labels, preview, write_preview_png)

from _eval_helpers import build


def _rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _not_blank(img: np.ndarray, *, min_colours: int = 20, min_ink: float = 0.01) -> None:
    """Drawn on: many colours (lines, text, antialiasing) and a share of non-white pixels."""
    colours = np.unique(img.reshape(-1, 3), axis=0)
    ink = (img.min(axis=2) < 200).mean()
    assert len(colours) >= min_colours and ink >= min_ink, (len(colours), ink)


def _has_colour(img: np.ndarray, hex_colour: str, *, pixels: int = 30) -> bool:
    rgb = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(img.astype(int) - rgb).max(axis=2) <= 12).sum()) >= pixels


def _legends_outside_axes(fig) -> None:
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        leg = ax.get_legend()
        assert leg is not None
        lb, ab = leg.get_window_extent(renderer), ax.get_window_extent(renderer)
        assert lb.x0 >= ab.x1, "the legend overlaps the plotting area"
        assert lb.x1 <= fig.bbox.x1 + 1, "the legend is cut off at the right edge"


# ---------------------------------------------------------------------------------------------- charts


def _train_panels(n_loss: int = 6):
    """The panels ``entitykit.train`` builds from metrics.jsonl (log-scale losses + validation APe)."""
    it = list(range(1, 401, 5))
    losses = {("loss" if k == 0 else f"loss_term{k}"): (it, [(2 + k) * np.exp(-x / 150) + 0.05 * (k + 1) for x in it])
              for k in range(n_loss)}
    losses["loss_term1"][1][3] = float("nan")  # a diverged step is skipped, not drawn
    val = [100, 200, 300, 400]
    return [{"title": "training losses", "xlabel": "iteration", "log_y": True, "series": losses},
            {"title": "validation APe", "xlabel": "iteration",
             "series": {"APe": (val, [0.01, 0.05, 0.1, 0.12]), "APe50": (val, [0.05, 0.15, 0.3, 0.33]),
                        "APe75": (val, [0.0, 0.03, 0.08, 0.1])}}]


def test_training_curves_png_size_not_blank_legend_outside(tmp_path):
    line_chart(_train_panels(), tmp_path / "curves.png")  # the call entitykit.train makes
    img = _rgb(tmp_path / "curves.png")
    assert img.shape == (420, 2 * 720, 3)
    _not_blank(img)
    assert _has_colour(img, "#0072B2") and _has_colour(img, "#D55E00")  # Okabe–Ito blue and vermillion
    fig = line_chart_figure(_train_panels(11))  # a full-model run: 11 loss terms
    _legends_outside_axes(fig)
    loss_ax, ape_ax = fig.axes
    assert loss_ax.get_yscale() == "log" and "log" in loss_ax.get_ylabel()
    assert ape_ax.get_ylabel() and loss_ax.get_xlabel() == "iteration"
    looks = [(ln.get_color(), ln.get_linestyle()) for ln in loss_ax.lines]
    assert len(set(looks)) == len(looks) == 11  # no two series alike


def test_training_curves_from_metrics(tmp_path):
    rows = [{"iter": i, "loss": 3.0 / i, "loss_cls": 2.0 / i} for i in range(1, 50)]
    rows += [{"iter": 49, "val/APe": 0.1, "val/APe50": 0.2, "val/APe75": 0.05}]
    assert training_curves(rows, tmp_path / "c.png")
    img = _rgb(tmp_path / "c.png")
    assert img.shape == (420, 1440, 3)
    _not_blank(img)
    assert not training_curves([{"iter": 1}], tmp_path / "none.png") and not (tmp_path / "none.png").exists()


def test_ap_legend_has_two_decimals():
    assert format_ap(0.0042) == "0.42"  # one decimal made every low-AP curve read 0.0
    assert format_ap(0.40126) == "40.13" and format_ap(1.0) == "100.00"
    assert format_ap(-1.0) == "n/a" and format_ap(float("nan")) == "n/a"
    assert pr_legend_label(0.5, 0.0042) == "IoU 0.50   AP 0.42"
    assert pr_legend_label(0.95, 0.25) == "IoU 0.95   AP 25.00"


def _eval_result():
    rng = np.random.default_rng(0)
    gt_masks, preds = [], []
    for i in range(3):
        masks = []
        for k in range(6):
            m = np.zeros((48, 64), bool)
            y, x = rng.integers(0, 32), rng.integers(0, 48)
            m[y : y + 14, x : x + 14] = True
            masks.append(m)
            p = np.roll(m, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1))
            preds.append((i, p, float(rng.random())))
        gt_masks.append(masks)
    gt, results = build(gt_masks, preds)
    return evaluate(gt, results, overlap="allow")


def test_pr_curve_png(tmp_path):
    r = _eval_result()
    write_pr_curves(r, tmp_path / "pr.png")
    img = _rgb(tmp_path / "pr.png")
    assert img.shape == (540, 720, 3)  # the size eval has always written
    _not_blank(img)
    assert _has_colour(img, "#000000", pixels=200) and _has_colour(img, "#D55E00", pixels=100)  # IoU .50 / .75
    fig = pr_curves_figure(r.precision[:, :, 0, 0, -1], REC_THRS, IOU_THRS)
    _legends_outside_axes(fig)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "recall" and "precision" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0].startswith("IoU 0.50") and labels[5].startswith("IoU 0.75") and len(labels) == 10
    assert all(len(lab.rsplit(".", 1)[1]) == 2 for lab in labels)  # two decimals everywhere
    widths = [ln.get_linewidth() for ln in ax.lines]
    assert widths[0] == widths[5] > max(w for k, w in enumerate(widths) if k not in (0, 5))  # .50, .75 stand out
    looks = [(ln.get_color(), str(ln.get_linestyle())) for ln in ax.lines]
    assert len(set(looks)) == 10



def test_a_long_pr_title_is_wrapped_inside_the_picture():
    """Boundary APe's title (dilation ratio, pixels, area, max-dets, overlap) is longer than a 720 px
    figure: every line of it must be drawn inside the picture, none clipped at the edges."""
    r = _eval_result()
    title = ("Boundary APe precision–recall (dilation ratio 0.02 × image diagonal = 7–14 px, area all, "
             "max-dets 100, overlap error)")
    fig = pr_curves_figure(r.precision[:, :, 0, 0, -1], REC_THRS, IOU_THRS, title=title, summary="Boundary APe 55.55")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ticks = {id(t) for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels()}  # clipped to the view
    shown = [t for t in fig.findobj(lambda a: hasattr(a, "get_text") and a.get_visible())
             if t.get_text() and id(t) not in ticks]
    assert any("dilation ratio" in t.get_text() for t in shown)
    width, height = fig.canvas.get_width_height()
    for t in shown:
        box = t.get_window_extent(renderer)
        assert box.x0 >= -0.5 and box.x1 <= width + 0.5 and box.y0 >= -0.5 and box.y1 <= height + 0.5, t.get_text()


# ---------------------------------------------------------------------------------------------- overlays


def _voronoi(h: int = 120, w: int = 160, n: int = 60, seed: int = 0) -> np.ndarray:
    """n touching entities (no void), ids 1..n: a Voronoi partition."""
    rng = np.random.default_rng(seed)
    ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
    yy, xx = np.mgrid[:h, :w]
    d = (yy[..., None] - ys) ** 2 + (xx[..., None] - xs) ** 2
    ids = d.argmin(axis=2).astype(np.int32) + 1
    assert len(np.unique(ids)) == n
    return ids


def test_adjacent_entities_get_different_colours():
    ids = _voronoi()
    pairs = adjacent_pairs(ids, reach=1)
    assert len(pairs) > 100
    colors = entity_colors(ids)
    assert all(colors[a] != colors[b] for a, b in pairs.tolist())
    assert len(set(colors.values())) >= 8  # the palette is used, not the same four colours
    # the same holds in the pictures themselves: preview, and overlay at full opacity
    pv = preview(ids)
    flat = overlay(np.zeros(ids.shape + (3,), np.uint8), ids, alpha=1.0, labels=False, thickness=1)
    for a, b in pairs.tolist():
        assert tuple(pv[ids == a][0]) != tuple(pv[ids == b][0])
    inner = ~boundaries(ids, 1)
    for a, b in pairs[:50].tolist():
        ca, cb = flat[(ids == a) & inner], flat[(ids == b) & inner]
        if len(ca) and len(cb):
            assert tuple(ca[0]) != tuple(cb[0])
    # entities separated by a thin void line still count as neighbours
    gap = np.zeros((20, 21), np.int32)
    gap[:, :10], gap[:, 11:] = 1, 2
    assert entity_colors(gap)[1] != entity_colors(gap)[2]


def test_fill_opacity_is_honoured():
    photo = np.empty((40, 50, 3), np.uint8)
    photo[:] = (100, 150, 200)
    ids = np.zeros((40, 50), np.int32)
    ids[5:35, 5:25] = 1
    ids[5:35, 25:45] = 2
    col = entity_colors(ids)
    for alpha in (0.0, 0.35, 0.6, 1.0):
        out = overlay(photo, ids, alpha=alpha, labels=False, thickness=1).astype(int)
        for k in (1, 2):
            expect = np.round((1 - alpha) * np.array([100, 150, 200]) + alpha * np.array(col[k]))
            assert np.abs(out[15, 10 if k == 1 else 40] - expect).max() <= 1, (alpha, k)
        assert (out[ids == 0] == (100, 150, 200)).all()  # void keeps the photo
    with pytest.raises(ValueError, match="alpha"):
        overlay(photo, ids, alpha=1.5)


def test_boundaries_drawn_in_entity_colour():
    photo = np.full((40, 50, 3), 90, np.uint8)
    ids = np.zeros((40, 50), np.int32)
    ids[5:35, 5:25] = 1
    ids[5:35, 25:45] = 2
    col = entity_colors(ids)
    out = overlay(photo, ids, labels=False, thickness=1)
    assert tuple(out[20, 24]) == col[1] and tuple(out[20, 25]) == col[2]  # both sides of the shared edge
    assert tuple(out[5, 10]) == col[1] and tuple(out[20, 44]) == col[2]  # entity–void edges
    assert tuple(out[20, 15]) != col[1]  # the interior is only tinted
    white = overlay(photo, ids, labels=False, thickness=1, boundary_color=(255, 255, 255))
    assert tuple(white[20, 24]) == (255, 255, 255)


def test_labels_only_on_entities():
    photo = np.full((200, 300, 3), 120, np.uint8)
    ids = np.zeros((200, 300), np.int32)
    ids[20:120, 20:120] = 1
    ids[100:190, 180:290] = 7
    plain = overlay(photo, ids, labels=False)
    labelled = overlay(photo, ids, scores={1: 0.9, 7: 0.25})
    changed = (plain != labelled).any(axis=2)
    assert changed[ids == 1].any() and changed[ids == 7].any()  # one label per entity …
    assert not changed[ids == 0].any()  # … and none off the entities
    pts = label_points(ids)
    assert set(pts) == {1, 7}
    for k, (r, c) in pts.items():
        assert ids[r, c] == k
        ys, xs = np.nonzero(changed & (ids == k))
        assert ys.min() <= r <= ys.max() and xs.min() <= c <= xs.max()  # around the entity's inner point
    assert pts[1] == pytest.approx((70, 70), abs=1)  # the centre of the square: farthest from its edges
    empty = np.zeros((200, 300), np.int32)
    assert (overlay(photo, empty) == photo).all()  # no entity: the photo, untouched


def test_labels_never_cover_each_other():
    ids = _voronoi(240, 320, 40, seed=3)
    boxes = place_labels(ids, scores=np.linspace(0.99, 0.05, 40))
    assert len(boxes) >= 25  # most entities labelled …
    for i, (l1, t1, w1, h1, k1, _) in enumerate(boxes):  # … and no two labels overlap
        for l2, t2, w2, h2, k2, _ in boxes[i + 1 :]:
            assert l1 >= l2 + w2 or l2 >= l1 + w1 or t1 >= t2 + h2 or t2 >= t1 + h1, (k1, k2)
    for left, top, w, h, k, text in boxes:
        assert ids[top + h // 2, left + w // 2] == k  # each sits on its entity
        assert text in (f"{k}: {np.linspace(0.99, 0.05, 40)[k - 1]:.2f}", f"{k}")
    assert len({b[4] for b in boxes}) == len(boxes)


# ---------------------------------------------------------------------------------------------- previews


class _Boxes(torch.nn.Module):
    """A stand-in model that paints touching boxes (fractions of its input) with fixed scores."""

    def __init__(self):
        super().__init__()
        self.cfg = get_config("tiny")
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.boxes = [(0.0, 0.5, 0.0, 0.5), (0.0, 0.5, 0.5, 1.0), (0.5, 1.0, 0.0, 0.5), (0.5, 0.9, 0.5, 0.9)]

    def forward(self, batch, image_sizes=None, output_sizes=None, with_masks=True):
        out = []
        for oh, ow in output_sizes:
            id_map = torch.zeros((oh, ow), dtype=torch.int32)
            for k, (y0, y1, x0, x1) in enumerate(self.boxes, 1):
                id_map[round(y0 * oh): round(y1 * oh), round(x0 * ow): round(x1 * ow)] = k
            out.append({"id_map": id_map, "scores": torch.tensor([0.9, 0.8, 0.7, 0.6])})
        return out


def test_predict_writes_a_preview_beside_each_id_map(tmp_path):
    photos = tmp_path / "in"
    (photos / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("a.jpg", "a.png", "sub/b.jpg"):
        Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(photos / name)
    run = predict(_Boxes(), [photos], tmp_path / "out", max_size=96)
    doc = json.loads((run.out_dir / PREDICTIONS_JSON).read_text())
    assert len(doc["images"]) == 3
    previews = set()
    for rec in doc["images"]:
        id_map = read_id_map_png(run.out_dir / rec["file_name"])
        assert rec["preview"] == "previews/" + rec["file_name"].removeprefix("id_maps/")
        previews.add(rec["preview"])
        pv = _rgb(run.out_dir / rec["preview"])
        assert pv.shape == id_map.shape + (3,)
        colour_of = {}
        for k in np.unique(id_map):
            got = np.unique(pv[id_map == k], axis=0)
            assert len(got) == 1, f"id {k} has {len(got)} colours"  # equal ids, equal colours
            colour_of[int(k)] = tuple(got[0])
        assert colour_of[0] == (0, 0, 0)
        assert len(set(colour_of.values())) == len(colour_of)  # here every entity touches every other
        ov = _rgb(run.out_dir / rec["overlay"])  # the overlay uses the preview's colours on its boundaries
        edge = boundaries(id_map, 1) & (id_map > 0)
        assert (ov[edge] == pv[edge]).all()
    assert len(previews) == 3  # a.jpg and a.png do not share a preview
    # the preview writer used by other id-map writers
    write_preview_png(tmp_path / "p.png", id_map)
    assert (_rgb(tmp_path / "p.png") == preview(id_map)).all()
    with Image.open(tmp_path / "p.png") as im:
        assert im.mode == "P"  # few colours: a palette PNG
    many = np.arange(1, 301, dtype=np.int32).reshape(15, 20)  # 300 one-pixel entities …
    colors = {k: (k % 251, (k * 7) % 253, 200) for k in range(1, 302)}  # … in 300 colours: RGB, not a palette
    write_preview_png(tmp_path / "many.png", many, colors=colors)
    assert (_rgb(tmp_path / "many.png") == preview(many, colors=colors)).all()
    # without previews / overlays: none written, none listed
    run = predict(_Boxes(), [photos / "a.jpg"], tmp_path / "bare", max_size=96, previews=False, overlays=False)
    assert not (run.out_dir / "previews").exists() and "preview" not in run.images[0]


def test_palette_is_matplotlibs_qualitative_palettes():
    """The colours are written out (no matplotlib import for a preview); they must be matplotlib's."""
    from matplotlib import colormaps

    from entitykit.visualize import distinct_colors

    want: list[tuple[int, int, int]] = []
    for name, rows in (("tab10", range(10)), ("tab20", range(1, 20, 2)), ("tab20b", range(20)), ("tab20c", range(20))):
        for i in rows:
            c = tuple(int(round(255 * v)) for v in colormaps[name](i)[:3])
            if c not in want and max(c) - min(c) >= 24:  # no greys, no repeats
                want.append(c)
    assert [tuple(c) for c in distinct_colors(len(want)).tolist()] == want
    more = distinct_colors(80)
    assert len({tuple(c) for c in more.tolist()}) == 80 and (more[: len(want)] == distinct_colors(len(want))).all()


def _voronoi_dataset(root, n_images: int = 2):
    from entitykit.dataset import EntityDataset
    from entitykit.masks import encode_id_map, rle_bbox

    images, anns, maps = [], [], {}
    for i in range(1, n_images + 1):
        ids = _voronoi(60, 80, 25, seed=i)
        ids[:6, :10] = 0  # a void corner
        maps[i] = ids
        _, rles, areas = encode_id_map(ids)
        boxes = rle_bbox(rles)
        images.append({"id": i, "file_name": f"dir/img{i}.jpg", "height": 60, "width": 80})
        for k, (rle, area, box) in enumerate(zip(rles, areas, boxes)):
            anns.append({"id": 100 * i + k, "image_id": i, "category_id": 1, "segmentation": rle, "area": int(area),
                         "bbox": box.tolist(), "iscrowd": 0})
    EntityDataset(images, anns).save(root / "ds.json")
    return root / "ds.json", maps


def _check_previews(out, n: int) -> None:
    """Every id map listed in id_maps.json has an 8-bit RGB preview: one colour per id, void black,
    touching entities in different colours, the colours of ``visualize.preview``."""
    index = json.loads((out / "id_maps.json").read_text())
    assert len(index["images"]) == n
    for e in index["images"]:
        ids = read_id_map_png(out / e["file_name"])
        assert e["preview"] == "previews/" + e["file_name"]
        with Image.open(out / e["preview"]) as im:  # 8-bit: palette (up to 256 colours) or RGB
            assert im.mode in ("P", "RGB") and im.size == (ids.shape[1], ids.shape[0])
            pv = np.asarray(im.convert("RGB"))
        colour_of = {}
        for k in np.unique(ids):
            got = np.unique(pv[ids == k], axis=0)
            assert len(got) == 1, f"id {k} has {len(got)} colours"
            colour_of[int(k)] = tuple(got[0].tolist())
        assert colour_of[0] == (0, 0, 0) and (0, 0, 0) not in [c for k, c in colour_of.items() if k]
        pairs = adjacent_pairs(ids, reach=1)
        assert len(pairs) > 30 and all(colour_of[a] != colour_of[b] for a, b in pairs.tolist())
        assert (pv == preview(ids)).all()


@pytest.mark.parametrize("fmt", ["png16", "rgb"])
def test_idmaps_writes_a_preview_beside_each_id_map(tmp_path, fmt):
    from typer.testing import CliRunner

    from entitykit.cli import app

    ds, maps = _voronoi_dataset(tmp_path)
    r = CliRunner().invoke(app, ["idmaps", str(ds), "-o", str(tmp_path / "ids"), "--format", fmt, "-q"])
    assert r.exit_code == 0, r.output
    _check_previews(tmp_path / "ids", 2)
    for i, ids in maps.items():  # the id maps themselves are untouched by the previews
        assert (read_id_map_png(tmp_path / "ids" / "dir" / f"img{i}.png") == ids).all()
    r = CliRunner().invoke(app, ["idmaps", str(ds), "-o", str(tmp_path / "bare"), "--format", fmt, "--no-previews", "-q"])
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "bare" / "previews").exists()
    assert all("preview" not in e for e in json.loads((tmp_path / "bare" / "id_maps.json").read_text())["images"])
    assert sorted(p.name for p in (tmp_path / "bare").rglob("*.png")) == ["img1.png", "img2.png"]


def test_convert_id_maps_writes_previews_unless_told_not_to(tmp_path):
    from typer.testing import CliRunner

    from entitykit.cli import app

    ds, _ = _voronoi_dataset(tmp_path)
    base = ["convert", "entityseg", str(ds), "-o", str(tmp_path / "e.json"), "-q", "-j", "1"]
    r = CliRunner().invoke(app, [*base, "--id-maps", str(tmp_path / "ids")])
    assert r.exit_code == 0, r.output
    _check_previews(tmp_path / "ids", 2)
    (tmp_path / "e.json").unlink()
    r = CliRunner().invoke(app, [*base, "--id-maps", str(tmp_path / "bare"), "--no-previews"])
    assert r.exit_code == 0, r.output
    assert not (tmp_path / "bare" / "previews").exists()
