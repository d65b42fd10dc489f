"""A compiled reader for the common shape of a COCO results file (numba).

``[{"image_id": <int>, "segmentation": {"size": [h, w], "counts": "<str>"}, "score": <number>,
...}, ...]`` is read straight into arrays: no Python object per prediction, and the RLE strings
land in one byte buffer (what the kernel reads). Other keys (category_id, bbox, ...) are checked
for JSON syntax and skipped. Anything else — string image ids, list counts, polygons, a missing
or duplicated key, NaN, an escape other than ``\\\\`` or ``\\/`` in counts, any syntax error —
makes it give up (returns None) and the caller reads the file with msgspec / json, which also
produce the error messages. Scores are converted from their exact JSON text by numpy (correctly
rounded, like ``float()``), so the values are the same as json's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _kernel  # noqa: F401  (first: numba's start-up trim happens there)
from numba import njit  # noqa: E402

SCORE_WIDTH = 40

_WS = np.zeros(256, np.bool_)
for _c in b" \t\n\r":
    _WS[_c] = True


@njit(cache=True, nogil=True)
def _ws(b, i, n):
    while i < n and (b[i] == 32 or b[i] == 10 or b[i] == 13 or b[i] == 9):
        i += 1
    return i


@njit(cache=True, nogil=True)
def _skip_string(b, i, n):
    """b[i] == '"'; index after the closing quote, or -1 (control character, bad escape)."""
    i += 1
    while i < n:
        c = b[i]
        if c == 34:
            return i + 1
        if c < 32:
            return -1
        if c == 92:
            if i + 1 >= n:
                return -1
            e = b[i + 1]
            if e == 117:  # \uXXXX
                if i + 5 >= n:
                    return -1
                for k in range(2, 6):
                    h = b[i + k]
                    if not ((48 <= h <= 57) or (65 <= h <= 70) or (97 <= h <= 102)):
                        return -1
                i += 6
                continue
            if e == 34 or e == 92 or e == 47 or e == 98 or e == 102 or e == 110 or e == 114 or e == 116:
                i += 2
                continue
            return -1
        i += 1
    return -1


@njit(cache=True, nogil=True)
def _skip_number(b, i, n):
    """JSON number grammar; index after it, or -1."""
    if i < n and b[i] == 45:
        i += 1
    if i >= n:
        return -1
    if b[i] == 48:
        i += 1
    elif 49 <= b[i] <= 57:
        while i < n and 48 <= b[i] <= 57:
            i += 1
    else:
        return -1
    if i < n and b[i] == 46:
        i += 1
        if i >= n or not (48 <= b[i] <= 57):
            return -1
        while i < n and 48 <= b[i] <= 57:
            i += 1
    if i < n and (b[i] == 101 or b[i] == 69):
        i += 1
        if i < n and (b[i] == 43 or b[i] == 45):
            i += 1
        if i >= n or not (48 <= b[i] <= 57):
            return -1
        while i < n and 48 <= b[i] <= 57:
            i += 1
    return i


@njit(cache=True, nogil=True)
def _literal(b, i, n, w0, w1, w2, w3, w4, ln):
    if i + ln > n:
        return -1
    if b[i] != w0 or b[i + 1] != w1 or b[i + 2] != w2 or b[i + 3] != w3:
        return -1
    if ln == 5 and b[i + 4] != w4:
        return -1
    return i + ln


@njit(cache=True, nogil=True)
def _skip_value(b, i, n):
    """Any JSON value (validated); index after it, or -1."""
    stack = np.empty(256, np.uint8)  # 0 array, 1 object
    sp = 0
    while True:
        i = _ws(b, i, n)
        if i >= n:
            return -1
        c = b[i]
        if c == 123 or c == 91:  # { [
            j = _ws(b, i + 1, n)
            if j >= n:
                return -1
            if (c == 123 and b[j] == 125) or (c == 91 and b[j] == 93):
                i = j + 1
            else:
                if sp >= 256:
                    return -1
                stack[sp] = 1 if c == 123 else 0
                sp += 1
                if c == 123:
                    if b[j] != 34:
                        return -1
                    j = _skip_string(b, j, n)
                    if j < 0:
                        return -1
                    j = _ws(b, j, n)
                    if j >= n or b[j] != 58:
                        return -1
                    i = j + 1
                else:
                    i = j
                continue
        elif c == 34:
            i = _skip_string(b, i, n)
        elif c == 45 or 48 <= c <= 57:
            i = _skip_number(b, i, n)
        elif c == 116:
            i = _literal(b, i, n, 116, 114, 117, 101, 0, 4)
        elif c == 102:
            i = _literal(b, i, n, 102, 97, 108, 115, 101, 5)
        elif c == 110:
            i = _literal(b, i, n, 110, 117, 108, 108, 0, 4)
        else:
            return -1
        if i < 0:
            return -1
        # a value ended: close containers or move to the next element
        while True:
            if sp == 0:
                return i
            i = _ws(b, i, n)
            if i >= n:
                return -1
            c = b[i]
            if c == 44:  # ,
                i += 1
                if stack[sp - 1] == 1:
                    i = _ws(b, i, n)
                    if i >= n or b[i] != 34:
                        return -1
                    i = _skip_string(b, i, n)
                    if i < 0:
                        return -1
                    i = _ws(b, i, n)
                    if i >= n or b[i] != 58:
                        return -1
                    i += 1
                break
            if (c == 93 and stack[sp - 1] == 0) or (c == 125 and stack[sp - 1] == 1):
                sp -= 1
                i += 1
                continue
            return -1


@njit(cache=True, nogil=True)
def _int(b, i, n):
    """A JSON integer (no fraction / exponent); (value, index after) or (0, -1)."""
    neg = False
    if i < n and b[i] == 45:
        neg = True
        i += 1
    if i >= n or not (48 <= b[i] <= 57):
        return 0, -1
    if b[i] == 48 and i + 1 < n and 48 <= b[i + 1] <= 57:
        return 0, -1
    v = np.int64(0)
    k = 0
    while i < n and 48 <= b[i] <= 57:
        v = v * 10 + (b[i] - 48)
        i += 1
        k += 1
        if k > 17:
            return 0, -1
    if i < n and (b[i] == 46 or b[i] == 101 or b[i] == 69):
        return 0, -1
    return (-v if neg else v), i


@njit(cache=True, nogil=True)
def _key_is(b, s, e, word):
    if e - s != word.shape[0]:
        return False
    for k in range(e - s):
        if b[s + k] != word[k]:
            return False
    return True


@njit(cache=True, nogil=True)
def scan(b, k_image_id, k_segmentation, k_score, k_size, k_counts):
    """Returns (n, img_id, h, w, score_text, score_len, cbuf, coff) or n = -1 (give up)."""
    n = b.shape[0]
    cap = 1024
    img = np.empty(cap, np.int64)
    hh = np.empty(cap, np.int64)
    ww = np.empty(cap, np.int64)
    stxt = np.zeros((cap, SCORE_WIDTH), np.uint8)
    slen = np.empty(cap, np.int64)
    coff = np.empty(cap + 1, np.int64)
    cbuf = np.empty(n, np.uint8)
    cpos = 0
    coff[0] = 0
    cnt = 0
    fail = (-1, img, hh, ww, stxt, slen, cbuf, coff)
    i = _ws(b, 0, n)
    if i >= n or b[i] != 91:
        return fail
    i = _ws(b, i + 1, n)
    if i < n and b[i] == 93:
        i = _ws(b, i + 1, n)
        if i != n:
            return fail
        return (0, img, hh, ww, stxt, slen, cbuf, coff)
    while True:
        if i >= n or b[i] != 123:
            return fail
        if cnt == cap:
            cap *= 2
            img2 = np.empty(cap, np.int64)
            img2[:cnt] = img[:cnt]
            img = img2
            h2 = np.empty(cap, np.int64)
            h2[:cnt] = hh[:cnt]
            hh = h2
            w2 = np.empty(cap, np.int64)
            w2[:cnt] = ww[:cnt]
            ww = w2
            s2 = np.zeros((cap, SCORE_WIDTH), np.uint8)
            s2[:cnt] = stxt[:cnt]
            stxt = s2
            l2 = np.empty(cap, np.int64)
            l2[:cnt] = slen[:cnt]
            slen = l2
            o2 = np.empty(cap + 1, np.int64)
            o2[: cnt + 1] = coff[: cnt + 1]
            coff = o2
        have_img = False
        have_seg = False
        have_score = False
        i = _ws(b, i + 1, n)
        if i < n and b[i] == 125:
            return fail  # {} lacks the keys
        while True:
            if i >= n or b[i] != 34:
                return fail
            ks = i + 1
            j = ks
            while j < n and b[j] != 34 and b[j] != 92:
                j += 1
            if j >= n or b[j] == 92:
                return fail  # escaped keys: let json decide
            ke = j
            i = _ws(b, j + 1, n)
            if i >= n or b[i] != 58:
                return fail
            i = _ws(b, i + 1, n)
            if _key_is(b, ks, ke, k_image_id):
                if have_img:
                    return fail
                v, i = _int(b, i, n)
                if i < 0:
                    return fail
                img[cnt] = v
                have_img = True
            elif _key_is(b, ks, ke, k_score):
                if have_score:
                    return fail
                j = _skip_number(b, i, n)
                if j < 0 or j - i > SCORE_WIDTH:
                    return fail
                for k in range(j - i):
                    stxt[cnt, k] = b[i + k]
                for k in range(j - i, SCORE_WIDTH):
                    stxt[cnt, k] = 0
                slen[cnt] = j - i
                i = j
                have_score = True
            elif _key_is(b, ks, ke, k_segmentation):
                if have_seg or i >= n or b[i] != 123:
                    return fail
                have_size = False
                have_counts = False
                i = _ws(b, i + 1, n)
                while True:
                    if i >= n or b[i] != 34:
                        return fail
                    ks2 = i + 1
                    j = ks2
                    while j < n and b[j] != 34 and b[j] != 92:
                        j += 1
                    if j >= n or b[j] == 92:
                        return fail
                    ke2 = j
                    i = _ws(b, j + 1, n)
                    if i >= n or b[i] != 58:
                        return fail
                    i = _ws(b, i + 1, n)
                    if _key_is(b, ks2, ke2, k_size):
                        if have_size or i >= n or b[i] != 91:
                            return fail
                        i = _ws(b, i + 1, n)
                        v, i = _int(b, i, n)
                        if i < 0:
                            return fail
                        hh[cnt] = v
                        i = _ws(b, i, n)
                        if i >= n or b[i] != 44:
                            return fail
                        i = _ws(b, i + 1, n)
                        v, i = _int(b, i, n)
                        if i < 0:
                            return fail
                        ww[cnt] = v
                        i = _ws(b, i, n)
                        if i >= n or b[i] != 93:
                            return fail
                        i += 1
                        have_size = True
                    elif _key_is(b, ks2, ke2, k_counts):
                        if have_counts or i >= n or b[i] != 34:
                            return fail
                        i += 1
                        while True:
                            if i >= n:
                                return fail
                            c = b[i]
                            if c == 34:
                                i += 1
                                break
                            if c == 92:
                                if i + 1 >= n:
                                    return fail
                                e = b[i + 1]
                                if e != 92 and e != 47:
                                    return fail
                                cbuf[cpos] = e
                                cpos += 1
                                i += 2
                                continue
                            if c < 32 or c > 126:
                                return fail
                            cbuf[cpos] = c
                            cpos += 1
                            i += 1
                        have_counts = True
                    else:
                        i = _skip_value(b, i, n)
                        if i < 0:
                            return fail
                    i = _ws(b, i, n)
                    if i < n and b[i] == 44:
                        i = _ws(b, i + 1, n)
                        continue
                    if i < n and b[i] == 125:
                        i += 1
                        break
                    return fail
                if not (have_size and have_counts):
                    return fail
                have_seg = True
            else:
                i = _skip_value(b, i, n)
                if i < 0:
                    return fail
            i = _ws(b, i, n)
            if i < n and b[i] == 44:
                i = _ws(b, i + 1, n)
                continue
            if i < n and b[i] == 125:
                i += 1
                break
            return fail
        if not (have_img and have_seg and have_score):
            return fail
        cnt += 1
        coff[cnt] = cpos
        i = _ws(b, i, n)
        if i < n and b[i] == 44:
            i = _ws(b, i + 1, n)
            continue
        if i < n and b[i] == 93:
            i = _ws(b, i + 1, n)
            if i != n:
                return fail
            break
        return fail
    return (cnt, img, hh, ww, stxt, slen, cbuf, coff)


@dataclass
class ResultColumns:
    """A COCO results file as columns (file order)."""

    image_id: np.ndarray  # int64
    score: np.ndarray  # float64
    size: np.ndarray  # (n, 2) int64
    buf: np.ndarray  # uint8: every counts string, concatenated
    off: np.ndarray  # (n + 1,) int64 offsets into buf

    def __len__(self) -> int:
        return int(self.image_id.shape[0])


_KEYS = tuple(np.frombuffer(k, np.uint8) for k in (b"image_id", b"segmentation", b"score", b"size", b"counts"))


def coco_results(raw: bytes | None) -> ResultColumns | None:
    if raw is None:
        return None
    b = np.frombuffer(raw, np.uint8)
    n, img, hh, ww, stxt, slen, cbuf, coff = scan(b, *_KEYS)
    if n < 0:
        return None
    txt = np.ascontiguousarray(stxt[:n]).view(f"S{SCORE_WIDTH}").ravel()
    try:
        score = txt.astype(np.float64)
    except ValueError:
        return None
    return ResultColumns(img[:n].copy(), score, np.stack([hh[:n], ww[:n]], axis=1), cbuf[: coff[n]], coff[: n + 1].copy())


# ---------------------------------------------------------------------------------------------
# entity dataset annotations (the "annotations" array of an entity / COCO instances JSON)


@njit(cache=True, nogil=True)
def _segmentation(b, i, n, k_size, k_counts, cbuf, cpos):
    """{"size": [h, w], "counts": "..."} at b[i]; (index after, h, w, new cpos) or index -1."""
    if i >= n or b[i] != 123:
        return -1, 0, 0, cpos
    have_size = False
    have_counts = False
    h = np.int64(0)
    w = np.int64(0)
    i = _ws(b, i + 1, n)
    while True:
        if i >= n or b[i] != 34:
            return -1, 0, 0, cpos
        ks = i + 1
        j = ks
        while j < n and b[j] != 34 and b[j] != 92:
            j += 1
        if j >= n or b[j] == 92:
            return -1, 0, 0, cpos
        ke = j
        i = _ws(b, j + 1, n)
        if i >= n or b[i] != 58:
            return -1, 0, 0, cpos
        i = _ws(b, i + 1, n)
        if _key_is(b, ks, ke, k_size):
            if have_size or i >= n or b[i] != 91:
                return -1, 0, 0, cpos
            i = _ws(b, i + 1, n)
            h, i = _int(b, i, n)
            if i < 0:
                return -1, 0, 0, cpos
            i = _ws(b, i, n)
            if i >= n or b[i] != 44:
                return -1, 0, 0, cpos
            i = _ws(b, i + 1, n)
            w, i = _int(b, i, n)
            if i < 0:
                return -1, 0, 0, cpos
            i = _ws(b, i, n)
            if i >= n or b[i] != 93:
                return -1, 0, 0, cpos
            i += 1
            have_size = True
        elif _key_is(b, ks, ke, k_counts):
            if have_counts or i >= n or b[i] != 34:
                return -1, 0, 0, cpos
            i += 1
            while True:
                if i >= n:
                    return -1, 0, 0, cpos
                c = b[i]
                if c == 34:
                    i += 1
                    break
                if c == 92:
                    if i + 1 >= n:
                        return -1, 0, 0, cpos
                    e = b[i + 1]
                    if e != 92 and e != 47:
                        return -1, 0, 0, cpos
                    cbuf[cpos] = e
                    cpos += 1
                    i += 2
                    continue
                if c < 32 or c > 126:
                    return -1, 0, 0, cpos
                cbuf[cpos] = c
                cpos += 1
                i += 1
            have_counts = True
        else:
            i = _skip_value(b, i, n)
            if i < 0:
                return -1, 0, 0, cpos
        i = _ws(b, i, n)
        if i < n and b[i] == 44:
            i = _ws(b, i + 1, n)
            continue
        if i < n and b[i] == 125:
            i += 1
            break
        return -1, 0, 0, cpos
    if not (have_size and have_counts):
        return -1, 0, 0, cpos
    return i, h, w, cpos


@njit(cache=True, nogil=True)
def scan_annotations(b, k_id, k_image_id, k_segmentation, k_area, k_iscrowd, k_size, k_counts):
    """The annotations array: (n, id, image_id, h, w, area_text, crowd, cbuf, coff) or n = -1."""
    n = b.shape[0]
    cap = 1024
    aid = np.empty(cap, np.int64)
    img = np.empty(cap, np.int64)
    hh = np.empty(cap, np.int64)
    ww = np.empty(cap, np.int64)
    atxt = np.zeros((cap, SCORE_WIDTH), np.uint8)
    crowd = np.zeros(cap, np.uint8)
    coff = np.empty(cap + 1, np.int64)
    cbuf = np.empty(n, np.uint8)
    cpos = 0
    coff[0] = 0
    cnt = 0
    fail = (-1, aid, img, hh, ww, atxt, crowd, cbuf, coff)
    i = _ws(b, 0, n)
    if i >= n or b[i] != 91:
        return fail
    i = _ws(b, i + 1, n)
    if i < n and b[i] == 93:
        i = _ws(b, i + 1, n)
        if i != n:
            return fail
        return (0, aid, img, hh, ww, atxt, crowd, cbuf, coff)
    while True:
        if i >= n or b[i] != 123:
            return fail
        if cnt == cap:
            cap *= 2
            t1 = np.empty(cap, np.int64)
            t1[:cnt] = aid[:cnt]
            aid = t1
            t2 = np.empty(cap, np.int64)
            t2[:cnt] = img[:cnt]
            img = t2
            t3 = np.empty(cap, np.int64)
            t3[:cnt] = hh[:cnt]
            hh = t3
            t4 = np.empty(cap, np.int64)
            t4[:cnt] = ww[:cnt]
            ww = t4
            t5 = np.zeros((cap, SCORE_WIDTH), np.uint8)
            t5[:cnt] = atxt[:cnt]
            atxt = t5
            t6 = np.zeros(cap, np.uint8)
            t6[:cnt] = crowd[:cnt]
            crowd = t6
            t7 = np.empty(cap + 1, np.int64)
            t7[: cnt + 1] = coff[: cnt + 1]
            coff = t7
        have_id = False
        have_img = False
        have_seg = False
        have_area = False
        have_crowd = False
        crowd[cnt] = 0
        i = _ws(b, i + 1, n)
        if i < n and b[i] == 125:
            return fail
        while True:
            if i >= n or b[i] != 34:
                return fail
            ks = i + 1
            j = ks
            while j < n and b[j] != 34 and b[j] != 92:
                j += 1
            if j >= n or b[j] == 92:
                return fail
            ke = j
            i = _ws(b, j + 1, n)
            if i >= n or b[i] != 58:
                return fail
            i = _ws(b, i + 1, n)
            if _key_is(b, ks, ke, k_id):
                if have_id:
                    return fail
                v, i = _int(b, i, n)
                if i < 0:
                    return fail
                aid[cnt] = v
                have_id = True
            elif _key_is(b, ks, ke, k_image_id):
                if have_img:
                    return fail
                v, i = _int(b, i, n)
                if i < 0:
                    return fail
                img[cnt] = v
                have_img = True
            elif _key_is(b, ks, ke, k_area):
                if have_area:
                    return fail
                j = _skip_number(b, i, n)
                if j < 0 or j - i > SCORE_WIDTH:
                    return fail
                for k in range(j - i):
                    atxt[cnt, k] = b[i + k]
                for k in range(j - i, SCORE_WIDTH):
                    atxt[cnt, k] = 0
                i = j
                have_area = True
            elif _key_is(b, ks, ke, k_iscrowd):
                if have_crowd:
                    return fail
                if i < n and (b[i] == 116 or b[i] == 102):  # true / false
                    if b[i] == 116:
                        j = _literal(b, i, n, 116, 114, 117, 101, 0, 4)
                        crowd[cnt] = 1
                    else:
                        j = _literal(b, i, n, 102, 97, 108, 115, 101, 5)
                    if j < 0:
                        return fail
                    i = j
                else:
                    v, i = _int(b, i, n)
                    if i < 0:
                        return fail
                    crowd[cnt] = 1 if v != 0 else 0
                have_crowd = True
            elif _key_is(b, ks, ke, k_segmentation):
                if have_seg:
                    return fail
                i, h, w, cpos = _segmentation(b, i, n, k_size, k_counts, cbuf, cpos)
                if i < 0:
                    return fail
                hh[cnt] = h
                ww[cnt] = w
                have_seg = True
            else:
                i = _skip_value(b, i, n)
                if i < 0:
                    return fail
            i = _ws(b, i, n)
            if i < n and b[i] == 44:
                i = _ws(b, i + 1, n)
                continue
            if i < n and b[i] == 125:
                i += 1
                break
            return fail
        if not (have_id and have_img and have_seg and have_area):
            return fail
        cnt += 1
        coff[cnt] = cpos
        i = _ws(b, i, n)
        if i < n and b[i] == 44:
            i = _ws(b, i + 1, n)
            continue
        if i < n and b[i] == 93:
            i = _ws(b, i + 1, n)
            if i != n:
                return fail
            break
        return fail
    return (cnt, aid, img, hh, ww, atxt, crowd, cbuf, coff)


@dataclass
class AnnotationColumns:
    """The annotations of an entity dataset as columns (file order)."""

    id: np.ndarray  # int64
    image_id: np.ndarray  # int64
    area: np.ndarray  # float64
    iscrowd: np.ndarray  # uint8
    size: np.ndarray  # (n, 2) int64
    buf: np.ndarray  # uint8 counts strings
    off: np.ndarray  # (n + 1,)

    def __len__(self) -> int:
        return int(self.id.shape[0])


_AKEYS = tuple(np.frombuffer(k, np.uint8) for k in (b"id", b"image_id", b"segmentation", b"area", b"iscrowd",
                                                    b"size", b"counts"))


def annotations(raw) -> AnnotationColumns | None:
    """``raw``: the bytes of the annotations array (msgspec.Raw or bytes)."""
    b = np.frombuffer(raw, np.uint8)
    n, aid, img, hh, ww, atxt, crowd, cbuf, coff = scan_annotations(b, *_AKEYS)
    if n < 0:
        return None
    try:
        area = np.ascontiguousarray(atxt[:n]).view(f"S{SCORE_WIDTH}").ravel().astype(np.float64)
    except ValueError:
        return None
    return AnnotationColumns(aid[:n].copy(), img[:n].copy(), area, crowd[:n].copy(),
                             np.stack([hh[:n], ww[:n]], axis=1), cbuf[: coff[n]].copy(), coff[: n + 1].copy())
