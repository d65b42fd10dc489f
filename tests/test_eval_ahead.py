"""Reading ahead (entitykit.evaluation._ahead): evaluate reads and scans its two files in background
threads while it imports numpy, takes what they read, and falls back to reading the files itself
(same errors, same order) when a read ahead failed; and the one-pass accumulate agrees with
pycocotools on every max-dets cut."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from _eval_helpers import build, pycoco
from entitykit.errors import DatasetError, PredictionError
from entitykit.evaluation import _ahead, evaluate, formats


def _files(tmp_path, seed=0, n_img=6):
    """Random partitions (vertical bands of random widths, some void) and predictions that are the
    same bands shifted by 0-2 px, split or dropped, with tied scores: IoUs spread over 0.3-1."""
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for i in range(n_img):
        cuts = np.sort(rng.choice(np.arange(2, 46), size=rng.integers(3, 7), replace=False))
        edges = [0, *cuts.tolist(), 48]
        lab = np.zeros((10, 48), int)
        for k in range(len(edges) - 1):
            lab[:, edges[k]:edges[k + 1]] = k + 1 if rng.random() > 0.15 else 0
        gts.append([lab == k for k in np.unique(lab) if k])
        shift = np.roll(lab, int(rng.integers(0, 3)), axis=1)
        if rng.random() < 0.25:
            shift[: int(rng.integers(2, 8))] += 50  # split the bands: more, smaller predictions
        for k in np.unique(shift):
            if k and rng.random() > 0.1:
                preds.append((i, shift == k, float(rng.choice([0.2, 0.5, 0.5, 0.8, 0.9]))))
    gt, res = build(gts, preds)
    g, r = tmp_path / "gt.json", tmp_path / "res.json"
    g.write_text(json.dumps(gt))
    r.write_text(json.dumps(res))
    return gt, res, g, r


def test_importing_the_scorer_imports_no_numpy():
    # evaluate starts reading before it imports numpy: that needs a numpy-free import of the package
    code = ("import sys; import entitykit.cli; from entitykit.evaluation import evaluate, EvalResult; "
            "from entitykit.evaluation.boundary import DEFAULT_DILATION_RATIO; print('numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_files_read_ahead_are_used(tmp_path, monkeypatch):
    gt, res, g, r = _files(tmp_path)
    ref = evaluate(gt, res, overlap="allow")

    def no_read(p):  # the read ahead gives the bytes: the reader must not read the file again
        raise AssertionError(f"read again: {p}")

    monkeypatch.setattr(formats, "_read", no_read)
    got = evaluate(str(g), r, overlap="allow")
    assert np.array_equal(got.stats, ref.stats) and np.array_equal(got.precision, ref.precision)


def test_a_failed_read_ahead_falls_back_to_reading_the_file(tmp_path, monkeypatch):
    gt, res, g, r = _files(tmp_path, seed=1)
    ref = evaluate(gt, res, overlap="allow")

    def fail(p):
        raise MemoryError

    monkeypatch.setattr(_ahead, "read_bytes", fail)
    got = evaluate(g, r, overlap="allow")
    assert np.array_equal(got.stats, ref.stats) and np.array_equal(got.recall, ref.recall)


def test_take_is_once_and_for_its_own_file_and_role(tmp_path):
    _, _, g, r = _files(tmp_path, n_img=1)
    a = _ahead.start(g, "gt")
    assert _ahead.start(tmp_path, "gt") is None and _ahead.start({"images": []}, "gt") is None
    assert a.take(r, "gt") is None and a.take(g, "pred") is None
    raw, scanned = a.take(str(g), "gt")
    assert bytes(raw) == g.read_bytes() and scanned is not None and scanned is not _ahead.NOT_SCANNED
    assert a.take(g, "gt") is None
    h5 = tmp_path / "pack.h5"  # not what a compiled reader scans: not read ahead (formats reads 32 bytes of it)
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(1 << 16))
    assert _ahead.start(h5, "gt").take(h5, "gt") is None
    assert _ahead.start(g, "pred").take(g, "pred") is None  # an object where predictions are read as a list


def test_errors_and_their_order_are_those_of_reading_without_ahead(tmp_path):
    _, _, g, r = _files(tmp_path, n_img=2)
    with pytest.raises(DatasetError):  # the ground truth is named first, as before
        evaluate(tmp_path / "missing.json", tmp_path / "missing_too.json")
    bad = tmp_path / "bad.json"
    bad.write_text('[{"image_id": 1, "segmentation": {"size": [10, 48], "counts": "0"}, "score": 0.5}, ')
    with pytest.raises(PredictionError):
        evaluate(g, bad)


@pytest.mark.parametrize("max_dets", [1, 2, 3, 100])
def test_every_max_dets_cut_is_pycocotools(tmp_path, max_dets):
    # one sort and one pass serve the cuts (1, 10, max_dets): each equals its own pycocotools sort
    gt, res, _, _ = _files(tmp_path, seed=2 + max_dets, n_img=8)
    e = pycoco(gt, res, (min(1, max_dets), min(10, max_dets), max_dets), agnostic=True)
    r = evaluate(gt, res, overlap="allow", max_dets=max_dets)
    assert np.array_equal(r.precision, e.eval["precision"]) and np.array_equal(r.recall, e.eval["recall"])
    assert np.array_equal(r.scores, e.eval["scores"])
    assert r.stats[1] > 0.1 and (max_dets == 1 or r.stats[6] < r.stats[8])  # matches made, the cuts differ


def test_kernel_threads_run_every_chunk_and_raise_the_first_error():
    from entitykit.evaluation import ape

    seen = []
    ape._in_threads(seen.append, range(100), 3)
    assert sorted(seen) == list(range(100))

    def boom(k):
        if k == 5:
            raise ValueError("chunk 5")

    with pytest.raises(ValueError, match="chunk 5"):
        ape._in_threads(boom, range(100), 2)
