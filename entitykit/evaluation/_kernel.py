"""The compiled per-image work of the scorer (numba).

Each call handles a range of images (threads share the images): decode the COCO RLE strings of its ground truth and predictions
(pycocotools' string codec, re-implemented), check that each side is a partition, measure every
non-zero intersection, and run pycocotools' greedy matcher for every area range and IoU threshold.

Intersections: when both sides of an image are non-overlapping (the entity case), all
intersections come from ONE merge of the two sorted run lists (no pairwise IoU); otherwise
(``--overlap allow``, or ground truth that overlaps) each pair of masks is merged on its own,
exactly like pycocotools' ``rleIou``. Either way IoU = intersection / union as float64 of two
integers, the same division pycocotools' C code does, so the values are bit-identical.
"""

from __future__ import annotations

import sys

import numpy as np


def _import_numba_without_scipy() -> None:
    """Start-up trim: numba's first call imports numba.np.arraymath, which imports all of
    scipy.linalg (0.2-0.35 s) only to set a flag that picks BLAS for np.vdot/np.inner. The kernels
    use no BLAS, so when nothing has imported scipy.linalg yet we hide it for that one import
    (numba then uses its plain-loop vdot/inner in this process; anything importing scipy.linalg
    later gets the real module). Nothing else changes."""
    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return
    sys.modules["scipy.linalg"] = None  # type: ignore[assignment]
    try:
        import numba.np.arraymath  # noqa: F401
    except ImportError:
        pass
    finally:
        if sys.modules.get("scipy.linalg", 0) is None:
            del sys.modules["scipy.linalg"]


_import_numba_without_scipy()

from numba import njit  # noqa: E402

# image flags
DT_OVERLAP = 1
GT_OVERLAP = 2
BAD_RLE = 4

# per-annotation status
RLE_OK = 0
RLE_MALFORMED = 1
RLE_WRONG_TOTAL = 2


@njit(cache=True, nogil=True)
def _runs(buf, starts, ends, lo, hi, npix, rs, re, rl, mstart, area, status, n0):
    """Decode masks lo..hi-1 into runs [rs, re) from index n0 on, labelled with the local mask index.

    The string codec is pycocotools' rleFrString (5-bit groups, continuation bit 0x20, sign bit
    0x10 on the last group, each count after the third a delta on the count two before it),
    fused with the run expansion. mstart[j] .. mstart[j+1] are mask j's runs (ascending).
    Returns the number of runs, or -1 if some mask is malformed (its status is set)."""
    n = n0
    bad = False
    for j in range(hi - lo):
        a = lo + j
        mstart[j] = n
        p = starts[a]
        e = ends[a]
        m = 0
        prev1 = np.int64(0)  # count m-1
        prev2 = np.int64(0)  # count m-2
        pos = np.int64(0)
        tot = np.int64(0)
        ok = True
        while p < e:
            x = np.int64(0)
            k = 0
            more = True
            while more:
                if p >= e or k > 12:
                    ok = False
                    break
                c = np.int64(buf[p]) - 48
                if c < 0 or c > 63:
                    ok = False
                    break
                x |= (c & 0x1F) << (5 * k)
                more = (c & 0x20) != 0
                p += 1
                k += 1
                if not more and (c & 0x10) != 0:
                    x |= np.int64(-1) << (5 * k)
            if not ok:
                break
            if m > 2:
                x += prev2
            if x < 0 or x > 0xFFFFFFFF:
                ok = False
                break
            if m & 1 and x > 0:
                rs[n] = pos
                re[n] = pos + x
                rl[n] = j
                n += 1
                tot += x
            pos += x
            prev2 = prev1
            prev1 = x
            m += 1
        if not ok:
            status[a] = RLE_MALFORMED
            bad = True
            continue
        area[a] = tot
        if pos != npix:
            status[a] = RLE_WRONG_TOTAL
            bad = True
    mstart[hi - lo] = n
    if bad:
        return -1
    return n - n0


@njit(cache=True, nogil=True)
def _bucket_sorted(rs, re, rl, ng, n, npix):
    """All runs 0..n-1 sorted by start, as new arrays (start, end, tag); tag = mask index for
    GT runs (index < ng) and -(mask index + 1) for prediction runs.

    Bucket sort on start (a float multiply gives a monotone bucket key, no integer division),
    then an insertion sort that only has to fix runs sharing a bucket: ~O(n) for run lists
    spread over an image, and every array is then read in order by the sweep."""
    nb = n + 1
    scale = nb / np.float64(npix)
    key = np.empty(n, np.int64)
    cnt = np.zeros(nb + 1, np.int64)
    for i in range(n):
        k = np.int64(rs[i] * scale)
        if k >= nb:
            k = nb - 1
        key[i] = k
        cnt[k + 1] += 1
    for k in range(nb):
        cnt[k + 1] += cnt[k]
    ss = np.empty(n, np.int64)
    se = np.empty(n, np.int64)
    st = np.empty(n, np.int64)
    for i in range(n):
        p = cnt[key[i]]
        cnt[key[i]] = p + 1
        ss[p] = rs[i]
        se[p] = re[i]
        st[p] = rl[i] if i < ng else -rl[i] - 1
    for i in range(1, n):
        v = ss[i]
        if ss[i - 1] <= v:
            continue
        e = se[i]
        t = st[i]
        j = i - 1
        while j >= 0 and ss[j] > v:
            ss[j + 1] = ss[j]
            se[j + 1] = se[j]
            st[j + 1] = st[j]
            j -= 1
        ss[j + 1] = v
        se[j + 1] = e
        st[j + 1] = t
    return ss, se, st


@njit(cache=True, nogil=True)
def _sweep(ss, se, st, inter):
    """One pass over the GT and prediction runs in start order (see ``_bucket_sorted``).

    While each side is non-overlapping, at most one run per side is active; every overlapping
    (GT, prediction) pair is met exactly once, when the later of the two starts, and adds
    min(ends) - start to inter[g, d]. Returns (GT overlaps, predictions overlap); when either is
    true ``inter`` is not to be trusted (the caller takes the pairwise path)."""
    g_end = np.int64(-1)
    g_lab = 0
    d_end = np.int64(-1)
    d_lab = 0
    gov = False
    dov = False
    for i in range(ss.shape[0]):
        s = ss[i]
        e = se[i]
        t = st[i]
        if t >= 0:
            if s < g_end:
                gov = True
            if d_end > s:
                inter[t, d_lab] += (e if e < d_end else d_end) - s
            if e > g_end:
                g_end = e
                g_lab = t
        else:
            d = -t - 1
            if s < d_end:
                dov = True
            if g_end > s:
                inter[g_lab, d] += (e if e < g_end else g_end) - s
            if e > d_end:
                d_end = e
                d_lab = d
    return gov, dov


@njit(cache=True, nogil=True)
def _pair_inter(grs, gre, g0, g1, drs, dre, d0, d1):
    """Intersection of two masks given as ascending run lists (one RLE merge, as rleIou)."""
    i = g0
    j = d0
    tot = np.int64(0)
    while i < g1 and j < d1:
        lo = grs[i] if grs[i] > drs[j] else drs[j]
        hi = gre[i] if gre[i] < dre[j] else dre[j]
        if lo < hi:
            tot += hi - lo
        if gre[i] < dre[j]:
            i += 1
        else:
            j += 1
    return tot


@njit(cache=True, nogil=True)
def evaluate_images(
    im_lo, im_hi, g_buf, g_s, g_e, g_img, d_buf, d_s, d_e, d_img, img_h, img_w,
    g_area_json, g_crowd, d_score, area_rng, iou_thrs, max_det, allow_overlap,
    g_parea, d_area, g_status, d_status, img_flags, d_sorted, d_rank, match, ign,
    pq_tp, pq_fp, pq_fn, pq_iou, best_iou_gt,
):
    A = area_rng.shape[0]
    T = iou_thrs.shape[0]
    for im in range(im_lo, im_hi):
        g_lo = g_img[im]
        g_hi = g_img[im + 1]
        d_lo = d_img[im]
        d_hi = d_img[im + 1]
        G = g_hi - g_lo
        D = d_hi - d_lo
        npix = np.int64(img_h[im]) * np.int64(img_w[im])
        # scratch sized by the string lengths (a count takes at least one character)
        gch = np.int64(0)
        for a in range(g_lo, g_hi):
            gch += g_e[a] - g_s[a]
        dch = np.int64(0)
        for a in range(d_lo, d_hi):
            dch += d_e[a] - d_s[a]
        nr = (gch + dch) // 2 + 2
        rs = np.empty(nr, np.int64)
        re = np.empty(nr, np.int64)
        rl = np.empty(nr, np.int64)
        gms = np.empty(G + 1, np.int64)
        dms = np.empty(D + 1, np.int64)
        ng = _runs(g_buf, g_s, g_e, g_lo, g_hi, npix, rs, re, rl, gms, g_parea, g_status, 0)
        if ng < 0:
            img_flags[im] |= BAD_RLE
            continue
        nd = _runs(d_buf, d_s, d_e, d_lo, d_hi, npix, rs, re, rl, dms, d_area, d_status, ng)
        if nd < 0:
            img_flags[im] |= BAD_RLE
            continue
        ss, se, st = _bucket_sorted(rs, re, rl, ng, ng + nd, npix)
        inter = np.zeros((G, D), np.int64)
        gov, dov = _sweep(ss, se, st, inter)
        if gov:
            img_flags[im] |= GT_OVERLAP
        if dov:
            img_flags[im] |= DT_OVERLAP
            if not allow_overlap:
                continue
        if gov or dov:
            # general path: every pair whose column spans meet, one run merge each (as rleIou)
            inter[:, :] = 0
            h = np.int64(img_h[im])
            for g in range(G):
                if gms[g] == gms[g + 1]:
                    continue
                gc0 = rs[gms[g]] // h
                gc1 = (re[gms[g + 1] - 1] - 1) // h
                for d in range(D):
                    if dms[d] == dms[d + 1]:
                        continue
                    dc0 = rs[dms[d]] // h
                    dc1 = (re[dms[d + 1] - 1] - 1) // h
                    if dc1 < gc0 or gc1 < dc0:
                        continue
                    inter[g, d] = _pair_inter(rs, re, gms[g], gms[g + 1], rs, re, dms[d], dms[d + 1])
        # the non-zero intersections as a sparse list, GT-major (so GT ascending per prediction)
        npairs = 0
        for g in range(G):
            for d in range(D):
                if inter[g, d] > 0:
                    npairs += 1
        pg = np.empty(npairs, np.int64)
        pd = np.empty(npairs, np.int64)
        pit = np.empty(npairs, np.int64)
        piou = np.empty(npairs, np.float64)
        k = 0
        for g in range(G):
            crowd = g_crowd[g_lo + g] != 0
            ga = g_parea[g_lo + g]
            b = 0.0
            for d in range(D):
                it = inter[g, d]
                if it > 0:
                    # IoU exactly as pycocotools' rleIou: i / u as doubles; crowd GT: u = det area
                    da = d_area[d_lo + d]
                    u = da if crowd else da + ga - it
                    v = np.float64(it) / np.float64(u)
                    pg[k] = g
                    pd[k] = d
                    pit[k] = it
                    piou[k] = v
                    k += 1
                    if v > b:
                        b = v
            best_iou_gt[g_lo + g] = b
        # class-agnostic PQ (partitions only): panopticapi's rules with void = pixels of no GT
        if not gov and not dov:
            covered = np.zeros(D, np.int64)
            crowd_it = np.zeros(D, np.int64)
            for k in range(npairs):
                covered[pd[k]] += pit[k]
                if g_crowd[g_lo + pg[k]] != 0:
                    crowd_it[pd[k]] += pit[k]
            gmatched = np.zeros(G, np.bool_)
            dmatched = np.zeros(D, np.bool_)
            tp = 0
            s = 0.0
            for k in range(npairs):
                g = pg[k]
                d = pd[k]
                if g_crowd[g_lo + g] != 0:
                    continue
                da = d_area[d_lo + d]
                u = da + g_parea[g_lo + g] - pit[k] - (da - covered[d])
                v = np.float64(pit[k]) / np.float64(u)
                if v > 0.5:
                    tp += 1
                    s += v
                    gmatched[g] = True
                    dmatched[d] = True
            fn = 0
            for g in range(G):
                if not gmatched[g] and g_crowd[g_lo + g] == 0:
                    fn += 1
            fp = 0
            for d in range(D):
                da = d_area[d_lo + d]
                if dmatched[d] or da == 0:
                    continue
                if np.float64(da - covered[d] + crowd_it[d]) / np.float64(da) > 0.5:
                    continue
                fp += 1
            pq_tp[im] = tp
            pq_fp[im] = fp
            pq_fn[im] = fn
            pq_iou[im] = s
        else:
            pq_iou[im] = np.nan
        # detections in pycocotools' order: stable mergesort on -score, cut to max_det
        neg = np.empty(D, np.float64)
        for d in range(D):
            neg[d] = -d_score[d_lo + d]
        dsort = np.argsort(neg, kind="mergesort")
        rank = np.empty(D, np.int64)
        for r in range(D):
            d_sorted[d_lo + r] = d_lo + dsort[r]
            d_rank[d_lo + dsort[r]] = r
            rank[dsort[r]] = r
        nk = D if D < max_det else max_det
        # candidates: only IoU >= 0.5 can ever be matched (every threshold is >= 0.5); per
        # prediction (by score rank) in GT file order, as pycocotools scans them
        cstart = np.zeros(nk + 2, np.int64)
        for k in range(npairs):
            r = rank[pd[k]]
            if r < nk and piou[k] >= 0.5:
                cstart[r + 2] += 1
        for r in range(nk):
            cstart[r + 2] += cstart[r + 1]
        cnt = cstart[nk + 1]
        cg = np.empty(cnt, np.int64)
        cv = np.empty(cnt, np.float64)
        for k in range(npairs):
            r = rank[pd[k]]
            if r < nk and piou[k] >= 0.5:
                c = cstart[r + 1]
                cg[c] = pg[k]
                cv[c] = piou[k]
                cstart[r + 1] = c + 1
        gig = np.empty(G, np.bool_)
        taken = np.empty(G, np.bool_)
        for a in range(A):
            lo_a = area_rng[a, 0]
            hi_a = area_rng[a, 1]
            for g in range(G):
                ga = g_area_json[g_lo + g]
                gig[g] = g_crowd[g_lo + g] != 0 or ga < lo_a or ga > hi_a
            for t in range(T):
                thr = iou_thrs[t]
                if thr > 1 - 1e-10:
                    thr = 1 - 1e-10
                taken[:] = False
                for r in range(nk):
                    d = d_lo + dsort[r]
                    best = thr
                    m = -1
                    # pycocotools scans GT with non-ignored first; an ignored GT is only
                    # considered when no non-ignored one matched; equal IoU: later GT wins
                    for pass_ig in range(2):
                        for c in range(cstart[r], cstart[r + 1]):
                            g = cg[c]
                            if gig[g] != (pass_ig == 1):
                                continue
                            if taken[g] and g_crowd[g_lo + g] == 0:
                                continue
                            if cv[c] < best:
                                continue
                            best = cv[c]
                            m = g
                        if m >= 0:
                            break
                    if m >= 0:
                        taken[m] = True
                        match[d, a, t] = 1
                        ign[d, a, t] = 1 if gig[m] else 0
                    else:
                        match[d, a, t] = 0
                        da = d_area[d]
                        ign[d, a, t] = 1 if (da < lo_a or da > hi_a) else 0


@njit(cache=True, nogil=True)
def accumulate_curves(idx_sorted, scores_sorted, match, ign, npig, rec_thrs, precision, recall, scores):
    """pycocotools' accumulate for one max-dets cut, every area range and IoU threshold.

    ``idx_sorted``: the detections in pycocotools' global order (stable sort on -score). Writes
    precision[t, r, a], recall[t, a], scores[t, r, a] for every area range with npig[a] > 0.

    Same floats as pycocotools: precision tp / (fp + tp + eps) and recall tp / npig on float64
    counts. Two exact shortcuts: (1) a recall threshold x > 0 is first reached at a true
    positive (recall only grows there), so the binary search runs over the true positives; (2) the
    interpolated precision (running max from the right) only needs the values at true positives,
    because between two true positives precision can only fall. Max and comparisons do no
    arithmetic, so the results are bit-identical."""
    nd = idx_sorted.shape[0]
    A = match.shape[1]
    T = match.shape[2]
    R = rec_thrs.shape[0]
    eps = np.spacing(1.0)
    codes = np.empty((A, T, nd), np.uint8)  # 0 false positive, 1 true positive, 2 ignored
    for i in range(nd):
        d = idx_sorted[i]
        for a in range(A):
            for t in range(T):
                if ign[d, a, t] != 0:
                    codes[a, t, i] = 2
                elif match[d, a, t] != 0:
                    codes[a, t, i] = 1
                else:
                    codes[a, t, i] = 0
    tp_pos = np.empty(nd, np.int64)
    tp_pr = np.empty(nd, np.float64)
    for a in range(A):
        if npig[a] == 0:
            continue
        fnpig = np.float64(npig[a])
        for t in range(T):
            tp = 0
            fp = 0
            ntp = 0
            for i in range(nd):
                c = codes[a, t, i]
                if c == 1:
                    tp += 1
                    ftp = np.float64(tp)
                    tp_pos[ntp] = i
                    tp_pr[ntp] = ftp / (np.float64(fp) + ftp + eps)
                    ntp += 1
                elif c == 0:
                    fp += 1
            recall[t, a] = np.float64(tp) / fnpig if nd else 0.0
            for k in range(ntp - 1, 0, -1):
                if tp_pr[k] > tp_pr[k - 1]:
                    tp_pr[k - 1] = tp_pr[k]
            for r in range(R):
                x = rec_thrs[r]
                if nd == 0:
                    precision[t, r, a] = 0.0
                    scores[t, r, a] = 0.0
                    continue
                if 0.0 / fnpig >= x:  # rc[0] >= x whatever det 0 is: index 0
                    precision[t, r, a] = tp_pr[0] if ntp else 0.0
                    scores[t, r, a] = scores_sorted[0]
                    continue
                lo = 1
                hi = ntp + 1
                while lo < hi:  # first k in 1..ntp with k / npig >= x
                    mid = (lo + hi) >> 1
                    if np.float64(mid) / fnpig < x:
                        lo = mid + 1
                    else:
                        hi = mid
                if lo <= ntp:
                    precision[t, r, a] = tp_pr[lo - 1]
                    scores[t, r, a] = scores_sorted[tp_pos[lo - 1]]
                else:
                    precision[t, r, a] = 0.0
                    scores[t, r, a] = 0.0
