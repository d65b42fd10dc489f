/* The scorer's JSON reader for its two big inputs, in C (CPython C API + buffer protocol, no numpy).
 *
 * One scanner for two record shapes, sharing the string / number / value-skipping code:
 *   results(buf)      a COCO results list  [{"image_id": int, "segmentation": {"size": [h, w],
 *                     "counts": str}, "score": number, "bbox": [x, y, w, h]?, ...}, ...]
 *   annotations(buf)  an entity dataset's annotations array [{"id": int, "image_id": int,
 *                     "segmentation": {...}, "area": number, "iscrowd": int|bool?, ...}, ...]
 *   entity(buf)       an entity dataset {"images": [...], "annotations": [...], ...}: its members'
 *                     value spans (the whole text validated; images and categories are small and
 *                     left to json) and annotations() of its "annotations" member, in one pass.
 * Other keys are validated as JSON and skipped. Anything else (string ids, list counts, polygons, a
 * missing or duplicated key, an escape other than \\ or \/ in counts, escaped keys, nesting deeper
 * than 256, any syntax error) returns None and the caller reads the file with json, which also words
 * the errors. The bytes are never trusted: every index is bounds-checked. The scan runs without the
 * GIL; numbers are converted from their exact JSON text, during the scan by Clinger's exact fast path
 * where it applies (fast_double), else afterwards by PyOS_string_to_double: correctly rounded either
 * way, the same double as float() / json. Columns come back as bytes (numpy.frombuffer views).
 * The scan never writes: counts strings are given as (start, end) in the caller's buffer, and
 * unescape(buf, escaped) compacts the few escaped ones in place once the caller keeps the result. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

typedef const unsigned char *B;
#define MAX_DEPTH 256

static inline Py_ssize_t ws(B b, Py_ssize_t i, Py_ssize_t n) {
    while (i < n && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t')) i++;
    return i;
}

static inline int hexd(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* a UTF-8 sequence starting at b[i] (>= 0x80): its length, or -1 if invalid (overlong forms and
   encoded surrogates included: json accepts fewer files than that never, so giving up is safe) */
static Py_ssize_t utf8(B b, Py_ssize_t i, Py_ssize_t n) {
    unsigned char c = b[i], lo = 0x80, hi = 0xBF;
    int len;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else return -1;
    if (i + len > n) return -1;
    if (b[i + 1] < lo || b[i + 1] > hi) return -1;
    for (int k = 2; k < len; k++)
        if (b[i + k] < 0x80 || b[i + k] > 0xBF) return -1;
    return len;
}

/* b[i] == '"': index after the closing quote, or -1 (control character, bad escape, bad UTF-8,
   truncation) */
static Py_ssize_t skip_string(B b, Py_ssize_t i, Py_ssize_t n) {
    i++;
    const unsigned char *q = memchr(b + i, '"', (size_t)(n - i));
    if (!q) return -1;
    int plain = 1; /* the common case, vectorised: printable ASCII without escapes */
    for (Py_ssize_t k = i, j = q - b; k < j; k++) plain &= (b[k] >= 32) & (b[k] <= 126) & (b[k] != '\\');
    if (plain) return q - b + 1;
    while (i < n) {
        while (i < n && b[i] >= 35 && b[i] <= 126 && b[i] != '\\') i++; /* plain ASCII */
        if (i >= n) return -1;
        unsigned char c = b[i];
        if (c == '"') return i + 1;
        if (c < 32) return -1;
        if (c >= 0x80) {
            Py_ssize_t len = utf8(b, i, n);
            if (len < 0) return -1;
            i += len;
            continue;
        }
        if (c == '\\') {
            if (i + 1 >= n) return -1;
            unsigned char e = b[i + 1];
            if (e == 'u') {
                if (i + 5 >= n) return -1;
                for (int k = 2; k < 6; k++)
                    if (!hexd(b[i + k])) return -1;
                i += 6;
                continue;
            }
            if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
                i += 2;
                continue;
            }
            return -1;
        }
        i++;
    }
    return -1;
}

/* the JSON number grammar: index after it, or -1 */
static Py_ssize_t skip_number(B b, Py_ssize_t i, Py_ssize_t n) {
    if (i < n && b[i] == '-') i++;
    if (i >= n) return -1;
    if (b[i] == '0') i++;
    else if (b[i] >= '1' && b[i] <= '9') { while (i < n && b[i] >= '0' && b[i] <= '9') i++; }
    else return -1;
    if (i < n && b[i] == '.') {
        i++;
        if (i >= n || b[i] < '0' || b[i] > '9') return -1;
        while (i < n && b[i] >= '0' && b[i] <= '9') i++;
    }
    if (i < n && (b[i] == 'e' || b[i] == 'E')) {
        i++;
        if (i < n && (b[i] == '+' || b[i] == '-')) i++;
        if (i >= n || b[i] < '0' || b[i] > '9') return -1;
        while (i < n && b[i] >= '0' && b[i] <= '9') i++;
    }
    return i;
}

static Py_ssize_t literal(B b, Py_ssize_t i, Py_ssize_t n, const char *w) {
    size_t ln = strlen(w);
    if (i > n - (Py_ssize_t)ln) return -1;
    return memcmp(b + i, w, ln) == 0 ? i + (Py_ssize_t)ln : -1;
}

/* a key "..." (ASCII, no escapes: others go to json), then ':' ; returns the index of the value, or -1 */
static Py_ssize_t key(B b, Py_ssize_t i, Py_ssize_t n, Py_ssize_t *ks, Py_ssize_t *ke) {
    if (i >= n || b[i] != '"') return -1;
    Py_ssize_t j = i + 1;
    while (j < n && b[j] != '"' && b[j] != '\\' && b[j] >= 32 && b[j] < 0x80) j++;
    if (j >= n || b[j] != '"') return -1;
    *ks = i + 1;
    *ke = j;
    j = ws(b, j + 1, n);
    if (j >= n || b[j] != ':') return -1;
    return ws(b, j + 1, n);
}

static inline int key_is_n(B b, Py_ssize_t ks, Py_ssize_t ke, const char *w, size_t ln) {
    return (size_t)(ke - ks) == ln && memcmp(b + ks, w, ln) == 0;
}
/* the key b[ks..ke) is the string literal w (its length known when compiled: no strlen per key) */
#define key_is(b, ks, ke, w) key_is_n(b, ks, ke, w, sizeof(w) - 1)

/* after a member or element ending at b[*pi]: blanks, then ',' (returns 1, *pi at the next one
   after blanks) or the container's closing byte `close` (returns 0, *pi after it); else -1 */
static inline int next_item(B b, Py_ssize_t *pi, Py_ssize_t n, unsigned char close) {
    Py_ssize_t i = ws(b, *pi, n);
    if (i < n && b[i] == ',') { *pi = ws(b, i + 1, n); return 1; }
    if (i < n && b[i] == close) { *pi = i + 1; return 0; }
    return -1;
}

/* any JSON value, validated; index after it, or -1 */
static Py_ssize_t skip_value(B b, Py_ssize_t i, Py_ssize_t n) {
    unsigned char stack[MAX_DEPTH]; /* '[' or '{' */
    int sp = 0;
    for (;;) {
        i = ws(b, i, n);
        if (i >= n) return -1;
        unsigned char c = b[i];
        if (c == '{' || c == '[') {
            Py_ssize_t j = ws(b, i + 1, n);
            if (j >= n) return -1;
            if ((c == '{' && b[j] == '}') || (c == '[' && b[j] == ']')) {
                i = j + 1;
            } else {
                if (sp >= MAX_DEPTH) return -1;
                stack[sp++] = c;
                if (c == '{') {
                    Py_ssize_t ks, ke;
                    i = key(b, j, n, &ks, &ke);
                    if (i < 0) {  /* an escaped key is still valid JSON here */
                        if (j >= n || b[j] != '"') return -1;
                        j = skip_string(b, j, n);
                        if (j < 0) return -1;
                        j = ws(b, j, n);
                        if (j >= n || b[j] != ':') return -1;
                        i = j + 1;
                    }
                } else {
                    i = j;
                }
                continue;
            }
        } else if (c == '"') {
            i = skip_string(b, i, n);
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            i = skip_number(b, i, n);
        } else if (c == 't') {
            i = literal(b, i, n, "true");
        } else if (c == 'f') {
            i = literal(b, i, n, "false");
        } else if (c == 'n') {
            i = literal(b, i, n, "null");
        } else {
            return -1;
        }
        if (i < 0) return -1;
        /* a value ended: close containers or move to the next element */
        for (;;) {
            if (sp == 0) return i;
            i = ws(b, i, n);
            if (i >= n) return -1;
            c = b[i];
            if (c == ',') {
                i = ws(b, i + 1, n);
                if (stack[sp - 1] == '{') {
                    if (i >= n || b[i] != '"') return -1;
                    i = skip_string(b, i, n);
                    if (i < 0) return -1;
                    i = ws(b, i, n);
                    if (i >= n || b[i] != ':') return -1;
                    i++;
                }
                break;
            }
            if ((c == ']' && stack[sp - 1] == '[') || (c == '}' && stack[sp - 1] == '{')) {
                sp--;
                i++;
                continue;
            }
            return -1;
        }
    }
}

/* a JSON integer (no fraction / exponent, at most 17 digits); index after it, or -1 */
static Py_ssize_t parse_int(B b, Py_ssize_t i, Py_ssize_t n, int64_t *out) {
    int neg = 0;
    if (i < n && b[i] == '-') { neg = 1; i++; }
    if (i >= n || b[i] < '0' || b[i] > '9') return -1;
    if (b[i] == '0' && i + 1 < n && b[i + 1] >= '0' && b[i + 1] <= '9') return -1;
    int64_t v = 0;
    int k = 0;
    while (i < n && b[i] >= '0' && b[i] <= '9') {
        v = v * 10 + (b[i] - '0');
        i++;
        if (++k > 17) return -1;
    }
    if (i < n && (b[i] == '.' || b[i] == 'e' || b[i] == 'E')) return -1;
    *out = neg ? -v : v;
    return i;
}

/* ---- growable columns */

typedef struct { char *p; size_t len, cap; } Col;

static int col_push(Col *c, const void *x, size_t sz) {
    if (c->len + sz > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 4096;
        while (cap < c->len + sz) cap *= 2;
        char *q = realloc(c->p, cap);
        if (!q) return -1;
        c->p = q;
        c->cap = cap;
    }
    memcpy(c->p + c->len, x, sz);
    c->len += sz;
    return 0;
}

static PyObject *col_bytes(Col *c) { return PyBytes_FromStringAndSize(c->len ? c->p : "", (Py_ssize_t)c->len); }

enum { RESULTS = 0, ANNOTATIONS = 1 };
enum { C_ID, C_IMG, C_HW, C_SE, C_ESC, C_NUM, C_BOX, C_BOXWH, C_CROWD, N_COLS };
/* C_SE: (start, end) of each record's counts in the buffer, unescaped (see unescape()); C_ESC:
   (start, raw end) of the counts strings holding an escape, compacted in place after the scan */
/* C_NUM: (start, end) of each record's score (results) or area (annotations) text;
   C_BOX: uint8 per result, 0 no bbox, 1 "bbox": [], 2 four numbers; C_BOXWH: (start, end) of w and h */

typedef struct {
    B b;
    Py_ssize_t n;
    int mode;
    Col col[N_COLS];
    Py_ssize_t count;
    Col spans; /* entity(): the top-level members */
    int nomem;
} Scan;

/* the index of the first byte of b[i..n) that is a quote, a backslash or not printable ASCII
   (< 32 or > 126), or n; SSE2 (every x86-64) 16 bytes at a time, else byte by byte */
static inline Py_ssize_t special_byte(B b, Py_ssize_t i, Py_ssize_t n) {
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), bsl = _mm_set1_epi8('\\');
    const __m128i flip = _mm_set1_epi8((char)0x80), lo = _mm_set1_epi8((char)(32 ^ 0x80)),
                  hi = _mm_set1_epi8((char)(126 ^ 0x80));
    for (; i + 16 <= n; i += 16) {
        const __m128i v = _mm_loadu_si128((const __m128i *)(b + i)), f = _mm_xor_si128(v, flip);
        const __m128i sp = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bsl)),
                                        _mm_or_si128(_mm_cmplt_epi8(f, lo), _mm_cmpgt_epi8(f, hi)));
        const int m = _mm_movemask_epi8(sp);
        if (m) return i + __builtin_ctz((unsigned)m);
    }
#endif
    for (; i < n; i++)
        if (b[i] == '"' || b[i] == '\\' || b[i] < 32 || b[i] > 126) return i;
    return n;
}

/* {"size": [h, w], "counts": "..."}; index after it, or -1. se: the counts' (start, unescaped end) */
static Py_ssize_t segmentation(Scan *s, Py_ssize_t i, int64_t hw[2], int64_t se[2]) {
    B b = s->b;
    Py_ssize_t n = s->n, ks, ke;
    int have_size = 0, have_counts = 0;
    if (i >= n || b[i] != '{') return -1;
    i = ws(b, i + 1, n);
    for (;;) {
        i = key(b, i, n, &ks, &ke);
        if (i < 0) return -1;
        if (key_is(b, ks, ke, "size")) {
            if (have_size || i >= n || b[i] != '[') return -1;
            i = parse_int(b, ws(b, i + 1, n), n, &hw[0]);
            if (i < 0) return -1;
            i = ws(b, i, n);
            if (i >= n || b[i] != ',') return -1;
            i = parse_int(b, ws(b, i + 1, n), n, &hw[1]);
            if (i < 0) return -1;
            i = ws(b, i, n);
            if (i >= n || b[i] != ']') return -1;
            i++;
            have_size = 1;
        } else if (key_is(b, ks, ke, "counts")) {
            if (have_counts || i >= n || b[i] != '"') return -1;
            i++;
            /* to the closing quote in one pass (special_byte: 16 bytes at a time), printable ASCII,
             * only \\ and \/ escapes (the unescaped length now, the bytes after the scan): ~80% of
             * COCO-size counts strings hold one. A backslash right before a quote escapes it: give
             * up, as for any escape other than \\ and \/ (json reads the file then). One pass
             * instead of memchr for the quote, a pass checking the bytes and memchr from backslash
             * to backslash; with key_is's lengths known when compiled, measured on the 5,000-image
             * set (same process, min of 7, identical output): results 0.094 s -> 0.078 s, entity
             * (GT) 0.044 s -> 0.034 s. */
            Py_ssize_t k = i, len = 0;
            int escaped = 0;
            for (;;) {
                const Py_ssize_t j = special_byte(b, k, n);
                if (j >= n) return -1;
                len += j - k;
                if (b[j] == '"') { k = j; break; }
                if (b[j] != '\\' || j + 1 >= n || (b[j + 1] != '\\' && b[j + 1] != '/')) return -1;
                len++;
                escaped = 1;
                k = j + 2;
            }
            se[0] = i;
            se[1] = i + len;
            if (escaped) {
                int64_t esc[2] = {i, k};
                if (col_push(&s->col[C_ESC], esc, sizeof esc)) { s->nomem = 1; return -1; }
            }
            i = k + 1;
            have_counts = 1;
        } else {
            i = skip_value(b, i, n);
            if (i < 0) return -1;
        }
        const int more = next_item(b, &i, n, '}');
        if (more < 0) return -1;
        if (!more) break;
    }
    return (have_size && have_counts) ? i : -1;
}

/* The double of JSON number text s[0..len) when Clinger's fast path applies (at most 19 digits
 * forming an integer m <= 2^53, no exponent part, at most 22 fraction digits): m and 10^k are
 * then exact doubles and the one division (or nothing) is correctly rounded, so the result is the
 * correctly rounded value, the same double as PyOS_string_to_double / float(). Returns 0 when it
 * does not apply (the caller converts with PyOS_string_to_double). Scores and boxes as detectors
 * write them ("0.2972", "377.0") take this path, converted during the scan while their bytes are in cache (number_span);
 * measured (5,000-image set, both files read by sniff): 0.301 s -> 0.276 s. */
static const double POW10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static int fast_double(const char *s, Py_ssize_t len, double *out) {
    Py_ssize_t p = 0;
    int neg = 0, digits = 0, frac = 0, dot = 0;
    uint64_t m = 0;
    if (p < len && s[p] == '-') { neg = 1; p++; }
    for (; p < len; p++) {
        const char c = s[p];
        if (c >= '0' && c <= '9') {
            if (++digits > 19) return 0;
            m = m * 10 + (uint64_t)(c - '0');
            frac += dot;
        } else if (c == '.' && !dot) {
            dot = 1;
        } else {
            return 0; /* an exponent part (or anything else) */
        }
    }
    if (!digits || m > ((uint64_t)1 << 53) || frac > 22) return 0;
    double d = (double)m;
    if (frac) d /= POW10[frac];
    *out = neg ? -d : d;
    return 1;
}

/* a number's (start, end) text span pushed to column c, or (-1, its double's bits) when
   fast_double converts it (to_doubles converts the rest) */
static Py_ssize_t number_span(Scan *s, Py_ssize_t i, int c) {
    Py_ssize_t j = skip_number(s->b, i, s->n);
    if (j < 0) return -1;
    int64_t span[2] = {i, j};
    double d;
    if (fast_double((const char *)s->b + i, j - i, &d)) {
        span[0] = -1;
        memcpy(&span[1], &d, sizeof d);
    }
    if (col_push(&s->col[c], span, sizeof span)) { s->nomem = 1; return -1; }
    return j;
}

/* "bbox": [] or [x, y, w, h] (numbers); w and h spans kept */
static Py_ssize_t bbox(Scan *s, Py_ssize_t i, unsigned char *state) {
    B b = s->b;
    Py_ssize_t n = s->n;
    if (i >= n || b[i] != '[') return -1;
    i = ws(b, i + 1, n);
    if (i < n && b[i] == ']') {
        int64_t none[4] = {0, 0, 0, 0};
        if (col_push(&s->col[C_BOXWH], none, sizeof none)) { s->nomem = 1; return -1; }
        *state = 1;
        return i + 1;
    }
    for (int k = 0; k < 4; k++) {
        if (k) {
            i = ws(b, i, n);
            if (i >= n || b[i] != ',') return -1;
            i = ws(b, i + 1, n);
        }
        if (k < 2) i = skip_number(b, i, n);
        else i = number_span(s, i, C_BOXWH);
        if (i < 0) return -1;
    }
    i = ws(b, i, n);
    if (i >= n || b[i] != ']') return -1;
    *state = 2;
    return i + 1;
}

/* one record {...} at b[i]; index after it, or -1 */
static Py_ssize_t record(Scan *s, Py_ssize_t i) {
    B b = s->b;
    Py_ssize_t n = s->n, ks, ke;
    int have_id = 0, have_img = 0, have_seg = 0, have_num = 0, have_crowd = 0, have_box = 0;
    int64_t id = 0, img = 0, hw[2] = {0, 0}, se[2] = {0, 0};
    unsigned char crowd = 0, box = 0;
    if (i >= n || b[i] != '{') return -1;
    i = ws(b, i + 1, n);
    for (;;) {
        i = key(b, i, n, &ks, &ke);
        if (i < 0) return -1;
        if (key_is(b, ks, ke, "image_id")) {
            if (have_img) return -1;
            i = parse_int(b, i, n, &img);
            have_img = 1;
        } else if (key_is(b, ks, ke, "segmentation")) {
            if (have_seg) return -1;
            i = segmentation(s, i, hw, se);
            have_seg = 1;
        } else if (s->mode == RESULTS ? key_is(b, ks, ke, "score") : key_is(b, ks, ke, "area")) {
            if (have_num) return -1;
            i = number_span(s, i, C_NUM);
            have_num = 1;
        } else if (s->mode == ANNOTATIONS && key_is(b, ks, ke, "id")) {
            if (have_id) return -1;
            i = parse_int(b, i, n, &id);
            have_id = 1;
        } else if (s->mode == ANNOTATIONS && key_is(b, ks, ke, "iscrowd")) {
            if (have_crowd) return -1;
            if (i < n && b[i] == 't') { i = literal(b, i, n, "true"); crowd = 1; }
            else if (i < n && b[i] == 'f') i = literal(b, i, n, "false");
            else { int64_t v = 0; i = parse_int(b, i, n, &v); crowd = v != 0; }
            have_crowd = 1;
        } else if (s->mode == RESULTS && key_is(b, ks, ke, "bbox")) {
            if (have_box) return -1;
            i = bbox(s, i, &box);
            have_box = 1;
        } else {
            i = skip_value(b, i, n);
        }
        if (i < 0) return -1;
        const int more = next_item(b, &i, n, '}');
        if (more < 0) return -1;
        if (!more) break;
    }
    if (!(have_img && have_seg && have_num && (s->mode == RESULTS || have_id))) return -1;
    Col *c = s->col;
    if (col_push(&c[C_IMG], &img, 8) || col_push(&c[C_HW], hw, 16) || col_push(&c[C_SE], se, 16)) goto nomem;
    if (s->mode == ANNOTATIONS) {
        if (col_push(&c[C_ID], &id, 8) || col_push(&c[C_CROWD], &crowd, 1)) goto nomem;
    } else {
        if (col_push(&c[C_BOX], &box, 1)) goto nomem;
        if (box == 0) {
            int64_t none[4] = {0, 0, 0, 0};
            if (col_push(&c[C_BOXWH], none, sizeof none)) goto nomem;
        }
    }
    return i;
nomem:
    s->nomem = 1;
    return -1;
}

/* an array of records at b[i]; index after it (record count in s->count), or -1 */
static Py_ssize_t scan_array(Scan *s, Py_ssize_t i) {
    B b = s->b;
    Py_ssize_t n = s->n;
    s->count = 0;
    if (i >= n || b[i] != '[') return -1;
    i = ws(b, i + 1, n);
    if (i < n && b[i] == ']') return i + 1;
    for (;;) {
        i = record(s, i);
        if (i < 0) return -1;
        s->count++;
        const int more = next_item(b, &i, n, ']');
        if (more <= 0) return more < 0 ? -1 : i;
    }
}

/* the whole buffer one array of records (results / annotations), or a top-level object whose
   "annotations" member is one (entity); members' (key start, key end, value start, value end) to
   s->spans. 0 on success, -1 to give up */
static int scan_all(Scan *s, int entity) {
    B b = s->b;
    Py_ssize_t n = s->n, ks, ke, i = ws(b, 0, n);
    if (!entity) {
        i = scan_array(s, i);
        return (i >= 0 && ws(b, i, n) == n) ? 0 : -1;
    }
    int have_ann = 0;
    if (i >= n || b[i] != '{') return -1;
    i = ws(b, i + 1, n);
    if (i < n && b[i] == '}') return -1; /* no annotations */
    for (;;) {
        Py_ssize_t vs = key(b, i, n, &ks, &ke);
        if (vs < 0) return -1;
        if (key_is(b, ks, ke, "annotations")) {
            if (have_ann) return -1; /* json keeps the last one: let json decide */
            i = scan_array(s, vs);
            have_ann = 1;
        } else {
            i = skip_value(b, vs, n);
        }
        if (i < 0) return -1;
        int64_t sp[4] = {ks, ke, vs, i};
        if (col_push(&s->spans, sp, sizeof sp)) { s->nomem = 1; return -1; }
        const int more = next_item(b, &i, n, '}');
        if (more <= 0) return (more == 0 && have_ann && ws(b, i, n) == n) ? 0 : -1;
    }
}

/* unescape(buf, esc): each escaped counts string (esc: the scan's (start, raw end) int64 pairs)
   compacted to its start, unescaped (writes never overtake reads). Separate from the scan, so a buffer
   the caller then hands to json (it gave up for its own reasons) is still the file's text */
static PyObject *py_unescape(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer view, esc;
    if (!PyArg_ParseTuple(args, "w*y*", &view, &esc)) return NULL;
    unsigned char *w = view.buf;
    const int64_t *sp = esc.buf;
    size_t m = (size_t)esc.len / 16;
    int ok = 1;
    Py_BEGIN_ALLOW_THREADS
    for (size_t k = 0; k < m && ok; k++) {
        Py_ssize_t o = sp[2 * k], r = sp[2 * k], end = sp[2 * k + 1];
        if (o < 0 || end > view.len || o > end) { ok = 0; break; }
        /* chunk by chunk between backslashes (memchr + memmove) instead of byte by byte: same bytes */
        while (r < end) {
            const unsigned char *e = memchr(w + r, '\\', (size_t)(end - r));
            Py_ssize_t stop = e ? (Py_ssize_t)(e - w) : end;
            if (o != r) memmove(w + o, w + r, (size_t)(stop - r));
            o += stop - r;
            r = stop;
            if (r < end) { /* a backslash: drop it, keep the next byte (a trailing one is kept) */
                if (r + 1 < end) r++;
                w[o++] = w[r++];
            }
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    PyBuffer_Release(&esc);
    if (!ok) { PyErr_SetString(PyExc_ValueError, "escape span outside the buffer"); return NULL; }
    Py_RETURN_NONE;
}

/* spans of C_NUM / C_BOXWH -> float64 bytes (in place: a span is two int64, a double is 8 bytes) */
static PyObject *to_doubles(B b, Col *c) {
    size_t m = c->len / 16;
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(m * 8));
    if (!out) return NULL;
    double *d = (double *)PyBytes_AS_STRING(out);
    const int64_t *sp = (const int64_t *)c->p;
    for (size_t k = 0; k < m; k++) {
        if (sp[2 * k] == -1) { memcpy(&d[k], &sp[2 * k + 1], sizeof(double)); continue; } /* fast_double's */
        if (sp[2 * k + 1] <= sp[2 * k]) { d[k] = 0.0; continue; } /* an absent / empty bbox */
        char *end = NULL;
        d[k] = PyOS_string_to_double((const char *)b + sp[2 * k], &end, NULL);
        if (d[k] == -1.0 && PyErr_Occurred()) { Py_DECREF(out); return NULL; }
        if (end != (const char *)b + sp[2 * k + 1]) {
            Py_DECREF(out);
            PyErr_SetString(PyExc_ValueError, "number text not fully converted");
            return NULL;
        }
    }
    return out;
}

/* the record columns as a tuple of bytes (see the method docs) */
static PyObject *columns(Scan *s) {
    PyObject *num = NULL, *wh = NULL;
    if (!(num = to_doubles(s->b, &s->col[C_NUM]))) goto fail;
    if (s->mode == RESULTS) {
        if (!(wh = to_doubles(s->b, &s->col[C_BOXWH]))) goto fail;
        return Py_BuildValue("nNNNNNNN", s->count, col_bytes(&s->col[C_IMG]), col_bytes(&s->col[C_HW]),
                             col_bytes(&s->col[C_SE]), col_bytes(&s->col[C_ESC]), num, col_bytes(&s->col[C_BOX]),
                             wh);
    }
    return Py_BuildValue("nNNNNNNN", s->count, col_bytes(&s->col[C_ID]), col_bytes(&s->col[C_IMG]),
                         col_bytes(&s->col[C_HW]), col_bytes(&s->col[C_SE]), col_bytes(&s->col[C_ESC]), num,
                         col_bytes(&s->col[C_CROWD]));
fail:
    Py_XDECREF(num);
    return NULL;
}

static PyObject *run(PyObject *arg, int mode, int entity) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *ret = NULL;
    Scan s;
    memset(&s, 0, sizeof s);
    s.b = view.buf;
    s.n = view.len;
    s.mode = mode;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = scan_all(&s, entity);
    Py_END_ALLOW_THREADS
    if (s.nomem || rc < 0) {
        if (s.nomem) PyErr_NoMemory();
        else { ret = Py_None; Py_INCREF(ret); }
        goto done;
    }
    PyObject *cols = columns(&s);
    if (!cols || !entity) { ret = cols; goto done; }
    Py_ssize_t m = (Py_ssize_t)(s.spans.len / 32);
    PyObject *spans = PyList_New(m);
    if (!spans) { Py_DECREF(cols); goto done; }
    const int64_t *sp = (const int64_t *)s.spans.p;
    for (Py_ssize_t k = 0; k < m; k++) {
        PyObject *t = Py_BuildValue("(y#nn)", (const char *)s.b + sp[4 * k], (Py_ssize_t)(sp[4 * k + 1] - sp[4 * k]),
                                    (Py_ssize_t)sp[4 * k + 2], (Py_ssize_t)sp[4 * k + 3]);
        if (!t) { Py_DECREF(spans); Py_DECREF(cols); goto done; }
        PyList_SET_ITEM(spans, k, t);
    }
    ret = Py_BuildValue("NN", spans, cols);
done:
    for (int k = 0; k < N_COLS; k++) free(s.col[k].p);
    free(s.spans.p);
    PyBuffer_Release(&view);
    return ret;
}

static PyObject *py_results(PyObject *self, PyObject *arg) { (void)self; return run(arg, RESULTS, 0); }
static PyObject *py_annotations(PyObject *self, PyObject *arg) { (void)self; return run(arg, ANNOTATIONS, 0); }
static PyObject *py_entity(PyObject *self, PyObject *arg) { (void)self; return run(arg, ANNOTATIONS, 1); }

/* buffer(n): a bytearray of n bytes as the allocator gives them (not zeroed, unlike bytearray(n)),
 * for a read that fills it at once (_ahead.read_bytes). bytearray(n) zeroes its bytes holding the
 * GIL (~0.05 s for the 84 MB results file of the 5,000-image set, a stall of the main thread,
 * which imports numpy meanwhile); here the pages are first touched by the read, without the GIL.
 * Measured (both files of that set read in two threads while the main thread imports numpy, median
 * of 8, loaded machine): the main thread's thread starts + import 0.204 s -> 0.175 s. */
static PyObject *py_buffer(PyObject *self, PyObject *arg) {
    (void)self;
    Py_ssize_t n = PyLong_AsSsize_t(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "buffer: negative size");
        return NULL;
    }
    return PyByteArray_FromStringAndSize(NULL, n);
}

static PyMethodDef methods[] = {
    {"buffer", py_buffer, METH_O, "buffer(n) -> a bytearray of n bytes, not zeroed: for a read that fills it"},
    {"results", py_results, METH_O,
     "results(buf) -> (n, image_id i8, size (n,2) i8, counts (start, end) (n,2) i8, escaped (start, raw end) "
     "i8 pairs, score f8, bbox_state u1, bbox_wh (n,2) f8) as bytes, or None. buf[start:end] is each counts "
     "string once unescape(buf, escaped) ran"},
    {"annotations", py_annotations, METH_O,
     "annotations(buf) -> (n, id i8, image_id i8, size (n,2) i8, counts (start, end) (n,2) i8, escaped, area "
     "f8, iscrowd u1) as bytes, or None; as for results()"},
    {"unescape", py_unescape, METH_VARARGS,
     "unescape(buf (writable), escaped): compact the escaped counts strings in place (after a scan)"},
    {"entity", py_entity, METH_O,
     "entity(buf) -> ([(key bytes, value start, value end)] of the top-level object, annotations(...) of its "
     "\"annotations\" member), or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_cscan", "COCO JSON -> columns (C).", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__cscan(void) { return PyModule_Create(&module); }
