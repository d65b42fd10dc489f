/* Boundary bands for Boundary APe, on run-length data (the package's one band implementation).
 *
 * The band of a mask is boundary-iou-api's mask_to_boundary (boundary_iou/utils/boundary_utils.py):
 * the mask minus its erosion by a 3x3 square repeated d times, inside a 1-pixel frame of 0. That
 * erosion keeps exactly the pixels whose whole (2d+1)-square (chessboard distance <= d) lies in the
 * mask and inside the image; the square is separable, so on the column-major runs of COCO RLE:
 *
 *   1. split the runs into per-column row intervals [a, b) (maximal: touching runs are joined);
 *   2. vertical erosion, V(x): each interval [a, b) becomes [a + d, b - d) (the image's top and
 *      bottom rows are background beyond them, as the frame makes them);
 *   3. horizontal erosion, E(x) = V(x - d) ∩ ... ∩ V(x + d), zero where the window leaves the mask's
 *      columns (or the image): a sliding-window intersection of interval lists, van Herk /
 *      Gil-Werman style (blocks of 2d+1 columns; a window = a block suffix ∩ a block prefix), so
 *      three list intersections per column whatever d;
 *   4. band(x) = M(x) minus E(x), written straight to the COCO compressed string (pycocotools'
 *      rleToString: counts zeros first, from the third count on the difference to the count two
 *      places earlier, 5 bits per character + 48, bit 0x20 = more follows).
 *
 * Work and memory per mask: O(runs + columns) (no pixel array). The runs come from
 * entitykit.evaluation._kernel.decode_runs (the package's one RLE decoder); the GIL is released
 * while bands are made, so threads can share masks.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int64_t i64;

typedef struct {
    i64 a, b;
} Iv; /* rows [a, b) of one column */

/* growable arrays (scratch, reused across the masks of one call) */
typedef struct {
    Iv *p;
    i64 n, cap;
} IvVec;

typedef struct {
    i64 *p;
    i64 cap;
} I64Vec;

typedef struct {
    char *p;
    i64 n, cap;
} CharVec;

static int grow(void **p, i64 *cap, i64 need, size_t item) {
    if (need <= *cap) return 0;
    i64 c = *cap ? *cap : 256;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * item);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

#define IV_RESERVE(v, extra) grow((void **)&(v).p, &(v).cap, (v).n + (extra), sizeof(Iv))
#define I64_RESERVE(v, need) grow((void **)&(v).p, &(v).cap, (need), sizeof(i64))
#define CH_RESERVE(v, extra) grow((void **)&(v).p, &(v).cap, (v).n + (extra), 1)

static void copy_iv(Iv *dst, const Iv *src, i64 n) {
    if (n > 0) memcpy(dst, src, (size_t)n * sizeof(Iv));
}

/* A ∩ B of two ascending lists of disjoint intervals, into o (room for na + nb); returns the count. */
static i64 isect(const Iv *A, i64 na, const Iv *B, i64 nb, Iv *o) {
    i64 i = 0, j = 0, k = 0;
    while (i < na && j < nb) {
        i64 lo = A[i].a > B[j].a ? A[i].a : B[j].a;
        i64 hi = A[i].b < B[j].b ? A[i].b : B[j].b;
        if (lo < hi) {
            o[k].a = lo;
            o[k].b = hi;
            k++;
        }
        if (A[i].b < B[j].b)
            i++;
        else
            j++;
    }
    return k;
}

/* ---- the COCO compressed-string writer (pycocotools' rleToString) ---- */

typedef struct {
    CharVec *out;
    i64 j, prev1, prev2; /* counts written, the last two counts */
    i64 pos;             /* pixels covered so far */
    i64 rs, re;          /* the pending run of ones (rs < re), not yet written */
    int pending;
} Writer;

static int put_count(Writer *w, i64 c) {
    if (CH_RESERVE(*w->out, 16)) return -1;
    i64 x = c;
    if (w->j > 2) x -= w->prev2;
    char *s = w->out->p + w->out->n;
    int k = 0, more = 1;
    while (more) {
        char ch = (char)(x & 0x1f);
        x >>= 5; /* arithmetic shift, as pycocotools' long */
        more = (ch & 0x10) ? x != -1 : x != 0;
        if (more) ch |= 0x20;
        s[k++] = (char)(ch + 48);
    }
    w->out->n += k;
    w->prev2 = w->prev1;
    w->prev1 = c;
    w->j++;
    return 0;
}

static int flush_run(Writer *w) {
    if (!w->pending) return 0;
    w->pending = 0;
    if (put_count(w, w->rs - w->pos) || put_count(w, w->re - w->rs)) return -1;
    w->pos = w->re;
    return 0;
}

/* a run of ones [s, e), in ascending order; touching runs (across a column end) are joined */
static int emit(Writer *w, i64 s, i64 e) {
    if (w->pending && w->re == s) {
        w->re = e;
        return 0;
    }
    if (flush_run(w)) return -1;
    w->rs = s;
    w->re = e;
    w->pending = 1;
    return 0;
}

static int finish(Writer *w, i64 npix) {
    if (flush_run(w)) return -1;
    if (w->pos < npix || w->j == 0) return put_count(w, npix - w->pos);
    return 0;
}

/* ---- one mask ---- */

typedef struct {
    IvVec m, v, suf, e, pa, pb; /* mask, vertical erosion, block suffixes, erosion, prefixes */
    I64Vec mptr, vptr, sptr, eptr;
} Scratch;

static void scratch_free(Scratch *s) {
    free(s->m.p);
    free(s->v.p);
    free(s->suf.p);
    free(s->e.p);
    free(s->pa.p);
    free(s->pb.p);
    free(s->mptr.p);
    free(s->vptr.p);
    free(s->sptr.p);
    free(s->eptr.p);
}

/* The band of the mask whose runs of ones are [rs[i], re[i]) (ascending, non-overlapping,
 * column-major, inside the h*w image), appended to out as a compressed counts string.
 * Returns 0, or -1 when memory runs out. */
static int band_one(const i64 *rs, const i64 *re, i64 nr, i64 h, i64 w, i64 d, Scratch *S, CharVec *out) {
    Writer wr = {out, 0, 0, 0, 0, 0, 0, 0};
    i64 npix = h * w;
    if (nr == 0) return finish(&wr, npix);
    i64 c0 = rs[0] / h, c1 = (re[nr - 1] - 1) / h, L = c1 - c0 + 1, K = 2 * d + 1;
    (void)w;
    /* 1. per-column intervals of the mask */
    S->m.n = 0;
    if (I64_RESERVE(S->mptr, L + 1)) return -1;
    i64 *mptr = S->mptr.p, col = 0; /* col: the column (from c0) being filled */
    mptr[0] = 0;
    for (i64 i = 0; i < nr; i++) {
        i64 s = rs[i], e = re[i];
        while (s < e) {
            i64 c = s / h, t = (c + 1) * h < e ? (c + 1) * h : e, x = c - c0;
            while (col < x) mptr[++col] = S->m.n;
            if (S->m.n > mptr[x] && S->m.p[S->m.n - 1].b == s - c * h) {
                S->m.p[S->m.n - 1].b = t - c * h; /* touching runs: one interval */
            } else {
                if (IV_RESERVE(S->m, 1)) return -1;
                S->m.p[S->m.n].a = s - c * h;
                S->m.p[S->m.n].b = t - c * h;
                S->m.n++;
            }
            s = t;
        }
    }
    while (col < L) mptr[++col] = S->m.n;
    const Iv *M = S->m.p;
    i64 n_centres = L - K + 1; /* windows of K columns inside [c0, c1]; E is empty elsewhere */
    if (I64_RESERVE(S->eptr, 2 * L)) return -1;
    i64 *eb = S->eptr.p, *ee = eb + L; /* E(x) = e[eb[x] .. ee[x]) */
    for (i64 x = 0; x < L; x++) eb[x] = ee[x] = 0;
    S->e.n = 0;
    if (n_centres > 0) {
        /* 2. vertical erosion */
        S->v.n = 0;
        if (I64_RESERVE(S->vptr, L + 1) || IV_RESERVE(S->v, S->m.n)) return -1;
        i64 *vptr = S->vptr.p;
        Iv *V = S->v.p;
        for (i64 x = 0; x < L; x++) {
            vptr[x] = S->v.n;
            for (i64 q = mptr[x]; q < mptr[x + 1]; q++)
                if (M[q].a + d < M[q].b - d) {
                    V[S->v.n].a = M[q].a + d;
                    V[S->v.n].b = M[q].b - d;
                    S->v.n++;
                }
        }
        vptr[L] = S->v.n;
        /* 3. horizontal erosion: window [j, j+K) -> centre j + d */
        if (I64_RESERVE(S->sptr, 2 * K)) return -1;
        i64 *sb = S->sptr.p, *se = sb + K;
        for (i64 bs = 0; bs < n_centres; bs += K) { /* bs + K <= L: the block is whole */
            /* suffix intersections of the block, from its last column back */
            S->suf.n = 0;
            for (i64 q = K - 1; q >= 0; q--) {
                i64 x = bs + q, nv = vptr[x + 1] - vptr[x];
                if (q == K - 1) {
                    if (IV_RESERVE(S->suf, nv)) return -1;
                    copy_iv(S->suf.p, V + vptr[x], nv);
                    sb[q] = 0;
                    se[q] = S->suf.n = nv;
                } else {
                    i64 nprev = se[q + 1] - sb[q + 1];
                    if (nprev == 0 || nv == 0) {
                        sb[q] = se[q] = S->suf.n;
                        continue;
                    }
                    if (IV_RESERVE(S->suf, nprev + nv)) return -1;
                    i64 k = isect(V + vptr[x], nv, S->suf.p + sb[q + 1], nprev, S->suf.p + S->suf.n);
                    sb[q] = S->suf.n;
                    se[q] = S->suf.n += k;
                }
            }
            /* windows starting in this block: the block's suffix ∩ the next block's prefix */
            i64 np = 0;
            for (i64 j = bs; j < bs + K && j < n_centres; j++) {
                i64 q = j - bs, ns = se[q] - sb[q], x = j + d, k;
                if (j > bs) { /* prefix of the next block up to column j + K - 1 */
                    i64 t = j + K - 1, nv = vptr[t + 1] - vptr[t];
                    if (j == bs + 1) {
                        if (grow((void **)&S->pa.p, &S->pa.cap, nv, sizeof(Iv))) return -1;
                        copy_iv(S->pa.p, V + vptr[t], nv);
                        np = nv;
                    } else if (np > 0) {
                        if (grow((void **)&S->pb.p, &S->pb.cap, np + nv, sizeof(Iv))) return -1;
                        np = isect(S->pa.p, np, V + vptr[t], nv, S->pb.p);
                        IvVec tmp = S->pa;
                        S->pa = S->pb;
                        S->pb = tmp;
                    }
                    if (np == 0) break; /* every later window of this block holds this column */
                    if (ns == 0) continue;
                    if (IV_RESERVE(S->e, ns + np)) return -1;
                    k = isect(S->suf.p + sb[q], ns, S->pa.p, np, S->e.p + S->e.n);
                } else {
                    if (ns == 0) continue;
                    if (IV_RESERVE(S->e, ns)) return -1;
                    copy_iv(S->e.p + S->e.n, S->suf.p + sb[q], ns);
                    k = ns;
                }
                eb[x] = S->e.n;
                ee[x] = S->e.n += k;
            }
        }
    }
    /* 4. band = M \ E, column by column, to the string */
    const Iv *E = S->e.p;
    for (i64 x = 0; x < L; x++) {
        i64 off = (c0 + x) * h, q = eb[x];
        for (i64 r = mptr[x]; r < mptr[x + 1]; r++) {
            i64 cur = M[r].a, b = M[r].b;
            for (; q < ee[x] && E[q].a < b; q++) { /* E(x) ⊂ M(x): E[q] lies inside M[r] */
                if (E[q].a > cur && emit(&wr, off + cur, off + E[q].a)) return -1;
                cur = E[q].b;
            }
            if (cur < b && emit(&wr, off + cur, off + b)) return -1;
        }
    }
    return finish(&wr, npix);
}

/* ---- Python entry point ---- */

static Py_ssize_t get_i64(PyObject *o, Py_buffer *v, const char *name) {
    if (PyObject_GetBuffer(o, v, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s: expected a C-contiguous buffer of int64, got %.80s", name,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    const char *f = v->format ? v->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    if (v->itemsize != 8 || !(f[0] == 'q' || f[0] == 'l') || f[1] != 0) {
        PyErr_Format(PyExc_TypeError, "%s: expected items of int64, got format '%s' of %zd bytes", name,
                     v->format ? v->format : "B", v->itemsize);
        PyBuffer_Release(v);
        return -1;
    }
    return v->len / 8;
}

PyDoc_STRVAR(bands_doc,
"bands(run_starts, run_ends, run_mask, heights, widths, dilations) -> (counts: bytes, lengths: bytes)\n\n"
"Boundary bands of m masks (m = len(heights)). Runs of ones [run_starts[i], run_ends[i]) in\n"
"column-major pixel positions, run_mask[i] their mask (0..m-1, non-decreasing; runs of a mask\n"
"ascending and non-overlapping), as _kernel.decode_runs gives them; heights / widths / dilations:\n"
"per mask, the image size and the band width d >= 1 (all int64, C-contiguous). Runs are clipped\n"
"to the h*w image. Returns the bands' COCO compressed counts strings, concatenated in mask order,\n"
"and their lengths (int64 bytes). TypeError for a buffer of the wrong type, ValueError for\n"
"inconsistent lengths, masks out of order, unsorted runs, a negative size or d < 1, MemoryError.");

static PyObject *py_bands(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o[6];
    static const char *names[6] = {"run_starts", "run_ends", "run_mask", "heights", "widths", "dilations"};
    if (!PyArg_ParseTuple(args, "OOOOOO:bands", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5])) return NULL;
    Py_buffer v[6];
    Py_ssize_t len[6];
    int got = 0;
    PyObject *ret = NULL;
    for (; got < 6; got++)
        if ((len[got] = get_i64(o[got], &v[got], names[got])) < 0) goto done;
    if (len[1] != len[0] || len[2] != len[0] || len[4] != len[3] || len[5] != len[3]) {
        PyErr_SetString(PyExc_ValueError, "bands: run arrays (and per-mask arrays) must have equal lengths");
        goto done;
    }
    {
        const i64 *rs = v[0].buf, *re = v[1].buf, *rk = v[2].buf, *H = v[3].buf, *W = v[4].buf, *D = v[5].buf;
        i64 nr = len[0], m = len[3];
        const char *err = NULL;
        i64 bad = -1;
        int oom = 0;
        CharVec out = {NULL, 0, 0};
        i64 *lens = malloc((size_t)(m > 0 ? m : 1) * sizeof(i64));
        size_t nb = (size_t)(nr > 0 ? nr : 1) * sizeof(i64);
        i64 *cs = malloc(nb), *ce = malloc(nb);
        Scratch S;
        memset(&S, 0, sizeof S);
        if (!lens || !cs || !ce) {
            free(lens);
            free(cs);
            free(ce);
            PyErr_NoMemory();
            goto done;
        }
        Py_BEGIN_ALLOW_THREADS
        i64 r = 0;
        for (i64 k = 0; k < m && !err && !oom; k++) {
            i64 h = H[k], w = W[k], d = D[k];
            if (h < 0 || w < 0 || (w > 0 && h > INT64_MAX / 4 / w) || d < 1 || d > INT64_MAX / 4) {
                err = "a negative image size or a band width d < 1";
                bad = k;
                break;
            }
            i64 npix = h * w, n = 0, last = 0;
            if (r < nr && rk[r] < k) {
                err = "run_mask is not non-decreasing in 0..m-1";
                bad = k;
                break;
            }
            for (; r < nr && rk[r] == k; r++) { /* clip to the image, drop empty runs */
                i64 s = rs[r] < 0 ? 0 : rs[r] > npix ? npix : rs[r];
                i64 e = re[r] < 0 ? 0 : re[r] > npix ? npix : re[r];
                if (e <= s) continue;
                if (s < last) {
                    err = "runs of a mask are not ascending and non-overlapping";
                    bad = k;
                    break;
                }
                cs[n] = s;
                ce[n] = e;
                last = e;
                n++;
            }
            if (err) break;
            i64 before = out.n;
            if (band_one(cs, ce, n, h, w, d, &S, &out)) oom = 1;
            lens[k] = out.n - before;
        }
        if (!err && !oom && r < nr) {
            err = "run_mask is not non-decreasing in 0..m-1";
            bad = m;
        }
        scratch_free(&S);
        free(cs);
        free(ce);
        Py_END_ALLOW_THREADS
        if (oom)
            PyErr_NoMemory();
        else if (err)
            PyErr_Format(PyExc_ValueError, "bands: %s (mask %lld)", err, (long long)bad);
        else {
            PyObject *a = PyBytes_FromStringAndSize(out.p ? out.p : "", (Py_ssize_t)out.n);
            PyObject *b = a ? PyBytes_FromStringAndSize((const char *)lens, (Py_ssize_t)(m * 8)) : NULL;
            if (a && b) ret = PyTuple_Pack(2, a, b);
            Py_XDECREF(a);
            Py_XDECREF(b);
        }
        free(out.p);
        free(lens);
    }
done:
    for (int q = 0; q < got; q++) PyBuffer_Release(&v[q]);
    return ret;
}

static PyMethodDef methods[] = {
    {"bands", py_bands, METH_VARARGS, bands_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cband",
                                    "Boundary bands (Boundary IoU) on run-length masks (C).", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__cband(void) { return PyModule_Create(&module); }
