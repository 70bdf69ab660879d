/*
 * freqdata._jpegcoef: read a JPEG's DCT coefficients with libjpeg(-turbo), without the
 * inverse DCT.
 *
 *   read(data, max_pixels, strict, fast=True) -> tuple
 *
 * `data` is any object exporting a contiguous buffer (bytes, bytearray, memoryview, mmap).
 * The result is a plain tuple that freqdata/jpeg.py turns into a JpegCoefficients:
 *
 *   (width, height,
 *    planes,      list of ndarray, one per component: (Hb, Wb, 64) int16, C-contiguous,
 *                 dequantized, natural order k = 8*v + u, Hb/Wb = the component's
 *                 height_in_blocks/width_in_blocks
 *    qtables,     list of ndarray, one per component: (64,) uint16, natural order
 *    sampling,    list of (h, v)
 *    colorspace,  "gray" | "ycbcr"
 *    progressive, arithmetic (bool),
 *    exif,        bytes of the first APP1 "Exif\0\0" segment's payload, or None
 *    warnings,    list of str: libjpeg's warnings (only non-empty when strict is false or
 *                 the warning is benign)
 *    decoder)     "fast" (fast_sequential below did the entropy decoding) or "libjpeg"
 *
 *   gather(plane, select, negate, out) -> None
 *   upsample(plane, matrix, fv, fh, out) -> None
 *
 * write a component's selected channels, channel-major, into `out`: at its own sampling, or
 * through a fixed linear map per block (DCT-domain chroma upsampling computing only the
 * selected output coefficients); see jc_gather and jc_upsample.
 *
 * On failure it raises _jpegcoef.Failure(kind, message) with kind one of "not_jpeg",
 * "truncated", "corrupt", "unsupported", "too_large"; jpeg.py maps it to JpegError or
 * UnsupportedJpegError.
 *
 * Safety: libjpeg errors go through a custom error manager that longjmps back (libjpeg never
 * calls exit()); the dimensions and max_pixels are checked right after jpeg_read_header,
 * before anything image-sized is allocated; the coefficient memory is ours (see below), sized
 * from the header and refused beyond it; libjpeg's own allocations are small (tables, one
 * MCU row) or bounded by the input's size (saved APP1 markers); max_memory_to_use is set
 * too, for libjpeg builds that apply it more widely than 2.1's virtual arrays; the number of
 * scans is limited (progressive-scan DoS); the GIL is released around all libjpeg work.
 *
 * Speed (the cost is almost all entropy decoding):
 * - the common case -- one sequential Huffman scan holding every component, clean data --
 *   is entropy-decoded by fast_sequential() below, straight into the output, using the
 *   tables libjpeg parsed; on anything unusual it leaves the work to libjpeg (fast=False
 *   forces that, for tests). About 13% faster than libjpeg-turbo 2.1's decoder.
 * - otherwise jpeg_read_coefficients runs, but with our request_virt_barray /
 *   access_virt_barray (public, overridable members of struct jpeg_memory_mgr) instead of
 *   libjpeg's whole-image arrays: see "Coefficient arrays" below.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define MAX_SAVED_WARNINGS 8
#define MAX_SCANS 500 /* libjpeg-turbo's recommended limit against progressive-scan DoS */
/* libjpeg's own allocations besides the coefficient arrays (tables, pools, markers) */
#define MEM_SLACK (64L * 1024 * 1024)
#define MEM_HEADER_LIMIT (256L * 1024 * 1024)

enum kind { K_NONE = 0, K_NOT_JPEG, K_TRUNCATED, K_CORRUPT, K_UNSUPPORTED, K_TOO_LARGE };

static const char *const kind_names[] = {"none",        "not_jpeg",  "truncated",
                                         "corrupt",     "unsupported", "too_large"};

static PyObject *Failure; /* _jpegcoef.Failure(kind, message) */

struct err_mgr {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    int strict;
    int hit_eof; /* JWRN_JPEG_EOF seen: the data ended early */
    int kind;
    char msg[JMSG_LENGTH_MAX + 160];
    int n_saved;
    char saved[MAX_SAVED_WARNINGS][JMSG_LENGTH_MAX];
};

static int is_benign_warning(int code)
{
    /* Metadata oddities that do not affect the coefficients. */
    return code == JWRN_JFIF_MAJOR || code == JWRN_ADOBE_XFORM;
}

static void set_libjpeg_failure(struct err_mgr *err, j_common_ptr cinfo)
{
    char buf[JMSG_LENGTH_MAX];
    int code = err->pub.msg_code;
    buf[0] = '\0';
    (*err->pub.format_message)(cinfo, buf);
    switch (code) {
    case JERR_NO_SOI:
        err->kind = K_NOT_JPEG;
        snprintf(err->msg, sizeof err->msg, "not a JPEG file (libjpeg: %s)", buf);
        return;
    case JERR_BAD_PRECISION:
        err->kind = K_UNSUPPORTED;
        snprintf(err->msg, sizeof err->msg,
                 "%d-bit JPEG (sample precision %d) is not supported by the coefficient path: "
                 "only 8-bit JPEGs are",
                 err->pub.msg_parm.i[0], err->pub.msg_parm.i[0]);
        return;
    case JERR_SOF_UNSUPPORTED:
        err->kind = K_UNSUPPORTED;
        snprintf(err->msg, sizeof err->msg,
                 "lossless/hierarchical JPEG is not supported by the coefficient path (libjpeg: %s)",
                 buf);
        return;
    case JERR_NOT_COMPILED:
    case JERR_ARITH_NOTIMPL:
        err->kind = K_UNSUPPORTED;
        snprintf(err->msg, sizeof err->msg, "JPEG feature not supported (libjpeg: %s)", buf);
        return;
    case JERR_IMAGE_TOO_BIG:
        err->kind = K_TOO_LARGE;
        snprintf(err->msg, sizeof err->msg, "image too large (libjpeg: %s)", buf);
        return;
    case JERR_OUT_OF_MEMORY:
    case JERR_NO_BACKING_STORE:
    case JERR_TFILE_CREATE:
    case JERR_TFILE_READ:
    case JERR_TFILE_SEEK:
    case JERR_TFILE_WRITE:
        err->kind = K_TOO_LARGE;
        snprintf(err->msg, sizeof err->msg,
                 "JPEG needs more memory than allowed (libjpeg: %s)", buf);
        return;
    default:
        break;
    }
    if (err->hit_eof) {
        err->kind = K_TRUNCATED;
        snprintf(err->msg, sizeof err->msg,
                 "truncated JPEG: premature end of data (libjpeg: Premature end of JPEG file; "
                 "then: %s)",
                 buf);
    } else {
        err->kind = K_CORRUPT;
        snprintf(err->msg, sizeof err->msg, "damaged JPEG (libjpeg: %s)", buf);
    }
}

static void on_error_exit(j_common_ptr cinfo)
{
    struct err_mgr *err = (struct err_mgr *)cinfo->err;
    set_libjpeg_failure(err, cinfo);
    longjmp(err->jb, 1);
}

static void on_emit_message(j_common_ptr cinfo, int msg_level)
{
    struct err_mgr *err = (struct err_mgr *)cinfo->err;
    int code;
    if (msg_level >= 0)
        return; /* trace message */
    code = err->pub.msg_code;
    err->pub.num_warnings++;
    if (code == JWRN_JPEG_EOF)
        err->hit_eof = 1;
    if (err->strict && !is_benign_warning(code)) {
        char buf[JMSG_LENGTH_MAX];
        buf[0] = '\0';
        (*err->pub.format_message)(cinfo, buf);
        if (code == JWRN_JPEG_EOF) {
            err->kind = K_TRUNCATED;
            snprintf(err->msg, sizeof err->msg,
                     "truncated JPEG: premature end of data (libjpeg: %s)", buf);
        } else {
            err->kind = K_CORRUPT;
            snprintf(err->msg, sizeof err->msg, "damaged JPEG (libjpeg: %s)", buf);
        }
        longjmp(err->jb, 1);
    }
    if (err->n_saved < MAX_SAVED_WARNINGS) {
        char *dst = err->saved[err->n_saved++];
        dst[0] = '\0';
        (*err->pub.format_message)(cinfo, dst);
    }
}

static void on_output_message(j_common_ptr cinfo)
{
    (void)cinfo; /* never print to stderr */
}

static void on_progress(j_common_ptr cinfo)
{
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > MAX_SCANS) {
        struct err_mgr *err = (struct err_mgr *)cinfo->err;
        err->kind = K_CORRUPT;
        snprintf(err->msg, sizeof err->msg,
                 "damaged JPEG: more than %d scans (a valid JPEG has far fewer; refusing to "
                 "decode a possible denial-of-service file)",
                 MAX_SCANS);
        longjmp(err->jb, 1);
    }
}

/*
 * Coefficient arrays. libjpeg asks the memory manager for one "virtual array" of blocks per
 * component (MCU-padded) and then accesses it a few block rows at a time. We implement those
 * two methods ourselves, in one of two modes:
 *
 * - streaming (sequential JPEGs: every block row is decoded exactly once, in order, because
 *   each component appears in exactly one scan): libjpeg gets a small zeroed scratch window
 *   of block rows; when it moves on to the next rows, the finished ones are dequantized
 *   straight into the output. No whole-image intermediate, no zeroing of it, and the
 *   decoder's scattered stores stay in cache.
 * - whole (progressive JPEGs, whose scans revisit every block): one zeroed MCU-padded array
 *   per component, all carved from one arena; afterwards one in-place pass dequantizes and
 *   compacts each row from libjpeg's padded stride to width_in_blocks.
 */
struct barray {
    int ci;                           /* component index */
    int streaming;
    int own;                          /* mem was allocated for this array alone (whole mode) */
    JDIMENSION cols, rows, maxaccess; /* libjpeg's (MCU-padded) size, in blocks */
    JDIMENSION hb, wb;                /* the output's size, in blocks */
    JBLOCKROW *rowptr; /* whole: every row of mem; streaming: the maxaccess scratch rows */
    JBLOCK *mem;       /* whole: zeroed padded array; streaming: scratch (libjpeg pool) */
    JDIMENSION held_start, held_n, next_row; /* streaming: rows in the scratch window */
    int16_t *out;                            /* streaming: the output plane */
    int q_ready, small_q;
    uint16_t q[64];
};

/* Everything the two libjpeg phases share; lives on read()'s stack. */
struct job {
    struct jpeg_decompress_struct cinfo;
    struct err_mgr err;
    struct jpeg_progress_mgr progress;
    int created;
    int ncomp;
    int streaming;
    int use_fast;       /* try fast_sequential() first */
    int used_fast;      /* ... and it did the work */
    const void *data;   /* the input */
    size_t len;
    int narrays;
    struct barray *arrays[MAX_COMPONENTS];
    /* One allocation for all planes: streaming, the exact (Hb, Wb, 64) planes back to back;
     * whole, the zeroed MCU-padded arrays, compacted in place at the end. */
    JBLOCK *arena;
    size_t arena_blocks, arena_used;
    int16_t *plane[MAX_COMPONENTS]; /* where each finished plane starts */
    unsigned long long alloc_total, alloc_limit;
};

static void jump_with(j_common_ptr cinfo, int kind, const char *msg)
{
    struct err_mgr *err = (struct err_mgr *)cinfo->err;
    err->kind = kind;
    snprintf(err->msg, sizeof err->msg, "%s", msg);
    longjmp(err->jb, 1);
}

/* Dequantize n consecutive blocks; in may equal out or lie after it by whole blocks. */
static void dequant_blocks(const JCOEF *in, const uint16_t *q, int16_t *out, size_t n,
                           int small_q)
{
    size_t b;
#if defined(__SSE2__)
    if (small_q) { /* all steps <= 32767: exact signed 16x16->32 products, saturating pack */
        __m128i q0 = _mm_loadu_si128((const __m128i *)(q + 0));
        __m128i q1 = _mm_loadu_si128((const __m128i *)(q + 8));
        __m128i q2 = _mm_loadu_si128((const __m128i *)(q + 16));
        __m128i q3 = _mm_loadu_si128((const __m128i *)(q + 24));
        __m128i q4 = _mm_loadu_si128((const __m128i *)(q + 32));
        __m128i q5 = _mm_loadu_si128((const __m128i *)(q + 40));
        __m128i q6 = _mm_loadu_si128((const __m128i *)(q + 48));
        __m128i q7 = _mm_loadu_si128((const __m128i *)(q + 56));
#define DQ8(K, QV)                                                                        \
    do {                                                                                  \
        __m128i a_ = _mm_loadu_si128((const __m128i *)(in + (K)));                        \
        __m128i lo_ = _mm_mullo_epi16(a_, QV), hi_ = _mm_mulhi_epi16(a_, QV);             \
        _mm_storeu_si128((__m128i *)(out + (K)),                                          \
                         _mm_packs_epi32(_mm_unpacklo_epi16(lo_, hi_),                    \
                                         _mm_unpackhi_epi16(lo_, hi_)));                  \
    } while (0)
        for (b = 0; b < n; b++, in += 64, out += 64) {
            DQ8(0, q0);
            DQ8(8, q1);
            DQ8(16, q2);
            DQ8(24, q3);
            DQ8(32, q4);
            DQ8(40, q5);
            DQ8(48, q6);
            DQ8(56, q7);
        }
#undef DQ8
        return;
    }
#else
    (void)small_q;
#endif
    for (b = 0; b < n; b++, in += 64, out += 64) {
        int k;
        int32_t v[64];
        for (k = 0; k < 64; k++)
            v[k] = (int32_t)in[k] * (int32_t)q[k];
        for (k = 0; k < 64; k++)
            out[k] = (int16_t)(v[k] < -32768 ? -32768 : (v[k] > 32767 ? 32767 : v[k]));
    }
}

static JQUANT_TBL *component_qtable(j_decompress_ptr cinfo, jpeg_component_info *comp)
{
    /* the table latched when the component's first scan started (the one its data used) */
    if (comp->quant_table != NULL)
        return comp->quant_table;
    if (comp->quant_tbl_no >= 0 && comp->quant_tbl_no < NUM_QUANT_TBLS)
        return cinfo->quant_tbl_ptrs[comp->quant_tbl_no];
    return NULL;
}

static void load_qtable(j_decompress_ptr cinfo, struct barray *a)
{
    JQUANT_TBL *qt = component_qtable(cinfo, &cinfo->comp_info[a->ci]);
    int k;
    a->small_q = 1;
    for (k = 0; k < 64; k++) {
        a->q[k] = qt ? (uint16_t)qt->quantval[k] : 0;
        if (a->q[k] > 32767)
            a->small_q = 0;
    }
    a->q_ready = 1;
}

/* Streaming: dequantize the rows in the scratch window into the output. */
static void flush_window(j_decompress_ptr cinfo, struct barray *a)
{
    JDIMENSION i;
    if (a->held_n == 0)
        return;
    if (!a->q_ready) /* latched by now: the component's scan has started */
        load_qtable(cinfo, a);
    for (i = 0; i < a->held_n && a->held_start + i < a->hb; i++)
        dequant_blocks((const JCOEF *)a->rowptr[i], a->q,
                       a->out + (size_t)(a->held_start + i) * a->wb * 64, a->wb, a->small_q);
    a->held_n = 0;
}

static jvirt_barray_ptr hook_request_virt_barray(j_common_ptr cinfo, int pool_id,
                                                 boolean pre_zero, JDIMENSION blocksperrow,
                                                 JDIMENSION numrows, JDIMENSION maxaccess)
{
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    struct job *job = (struct job *)cinfo->client_data;
    struct barray *a;
    jpeg_component_info *comp;
    unsigned long long nblocks = (unsigned long long)blocksperrow * numrows, nbytes;
    JDIMENSION r;
    (void)pre_zero; /* always zeroed */
    if (job->narrays >= job->ncomp || blocksperrow == 0 || numrows == 0 || maxaccess == 0)
        jump_with(cinfo, K_CORRUPT, "damaged JPEG: unexpected coefficient array request");
    comp = &d->comp_info[job->narrays];
    if (comp->height_in_blocks > numrows || comp->width_in_blocks > blocksperrow)
        jump_with(cinfo, K_CORRUPT, "damaged JPEG: coefficient array smaller than the image");
    a = (struct barray *)(*cinfo->mem->alloc_small)(cinfo, pool_id, sizeof(struct barray));
    memset(a, 0, sizeof *a);
    a->ci = job->narrays;
    a->cols = blocksperrow;
    a->rows = numrows;
    a->maxaccess = maxaccess;
    a->hb = comp->height_in_blocks;
    a->wb = comp->width_in_blocks;
    if (job->streaming) {
        if (maxaccess > numrows)
            maxaccess = a->maxaccess = numrows;
        a->streaming = 1;
        a->out = job->plane[a->ci];
        a->rowptr = (JBLOCKROW *)(*cinfo->mem->alloc_small)(
            cinfo, pool_id, (size_t)maxaccess * sizeof(JBLOCKROW));
        a->mem = (JBLOCK *)(*cinfo->mem->alloc_large)(
            cinfo, pool_id, (size_t)maxaccess * blocksperrow * sizeof(JBLOCK));
        for (r = 0; r < maxaccess; r++)
            a->rowptr[r] = (JBLOCKROW)(a->mem + (size_t)r * blocksperrow);
        job->arrays[job->narrays++] = a;
        return (jvirt_barray_ptr)a;
    }
    nbytes = nblocks * sizeof(JBLOCK);
    if (nblocks > (unsigned long long)PY_SSIZE_T_MAX / sizeof(JBLOCK) ||
        job->alloc_total + nbytes > job->alloc_limit)
        jump_with(cinfo, K_TOO_LARGE, "JPEG needs more memory than its header implies");
    a->rowptr = (JBLOCKROW *)(*cinfo->mem->alloc_large)(cinfo, pool_id,
                                                       (size_t)numrows * sizeof(JBLOCKROW));
    if (job->arena == NULL && job->arena_blocks > 0) {
        job->arena = (JBLOCK *)PyMem_RawCalloc(job->arena_blocks, sizeof(JBLOCK));
        if (job->arena == NULL)
            jump_with(cinfo, K_TOO_LARGE, "out of memory for the coefficient arrays");
    }
    if (job->arena != NULL && nblocks <= job->arena_blocks - job->arena_used) {
        a->mem = job->arena + job->arena_used;
        job->arena_used += (size_t)nblocks;
    } else { /* a request the header did not predict: give it its own memory */
        a->mem = (JBLOCK *)PyMem_RawCalloc((size_t)nblocks, sizeof(JBLOCK));
        if (a->mem == NULL)
            jump_with(cinfo, K_TOO_LARGE, "out of memory for the coefficient arrays");
        a->own = 1;
    }
    job->arrays[job->narrays++] = a; /* owned by job from here on */
    job->alloc_total += nbytes;
    job->plane[a->ci] = (int16_t *)a->mem;
    for (r = 0; r < numrows; r++)
        a->rowptr[r] = (JBLOCKROW)(a->mem + (size_t)r * blocksperrow);
    return (jvirt_barray_ptr)a;
}

static JBLOCKARRAY hook_access_virt_barray(j_common_ptr cinfo, jvirt_barray_ptr ptr,
                                           JDIMENSION start_row, JDIMENSION num_rows,
                                           boolean writable)
{
    struct barray *a = (struct barray *)ptr;
    (void)writable;
    if (start_row > a->rows || num_rows > a->rows - start_row || num_rows > a->maxaccess)
        ERREXIT(cinfo, JERR_BAD_VIRTUAL_ACCESS);
    if (!a->streaming)
        return a->rowptr + start_row;
    if (start_row != a->next_row)
        /* only possible if a component is coded in more than one sequential scan */
        jump_with(cinfo, K_CORRUPT,
                  "damaged JPEG: a component is coded in more than one sequential scan");
    flush_window((j_decompress_ptr)cinfo, a);
    memset(a->mem, 0, (size_t)num_rows * a->cols * sizeof(JBLOCK));
    a->held_start = start_row;
    a->held_n = num_rows;
    a->next_row = start_row + num_rows;
    return a->rowptr;
}

/* Phase 1: create, attach the input, read the header. Returns 0 or -1 (err filled). */
static int phase_header(struct job *job, const unsigned char *data, size_t len)
{
    j_decompress_ptr cinfo = &job->cinfo;
    if (setjmp(job->err.jb))
        return -1;
    job->created = 1; /* destroy is safe even if create fails half-way (mem stays NULL) */
    jpeg_create_decompress(cinfo);
    cinfo->client_data = job;
    cinfo->mem->max_memory_to_use = MEM_HEADER_LIMIT;
    cinfo->mem->request_virt_barray = hook_request_virt_barray;
    cinfo->mem->access_virt_barray = hook_access_virt_barray;
    job->progress.progress_monitor = on_progress;
    cinfo->progress = &job->progress;
    /* APP1 only (EXIF); 0xFFFF is the largest possible segment, so nothing is cut. */
    jpeg_save_markers(cinfo, JPEG_APP0 + 1, 0xFFFF);
    jpeg_mem_src(cinfo, data, (unsigned long)len);
    jpeg_read_header(cinfo, TRUE);
    return 0;
}

/*
 * Fast path for the common case: a baseline/extended sequential Huffman JPEG whose one scan
 * holds every component. The entropy data is decoded here, straight into the dequantized
 * output planes, instead of by libjpeg (whose header parsing, tables and checks we still use).
 *
 * The contract: this decoder only finishes when the data is clean, and then its result is
 * exactly libjpeg's (the same canonical Huffman decode). On anything unusual -- an invalid
 * Huffman code or table, data that runs out or into a marker early, a whole unused byte
 * before a marker, an unexpected or missing RSTn, anything but EOI after the scan, a DC
 * predictor outside int16 -- it gives up without touching libjpeg's state, and the caller
 * runs libjpeg on the same cinfo, which then reports or tolerates the anomaly its own way.
 */
#define FAST_BITS 10 /* lookahead bits: tables of 1024 entries */
#define AC_EOB 0x1000

struct huff {
    uint16_t lookup[1 << FAST_BITS]; /* (length << 8) | symbol, 0: code longer than FAST_BITS */
    /* whole symbols decoded at once: (value << 16) | (run << 8) | bits used, or, for AC,
     * AC_EOB | bits used for end-of-block; 0: use lookup (and read the value bits) */
    int32_t ac[1 << FAST_BITS];
    int32_t maxcode[18];
    int32_t valoffset[18];
    uint8_t huffval[256];
};

/* natural order of zigzag index k; entries past 63 repeat 63 as libjpeg's table does, so a
 * run that overshoots the block lands where libjpeg puts it */
static const uint8_t natural_order[64 + 16] = {
    0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,  12, 19, 26, 33,
    40, 48, 41, 34, 27, 20, 13, 6,  7,  14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36,
    29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54,
    47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63};

static int32_t extend(uint32_t r, int s)
{
    return (r < (1u << (s - 1))) ? (int32_t)r - (int32_t)((1u << s) - 1) : (int32_t)r;
}

/* libjpeg's jpeg_make_d_derived_tbl checks; returns 0 where libjpeg would fail */
static int build_huff(const JHUFF_TBL *h, int is_dc, struct huff *t)
{
    uint8_t size[257];
    uint32_t code[257];
    uint32_t c;
    int l, i, p = 0, si, n;
    if (h == NULL)
        return 0;
    for (l = 1; l <= 16; l++) {
        i = h->bits[l];
        if (p + i > 256)
            return 0;
        while (i--)
            size[p++] = (uint8_t)l;
    }
    size[p] = 0;
    n = p;
    c = 0;
    si = size[0];
    p = 0;
    while (size[p]) {
        while (size[p] == si) {
            code[p++] = c;
            c++;
        }
        if (c >= (1u << si))
            return 0;
        c <<= 1;
        si++;
    }
    p = 0;
    for (l = 1; l <= 16; l++) {
        if (h->bits[l]) {
            t->valoffset[l] = p - (int32_t)code[p];
            p += h->bits[l];
            t->maxcode[l] = (int32_t)code[p - 1];
        } else {
            t->maxcode[l] = -1;
            t->valoffset[l] = 0;
        }
    }
    t->maxcode[17] = 0x7FFFFFFF;
    t->valoffset[17] = 0;
    memcpy(t->huffval, h->huffval, 256);
    if (is_dc)
        for (i = 0; i < n; i++)
            if (h->huffval[i] > 15)
                return 0;
    memset(t->lookup, 0, sizeof t->lookup);
    memset(t->ac, 0, sizeof t->ac);
    for (p = 0; p < n; p++) {
        int len = size[p];
        if (len <= FAST_BITS) {
            int shift = FAST_BITS - len, j;
            uint32_t base = code[p] << shift;
            int sym = h->huffval[p];
            for (j = 0; j < (1 << shift); j++) {
                uint32_t idx = base + (uint32_t)j;
                t->lookup[idx] = (uint16_t)((len << 8) | sym);
                if (is_dc) { /* sym = number of value bits, 0..15 */
                    if (len + sym <= FAST_BITS) {
                        int32_t v = 0;
                        if (sym)
                            v = extend((idx >> (FAST_BITS - len - sym)) & ((1u << sym) - 1),
                                       sym);
                        t->ac[idx] = (int32_t)((uint32_t)v << 16) | (len + sym);
                    }
                } else {
                    int run = sym >> 4, s = sym & 15;
                    if (s && len + s <= FAST_BITS) {
                        uint32_t r = (idx >> (FAST_BITS - len - s)) & ((1u << s) - 1);
                        int32_t v = extend(r, s);
                        t->ac[idx] = (int32_t)((uint32_t)v << 16) | (run << 8) | (len + s);
                    } else if (sym == 0x00) { /* EOB */
                        t->ac[idx] = AC_EOB | len;
                    } else if (sym == 0xF0) { /* ZRL: 16 zeros, i.e. run 15 then a 0 */
                        t->ac[idx] = (15 << 8) | len;
                    }
                }
            }
        }
    }
    return 1;
}

struct bits {
    const uint8_t *p, *end; /* next byte to load */
    uint64_t buf;           /* MSB-aligned; bits below cnt are zero */
    int cnt;                /* real bits in buf; < 0 means padding was consumed */
    int marker;             /* stopped at a marker: p points at its 0xFF */
};

static inline void bits_refill(struct bits *b)
{
    while (b->cnt <= 56 && !b->marker) {
        unsigned c;
        if (b->p + 8 <= b->end) { /* 8 bytes at once when none is 0xFF */
            uint64_t x, y;
            memcpy(&x, b->p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            x = __builtin_bswap64(x);
#endif
            y = ~x;
            if (((y - 0x0101010101010101ULL) & ~y & 0x8080808080808080ULL) == 0) {
                int nbytes = (64 - b->cnt) >> 3; /* 1..8 (cnt <= 56) */
                x &= ~0ULL << (64 - 8 * nbytes);
                b->buf |= x >> b->cnt;
                b->cnt += 8 * nbytes;
                b->p += nbytes;
                return;
            }
        }
        if (b->p >= b->end) {
            b->marker = 1; /* the data ended without a marker */
            return;
        }
        c = *b->p;
        if (c == 0xFF) {
            if (b->p + 1 < b->end && b->p[1] == 0x00) {
                b->p += 2;
            } else {
                b->marker = 1;
                return;
            }
        } else {
            b->p++;
        }
        b->buf |= (uint64_t)c << (56 - b->cnt);
        b->cnt += 8;
    }
}

#define BITS_PEEK(b, n) ((uint32_t)((b)->buf >> (64 - (n))))
#define BITS_SKIP(b, n) ((b)->buf <<= (n), (b)->cnt -= (n))

/* one Huffman symbol; -1 for a code that is not in the table. Needs >= 16 bits loaded. */
static inline int huff_decode(struct bits *b, const struct huff *t)
{
    uint32_t e = t->lookup[BITS_PEEK(b, FAST_BITS)];
    int l;
    uint32_t code;
    if (e) {
        BITS_SKIP(b, (int)(e >> 8));
        return (int)(e & 0xFF);
    }
    for (l = FAST_BITS + 1; l <= 16; l++) {
        code = BITS_PEEK(b, l);
        if ((int32_t)code <= t->maxcode[l]) {
            BITS_SKIP(b, l);
            return t->huffval[(code + (uint32_t)t->valoffset[l]) & 0xFF];
        }
    }
    return -1;
}

/* Decode one block's quantized values into out (zeroed here). Returns 0 on an anomaly. */
static inline int decode_block(struct bits *b, const struct huff *dc, const struct huff *ac,
                               int *pred, int16_t *out)
{
    int s, k;
    memset(out, 0, 64 * sizeof(int16_t));
    if (b->cnt < 32)
        bits_refill(b);
    {
        int32_t e = dc->ac[BITS_PEEK(b, FAST_BITS)];
        if (e) {
            BITS_SKIP(b, e & 0xFF);
            *pred += e >> 16;
        } else {
            s = huff_decode(b, dc);
            if (s < 0)
                return 0;
            if (s) {
                *pred += extend(BITS_PEEK(b, s), s);
                BITS_SKIP(b, s);
            }
        }
        if (*pred < -32768 || *pred > 32767)
            return 0;
    }
    out[0] = (int16_t)*pred;
    for (k = 1; k < 64;) {
        int32_t e;
        int r;
        if (b->cnt < 32)
            bits_refill(b);
        e = ac->ac[BITS_PEEK(b, FAST_BITS)];
        if (e) {
            BITS_SKIP(b, e & 0xFF);
            if (e & AC_EOB)
                break;
            /* a ZRL stores a 0 at k + 15 <= 78: still unwritten (or, past 63, never
             * read back: the loop ends), so it equals libjpeg's k += 16 */
            k += (e >> 8) & 15;
            out[natural_order[k]] = (int16_t)(e >> 16);
            k++;
            continue;
        }
        s = huff_decode(b, ac);
        if (s < 0)
            return 0;
        r = s >> 4;
        s &= 15;
        if (s) {
            k += r;
            out[natural_order[k]] = (int16_t)extend(BITS_PEEK(b, s), s);
            BITS_SKIP(b, s);
            k++;
        } else {
            if (r != 15)
                break;
            k += 16;
        }
    }
    return 1;
}

/* After a restart interval or the scan: only padding (< 8 bits) may be left before the next
 * marker; then fill bytes (0xFF) and the marker `want`. Advances b past it. */
static int bits_expect_marker(struct bits *b, int want)
{
    bits_refill(b);
    if (!b->marker || b->cnt < 0 || b->cnt >= 8)
        return 0;
    while (b->p < b->end && *b->p == 0xFF)
        b->p++;
    if (b->p >= b->end || *b->p != want)
        return 0;
    b->p++;
    b->buf = 0;
    b->cnt = 0;
    b->marker = 0;
    return 1;
}

/* Returns 1 when job->plane[] hold the finished planes, 0 to let libjpeg do it. */
static int fast_sequential(struct job *job)
{
    j_decompress_ptr cinfo = &job->cinfo;
    struct huff *tabs; /* DC tables 0..3, then AC tables 0..3 (built when used) */
    const struct huff *dc[MAX_COMPS_IN_SCAN], *ac[MAX_COMPS_IN_SCAN];
    int built[2 * NUM_HUFF_TBLS] = {0};
    uint16_t q[MAX_COMPS_IN_SCAN][64];
    int small_q[MAX_COMPS_IN_SCAN];
    int pred[MAX_COMPS_IN_SCAN] = {0};
    int16_t scratch[64];
    int nsc = cinfo->comps_in_scan, i, k, ok = 0;
    unsigned int togo, next_rst = 0;
    JDIMENSION mcus_per_row, mcu_rows, mx, my;
    struct bits b;
    const uint8_t *start = (const uint8_t *)job->data;

    if (cinfo->progressive_mode || cinfo->arith_code || nsc != cinfo->num_components ||
        nsc < 1 || nsc > MAX_COMPS_IN_SCAN || cinfo->Ss != 0 || cinfo->Se != 63 ||
        cinfo->Ah != 0 || cinfo->Al != 0 || cinfo->src == NULL ||
        cinfo->src->next_input_byte < start ||
        cinfo->src->next_input_byte + cinfo->src->bytes_in_buffer != start + job->len)
        return 0;
    if (nsc > 1) {
        int blocks = 0;
        for (i = 0; i < nsc; i++)
            blocks += cinfo->cur_comp_info[i]->h_samp_factor *
                      cinfo->cur_comp_info[i]->v_samp_factor;
        if (blocks > D_MAX_BLOCKS_IN_MCU)
            return 0;
        mcus_per_row = (cinfo->image_width + 8 * cinfo->max_h_samp_factor - 1) /
                       (8 * cinfo->max_h_samp_factor);
        mcu_rows = (cinfo->image_height + 8 * cinfo->max_v_samp_factor - 1) /
                   (8 * cinfo->max_v_samp_factor);
    } else {
        mcus_per_row = cinfo->cur_comp_info[0]->width_in_blocks;
        mcu_rows = cinfo->cur_comp_info[0]->height_in_blocks;
    }
    for (i = 0; i < nsc; i++) {
        jpeg_component_info *c = cinfo->cur_comp_info[i];
        JQUANT_TBL *qt;
        if (c->quant_tbl_no < 0 || c->quant_tbl_no >= NUM_QUANT_TBLS ||
            (qt = cinfo->quant_tbl_ptrs[c->quant_tbl_no]) == NULL || c->dc_tbl_no < 0 ||
            c->dc_tbl_no >= NUM_HUFF_TBLS || c->ac_tbl_no < 0 || c->ac_tbl_no >= NUM_HUFF_TBLS)
            return 0;
        small_q[i] = 1;
        for (k = 0; k < 64; k++) {
            q[i][k] = (uint16_t)qt->quantval[k];
            if (q[i][k] > 32767)
                small_q[i] = 0;
        }
    }
    tabs = (struct huff *)PyMem_RawMalloc(2 * NUM_HUFF_TBLS * sizeof(struct huff));
    if (tabs == NULL)
        return 0;
    for (i = 0; i < nsc; i++) {
        jpeg_component_info *c = cinfo->cur_comp_info[i];
        int d = c->dc_tbl_no, a = NUM_HUFF_TBLS + c->ac_tbl_no;
        if (!built[d] && !(built[d] = build_huff(cinfo->dc_huff_tbl_ptrs[c->dc_tbl_no], 1,
                                                 &tabs[d])))
            goto out;
        if (!built[a] && !(built[a] = build_huff(cinfo->ac_huff_tbl_ptrs[c->ac_tbl_no], 0,
                                                 &tabs[a])))
            goto out;
        dc[i] = &tabs[d];
        ac[i] = &tabs[a];
    }

    b.p = cinfo->src->next_input_byte;
    b.end = start + job->len;
    b.buf = 0;
    b.cnt = 0;
    b.marker = 0;
    togo = cinfo->restart_interval;
    for (my = 0; my < mcu_rows; my++) {
        for (mx = 0; mx < mcus_per_row; mx++) {
            if (cinfo->restart_interval) {
                if (togo == 0) {
                    if (!bits_expect_marker(&b, 0xD0 + (int)next_rst))
                        goto out;
                    next_rst = (next_rst + 1) & 7;
                    memset(pred, 0, sizeof pred);
                    togo = cinfo->restart_interval;
                }
                togo--;
            }
            for (i = 0; i < nsc; i++) {
                jpeg_component_info *c = cinfo->cur_comp_info[i];
                int ci = c->component_index;
                int h = nsc > 1 ? c->h_samp_factor : 1, v = nsc > 1 ? c->v_samp_factor : 1;
                int xx, yy;
                for (yy = 0; yy < v; yy++) {
                    JDIMENSION row = my * (JDIMENSION)v + (JDIMENSION)yy;
                    for (xx = 0; xx < h; xx++) {
                        JDIMENSION col = mx * (JDIMENSION)h + (JDIMENSION)xx;
                        int16_t *out = (row < c->height_in_blocks && col < c->width_in_blocks)
                                           ? job->plane[ci] +
                                                 ((size_t)row * c->width_in_blocks + col) * 64
                                           : scratch;
                        if (!decode_block(&b, dc[i], ac[i], &pred[i], out))
                            goto out;
                        dequant_blocks(out, q[i], out, 1, small_q[i]);
                    }
                }
            }
            if (b.cnt < 0) /* decoded past the end of the data */
                goto out;
        }
    }
    ok = bits_expect_marker(&b, 0xD9); /* EOI */
out:
    PyMem_RawFree(tabs);
    return ok;
}

/* Phase 2: decode all scans, leaving job->plane[ci] as the finished (Hb, Wb, 64) planes.
 * Returns 0 or -1 (err filled). */
static int phase_coefficients(struct job *job)
{
    j_decompress_ptr cinfo = &job->cinfo;
    jvirt_barray_ptr *coefs;
    int ci;
    if (setjmp(job->err.jb))
        return -1;
    if (job->streaming) {
        size_t off = 0;
        job->arena = (JBLOCK *)PyMem_RawMalloc(job->arena_blocks * sizeof(JBLOCK));
        if (job->arena == NULL)
            jump_with((j_common_ptr)cinfo, K_TOO_LARGE,
                      "out of memory for the coefficient arrays");
        for (ci = 0; ci < job->ncomp; ci++) {
            jpeg_component_info *c = &cinfo->comp_info[ci];
            job->plane[ci] = (int16_t *)(job->arena + off);
            off += (size_t)c->height_in_blocks * c->width_in_blocks;
        }
        if (job->use_fast && fast_sequential(job)) {
            job->used_fast = 1;
            return 0;
        }
    }
    coefs = jpeg_read_coefficients(cinfo);
    if (coefs == NULL || job->narrays != job->ncomp)
        jump_with((j_common_ptr)cinfo, K_CORRUPT,
                  "damaged JPEG: libjpeg returned no coefficients");
    for (ci = 0; ci < job->ncomp; ci++) {
        struct barray *a = (struct barray *)coefs[ci];
        JDIMENSION row;
        if (a != job->arrays[ci])
            jump_with((j_common_ptr)cinfo, K_CORRUPT,
                      "damaged JPEG: coefficient arrays do not match the header");
        if (a->streaming) {
            flush_window(cinfo, a);
            if (a->next_row < a->hb) /* rows never decoded (only when not strict) */
                memset(a->out + (size_t)a->next_row * a->wb * 64, 0,
                       (size_t)(a->hb - a->next_row) * a->wb * sizeof(JBLOCK));
            continue;
        }
        load_qtable(cinfo, a);
        /* row r moves from offset r*cols to r*wb blocks: never ahead of unread data */
        for (row = 0; row < a->hb; row++)
            dequant_blocks((const JCOEF *)a->rowptr[row], a->q,
                           (int16_t *)a->mem + (size_t)row * a->wb * 64, a->wb, a->small_q);
    }
    return 0;
}

static void fail(int kind, const char *msg)
{
    PyObject *args = Py_BuildValue("(ss)", kind_names[kind], msg);
    if (args != NULL) {
        PyErr_SetObject(Failure, args);
        Py_DECREF(args);
    }
}

static PyObject *find_exif(j_decompress_ptr cinfo)
{
    jpeg_saved_marker_ptr m;
    for (m = cinfo->marker_list; m != NULL; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && m->data != NULL &&
            memcmp(m->data, "Exif\0\0", 6) == 0)
            return PyBytes_FromStringAndSize((const char *)m->data + 6,
                                             (Py_ssize_t)m->data_length - 6);
    }
    Py_RETURN_NONE;
}

static void free_capsule_memory(PyObject *capsule)
{
    PyMem_RawFree(PyCapsule_GetPointer(capsule, "freqdata._jpegcoef.coefficients"));
}

/* A capsule that frees mem (raw allocator) when the last array using it goes away. */
static PyObject *owner_capsule(void *mem)
{
    return PyCapsule_New(mem, "freqdata._jpegcoef.coefficients", free_capsule_memory);
}

/* Wrap job->plane[ci] as an (hb, wb, 64) int16 array; its base is the owner capsule of its
 * memory (*arena_owner for the arena, created on first use). */
static PyObject *plane_array(struct job *job, int ci, npy_intp hb, npy_intp wb,
                             PyObject **arena_owner)
{
    npy_intp dims[3] = {hb, wb, 64};
    struct barray *a = ci < job->narrays ? job->arrays[ci] : NULL;
    PyObject *arr, *owner;
    if (a != NULL && a->own) {
        owner = owner_capsule(a->mem);
        if (owner == NULL)
            return NULL;
        a->own = 0; /* the capsule frees it now */
    } else {
        if (*arena_owner == NULL) {
            *arena_owner = owner_capsule(job->arena);
            if (*arena_owner == NULL)
                return NULL;
            job->arena = NULL; /* the capsule frees it now */
        }
        owner = *arena_owner;
        Py_INCREF(owner);
    }
    arr = PyArray_SimpleNewFromData(3, dims, NPY_INT16, job->plane[ci]);
    if (arr == NULL) {
        Py_DECREF(owner);
        return NULL;
    }
    if (PyArray_SetBaseObject((PyArrayObject *)arr, owner) < 0) { /* steals owner */
        Py_DECREF(arr);
        return NULL;
    }
    return arr;
}

static PyObject *jc_read(PyObject *self, PyObject *args)
{
    Py_buffer view;
    unsigned long long max_pixels;
    int strict, rc, ci, use_fast = 1;
    struct job job;
    PyObject *result = NULL, *planes = NULL, *qtables = NULL, *sampling = NULL, *exif = NULL,
             *warnings = NULL, *arena_owner = NULL;
    const char *colorspace;
    j_decompress_ptr cinfo = &job.cinfo;
    (void)self;

    if (!PyArg_ParseTuple(args, "y*Kp|p:read", &view, &max_pixels, &strict, &use_fast))
        return NULL;
    memset(&job, 0, sizeof job);
    job.use_fast = use_fast;
    job.data = view.buf;
    job.len = (size_t)view.len;
    if (view.len <= 0) {
        fail(K_NOT_JPEG, "not a JPEG file (empty input: 0 bytes)");
        PyBuffer_Release(&view);
        return NULL;
    }
    job.cinfo.err = jpeg_std_error(&job.err.pub);
    job.err.pub.error_exit = on_error_exit;
    job.err.pub.emit_message = on_emit_message;
    job.err.pub.output_message = on_output_message;
    job.err.strict = strict;

    Py_BEGIN_ALLOW_THREADS
    rc = phase_header(&job, (const unsigned char *)view.buf, (size_t)view.len);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        fail(job.err.kind, job.err.msg);
        goto done;
    }

    /* ---- validate before anything big is allocated ---- */
    job.ncomp = cinfo->num_components;
    {
        unsigned long long w = cinfo->image_width, h = cinfo->image_height;
        unsigned long long npix = w * h;
        if (w == 0 || h == 0) {
            fail(K_CORRUPT, "damaged JPEG: image has zero width or height");
            goto done;
        }
        if (npix > max_pixels) {
            char msg[200];
            if (npix >= 1000000000ULL)
                snprintf(msg, sizeof msg,
                         "image of %llux%llu = %.1f Gpixels exceeds max_pixels=%llu", w, h,
                         (double)npix / 1e9, max_pixels);
            else
                snprintf(msg, sizeof msg,
                         "image of %llux%llu = %.1f Mpixels exceeds max_pixels=%llu", w, h,
                         (double)npix / 1e6, max_pixels);
            fail(K_TOO_LARGE, msg);
            goto done;
        }
    }
    if (job.ncomp == 1 && cinfo->jpeg_color_space == JCS_GRAYSCALE) {
        colorspace = "gray";
    } else if (job.ncomp == 3 && cinfo->jpeg_color_space == JCS_YCbCr) {
        colorspace = "ycbcr";
    } else {
        char msg[300];
        if (job.ncomp == 4)
            snprintf(msg, sizeof msg,
                     "CMYK/YCCK JPEG (4 components) is not supported by the coefficient path; "
                     "use the pixel path");
        else if (job.ncomp == 3 && cinfo->jpeg_color_space == JCS_RGB)
            snprintf(msg, sizeof msg,
                     "RGB JPEG (3 components stored as R,G,B, not YCbCr: Adobe transform 0 or "
                     "component ids 'R','G','B') is not supported by the coefficient path; "
                     "use the pixel path");
        else
            snprintf(msg, sizeof msg,
                     "JPEG with %d components in an unknown colour space is not supported by "
                     "the coefficient path (only grayscale and YCbCr are); use the pixel path",
                     job.ncomp);
        fail(K_UNSUPPORTED, msg);
        goto done;
    }
    if (job.ncomp == 3) {
        jpeg_component_info *y = &cinfo->comp_info[0];
        for (ci = 1; ci < 3; ci++) {
            jpeg_component_info *c = &cinfo->comp_info[ci];
            int rh = c->h_samp_factor > 0 ? y->h_samp_factor / c->h_samp_factor : 0;
            int rv = c->v_samp_factor > 0 ? y->v_samp_factor / c->v_samp_factor : 0;
            int ok_h = c->h_samp_factor > 0 && y->h_samp_factor % c->h_samp_factor == 0 &&
                       (rh == 1 || rh == 2 || rh == 4);
            int ok_v = c->v_samp_factor > 0 && y->v_samp_factor % c->v_samp_factor == 0 &&
                       (rv == 1 || rv == 2 || rv == 4);
            if (!ok_h || !ok_v) {
                char msg[300];
                snprintf(msg, sizeof msg,
                         "JPEG sampling factors Y %dx%d, Cb %dx%d, Cr %dx%d are not supported "
                         "by the coefficient path (each chroma factor must divide luma's with "
                         "a ratio of 1, 2 or 4); use the pixel path",
                         y->h_samp_factor, y->v_samp_factor, cinfo->comp_info[1].h_samp_factor,
                         cinfo->comp_info[1].v_samp_factor, cinfo->comp_info[2].h_samp_factor,
                         cinfo->comp_info[2].v_samp_factor);
                fail(K_UNSUPPORTED, msg);
                goto done;
            }
        }
    }

    /* ---- memory budget: the component arrays padded to whole MCUs, plus libjpeg's own ---- */
    job.streaming = !cinfo->progressive_mode;
    sampling = PyList_New(job.ncomp);
    if (sampling == NULL)
        goto done;
    for (ci = 0; ci < job.ncomp; ci++) {
        jpeg_component_info *c = &cinfo->comp_info[ci];
        unsigned long long hpad = (unsigned long long)c->height_in_blocks + c->v_samp_factor;
        unsigned long long wpad = (unsigned long long)c->width_in_blocks + c->h_samp_factor;
        PyObject *item;
        unsigned long long v = (unsigned long long)c->v_samp_factor;
        unsigned long long h = (unsigned long long)c->h_samp_factor;
        if (cinfo->progressive_mode) /* what jdcoefct requests: whole MCUs */
            job.arena_blocks += (size_t)(((c->height_in_blocks + v - 1) / v * v) *
                                         ((c->width_in_blocks + h - 1) / h * h));
        else /* the exact planes */
            job.arena_blocks += (size_t)c->height_in_blocks * c->width_in_blocks;
        job.alloc_limit += hpad * wpad * sizeof(JBLOCK);
        if (job.ncomp == 1)
            item = Py_BuildValue("(ii)", 1, 1); /* factors mean nothing for one component */
        else
            item = Py_BuildValue("(ii)", c->h_samp_factor, c->v_samp_factor);
        if (item == NULL)
            goto done;
        PyList_SET_ITEM(sampling, ci, item);
    }
    {
        unsigned long long lim = MEM_SLACK + 16ULL * (unsigned long long)view.len;
        if (lim > (unsigned long long)LONG_MAX)
            lim = (unsigned long long)LONG_MAX;
        cinfo->mem->max_memory_to_use = (long)lim; /* libjpeg's own allocations */
    }

    Py_BEGIN_ALLOW_THREADS
    rc = phase_coefficients(&job);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        fail(job.err.kind, job.err.msg);
        goto done;
    }

    planes = PyList_New(job.ncomp);
    qtables = PyList_New(job.ncomp);
    if (planes == NULL || qtables == NULL)
        goto done;
    for (ci = 0; ci < job.ncomp; ci++) {
        jpeg_component_info *c = &cinfo->comp_info[ci];
        JQUANT_TBL *qt = component_qtable(cinfo, c);
        npy_intp n64 = 64;
        PyObject *arr;
        uint16_t *dst;
        int k;
        arr = plane_array(&job, ci, (npy_intp)c->height_in_blocks, (npy_intp)c->width_in_blocks,
                          &arena_owner);
        if (arr == NULL)
            goto done;
        PyList_SET_ITEM(planes, ci, arr);
        arr = PyArray_SimpleNew(1, &n64, NPY_UINT16);
        if (arr == NULL)
            goto done;
        PyList_SET_ITEM(qtables, ci, arr);
        dst = (uint16_t *)PyArray_DATA((PyArrayObject *)arr);
        for (k = 0; k < 64; k++)
            dst[k] = qt ? (uint16_t)qt->quantval[k] : 0;
    }
    exif = find_exif(cinfo);
    if (exif == NULL)
        goto done;
    warnings = PyList_New(job.err.n_saved);
    if (warnings == NULL)
        goto done;
    for (ci = 0; ci < job.err.n_saved; ci++) {
        PyObject *s = PyUnicode_DecodeLatin1(job.err.saved[ci], strlen(job.err.saved[ci]), NULL);
        if (s == NULL)
            goto done;
        PyList_SET_ITEM(warnings, ci, s);
    }
    result = Py_BuildValue("(IIOOOsOOOOs)", (unsigned int)cinfo->image_width,
                           (unsigned int)cinfo->image_height, planes, qtables, sampling,
                           colorspace, cinfo->progressive_mode ? Py_True : Py_False,
                           cinfo->arith_code ? Py_True : Py_False, exif, warnings,
                           job.used_fast ? "fast" : "libjpeg");

done:
    /* memory not handed over to numpy (before destroy: the barray structs live in its pool) */
    for (ci = 0; ci < job.narrays; ci++)
        if (job.arrays[ci]->own)
            PyMem_RawFree(job.arrays[ci]->mem);
    PyMem_RawFree(job.arena);
    if (job.created)
        jpeg_destroy_decompress(cinfo);
    Py_XDECREF(arena_owner);
    PyBuffer_Release(&view);
    Py_XDECREF(planes);
    Py_XDECREF(qtables);
    Py_XDECREF(sampling);
    Py_XDECREF(exif);
    Py_XDECREF(warnings);
    return result;
}

/* Indices k (ascending) of the nonzero coefficients of a 64-coefficient block; returns how
 * many. */
static int nonzero_positions(const int16_t *blk, int *nz)
{
    int n = 0, k;
#if defined(__SSE2__)
    const __m128i zero = _mm_setzero_si128();
    uint64_t mask = 0;
    for (k = 0; k < 64; k += 16) {
        __m128i a = _mm_cmpeq_epi16(_mm_loadu_si128((const __m128i *)(blk + k)), zero);
        __m128i b = _mm_cmpeq_epi16(_mm_loadu_si128((const __m128i *)(blk + k + 8)), zero);
        /* one byte per coefficient: 0xFF where zero */
        mask |= (uint64_t)(uint16_t)_mm_movemask_epi8(_mm_packs_epi16(a, b)) << k;
    }
    mask = ~mask;
    while (mask) {
        nz[n++] = __builtin_ctzll(mask);
        mask &= mask - 1;
    }
#else
    for (k = 0; k < 64; k++)
        if (blk[k] != 0)
            nz[n++] = k;
#endif
    return n;
}

/* out[t] = numpy's clip(rint(sum_k val[k] * rows[k][t]), -32768, 32767), t < nout: the
 * products added in order k = 0, 1, ..., rounded to nearest, ties to even. */
static void map_block(const double *val, const double *const *rows, int n, npy_intp nout,
                      int32_t *out)
{
    npy_intp t = 0;
    int k;
#if defined(__SSE2__)
    const __m128d lo = _mm_set1_pd(-32768.0), hi = _mm_set1_pd(32767.0);
    for (; t + 8 <= nout; t += 8) { /* eight sums in registers */
        __m128d s0 = _mm_setzero_pd(), s1 = s0, s2 = s0, s3 = s0;
        for (k = 0; k < n; k++) {
            const __m128d v = _mm_set1_pd(val[k]);
            const double *row = rows[k] + t;
            s0 = _mm_add_pd(s0, _mm_mul_pd(v, _mm_loadu_pd(row)));
            s1 = _mm_add_pd(s1, _mm_mul_pd(v, _mm_loadu_pd(row + 2)));
            s2 = _mm_add_pd(s2, _mm_mul_pd(v, _mm_loadu_pd(row + 4)));
            s3 = _mm_add_pd(s3, _mm_mul_pd(v, _mm_loadu_pd(row + 6)));
        }
        /* clamp, then convert in the default rounding mode (to nearest, ties to even) */
        _mm_storel_epi64((__m128i *)(out + t),
                         _mm_cvtpd_epi32(_mm_min_pd(_mm_max_pd(s0, lo), hi)));
        _mm_storel_epi64((__m128i *)(out + t + 2),
                         _mm_cvtpd_epi32(_mm_min_pd(_mm_max_pd(s1, lo), hi)));
        _mm_storel_epi64((__m128i *)(out + t + 4),
                         _mm_cvtpd_epi32(_mm_min_pd(_mm_max_pd(s2, lo), hi)));
        _mm_storel_epi64((__m128i *)(out + t + 6),
                         _mm_cvtpd_epi32(_mm_min_pd(_mm_max_pd(s3, lo), hi)));
    }
#endif
    for (; t < nout; t++) {
        double x = 0.0;
        for (k = 0; k < n; k++)
            x += val[k] * rows[k][t];
        x = x < -32768.0 ? -32768.0 : (x > 32767.0 ? 32767.0 : x);
        out[t] = (int32_t)nearbyint(x);
    }
}

/* plane must be a C-contiguous (Hb, Wb, 64) int16, out a C-contiguous (C, H, W) int16 with
 * 1 <= C <= max_c; sets a ValueError and returns -1 otherwise. */
static int check_plane_out(PyArrayObject *plane, PyArrayObject *out, npy_intp max_c)
{
    if (PyArray_TYPE(plane) != NPY_INT16 || PyArray_NDIM(plane) != 3 ||
        PyArray_DIM(plane, 2) != 64 || !PyArray_IS_C_CONTIGUOUS(plane)) {
        PyErr_SetString(PyExc_ValueError, "plane must be a C-contiguous (Hb, Wb, 64) int16");
        return -1;
    }
    if (PyArray_TYPE(out) != NPY_INT16 || PyArray_NDIM(out) != 3 ||
        PyArray_DIM(out, 0) < 1 || PyArray_DIM(out, 0) > max_c ||
        !PyArray_IS_C_CONTIGUOUS(out) || !PyArray_ISWRITEABLE(out)) {
        PyErr_SetString(PyExc_ValueError, "out must be a writable C-contiguous (C, H, W) int16");
        return -1;
    }
    return 0;
}

/*
 * gather(plane, select, negate, out) -> None
 *
 * out[c, r, x] = plane[r, x, select[c]], negated (int16 wrap-around, as numpy's) where
 * negate[c]: channels of one component at its own sampling. `select`: (C,) int64 in
 * [0, 64); `negate`: (C,) bool; `out`: (C, Hb, Wb) int16.
 */
static PyObject *jc_gather(PyObject *self, PyObject *args)
{
    PyArrayObject *plane, *sel, *neg, *out;
    npy_intp nch, nblk, b, ch;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!O!O!:gather", &PyArray_Type, &plane, &PyArray_Type, &sel,
                          &PyArray_Type, &neg, &PyArray_Type, &out))
        return NULL;
    if (check_plane_out(plane, out, 64) < 0)
        return NULL;
    nch = PyArray_DIM(out, 0);
    if (PyArray_DIM(out, 1) != PyArray_DIM(plane, 0) ||
        PyArray_DIM(out, 2) != PyArray_DIM(plane, 1)) {
        PyErr_SetString(PyExc_ValueError, "out's grid must be the plane's");
        return NULL;
    }
    if (PyArray_TYPE(sel) != NPY_INT64 || PyArray_NDIM(sel) != 1 ||
        PyArray_DIM(sel, 0) != nch || !PyArray_IS_C_CONTIGUOUS(sel) ||
        PyArray_TYPE(neg) != NPY_BOOL || PyArray_NDIM(neg) != 1 ||
        PyArray_DIM(neg, 0) != nch || !PyArray_IS_C_CONTIGUOUS(neg)) {
        PyErr_SetString(PyExc_ValueError, "select must be (C,) int64 and negate (C,) bool");
        return NULL;
    }
    {
        const int16_t *src = (const int16_t *)PyArray_DATA(plane);
        const int64_t *k = (const int64_t *)PyArray_DATA(sel);
        const npy_bool *ng = (const npy_bool *)PyArray_DATA(neg);
        int16_t *dst = (int16_t *)PyArray_DATA(out);
        int idx[64];
        uint16_t flip[64];
        for (ch = 0; ch < nch; ch++) {
            if (k[ch] < 0 || k[ch] >= 64) {
                PyErr_SetString(PyExc_ValueError, "select must lie in [0, 64)");
                return NULL;
            }
            idx[ch] = (int)k[ch];
            flip[ch] = ng[ch] ? 0xFFFF : 0; /* -v = (v ^ 0xFFFF) + 1 (mod 2^16) */
        }
        nblk = PyArray_DIM(plane, 0) * PyArray_DIM(plane, 1);
        Py_BEGIN_ALLOW_THREADS
        b = 0;
#if defined(__SSE2__)
        /* eight blocks at a time: transpose each needed 8-coefficient row of the eight blocks
         * (8 x 8 int16) in registers, then one 16-byte store per selected channel */
        {
            int need[8] = {0}, r, u;
            for (ch = 0; ch < nch; ch++)
                need[idx[ch] >> 3] = 1;
            for (; b + 8 <= nblk; b += 8) {
                const int16_t *blk = src + b * 64;
                for (r = 0; r < 8; r++) {
                    __m128i x[8], t[8], v[8], col[8];
                    if (!need[r])
                        continue;
                    for (u = 0; u < 8; u++)
                        x[u] = _mm_loadu_si128((const __m128i *)(blk + u * 64 + r * 8));
                    for (u = 0; u < 4; u++) {
                        t[2 * u] = _mm_unpacklo_epi16(x[2 * u], x[2 * u + 1]);
                        t[2 * u + 1] = _mm_unpackhi_epi16(x[2 * u], x[2 * u + 1]);
                    }
                    v[0] = _mm_unpacklo_epi32(t[0], t[2]);
                    v[1] = _mm_unpackhi_epi32(t[0], t[2]);
                    v[2] = _mm_unpacklo_epi32(t[1], t[3]);
                    v[3] = _mm_unpackhi_epi32(t[1], t[3]);
                    v[4] = _mm_unpacklo_epi32(t[4], t[6]);
                    v[5] = _mm_unpackhi_epi32(t[4], t[6]);
                    v[6] = _mm_unpacklo_epi32(t[5], t[7]);
                    v[7] = _mm_unpackhi_epi32(t[5], t[7]);
                    for (u = 0; u < 4; u++) { /* col[u][i] = block b+i, coefficient 8r+u */
                        col[2 * u] = _mm_unpacklo_epi64(v[u], v[u + 4]);
                        col[2 * u + 1] = _mm_unpackhi_epi64(v[u], v[u + 4]);
                    }
                    for (ch = 0; ch < nch; ch++) {
                        __m128i c;
                        if ((idx[ch] >> 3) != r)
                            continue;
                        c = col[idx[ch] & 7];
                        if (flip[ch])
                            c = _mm_sub_epi16(_mm_setzero_si128(), c); /* wraps like numpy */
                        _mm_storeu_si128((__m128i *)(dst + ch * nblk + b), c);
                    }
                }
            }
        }
#endif
        for (; b < nblk; b++)
            for (ch = 0; ch < nch; ch++) {
                uint16_t x = (uint16_t)src[b * 64 + idx[ch]];
                dst[ch * nblk + b] = (int16_t)(uint16_t)((x ^ flip[ch]) + (flip[ch] & 1));
            }
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

/*
 * upsample(plane, matrix, fv, fh, out) -> None
 *
 * A linear map per block, for DCT-domain chroma upsampling (freqdata/coefficients.py): block
 * (r, c) of `plane` ((Hb, Wb, 64) int16) becomes the fv x fh output blocks (fv*r + i,
 * fh*c + j), whose C channels are out[:, ...] = sum_k plane[r, c, k] * matrix[k, i*fh + j, :]
 * (`matrix`: (64, fv*fh, C) float64, C-contiguous), rounded half to even and saturated to
 * int16, like numpy's clip(rint(.)). `out`: (C, H, W) int16 with H <= Hb*fv, W <= Wb*fh;
 * output blocks beyond it are dropped. Only the nonzero coefficients of a block are visited,
 * in ascending k (a zero product changes no float sum), so the cost follows the data's
 * sparsity.
 */
static PyObject *jc_upsample(PyObject *self, PyObject *args)
{
    PyArrayObject *plane, *matrix, *out;
    int fv, fh;
    npy_intp out_h, out_w, hb, wb, nch, nout;
    (void)self;
    if (!PyArg_ParseTuple(args, "O!O!iiO!:upsample", &PyArray_Type, &plane, &PyArray_Type,
                          &matrix, &fv, &fh, &PyArray_Type, &out))
        return NULL;
    if (check_plane_out(plane, out, 64) < 0)
        return NULL;
    if (fv < 1 || fh < 1 || fv * fh > 16) {
        PyErr_SetString(PyExc_ValueError, "factors must be >= 1 with fv * fh <= 16");
        return NULL;
    }
    nch = PyArray_DIM(out, 0);
    if (PyArray_TYPE(matrix) != NPY_FLOAT64 || PyArray_NDIM(matrix) != 3 ||
        PyArray_DIM(matrix, 0) != 64 || PyArray_DIM(matrix, 1) != fv * fh ||
        PyArray_DIM(matrix, 2) != nch || !PyArray_IS_C_CONTIGUOUS(matrix)) {
        PyErr_SetString(PyExc_ValueError, "matrix must be a C-contiguous (64, fv*fh, C) float64");
        return NULL;
    }
    hb = PyArray_DIM(plane, 0);
    wb = PyArray_DIM(plane, 1);
    out_h = PyArray_DIM(out, 1);
    out_w = PyArray_DIM(out, 2);
    nout = fv * fh * nch;
    if (out_h > hb * fv || out_w > wb * fh) {
        PyErr_SetString(PyExc_ValueError, "out is larger than the upsampled grid");
        return NULL;
    }
    {
        const int16_t *src = (const int16_t *)PyArray_DATA(plane);
        const double *m = (const double *)PyArray_DATA(matrix);
        int16_t *dst = (int16_t *)PyArray_DATA(out);
        npy_intp plane_px = out_h * out_w, r, c;
        int32_t acc[16 * 64];
        double val[64];
        const double *rows[64];
        int nz[64], n, k, i, j;
        Py_BEGIN_ALLOW_THREADS
        for (r = 0; r < hb && r * fv < out_h; r++) {
            for (c = 0; c < wb && c * fh < out_w; c++) {
                const int16_t *blk = src + (r * wb + c) * 64;
                n = nonzero_positions(blk, nz);
                for (k = 0; k < n; k++) {
                    val[k] = (double)blk[nz[k]];
                    rows[k] = m + (npy_intp)nz[k] * nout;
                }
                map_block(val, rows, n, nout, acc);
                for (i = 0; i < fv; i++) {
                    npy_intp y = r * fv + i;
                    if (y >= out_h)
                        break;
                    for (j = 0; j < fh; j++) {
                        npy_intp x = c * fh + j, ch;
                        const int32_t *a = acc + (i * fh + j) * nch;
                        if (x >= out_w)
                            break;
                        for (ch = 0; ch < nch; ch++)
                            dst[ch * plane_px + y * out_w + x] = (int16_t)a[ch];
                    }
                }
            }
        }
        Py_END_ALLOW_THREADS
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"read", jc_read, METH_VARARGS,
     "read(data, max_pixels, strict, fast=True) -> tuple: a JPEG's dequantized DCT "
     "coefficients (see freqdata.jpeg.read_coefficients); fast=False always uses libjpeg's "
     "entropy decoder (for tests)."},
    {"gather", jc_gather, METH_VARARGS,
     "gather(plane, select, negate, out) -> None: selected channels of one plane, channel-"
     "major (see freqdata.coefficients)."},
    {"upsample", jc_upsample, METH_VARARGS,
     "upsample(plane, matrix, fv, fh, out) -> None: a fixed linear map from each "
     "64-coefficient block to fv x fh output blocks of C channels (see "
     "freqdata.coefficients)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jpegcoef",
    "libjpeg coefficient reader (private; use freqdata.jpeg.read_coefficients).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__jpegcoef(void)
{
    PyObject *m;
    import_array();
    m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Failure = PyErr_NewExceptionWithDoc("freqdata._jpegcoef.Failure",
                                        "Failure(kind, message) from the coefficient reader.",
                                        PyExc_ValueError, NULL);
    if (Failure == NULL || PyModule_AddObjectRef(m, "Failure", Failure) < 0 ||
        PyModule_AddIntConstant(m, "MAX_SCANS", MAX_SCANS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
