"""Id maps ↔ RLE ↔ PNG, against pycocotools and panopticapi as the references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from panopticapi.utils import id2rgb, rgb2id
from PIL import Image
from pycocotools import mask as mask_utils

from entitykit.errors import EntityKitError
from entitykit.masks import (
    decode_to_id_map,
    encode_id_map,
    encode_mask,
    read_id_map_png,
    rle_area,
    rle_bbox,
    rle_counts,
    write_id_map_png,
)

id_maps = hnp.arrays(
    dtype=st.sampled_from([np.int32, np.int64, np.uint16]),
    shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24),
    elements=st.integers(0, 6),
)


@settings(max_examples=150, deadline=None)
@given(id_maps)
def test_encode_id_map_matches_pycocotools_per_id(m):
    ids, rles, areas = encode_id_map(m)
    assert ids.tolist() == sorted(set(np.unique(m).tolist()) - {0})
    for k, rle, area in zip(ids.tolist(), rles, areas.tolist()):
        ref = mask_utils.encode(np.asfortranarray((m == k).astype(np.uint8)))
        assert rle["size"] == list(ref["size"])
        assert rle["counts"] == ref["counts"].decode()  # byte-identical compressed counts
        assert area == int((m == k).sum()) == int(mask_utils.area(ref))


@settings(max_examples=100, deadline=None)
@given(id_maps)
def test_decode_round_trip_and_runs(m):
    ids, rles, _ = encode_id_map(m)
    back, overlap = decode_to_id_map(rles, ids, *m.shape)
    assert overlap == 0
    np.testing.assert_array_equal(back, m)
    for k, rle in zip(ids.tolist(), rles):
        runs = rle_counts(rle["counts"])
        flat = (m == k).ravel(order="F").astype(np.int8)
        assert runs.sum() == m.size
        # runs alternate 0s and 1s starting with 0s: rebuild the mask from them
        rebuilt = np.repeat(np.arange(runs.size) % 2, runs)
        np.testing.assert_array_equal(rebuilt, flat)


def test_rle_counts_large_runs():
    m = np.zeros((1000, 1200), np.uint8)
    m[100:900, 5:1100] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    runs = rle_counts(rle["counts"])
    assert runs.sum() == m.size and runs[1] == 800 and runs[0] == 5 * 1000 + 100


def test_decode_counts_overlap_pixels():
    a = np.zeros((4, 5), bool)
    a[:2] = True
    b = np.zeros((4, 5), bool)
    b[1:3, :2] = True
    id_map, overlap = decode_to_id_map([encode_mask(a), encode_mask(b)], [1, 2], 4, 5)
    assert overlap == 2  # row 1, columns 0-1
    assert id_map[1, 0] == 2 and id_map[0, 0] == 1


def test_area_and_bbox_from_pycocotools():
    m = np.zeros((10, 12), np.uint8)
    m[2:5, 3:9] = 1
    rle = encode_mask(m)
    assert rle_area([rle]).tolist() == [18]
    assert rle_bbox([rle]).tolist() == [[3.0, 2.0, 6.0, 3.0]]


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.int64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=16), elements=st.integers(0, 2**24 - 1)))
def test_png_round_trip_rgb(tmp_path_factory, m):
    path = tmp_path_factory.mktemp("png") / "m.png"
    write_id_map_png(path, m, "rgb")
    np.testing.assert_array_equal(read_id_map_png(path), m)
    # and the file is exactly panopticapi's encoding
    np.testing.assert_array_equal(rgb2id(np.array(Image.open(path))), m)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.int64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=16), elements=st.integers(0, 65535)))
def test_png_round_trip_16bit(tmp_path_factory, m):
    path = tmp_path_factory.mktemp("png") / "m.png"
    write_id_map_png(path, m, "png16")
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # 16-bit, never 8-bit
    np.testing.assert_array_equal(read_id_map_png(path), m)


def test_png16_refuses_ids_above_65535(tmp_path):
    with pytest.raises(EntityKitError, match="16-bit"):
        write_id_map_png(tmp_path / "m.png", np.array([[70000]]), "png16")
    assert not (tmp_path / "m.png").exists()


def test_8bit_id_map_is_refused(tmp_path):
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(EntityKitError, match="mode L"):
        read_id_map_png(tmp_path / "m.png")


def test_id2rgb_agrees_with_panopticapi():
    m = np.array([[0, 1, 256, 65536, 2**24 - 1]])
    np.testing.assert_array_equal(rgb2id(id2rgb(m)), m)


def test_decode_triple_overlap_counts_extra_claims_and_later_wins():
    full = np.ones((3, 3), bool)
    col = np.zeros((3, 3), bool)
    col[:, 1] = True
    dot = np.zeros((3, 3), bool)
    dot[1, 1] = True
    id_map, overlap = decode_to_id_map([encode_mask(full), encode_mask(col), encode_mask(dot)], [1, 2, 3], 3, 3)
    assert overlap == 3 + 1  # column claimed twice (3 px), centre three times (+1 more)
    assert id_map.tolist() == [[1, 2, 1], [1, 3, 1], [1, 2, 1]]


def test_decode_accepts_uncompressed_counts_and_checks_size():
    m = np.array([[0, 1], [1, 1]], bool)
    unc = {"size": [2, 2], "counts": [1, 3]}
    assert decode_to_id_map([unc], [5], 2, 2)[0].tolist() == (m * 5).tolist()
    with pytest.raises(ValueError, match="size"):
        decode_to_id_map([unc], [5], 3, 2)
