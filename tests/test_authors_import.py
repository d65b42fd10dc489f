"""Importing the authors' released checkpoints: against an independent reference of their model.

The checkpoints are built here from the key list of their R-50 model (shared docs,
``authors-r50-keys.tsv``: names and shapes) with random values that keep activations finite (conv
weights scaled by fan-in, positive BN variances, norm weights near 1). The reference below is
written from the published facts only (detectron2 conventions, docs/authors-checkpoints.md): a
caffe-style bottleneck with the stride in the 1×1 conv, frozen BN, BGR input minus the caffe mean,
FPN with nearest ×2 top-down and P6/P7 from C5, FCOS towers with GN, one scale per level, and the
controller whose CoordConv channels are (y, x) after the features. It reads their key names
directly; entitykit reads the imported file. Everything the heads see must agree to float tolerance.
"""

from __future__ import annotations

import shutil

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from entitykit.cli import app
from entitykit.errors import EntityKitError
from entitykit.model import load_checkpoint, prepare_images
from entitykit.model.authors import import_authors_checkpoint, read_detectron2_checkpoint
from entitykit.model.checkpoint import read_checkpoint_config

TSV = Path(__file__).resolve().parents[2] / "shared" / "docs" / "authors-r50-keys.tsv"
pytestmark = [pytest.mark.skipif(not TSV.is_file(), reason="shared docs (authors-r50-keys.tsv) not present"),
              pytest.mark.usefixtures("one_torch_thread")]
BGR_MEAN = torch.tensor([103.530, 116.280, 123.675]).view(1, 3, 1, 1)


# ------------------------------------------------------------------------------------ checkpoints
def _keys(depths=(3, 4, 6, 3), dcn: tuple[int, ...] = ()) -> list[tuple[str, list[int] | None]]:
    """Their (name, shape) list for a ResNet of ``depths`` blocks, from the R-50 list."""
    rows = []
    for line in TSV.read_text().splitlines():
        k, shape = line.split("\t")
        rows.append((k, None if shape == "scalar" else [int(x) for x in shape.split("x")]))
    out = []
    for k, shape in rows:
        m = re.match(r"backbone\.bottom_up\.res(\d)\.(\d+)\.(.*)", k)
        if not m:
            out.append((k, shape))
            continue
        stage, block, rest = int(m.group(1)), int(m.group(2)), m.group(3)
        n = depths[stage - 2]
        if block == 0 or (block == 1 and n > 1):
            blocks = [0] if block == 0 else range(1, n)
            for b in blocks:
                out.append((f"backbone.bottom_up.res{stage}.{b}.{rest}", shape))
                if stage in dcn and rest == "conv2.weight":
                    out.append((f"backbone.bottom_up.res{stage}.{b}.conv2_offset.weight", [27, shape[1], 3, 3]))
                    out.append((f"backbone.bottom_up.res{stage}.{b}.conv2_offset.bias", [27]))
    return out


def authors_state(depths=(3, 4, 6, 3), dcn: tuple[int, ...] = (), seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for k, dims in _keys(depths, dcn):
        if dims is None:
            sd[k] = torch.tensor(0, dtype=torch.long)
        elif "conv2_offset" in k:  # offsets of a pixel or two, modulation around sigmoid(0)
            sd[k] = torch.randn(dims, generator=g) * (0.02 / (dims[1] * 9) ** 0.5 if len(dims) == 4 else 0.5)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(dims, generator=g) * 0.5 + 0.75
        elif k.endswith("running_mean"):
            sd[k] = torch.randn(dims, generator=g) * 0.1
        elif len(dims) == 4:
            sd[k] = torch.randn(dims, generator=g) * (1.0 / (dims[1] * dims[2] * dims[3])) ** 0.5
        elif k.endswith("sizes_of_interest"):
            sd[k] = torch.tensor([64.0, 128.0, 256.0, 512.0, 1024.0])
        elif k.endswith(".scale"):
            sd[k] = 1 + 0.3 * torch.randn(dims, generator=g)
        elif k.endswith("weight"):
            sd[k] = 1 + 0.1 * torch.randn(dims, generator=g)
        else:
            sd[k] = 0.1 * torch.randn(dims, generator=g)
    return sd


@pytest.fixture(scope="module")
def r50(tmp_path_factory):
    d = tmp_path_factory.mktemp("r50")
    state = authors_state()
    torch.save({"model": state, "iteration": 89999}, d / "R_50_1x.pth")
    report = import_authors_checkpoint(d / "R_50_1x.pth", d / "r50.safetensors")
    yield state, report, d
    shutil.rmtree(d, ignore_errors=True)  # ~300 MB: not kept past this module (CI's disk is small)


# -------------------------------------------------------------------------------------- reference
def _conv(x, sd, p, stride=1, padding=0):
    return F.conv2d(x, sd[p + ".weight"], sd.get(p + ".bias"), stride, padding)


def _frozen_bn(x, sd, p):
    scale = sd[p + ".weight"] / torch.sqrt(sd[p + ".running_var"] + 1e-5)
    shift = sd[p + ".bias"] - sd[p + ".running_mean"] * scale
    return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)


def _gn(x, sd, p):
    return F.group_norm(x, 32, sd[p + ".weight"], sd[p + ".bias"], 1e-5)


def _conv2(x, sd, p, stride):
    if p + ".conv2_offset.weight" not in sd:
        return _conv(x, sd, p + ".conv2", stride, 1)
    from torchvision.ops import deform_conv2d

    o = _conv(x, sd, p + ".conv2_offset", stride, 1)
    off_x, off_y, mask = torch.chunk(o, 3, dim=1)  # detectron2's layout: offsets then modulation
    return deform_conv2d(x, torch.cat((off_x, off_y), 1), sd[p + ".conv2.weight"], stride=stride, padding=1,
                         mask=mask.sigmoid())


def _bottleneck(x, sd, p, stride):
    """Caffe (MSRA) style: the stride sits in the first 1×1 conv."""
    out = F.relu(_frozen_bn(_conv(x, sd, p + ".conv1", stride), sd, p + ".conv1.norm"))
    out = F.relu(_frozen_bn(_conv2(out, sd, p, 1), sd, p + ".conv2.norm"))
    out = _frozen_bn(_conv(out, sd, p + ".conv3"), sd, p + ".conv3.norm")
    short = _frozen_bn(_conv(x, sd, p + ".shortcut", stride), sd, p + ".shortcut.norm") \
        if p + ".shortcut.weight" in sd else x
    return F.relu(out + short)


def reference(sd: dict[str, torch.Tensor], bgr: torch.Tensor):
    """Their R-50/R-101 model up to the heads: (P3..P7, cls, reg, ctr per level, controller params)."""
    x = bgr - BGR_MEAN
    x = F.relu(_frozen_bn(_conv(x, sd, "backbone.bottom_up.stem.conv1", 2, 3), sd, "backbone.bottom_up.stem.conv1.norm"))
    x = F.max_pool2d(x, 3, 2, 1)
    c = {}
    for stage in (2, 3, 4, 5):
        n = len({k.split(".")[3] for k in sd if k.startswith(f"backbone.bottom_up.res{stage}.")})
        for b in range(n):
            x = _bottleneck(x, sd, f"backbone.bottom_up.res{stage}.{b}", 2 if (b == 0 and stage > 2) else 1)
        c[stage] = x
    feats = fpn_reference(sd, c, p6_from_c5=True)
    return (feats, *head_reference(sd, feats))


def fpn_reference(sd, c: dict[int, torch.Tensor], p6_from_c5: bool) -> list[torch.Tensor]:
    """P3..P7 from C3..C5: lateral 1×1, nearest ×2 top-down sum, output 3×3; P6 from C5 (ResNets)
    or from P5 (Swin), P7 from ReLU(P6)."""
    prev = _conv(c[5], sd, "backbone.fpn_lateral5")
    p = {5: _conv(prev, sd, "backbone.fpn_output5", 1, 1)}
    for s in (4, 3):
        prev = _conv(c[s], sd, f"backbone.fpn_lateral{s}") + F.interpolate(prev, scale_factor=2.0, mode="nearest")
        p[s] = _conv(prev, sd, f"backbone.fpn_output{s}", 1, 1)
    p[6] = _conv(c[5] if p6_from_c5 else p[5], sd, "backbone.top_block.p6", 2, 1)
    p[7] = _conv(F.relu(p[6]), sd, "backbone.top_block.p7", 2, 1)
    return [p[i] for i in (3, 4, 5, 6, 7)]


def head_reference(sd, feats: list[torch.Tensor]):
    """Their FCOS towers (conv + GN 32 + ReLU ×4), the three outputs with one scale per level, and
    the controller (CoordConv channels y then x after the features, 3 × conv + GN + ReLU, out conv)."""
    cls, reg, ctr, params = [], [], [], []
    h = "det_head.fcos_head"
    for level, f in enumerate(feats):
        t_cls, t_box = f, f
        for i in (0, 3, 6, 9):
            t_cls = F.relu(_gn(_conv(t_cls, sd, f"{h}.cls_tower.{i}", 1, 1), sd, f"{h}.cls_tower.{i + 1}"))
            t_box = F.relu(_gn(_conv(t_box, sd, f"{h}.bbox_tower.{i}", 1, 1), sd, f"{h}.bbox_tower.{i + 1}"))
        cls.append(_conv(t_cls, sd, f"{h}.cls_logits", 1, 1))
        reg.append(F.relu(sd[f"{h}.scales.{level}.scale"] * _conv(t_box, sd, f"{h}.bbox_pred", 1, 1)))
        ctr.append(_conv(t_box, sd, f"{h}.ctrness", 1, 1))
        hh, ww = t_box.shape[-2:]
        y = (-1.0 + 2.0 * torch.arange(hh) / (hh - 1)).view(1, 1, hh, 1).expand(1, 1, hh, ww)
        xx = (-1.0 + 2.0 * torch.arange(ww) / (ww - 1)).view(1, 1, 1, ww).expand(1, 1, hh, ww)
        k = torch.cat((t_box, y, xx), 1)  # features, then y (rows), then x
        for j in (1, 2, 3):
            k = F.relu(_gn(_conv(k, sd, f"controller.kernel_head.kernel_head_head_{j}", 1, 1), sd,
                           f"controller.kernel_head.kernel_head_head_{j}.norm"))
        params.append(_conv(k, sd, "controller.out_conv", 1, 1))
    return cls, reg, ctr, params


def _entitykit(model, rgb: torch.Tensor):
    batch, _ = prepare_images([rgb], model.cfg)
    with torch.no_grad():
        feats = list(model.backbone(batch).values())
        cls, reg, ctr, towers = model.head(feats)
        params = model.controller(towers)
    return feats, cls, reg, ctr, params


def _assert_same(got, want, what):
    for level, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape, (what, level, a.shape, b.shape)
        scale = b.abs().max().item() or 1.0
        err = (a - b).abs().max().item() / scale
        assert err < 2e-4, f"{what} P{level + 3}: relative error {err:.2e}"
        assert b.std() > 0, f"{what} P{level + 3} is constant: the check would be degenerate"


def _photo(h=256, w=320) -> torch.Tensor:
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (h, w, 3)).astype(np.float32)
    img[: h // 2] = img[: h // 2] * 0.3 + np.linspace(0, 180, w)[None, :, None]  # some structure
    return torch.from_numpy(img).permute(2, 0, 1).clamp(0, 255).round()


# ------------------------------------------------------------------------------------------ tests
def test_r50_imported_model_computes_their_features_heads_and_controller(r50):
    state, report, d = r50
    assert report.architecture == "R-50"
    cfg, meta = read_checkpoint_config(report.output)
    assert cfg.stride_in_1x1 and cfg.pixel_std == (1.0, 1.0, 1.0) and not cfg.mask_rescore
    assert meta["architecture"] == "R-50" and len(meta["source_sha256"]) == 64
    model = load_checkpoint(report.output)
    rgb = _photo()
    want = reference({k: v.float() for k, v in state.items()}, rgb.flip(0)[None])
    got = _entitykit(model, rgb)
    for name, g, w in zip(("P", "cls", "reg", "ctr", "controller"), got, want):
        _assert_same(g, w, name)


@pytest.mark.parametrize("mistake", ["rgb", "stride_in_3x3", "coords_xy", "one_scale"])
def test_the_reference_tells_each_conversion_mistake_apart(r50, mistake):
    """Each value change of the import matters: undoing one breaks the agreement."""
    state, report, _ = r50
    model = load_checkpoint(report.output)
    sd = model.state_dict()
    if mistake == "rgb":
        model.backbone.body.conv1.weight.data = sd["backbone.body.conv1.weight"].flip(1)
    elif mistake == "stride_in_3x3":
        model = load_checkpoint(report.output)
        for layer in (model.backbone.body.layer2, model.backbone.body.layer3, model.backbone.body.layer4):
            layer[0].conv1.stride, layer[0].conv2.stride = (1, 1), (2, 2)
    elif mistake == "coords_xy":
        w = model.controller.convs[0][0].weight.data
        w[:, [-2, -1]] = w[:, [-1, -2]].clone()
    else:
        model.head.scales.data[:] = model.head.scales.data[0]
    rgb = _photo()
    want = reference({k: v.float() for k, v in state.items()}, rgb.flip(0)[None])
    got = _entitykit(model, rgb)
    with pytest.raises(AssertionError):
        for name, g, w in zip(("P", "cls", "reg", "ctr", "controller"), got, want):
            _assert_same(g, w, name)


@pytest.mark.parametrize("depths,dcn,arch", [((3, 4, 23, 3), (), "R-101"), ((3, 4, 23, 3), (3, 4, 5), "R-101-DCNv2")])
def test_r101_and_dcnv2_match_the_reference(tmp_path, depths, dcn, arch):
    state = authors_state(depths, dcn, seed=1)
    torch.save({"model": state}, tmp_path / "in.pth")
    report = import_authors_checkpoint(tmp_path / "in.pth", tmp_path / "out.safetensors")
    assert report.architecture == arch
    assert report.config.deformable_stages == dcn
    model = load_checkpoint(report.output)
    rgb = _photo(192, 224)
    want = reference({k: v.float() for k, v in state.items()}, rgb.flip(0)[None])
    got = _entitykit(model, rgb)
    for name, g, w in zip(("P", "cls", "reg", "ctr", "controller"), got, want):
        _assert_same(g, w, name)


def test_missing_extra_and_misshaped_keys_are_named(tmp_path):
    base = authors_state()
    cases = {
        "missing": ({k: v for k, v in base.items() if k != "backbone.bottom_up.res3.1.conv2.weight"},
                    "backbone.bottom_up.res3.1.conv2.weight"),
        "extra": ({**base, "det_head.fcos_head.bogus.weight": torch.zeros(3)}, "det_head.fcos_head.bogus.weight"),
        "shape": ({**base, "controller.out_conv.weight": torch.zeros(170, 256, 3, 3)}, "controller.out_conv.weight"),
    }
    for name, (state, key) in cases.items():
        torch.save({"model": state}, tmp_path / f"{name}.pth")
        with pytest.raises(EntityKitError) as e:
            import_authors_checkpoint(tmp_path / f"{name}.pth", tmp_path / f"{name}.safetensors")
        assert key in str(e.value) and f"{name}.pth" in str(e.value), str(e.value)
        assert not (tmp_path / f"{name}.safetensors").exists()
        (tmp_path / f"{name}.pth").unlink()  # ~150 MB each: CI's disk is small


@pytest.mark.parametrize("dcn", [(), (3, 4, 5)])
def test_every_renamed_tensor_names_back_to_the_authors_key(dcn):
    """authors_name inverts the rename for every tensor (so errors speak the checkpoint's names)."""
    from entitykit.model.authors import authors_config, authors_name, authors_state_to_entitykit

    state = authors_state((3, 4, 6, 3), dcn)
    _, cfg = authors_config(state)
    renamed, dropped = authors_state_to_entitykit(state, cfg)
    back = {authors_name(k) for k in renamed}
    assert back - {"det_head.fcos_head.scales.{0..4}.scale"} == set(state) - set(dropped)


def test_unsupported_architectures_are_named(tmp_path):
    mit = {"backbone.bottom_up.patch_embed1.proj.weight": torch.zeros(32, 3, 7, 7),
           "controller.kernel_head.kernel_head_head_1.weight": torch.zeros(1)}
    torch.save({"model": mit}, tmp_path / "mit.pth")
    with pytest.raises(EntityKitError, match="MiT"):
        import_authors_checkpoint(tmp_path / "mit.pth", tmp_path / "mit.safetensors")
    r34 = authors_state(depths=(3, 4, 5, 3))
    torch.save({"model": r34}, tmp_path / "r.pth")
    with pytest.raises(EntityKitError, match=r"\(3, 4, 5, 3\)"):
        import_authors_checkpoint(tmp_path / "r.pth", tmp_path / "r.safetensors")
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(EntityKitError, match="not an Entity checkpoint"):
        import_authors_checkpoint(tmp_path / "other.pth", tmp_path / "o.safetensors")


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/entitykit-pickle-ran",))


def test_pickled_code_is_refused_not_run(tmp_path):
    import pickle

    marker = Path("/tmp/entitykit-pickle-ran")
    marker.unlink(missing_ok=True)
    torch.save({"model": {"a": torch.zeros(1)}, "evil": _Payload()}, tmp_path / "evil.pth")
    with open(tmp_path / "evil.pkl", "wb") as f:  # a plain pickle, as detectron2's model-zoo .pkl files
        pickle.dump({"model": {"a": np.zeros(2)}, "evil": _Payload()}, f)
    for name in ("evil.pth", "evil.pkl"):
        with pytest.raises(EntityKitError, match=r"refused: the file asks to import (posix|nt|os)\.system"):
            read_detectron2_checkpoint(tmp_path / name)
    assert not marker.exists()


def test_numpy_arrays_and_scalars_of_older_detectron2_files_are_read(tmp_path):
    import pickle

    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array(7), "s": np.float32(2.5)}
    torch.save({"model": state, "__author__": "x"}, tmp_path / "np.pth")
    with open(tmp_path / "np.pkl", "wb") as f:
        pickle.dump({"model": state}, f, protocol=2)
    torch.save({"model": {k: torch.as_tensor(v) for k, v in state.items()}}, tmp_path / "legacy.pth",
               _use_new_zipfile_serialization=False)
    for name in ("np.pth", "np.pkl", "legacy.pth"):
        got = read_detectron2_checkpoint(tmp_path / name)
        assert torch.equal(got["w"], torch.arange(6.0).view(2, 3)), name
        assert got["n"].shape == () and int(got["n"]) == 7, name  # 0-d stays 0-d (BN step counters)
        assert got["s"].shape == () and float(got["s"]) == 2.5, name


def test_unreadable_files_say_what_is_wrong(tmp_path, r50):
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "empty.pth").write_bytes(b"")
    data = (r50[2] / "R_50_1x.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    for name, words in (("notes.txt", "not a PyTorch checkpoint"), ("empty.pth", "empty"),
                        ("cut.pth", "truncated or corrupt")):
        with pytest.raises(EntityKitError, match=words) as e:
            read_detectron2_checkpoint(tmp_path / name)
        assert "weights_only" not in str(e.value)  # torch's advice to switch the safety off is not repeated


def test_every_kind_of_problem_is_listed_at_once(tmp_path):
    state = authors_state()
    state["det_head.fcos_head.bogus.weight"] = torch.zeros(2)
    del state["backbone.bottom_up.res3.1.conv2.weight"]
    state["controller.out_conv.weight"] = torch.zeros(170, 256, 3, 3)
    torch.save({"model": state}, tmp_path / "many.pth")
    with pytest.raises(EntityKitError) as e:
        import_authors_checkpoint(tmp_path / "many.pth", tmp_path / "many.safetensors")
    text = str(e.value)
    assert "R-50" in text and "unknown 1: det_head.fcos_head.bogus.weight" in text
    assert "missing 1: backbone.bottom_up.res3.1.conv2.weight" in text
    assert "controller.out_conv.weight (170, 256, 3, 3) vs (169, 256, 3, 3)" in text


def test_cli_import_then_predict_on_a_real_photo(r50, tmp_path):
    """The imported model runs `predict` on a real photo (skimage.data) and `eval` scores its output."""
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    _, _, d = r50
    runner = CliRunner()
    out = tmp_path / "r50.safetensors"
    res = runner.invoke(app, ["import-weights", str(d / "R_50_1x.pth"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "R-50" in res.output
    res = runner.invoke(app, ["import-weights", str(d / "R_50_1x.pth"), "-o", str(out)])
    assert res.exit_code == 1 and "exists" in res.output  # refused without --overwrite
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(data.coffee()).resize((320, 213)).save(photos / "coffee.jpg")
    res = runner.invoke(app, ["predict", str(photos), "-c", str(out), "-o", str(tmp_path / "pred"),
                              "--max-size", "320", "-q"])
    assert res.exit_code == 0, res.output
    import json

    pred = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    id_maps = list((tmp_path / "pred").rglob("*.png"))
    assert pred and id_maps, res.output


def test_deformable_conv_exports_to_onnx_deformconv():
    """DCNv2 layers export as ONNX DeformConv (opset 19) with torchvision's offset layout."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import io

    from entitykit.model.backbone import ModulatedDeformConv
    from entitykit.model.export import _register_deform_conv

    torch.manual_seed(0)
    layer = ModulatedDeformConv(torch.nn.Conv2d(4, 5, 3, padding=1, bias=False))
    torch.nn.init.normal_(layer.offset.weight, std=0.5)  # offsets of a pixel or more: the layout matters
    torch.nn.init.normal_(layer.offset.bias, std=1.0)
    x = torch.randn(1, 4, 9, 11)
    _register_deform_conv()
    f = io.BytesIO()
    torch.onnx.export(layer, (x,), f, opset_version=19, dynamo=False)
    session = ort.InferenceSession(f.getvalue())
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    want = layer(x).detach().numpy()
    assert np.abs(got - want).max() < 1e-5 * np.abs(want).max()


def test_imported_model_fine_tunes_with_train_init(r50, tmp_path, one_torch_thread):
    from entitykit.convert import convert_coco_panoptic
    from entitykit.synth import write_synthetic_panoptic
    from entitykit.train import TrainConfig, train

    _, report, _ = r50
    p = write_synthetic_panoptic(tmp_path / "data", 2, height=64, width=64, segments=4, seed=2)
    convert_coco_panoptic(p, image_root=tmp_path / "data" / "images").save(tmp_path / "train.json")
    # a run config that names ImageNet weights (as the paper's example configs do) still starts from --init
    run = train(TrainConfig(train=[str(tmp_path / "train.json")], output=str(tmp_path / "run"), init=str(report.output),
                            max_iter=1, batch_size=1, min_sizes=[64], max_size=64, checkpoint_period=1, log_period=1,
                            model={"pretrained": "ResNet50_Weights.IMAGENET1K_V1"}),
                progress=False)
    cfg, _ = read_checkpoint_config(run.final_checkpoint)
    assert run.iterations == 1 and cfg.stride_in_1x1 and cfg.pixel_std == (1.0, 1.0, 1.0)
    # an override that changes the architecture is named, not blamed on the checkpoint
    with pytest.raises(EntityKitError, match="model.fpn_channels change the architecture"):
        load_checkpoint(report.output, fpn_channels=64)
    # the authors' .pth where a checkpoint is expected: the error says to import it
    with pytest.raises(EntityKitError, match="entitykit import-weights R_50_1x.pth"):
        load_checkpoint(r50[2] / "R_50_1x.pth")
