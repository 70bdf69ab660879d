/*
 * freqdata._jpegcoef: read a JPEG's DCT coefficients with libjpeg(-turbo), without the
 * inverse DCT.
 *
 *   read(data, max_pixels, strict) -> tuple
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
 *    warnings)    list of str: libjpeg's warnings (only non-empty when strict is false or
 *                 the warning is benign)
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
 * Speed: jpeg_read_coefficients normally decodes into libjpeg's own pre-zeroed whole-image
 * arrays, which we would then copy. Instead we supply the memory manager's
 * request_virt_barray/access_virt_barray methods (public, overridable members of
 * struct jpeg_memory_mgr), so libjpeg's entropy decoder writes straight into zeroed memory
 * that becomes the output array; one in-place pass then dequantizes and drops the MCU
 * padding (rows are compacted from libjpeg's padded stride to width_in_blocks).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
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
    struct barray *a = job->arrays[ci];
    PyObject *arr, *owner;
    if (a->own) {
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
    int strict, rc, ci;
    struct job job;
    PyObject *result = NULL, *planes = NULL, *qtables = NULL, *sampling = NULL, *exif = NULL,
             *warnings = NULL, *arena_owner = NULL;
    const char *colorspace;
    j_decompress_ptr cinfo = &job.cinfo;
    (void)self;

    if (!PyArg_ParseTuple(args, "y*Kp:read", &view, &max_pixels, &strict))
        return NULL;
    memset(&job, 0, sizeof job);
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
    result = Py_BuildValue("(IIOOOsOOOO)", (unsigned int)cinfo->image_width,
                           (unsigned int)cinfo->image_height, planes, qtables, sampling,
                           colorspace, cinfo->progressive_mode ? Py_True : Py_False,
                           cinfo->arith_code ? Py_True : Py_False, exif, warnings);

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

static PyMethodDef methods[] = {
    {"read", jc_read, METH_VARARGS,
     "read(data, max_pixels, strict) -> tuple: a JPEG's dequantized DCT coefficients "
     "(see freqdata.jpeg.read_coefficients)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jpegcoef",
    "libjpeg coefficient reader (private; use freqdata.jpeg.read_coefficients).", -1, methods,
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
