/*
 * gguf.c - GGUF reader (mmap, validated up front) and writer (engine layer).
 *
 * The reader walks the header once with a bounds-checked cursor, records
 * views of every key/value and tensor info, and checks every tensor's data
 * range against the file. After sl_gguf_open() returns 0, every pointer in
 * struct sl_gguf lies inside the mapping. See gguf.h for the layout.
 */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quant.h"

/* ------------------------------------------------------------------------ */
/* value types                                                               */
/* ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    size_t size;
} vtypes[SL_GGUF_VTYPE_COUNT] = {
    [SL_GGUF_UINT8] = {"u8", 1},     [SL_GGUF_INT8] = {"i8", 1},
    [SL_GGUF_UINT16] = {"u16", 2},   [SL_GGUF_INT16] = {"i16", 2},
    [SL_GGUF_UINT32] = {"u32", 4},   [SL_GGUF_INT32] = {"i32", 4},
    [SL_GGUF_FLOAT32] = {"f32", 4},  [SL_GGUF_BOOL] = {"bool", 1},
    [SL_GGUF_STRING] = {"str", 0},   [SL_GGUF_ARRAY] = {"arr", 0},
    [SL_GGUF_UINT64] = {"u64", 8},   [SL_GGUF_INT64] = {"i64", 8},
    [SL_GGUF_FLOAT64] = {"f64", 8},
};

size_t sl_gguf_vtype_size(uint32_t vtype)
{
    return vtype < SL_GGUF_VTYPE_COUNT ? vtypes[vtype].size : 0;
}

const char *sl_gguf_vtype_name(uint32_t vtype)
{
    return vtype < SL_GGUF_VTYPE_COUNT ? vtypes[vtype].name : "?";
}

bool sl_str_eq(struct sl_str s, const char *c)
{
    size_t n = strlen(c);
    return s.len == n && memcmp(s.ptr, c, n) == 0;
}

/* ------------------------------------------------------------------------ */
/* reader                                                                    */
/* ------------------------------------------------------------------------ */

struct cursor {
    const uint8_t *base;
    size_t size;
    size_t pos;
    struct sl_err *err;
};

static int need(struct cursor *c, size_t n, const char *what)
{
    if (n > c->size - c->pos)
        return sl_err_set(c->err, SL_EFORMAT,
                          "gguf: truncated file: %s needs %zu bytes at offset %zu, file has %zu",
                          what, n, c->pos, c->size);
    return 0;
}

static int rd_u32(struct cursor *c, uint32_t *v, const char *what)
{
    int rc = need(c, 4, what);
    if (rc) return rc;
    memcpy(v, c->base + c->pos, 4);
    c->pos += 4;
    return 0;
}

static int rd_u64(struct cursor *c, uint64_t *v, const char *what)
{
    int rc = need(c, 8, what);
    if (rc) return rc;
    memcpy(v, c->base + c->pos, 8);
    c->pos += 8;
    return 0;
}

static int rd_str(struct cursor *c, struct sl_str *s, const char *what)
{
    uint64_t len;
    int rc = rd_u64(c, &len, what);
    if (rc) return rc;
    if (len > SL_GGUF_MAX_STR)
        return sl_err_set(c->err, SL_EFORMAT, "gguf: %s: string length %llu over the limit (%u)",
                          what, (unsigned long long)len, SL_GGUF_MAX_STR);
    if ((rc = need(c, (size_t)len, what))) return rc;
    s->ptr = (const char *)c->base + c->pos;
    s->len = (size_t)len;
    c->pos += (size_t)len;
    return 0;
}

/* Skip over one value of vtype (not an array), checking bounds. */
static int skip_value(struct cursor *c, uint32_t vtype, const char *what)
{
    if (vtype == SL_GGUF_STRING) {
        struct sl_str s;
        return rd_str(c, &s, what);
    }
    size_t n = sl_gguf_vtype_size(vtype);
    int rc = need(c, n, what);
    if (rc) return rc;
    c->pos += n;
    return 0;
}

static int parse_kv(struct cursor *c, struct sl_gguf_kv *kv)
{
    char what[96];
    int rc;
    if ((rc = rd_str(c, &kv->key, "metadata key"))) return rc;
    snprintf(what, sizeof what, "value of '%.*s'", (int)SL_MIN(kv->key.len, 60), kv->key.ptr);
    if ((rc = rd_u32(c, &kv->type, what))) return rc;
    if (kv->type >= SL_GGUF_VTYPE_COUNT)
        return sl_err_set(c->err, SL_EFORMAT, "gguf: key '%s' has unknown value type %u", what + 9,
                          kv->type);
    kv->arr_type = 0;
    kv->arr_n = 0;
    if (kv->type != SL_GGUF_ARRAY) {
        kv->data = c->base + c->pos;
        return skip_value(c, kv->type, what);
    }
    if ((rc = rd_u32(c, &kv->arr_type, what))) return rc;
    if ((rc = rd_u64(c, &kv->arr_n, what))) return rc;
    if (kv->arr_type >= SL_GGUF_VTYPE_COUNT || kv->arr_type == SL_GGUF_ARRAY)
        return sl_err_set(c->err, SL_EFORMAT, "gguf: %s: unsupported array element type %u", what,
                          kv->arr_type);
    kv->data = c->base + c->pos;
    if (kv->arr_type == SL_GGUF_STRING) {
        /* each string needs at least its 8-byte length */
        if (kv->arr_n > (c->size - c->pos) / 8)
            return sl_err_set(c->err, SL_EFORMAT,
                              "gguf: %s: array of %llu strings cannot fit in the file", what,
                              (unsigned long long)kv->arr_n);
        for (uint64_t i = 0; i < kv->arr_n; i++)
            if ((rc = skip_value(c, SL_GGUF_STRING, what))) return rc;
        return 0;
    }
    size_t esz = sl_gguf_vtype_size(kv->arr_type);
    if (kv->arr_n > (c->size - c->pos) / esz)
        return sl_err_set(c->err, SL_EFORMAT,
                          "gguf: %s: array of %llu elements runs past the end of the file", what,
                          (unsigned long long)kv->arr_n);
    c->pos += (size_t)kv->arr_n * esz;
    return 0;
}

static int parse_tensor(struct cursor *c, struct sl_gguf_tensor *t)
{
    int rc;
    if ((rc = rd_str(c, &t->name, "tensor name"))) return rc;
    int nl = (int)SL_MIN(t->name.len, 80);
    if ((rc = rd_u32(c, &t->n_dims, "tensor n_dims"))) return rc;
    if (t->n_dims == 0 || t->n_dims > SL_GGUF_MAX_DIMS)
        return sl_err_set(c->err, SL_EFORMAT, "gguf: tensor '%.*s' has %u dimensions (1..%d)", nl,
                          t->name.ptr, t->n_dims, SL_GGUF_MAX_DIMS);
    int64_t nelem = 1;
    for (int i = 0; i < SL_GGUF_MAX_DIMS; i++) {
        uint64_t d = 1;
        if ((uint32_t)i < t->n_dims && (rc = rd_u64(c, &d, "tensor dims"))) return rc;
        if (d == 0 || d > (uint64_t)INT64_MAX || (uint64_t)nelem > (uint64_t)INT64_MAX / d)
            return sl_err_set(c->err, SL_EFORMAT, "gguf: tensor '%.*s' has bad dimension %llu", nl,
                              t->name.ptr, (unsigned long long)d);
        t->ne[i] = (int64_t)d;
        nelem *= (int64_t)d;
    }
    if ((rc = rd_u32(c, &t->type, "tensor type"))) return rc;
    if ((rc = rd_u64(c, &t->offset, "tensor offset"))) return rc;
    const struct sl_type_traits *tr = sl_type_traits(t->type);
    if (!tr)
        return sl_err_set(c->err, SL_EUNSUPPORTED, "gguf: tensor '%.*s' has unknown type %u", nl,
                          t->name.ptr, t->type);
    if (t->ne[0] % tr->blck != 0)
        return sl_err_set(c->err, SL_EFORMAT,
                          "gguf: tensor '%.*s': row length %lld is not a multiple of the %s block "
                          "size %d",
                          nl, t->name.ptr, (long long)t->ne[0], tr->name, tr->blck);
    uint64_t rows = (uint64_t)(nelem / t->ne[0]);
    uint64_t row_bytes = (uint64_t)(t->ne[0] / tr->blck) * tr->type_size;
    if (row_bytes != 0 && rows > UINT64_MAX / row_bytes)
        return sl_err_set(c->err, SL_EFORMAT, "gguf: tensor '%.*s' size overflows", nl,
                          t->name.ptr);
    uint64_t size = rows * row_bytes;
    if (size > SIZE_MAX)
        return sl_err_set(c->err, SL_EFORMAT, "gguf: tensor '%.*s' too large", nl, t->name.ptr);
    t->size = (size_t)size;
    return 0;
}

static int parse(struct sl_gguf *g, struct sl_err *err)
{
    struct cursor c = {g->base, g->size, 0, err};
    uint64_t n_tensors, n_kv;
    int rc;

    if (g->size < 4 || memcmp(g->base, "GGUF", 4) != 0)
        return sl_err_set(err, SL_EFORMAT, "gguf: bad magic (not a GGUF file)");
    c.pos = 4;
    if ((rc = rd_u32(&c, &g->version, "version"))) return rc;
    if (g->version == 1)
        return sl_err_set(err, SL_EUNSUPPORTED, "gguf: version 1 files are not supported (v2, v3)");
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xFFFF) == 0)
            return sl_err_set(err, SL_EUNSUPPORTED, "gguf: big-endian file (version %u byteswapped)",
                              __builtin_bswap32(g->version));
        return sl_err_set(err, SL_EUNSUPPORTED, "gguf: unknown version %u", g->version);
    }
    if ((rc = rd_u64(&c, &n_tensors, "tensor count"))) return rc;
    if ((rc = rd_u64(&c, &n_kv, "metadata count"))) return rc;
    /* a key/value needs >= 12 bytes, a tensor info >= 28 */
    if (n_kv > (g->size - c.pos) / 12)
        return sl_err_set(err, SL_EFORMAT, "gguf: metadata count %llu cannot fit in %zu bytes",
                          (unsigned long long)n_kv, g->size);
    if (n_tensors > (g->size - c.pos) / 28)
        return sl_err_set(err, SL_EFORMAT, "gguf: tensor count %llu cannot fit in %zu bytes",
                          (unsigned long long)n_tensors, g->size);
    g->n_kv = n_kv;
    g->n_tensors = n_tensors;
    g->kv = calloc(n_kv ? n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) return sl_err_set(err, SL_ENOMEM, "gguf: out of memory");

    for (uint64_t i = 0; i < n_kv; i++) {
        if ((rc = parse_kv(&c, &g->kv[i]))) return rc;
        for (uint64_t j = 0; j < i; j++)
            if (g->kv[j].key.len == g->kv[i].key.len &&
                memcmp(g->kv[j].key.ptr, g->kv[i].key.ptr, g->kv[i].key.len) == 0)
                return sl_err_set(err, SL_EFORMAT, "gguf: duplicate key '%.*s'",
                                  (int)SL_MIN(g->kv[i].key.len, 80), g->kv[i].key.ptr);
    }

    g->alignment = SL_GGUF_DEFAULT_ALIGNMENT;
    const struct sl_gguf_kv *al = sl_gguf_find(g, "general.alignment");
    if (al) {
        uint32_t a;
        if (al->type != SL_GGUF_UINT32)
            return sl_err_set(err, SL_EFORMAT, "gguf: general.alignment must be u32, is %s",
                              sl_gguf_vtype_name(al->type));
        memcpy(&a, al->data, 4);
        if (a == 0 || (a & (a - 1)) != 0)
            return sl_err_set(err, SL_EFORMAT, "gguf: general.alignment %u is not a power of two", a);
        g->alignment = a;
    }

    for (uint64_t i = 0; i < n_tensors; i++)
        if ((rc = parse_tensor(&c, &g->tensors[i]))) return rc;

    size_t data = c.pos;
    if (data % g->alignment) data += g->alignment - data % g->alignment;
    if (n_tensors > 0 && data > g->size)
        return sl_err_set(err, SL_EFORMAT, "gguf: data section starts at %zu, past end of file (%zu)",
                          data, g->size);
    g->data_offset = data;
    size_t avail = data <= g->size ? g->size - data : 0;

    for (uint64_t i = 0; i < n_tensors; i++) {
        struct sl_gguf_tensor *t = &g->tensors[i];
        int nl = (int)SL_MIN(t->name.len, 80);
        if (t->offset % g->alignment)
            return sl_err_set(err, SL_EFORMAT, "gguf: tensor '%.*s' offset %llu is not aligned to %zu",
                              nl, t->name.ptr, (unsigned long long)t->offset, g->alignment);
        if (t->offset > avail || t->size > avail - t->offset)
            return sl_err_set(err, SL_EFORMAT,
                              "gguf: tensor '%.*s' data [%llu, +%zu) runs past the end of file "
                              "(%zu data bytes)",
                              nl, t->name.ptr, (unsigned long long)t->offset, t->size, avail);
        t->data = g->base + data + t->offset;
        /* duplicate names: llama.cpp rejects them; so do we */
        for (uint64_t j = 0; j < i; j++)
            if (g->tensors[j].name.len == t->name.len &&
                memcmp(g->tensors[j].name.ptr, t->name.ptr, t->name.len) == 0)
                return sl_err_set(err, SL_EFORMAT, "gguf: duplicate tensor '%.*s'", nl, t->name.ptr);
    }
    return 0;
}

int sl_gguf_open_mem(struct sl_gguf **out, const void *buf, size_t size, struct sl_err *err)
{
    struct sl_gguf *g = calloc(1, sizeof *g);
    int rc;
    *out = NULL;
    if (!g) return sl_err_set(err, SL_ENOMEM, "gguf: out of memory");
    g->base = buf;
    g->size = size;
    if ((rc = parse(g, err))) {
        sl_gguf_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

int sl_gguf_open(struct sl_gguf **out, const char *path, struct sl_err *err)
{
    struct stat st;
    void *map;
    int fd, rc;
    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sl_err_set(err, SL_EIO, "cannot open '%s': %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return sl_err_set(err, SL_EIO, "'%s' is not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return sl_err_set(err, SL_EFORMAT, "'%s': empty file (is this a GGUF file?)", path);
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return sl_err_set(err, SL_EIO, "cannot mmap '%s': %s", path, strerror(errno));
    rc = sl_gguf_open_mem(out, map, (size_t)st.st_size, err);
    if (rc) {
        munmap(map, (size_t)st.st_size);
        if (err) {
            char tmp[SL_ERR_MSG_LEN];
            snprintf(tmp, sizeof tmp, "%s", err->msg);
            sl_err_set(err, rc, "%s: %s", path, tmp);
        }
        return rc;
    }
    (*out)->mapped = true;
    return 0;
}

void sl_gguf_free(struct sl_gguf *g)
{
    if (!g) return;
    if (g->mapped) munmap((void *)g->base, g->size);
    free(g->kv);
    free(g->tensors);
    free(g);
}

const struct sl_gguf_kv *sl_gguf_find(const struct sl_gguf *g, const char *key)
{
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (sl_str_eq(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const struct sl_gguf_tensor *sl_gguf_find_tensor(const struct sl_gguf *g, const char *name)
{
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (sl_str_eq(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

/* Read any integer-typed scalar as int64 (u64 above INT64_MAX fails). */
static int kv_int(const struct sl_gguf_kv *kv, int64_t *v)
{
    const uint8_t *p = kv->data;
    switch (kv->type) {
    case SL_GGUF_UINT8: *v = *p; return 0;
    case SL_GGUF_INT8: *v = (int8_t)*p; return 0;
    case SL_GGUF_BOOL: *v = *p != 0; return 0;
    case SL_GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); *v = x; return 0; }
    case SL_GGUF_INT16: { int16_t x; memcpy(&x, p, 2); *v = x; return 0; }
    case SL_GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); *v = x; return 0; }
    case SL_GGUF_INT32: { int32_t x; memcpy(&x, p, 4); *v = x; return 0; }
    case SL_GGUF_INT64: { int64_t x; memcpy(&x, p, 8); *v = x; return 0; }
    case SL_GGUF_UINT64: {
        uint64_t x;
        memcpy(&x, p, 8);
        if (x > (uint64_t)INT64_MAX) return -1;
        *v = (int64_t)x;
        return 0;
    }
    }
    return -1;
}

int sl_gguf_get_i64(const struct sl_gguf *g, const char *key, int64_t *out, struct sl_err *err)
{
    const struct sl_gguf_kv *kv = sl_gguf_find(g, key);
    if (!kv) return sl_err_set(err, SL_ENOTFOUND, "gguf: key '%s' not found", key);
    if (kv_int(kv, out) != 0)
        return sl_err_set(err, SL_EFORMAT, "gguf: key '%s' should be an integer, is %s", key,
                          sl_gguf_vtype_name(kv->type));
    return 0;
}

int sl_gguf_get_u32(const struct sl_gguf *g, const char *key, uint32_t *out, struct sl_err *err)
{
    int64_t v;
    int rc = sl_gguf_get_i64(g, key, &v, err);
    if (rc) return rc;
    if (v < 0 || v > UINT32_MAX)
        return sl_err_set(err, SL_EFORMAT, "gguf: key '%s' value %lld out of range", key,
                          (long long)v);
    *out = (uint32_t)v;
    return 0;
}

int sl_gguf_get_f32(const struct sl_gguf *g, const char *key, float *out, struct sl_err *err)
{
    const struct sl_gguf_kv *kv = sl_gguf_find(g, key);
    if (!kv) return sl_err_set(err, SL_ENOTFOUND, "gguf: key '%s' not found", key);
    if (kv->type == SL_GGUF_FLOAT32) {
        memcpy(out, kv->data, 4);
        return 0;
    }
    if (kv->type == SL_GGUF_FLOAT64) {
        double d;
        memcpy(&d, kv->data, 8);
        *out = (float)d;
        return 0;
    }
    int64_t v;
    if (kv_int(kv, &v) == 0 && kv->type != SL_GGUF_BOOL) {
        *out = (float)v;
        return 0;
    }
    return sl_err_set(err, SL_EFORMAT, "gguf: key '%s' should be a number, is %s", key,
                      sl_gguf_vtype_name(kv->type));
}

int sl_gguf_get_bool(const struct sl_gguf *g, const char *key, bool *out, struct sl_err *err)
{
    const struct sl_gguf_kv *kv = sl_gguf_find(g, key);
    if (!kv) return sl_err_set(err, SL_ENOTFOUND, "gguf: key '%s' not found", key);
    if (kv->type != SL_GGUF_BOOL)
        return sl_err_set(err, SL_EFORMAT, "gguf: key '%s' should be bool, is %s", key,
                          sl_gguf_vtype_name(kv->type));
    *out = kv->data[0] != 0;
    return 0;
}

int sl_gguf_get_str(const struct sl_gguf *g, const char *key, struct sl_str *out, struct sl_err *err)
{
    const struct sl_gguf_kv *kv = sl_gguf_find(g, key);
    uint64_t len;
    if (!kv) return sl_err_set(err, SL_ENOTFOUND, "gguf: key '%s' not found", key);
    if (kv->type != SL_GGUF_STRING)
        return sl_err_set(err, SL_EFORMAT, "gguf: key '%s' should be a string, is %s", key,
                          sl_gguf_vtype_name(kv->type));
    memcpy(&len, kv->data, 8);
    out->ptr = (const char *)kv->data + 8;
    out->len = (size_t)len;
    return 0;
}

int sl_gguf_get_arr(const struct sl_gguf *g, const char *key, int want_type,
                    const struct sl_gguf_kv **out, struct sl_err *err)
{
    const struct sl_gguf_kv *kv = sl_gguf_find(g, key);
    if (!kv) return sl_err_set(err, SL_ENOTFOUND, "gguf: key '%s' not found", key);
    if (kv->type != SL_GGUF_ARRAY || (want_type >= 0 && kv->arr_type != (uint32_t)want_type))
        return sl_err_set(err, SL_EFORMAT, "gguf: key '%s' should be an array of %s", key,
                          want_type >= 0 ? sl_gguf_vtype_name((uint32_t)want_type) : "values");
    *out = kv;
    return 0;
}

int sl_gguf_get_str_arr(const struct sl_gguf *g, const char *key, struct sl_str **out, uint64_t *n,
                        struct sl_err *err)
{
    const struct sl_gguf_kv *kv;
    int rc = sl_gguf_get_arr(g, key, SL_GGUF_STRING, &kv, err);
    if (rc) return rc;
    struct sl_str *v = malloc((size_t)(kv->arr_n ? kv->arr_n : 1) * sizeof *v);
    if (!v) return sl_err_set(err, SL_ENOMEM, "gguf: out of memory for '%s'", key);
    const uint8_t *p = kv->data; /* validated by parse() */
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        uint64_t len;
        memcpy(&len, p, 8);
        v[i].ptr = (const char *)p + 8;
        v[i].len = (size_t)len;
        p += 8 + len;
    }
    *out = v;
    *n = kv->arr_n;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* writer                                                                    */
/* ------------------------------------------------------------------------ */

struct wbuf {
    uint8_t *p;
    size_t len, cap;
    bool failed;
};

static void wb_put(struct wbuf *b, const void *src, size_t n)
{
    if (b->failed) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np) {
            b->failed = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void wb_u32(struct wbuf *b, uint32_t v) { wb_put(b, &v, 4); }
static void wb_u64(struct wbuf *b, uint64_t v) { wb_put(b, &v, 8); }
static void wb_str(struct wbuf *b, const char *s, size_t n)
{
    wb_u64(b, n);
    wb_put(b, s, n);
}

struct wkv {
    char *key;
    struct wbuf val; /* vtype + value, serialized */
};

struct wtensor {
    char *name;
    uint32_t type, n_dims;
    int64_t ne[SL_GGUF_MAX_DIMS];
    void *data;
    size_t size;
};

struct sl_gguf_writer {
    struct wkv *kv;
    size_t n_kv, cap_kv;
    struct wtensor *t;
    size_t n_t, cap_t;
};

struct sl_gguf_writer *sl_gguf_writer_init(void)
{
    return calloc(1, sizeof(struct sl_gguf_writer));
}

void sl_gguf_writer_free(struct sl_gguf_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val.p);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->kv);
    free(w->t);
    free(w);
}

/* The (cleared) value buffer of key, created if new; NULL on OOM. */
static struct wbuf *kv_slot(struct sl_gguf_writer *w, const char *key)
{
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0) {
            w->kv[i].val.len = 0;
            w->kv[i].val.failed = false;
            return &w->kv[i].val;
        }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        struct wkv *nk = realloc(w->kv, cap * sizeof *nk);
        if (!nk) return NULL;
        w->kv = nk;
        w->cap_kv = cap;
    }
    struct wkv *e = &w->kv[w->n_kv];
    memset(e, 0, sizeof *e);
    if (!(e->key = strdup(key))) return NULL;
    w->n_kv++;
    return &e->val;
}

static int set_scalar(struct sl_gguf_writer *w, const char *key, uint32_t vtype, const void *v)
{
    struct wbuf *b = kv_slot(w, key);
    if (!b) return SL_ENOMEM;
    wb_u32(b, vtype);
    wb_put(b, v, sl_gguf_vtype_size(vtype));
    return b->failed ? SL_ENOMEM : 0;
}

int sl_gguf_set_u32(struct sl_gguf_writer *w, const char *key, uint32_t v)
{
    return set_scalar(w, key, SL_GGUF_UINT32, &v);
}
int sl_gguf_set_i32(struct sl_gguf_writer *w, const char *key, int32_t v)
{
    return set_scalar(w, key, SL_GGUF_INT32, &v);
}
int sl_gguf_set_u64(struct sl_gguf_writer *w, const char *key, uint64_t v)
{
    return set_scalar(w, key, SL_GGUF_UINT64, &v);
}
int sl_gguf_set_f32(struct sl_gguf_writer *w, const char *key, float v)
{
    return set_scalar(w, key, SL_GGUF_FLOAT32, &v);
}
int sl_gguf_set_bool(struct sl_gguf_writer *w, const char *key, bool v)
{
    uint8_t b = v;
    return set_scalar(w, key, SL_GGUF_BOOL, &b);
}

int sl_gguf_set_str(struct sl_gguf_writer *w, const char *key, const char *v)
{
    struct wbuf *b = kv_slot(w, key);
    if (!b) return SL_ENOMEM;
    wb_u32(b, SL_GGUF_STRING);
    wb_str(b, v, strlen(v));
    return b->failed ? SL_ENOMEM : 0;
}

int sl_gguf_set_arr(struct sl_gguf_writer *w, const char *key, uint32_t vtype, const void *data,
                    uint64_t n)
{
    size_t esz = sl_gguf_vtype_size(vtype);
    if (esz == 0) return SL_EINVAL;
    struct wbuf *b = kv_slot(w, key);
    if (!b) return SL_ENOMEM;
    wb_u32(b, SL_GGUF_ARRAY);
    wb_u32(b, vtype);
    wb_u64(b, n);
    wb_put(b, data, (size_t)n * esz);
    return b->failed ? SL_ENOMEM : 0;
}

int sl_gguf_set_arr_str(struct sl_gguf_writer *w, const char *key, const char *const *strs,
                        const size_t *lens, uint64_t n)
{
    struct wbuf *b = kv_slot(w, key);
    if (!b) return SL_ENOMEM;
    wb_u32(b, SL_GGUF_ARRAY);
    wb_u32(b, SL_GGUF_STRING);
    wb_u64(b, n);
    for (uint64_t i = 0; i < n; i++) wb_str(b, strs[i], lens ? lens[i] : strlen(strs[i]));
    return b->failed ? SL_ENOMEM : 0;
}

/* Bytes of a validated value (array elements only, for arrays). */
static size_t kv_value_bytes(const struct sl_gguf_kv *kv)
{
    uint64_t len;
    size_t n = 0;
    if (kv->type == SL_GGUF_STRING) {
        memcpy(&len, kv->data, 8);
        return 8 + (size_t)len;
    }
    if (kv->type != SL_GGUF_ARRAY) return sl_gguf_vtype_size(kv->type);
    if (kv->arr_type != SL_GGUF_STRING) return (size_t)kv->arr_n * sl_gguf_vtype_size(kv->arr_type);
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        memcpy(&len, kv->data + n, 8);
        n += 8 + (size_t)len;
    }
    return n;
}

int sl_gguf_set_kv_from(struct sl_gguf_writer *w, const struct sl_gguf_kv *kv)
{
    char key[1024];
    if (kv->key.len >= sizeof key) return SL_ERANGE;
    memcpy(key, kv->key.ptr, kv->key.len);
    key[kv->key.len] = 0;
    struct wbuf *b = kv_slot(w, key);
    if (!b) return SL_ENOMEM;
    wb_u32(b, kv->type);
    if (kv->type == SL_GGUF_ARRAY) {
        wb_u32(b, kv->arr_type);
        wb_u64(b, kv->arr_n);
    }
    wb_put(b, kv->data, kv_value_bytes(kv));
    return b->failed ? SL_ENOMEM : 0;
}

int sl_gguf_add_tensor(struct sl_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                       const int64_t *ne, const void *data, size_t size, struct sl_err *err)
{
    const struct sl_type_traits *tr = sl_type_traits(type);
    if (!tr) return sl_err_set(err, SL_EINVAL, "gguf writer: tensor '%s': unknown type %u", name, type);
    if (n_dims == 0 || n_dims > SL_GGUF_MAX_DIMS)
        return sl_err_set(err, SL_EINVAL, "gguf writer: tensor '%s': %u dims", name, n_dims);
    int64_t rows = 1;
    for (uint32_t i = 1; i < n_dims; i++) rows *= ne[i];
    size_t want = sl_row_size((int)type, ne[0]) * (size_t)rows;
    if (ne[0] % tr->blck || want != size)
        return sl_err_set(err, SL_EINVAL, "gguf writer: tensor '%s': %zu bytes given, shape needs %zu",
                          name, size, want);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return sl_err_set(err, SL_EINVAL, "gguf writer: duplicate tensor '%s'", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 32;
        struct wtensor *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt) return sl_err_set(err, SL_ENOMEM, "gguf writer: out of memory");
        w->t = nt;
        w->cap_t = cap;
    }
    struct wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->data = malloc(size ? size : 1);
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        return sl_err_set(err, SL_ENOMEM, "gguf writer: out of memory");
    }
    memcpy(t->data, data, size);
    t->type = type;
    t->n_dims = n_dims;
    for (int i = 0; i < SL_GGUF_MAX_DIMS; i++) t->ne[i] = (uint32_t)i < n_dims ? ne[i] : 1;
    t->size = size;
    w->n_t++;
    return 0;
}

int sl_gguf_writer_write(struct sl_gguf_writer *w, const char *path, struct sl_err *err)
{
    struct wbuf h = {0};
    size_t align = SL_GGUF_DEFAULT_ALIGNMENT;
    FILE *f = NULL;
    int rc = 0;

    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, "general.alignment") == 0 && w->kv[i].val.len == 8) {
            uint32_t a;
            memcpy(&a, w->kv[i].val.p + 4, 4);
            if (a && (a & (a - 1)) == 0) align = a;
        }

    wb_put(&h, "GGUF", 4);
    wb_u32(&h, 3);
    wb_u64(&h, w->n_t);
    wb_u64(&h, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        wb_str(&h, w->kv[i].key, strlen(w->kv[i].key));
        wb_put(&h, w->kv[i].val.p, w->kv[i].val.len);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        struct wtensor *t = &w->t[i];
        wb_str(&h, t->name, strlen(t->name));
        wb_u32(&h, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) wb_u64(&h, (uint64_t)t->ne[d]);
        wb_u32(&h, t->type);
        wb_u64(&h, off);
        off += t->size;
        off = (off + align - 1) / align * align;
    }
    static const uint8_t zeros[256];
    size_t pad = (align - h.len % align) % align;
    while (pad > 0) {
        size_t k = SL_MIN(pad, sizeof zeros);
        wb_put(&h, zeros, k);
        pad -= k;
    }
    if (h.failed) {
        rc = sl_err_set(err, SL_ENOMEM, "gguf writer: out of memory");
        goto out; /* allocation failure */
    }
    f = fopen(path, "wb");
    if (!f) {
        rc = sl_err_set(err, SL_EIO, "cannot create '%s': %s", path, strerror(errno));
        goto out; /* open failure */
    }
    if (fwrite(h.p, 1, h.len, f) != h.len) goto io_fail;
    for (size_t i = 0; i < w->n_t; i++) {
        struct wtensor *t = &w->t[i];
        if (t->size && fwrite(t->data, 1, t->size, f) != t->size) goto io_fail;
        size_t tp = (align - t->size % align) % align;
        while (tp > 0) {
            size_t k = SL_MIN(tp, sizeof zeros);
            if (fwrite(zeros, 1, k, f) != k) goto io_fail;
            tp -= k;
        }
    }
    if (fclose(f) != 0) {
        f = NULL;
        goto io_fail;
    }
    f = NULL;
    goto out;
io_fail:
    rc = sl_err_set(err, SL_EIO, "write to '%s' failed: %s", path, strerror(errno));
out:
    if (f) fclose(f);
    free(h.p);
    return rc;
}
