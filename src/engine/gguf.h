/*
 * gguf.h - GGUF v2/v3 reader over mmap and GGUF writer (engine layer).
 *
 * File layout (little-endian):
 *   "GGUF" u32 version  u64 n_tensors  u64 n_kv
 *   n_kv    x { str key, u32 vtype, value }           str = u64 len + bytes
 *   n_tensors x { str name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset }
 *   padding to general.alignment (default 32), then the tensor data; each
 *   tensor's offset is relative to the data start and aligned.
 *
 * The reader validates the whole header on open: every length, count and
 * offset is checked against the file size before it is used, so every view
 * it hands out afterwards (strings, arrays, tensor data) lies inside the
 * mapping. Views stay valid until sl_gguf_free(). Nothing is copied.
 */
#ifndef SL_GGUF_H
#define SL_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/err.h"

enum sl_gguf_vtype {
    SL_GGUF_UINT8 = 0,
    SL_GGUF_INT8 = 1,
    SL_GGUF_UINT16 = 2,
    SL_GGUF_INT16 = 3,
    SL_GGUF_UINT32 = 4,
    SL_GGUF_INT32 = 5,
    SL_GGUF_FLOAT32 = 6,
    SL_GGUF_BOOL = 7,
    SL_GGUF_STRING = 8,
    SL_GGUF_ARRAY = 9,
    SL_GGUF_UINT64 = 10,
    SL_GGUF_INT64 = 11,
    SL_GGUF_FLOAT64 = 12,
    SL_GGUF_VTYPE_COUNT = 13,
};

/* Hard limits on what a file may claim (named so tests and docs agree). */
#define SL_GGUF_MAX_DIMS 4
#define SL_GGUF_MAX_STR (1u << 24)       /* 16 MiB: any key or string value */
#define SL_GGUF_DEFAULT_ALIGNMENT 32

/* A string view: not NUL-terminated. */
struct sl_str {
    const char *ptr;
    size_t len;
};

struct sl_gguf_kv {
    struct sl_str key;
    uint32_t type;       /* enum sl_gguf_vtype */
    uint32_t arr_type;   /* element type when type == SL_GGUF_ARRAY */
    uint64_t arr_n;      /* element count when type == SL_GGUF_ARRAY */
    const uint8_t *data; /* the value (for arrays: the first element) */
};

struct sl_gguf_tensor {
    struct sl_str name;
    uint32_t n_dims;
    int64_t ne[SL_GGUF_MAX_DIMS]; /* ne[0] is the row length; unused dims are 1 */
    uint32_t type;                /* enum sl_type */
    uint64_t offset;              /* relative to the data section */
    const void *data;             /* inside the mapping */
    size_t size;                  /* bytes */
};

struct sl_gguf {
    const uint8_t *base; /* whole file */
    size_t size;
    bool mapped;         /* base is an mmap we own */
    uint32_t version;
    size_t alignment;
    size_t data_offset;
    uint64_t n_kv;
    struct sl_gguf_kv *kv;
    uint64_t n_tensors;
    struct sl_gguf_tensor *tensors;
};

/* Map and validate a file. On success *out owns the mapping. */
int sl_gguf_open(struct sl_gguf **out, const char *path, struct sl_err *err);

/* Validate a buffer in memory. The caller keeps buf alive until free. */
int sl_gguf_open_mem(struct sl_gguf **out, const void *buf, size_t size, struct sl_err *err);

void sl_gguf_free(struct sl_gguf *g);

/* Lookups. Return NULL when absent. */
const struct sl_gguf_kv *sl_gguf_find(const struct sl_gguf *g, const char *key);
const struct sl_gguf_tensor *sl_gguf_find_tensor(const struct sl_gguf *g, const char *name);

/* Typed getters: 0, SL_ENOTFOUND (absent) or SL_EFORMAT (wrong type or out
 * of range, message in err). Integer getters accept any integer type whose
 * value fits; the float getter accepts FLOAT32/FLOAT64. */
int sl_gguf_get_u32(const struct sl_gguf *g, const char *key, uint32_t *out, struct sl_err *err);
int sl_gguf_get_i64(const struct sl_gguf *g, const char *key, int64_t *out, struct sl_err *err);
int sl_gguf_get_f32(const struct sl_gguf *g, const char *key, float *out, struct sl_err *err);
int sl_gguf_get_bool(const struct sl_gguf *g, const char *key, bool *out, struct sl_err *err);
int sl_gguf_get_str(const struct sl_gguf *g, const char *key, struct sl_str *out, struct sl_err *err);

/* An array of `want_type` elements (any type when want_type < 0). */
int sl_gguf_get_arr(const struct sl_gguf *g, const char *key, int want_type,
                    const struct sl_gguf_kv **out, struct sl_err *err);

/* Views of every string of a string array. *out is allocated (free it). */
int sl_gguf_get_str_arr(const struct sl_gguf *g, const char *key, struct sl_str **out,
                        uint64_t *n, struct sl_err *err);

/* Size in bytes of one element of a scalar vtype, 0 for STRING/ARRAY. */
size_t sl_gguf_vtype_size(uint32_t vtype);
const char *sl_gguf_vtype_name(uint32_t vtype);

/* Compare a view with a C string. */
bool sl_str_eq(struct sl_str s, const char *c);

/* ---- writer ---- */

struct sl_gguf_writer;

struct sl_gguf_writer *sl_gguf_writer_init(void);
void sl_gguf_writer_free(struct sl_gguf_writer *w);

/* Setting a key that is already set replaces it. Values are copied. */
int sl_gguf_set_u32(struct sl_gguf_writer *w, const char *key, uint32_t v);
int sl_gguf_set_i32(struct sl_gguf_writer *w, const char *key, int32_t v);
int sl_gguf_set_u64(struct sl_gguf_writer *w, const char *key, uint64_t v);
int sl_gguf_set_f32(struct sl_gguf_writer *w, const char *key, float v);
int sl_gguf_set_bool(struct sl_gguf_writer *w, const char *key, bool v);
int sl_gguf_set_str(struct sl_gguf_writer *w, const char *key, const char *v);
/* A scalar array: n elements of vtype, packed little-endian. */
int sl_gguf_set_arr(struct sl_gguf_writer *w, const char *key, uint32_t vtype, const void *data,
                    uint64_t n);
/* A string array; lens may be NULL for NUL-terminated strings. */
int sl_gguf_set_arr_str(struct sl_gguf_writer *w, const char *key, const char *const *strs,
                        const size_t *lens, uint64_t n);
/* Copy every key/value of g (e.g. to re-write a model's metadata). */
int sl_gguf_set_kv_from(struct sl_gguf_writer *w, const struct sl_gguf_kv *kv);

/* Add a tensor. The data is copied; size must equal the row size times the
 * number of rows. */
int sl_gguf_add_tensor(struct sl_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                       const int64_t *ne, const void *data, size_t size, struct sl_err *err);

/* Write the file (version 3, alignment from general.alignment or 32). */
int sl_gguf_writer_write(struct sl_gguf_writer *w, const char *path, struct sl_err *err);

#endif
