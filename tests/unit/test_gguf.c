/*
 * test_gguf.c - the GGUF reader and writer: round trips of every value
 * type, and hostile files that must fail with a message, never crash.
 */
#include "engine/gguf.h"
#include "engine/quant.h"
#include "test.h"

/* A small file with every value type, two tensors. Returns its bytes. */
static char *make_file(size_t *len, uint32_t align)
{
    struct sl_gguf_writer *w = sl_gguf_writer_init();
    struct sl_err err = {0};
    const char *strs[] = {"a", "", "hello world"};
    int32_t i32s[] = {-1, 0, 7};
    float f32[8];
    uint16_t f16[64];
    for (int i = 0; i < 8; i++) f32[i] = (float)i * 0.5f;
    for (int i = 0; i < 64; i++) f16[i] = sl_fp32_to_fp16((float)i);
    uint8_t u8 = 200;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    double f64 = 3.25;
    int64_t i64 = -5000000000LL;
    sl_gguf_set_str(w, "general.architecture", "test");
    if (align) sl_gguf_set_u32(w, "general.alignment", align);
    sl_gguf_set_arr(w, "t.u8", SL_GGUF_UINT8, &u8, 1);
    sl_gguf_set_arr(w, "t.i8", SL_GGUF_INT8, &i8, 1);
    sl_gguf_set_arr(w, "t.u16", SL_GGUF_UINT16, &u16, 1);
    sl_gguf_set_arr(w, "t.i16", SL_GGUF_INT16, &i16, 1);
    sl_gguf_set_arr(w, "t.f64", SL_GGUF_FLOAT64, &f64, 1);
    sl_gguf_set_arr(w, "t.i64", SL_GGUF_INT64, &i64, 1);
    sl_gguf_set_u32(w, "t.u32", 4000000000u);
    sl_gguf_set_i32(w, "t.i32", -42);
    sl_gguf_set_u64(w, "t.u64", 1ull << 40);
    sl_gguf_set_f32(w, "t.f32", 1.5f);
    sl_gguf_set_bool(w, "t.bool", true);
    sl_gguf_set_str(w, "t.str", "value");
    sl_gguf_set_str(w, "t.str", "replaced");
    sl_gguf_set_arr_str(w, "t.strs", strs, NULL, 3);
    sl_gguf_set_arr(w, "t.i32s", SL_GGUF_INT32, i32s, 3);
    int64_t ne1[2] = {8, 1}, ne2[2] = {32, 2};
    T_OK(sl_gguf_add_tensor(w, "vec", SL_TYPE_F32, 1, ne1, f32, sizeof f32, &err), &err);
    T_OK(sl_gguf_add_tensor(w, "mat", SL_TYPE_F16, 2, ne2, f16, sizeof f16, &err), &err);
    T_TRUE(sl_gguf_add_tensor(w, "mat", SL_TYPE_F16, 2, ne2, f16, sizeof f16, &err) == SL_EINVAL);
    T_TRUE(sl_gguf_add_tensor(w, "bad", SL_TYPE_F16, 2, ne2, f16, 10, &err) == SL_EINVAL);
    const char *path = t_tmp_path("roundtrip.gguf");
    T_OK(sl_gguf_writer_write(w, path, &err), &err);
    sl_gguf_writer_free(w);
    char *buf = t_read_file(path, len);
    remove(path);
    return buf;
}

static void gguf_writer_round_trips_every_value_type(void)
{
    size_t len;
    char *buf = make_file(&len, 0);
    struct sl_gguf *g = NULL;
    struct sl_err err = {0};
    T_OK(sl_gguf_open_mem(&g, buf, len, &err), &err);
    if (!g) return;
    uint32_t u32;
    int64_t i64;
    float f;
    bool b;
    struct sl_str s;
    T_EQ_INT(g->version, 3);
    T_EQ_INT(g->alignment, 32);
    T_OK(sl_gguf_get_u32(g, "t.u32", &u32, &err), &err);
    T_EQ_INT(u32, 4000000000u);
    T_OK(sl_gguf_get_i64(g, "t.i32", &i64, &err), &err);
    T_EQ_INT(i64, -42);
    T_EQ_INT(sl_gguf_get_u32(g, "t.i32", &u32, &err), SL_EFORMAT); /* negative into u32 */
    T_OK(sl_gguf_get_i64(g, "t.u64", &i64, &err), &err);
    T_EQ_INT(i64, 1ll << 40);
    T_OK(sl_gguf_get_f32(g, "t.f32", &f, &err), &err);
    T_NEAR(f, 1.5, 0);
    T_OK(sl_gguf_get_bool(g, "t.bool", &b, &err), &err);
    T_TRUE(b);
    T_OK(sl_gguf_get_str(g, "t.str", &s, &err), &err);
    T_TRUE(sl_str_eq(s, "replaced"));
    T_EQ_INT(sl_gguf_get_str(g, "t.u32", &s, &err), SL_EFORMAT);
    T_EQ_INT(sl_gguf_get_str(g, "nope", &s, &err), SL_ENOTFOUND);
    struct sl_str *arr;
    uint64_t n;
    T_OK(sl_gguf_get_str_arr(g, "t.strs", &arr, &n, &err), &err);
    T_EQ_INT(n, 3);
    if (n == 3) {
        T_TRUE(sl_str_eq(arr[0], "a") && sl_str_eq(arr[1], "") && sl_str_eq(arr[2], "hello world"));
        free(arr);
    }
    const struct sl_gguf_kv *kv;
    T_OK(sl_gguf_get_arr(g, "t.f64", SL_GGUF_FLOAT64, &kv, &err), &err);
    double d;
    memcpy(&d, kv->data, 8);
    T_NEAR(d, 3.25, 0);
    T_OK(sl_gguf_get_arr(g, "t.i16", SL_GGUF_INT16, &kv, &err), &err);
    int16_t i16;
    memcpy(&i16, kv->data, 2);
    T_EQ_INT(i16, -30000);
    const struct sl_gguf_tensor *t = sl_gguf_find_tensor(g, "mat");
    T_TRUE(t && t->type == SL_TYPE_F16 && t->ne[0] == 32 && t->ne[1] == 2 && t->size == 128);
    if (t) {
        T_EQ_INT(((uintptr_t)t->data - (uintptr_t)g->base) % 32, 0);
        T_NEAR(sl_fp16_to_fp32(((const uint16_t *)t->data)[63]), 63, 0);
    }
    T_TRUE(sl_gguf_find_tensor(g, "vec") != NULL);
    sl_gguf_free(g);
    free(buf);
}

static void gguf_honours_general_alignment(void)
{
    size_t len;
    char *buf = make_file(&len, 64);
    struct sl_gguf *g = NULL;
    struct sl_err err = {0};
    T_OK(sl_gguf_open_mem(&g, buf, len, &err), &err);
    if (g) {
        T_EQ_INT(g->alignment, 64);
        for (uint64_t i = 0; i < g->n_tensors; i++)
            T_EQ_INT(((const uint8_t *)g->tensors[i].data - g->base) % 64, 0);
    }
    sl_gguf_free(g);
    free(buf);
}

/* Every prefix of a valid file must be rejected, never read past its end:
 * each prefix is copied into an exact-size heap block, so ASan sees any
 * overread. */
static void gguf_rejects_every_truncation(void)
{
    size_t len;
    char *buf = make_file(&len, 0);
    int accepted = 0;
    for (size_t cut = 0; cut < len; cut++) {
        char *p = malloc(cut ? cut : 1);
        struct sl_gguf *g = NULL;
        struct sl_err err = {0};
        memcpy(p, buf, cut);
        if (sl_gguf_open_mem(&g, p, cut, &err) == 0) {
            accepted++;
            sl_gguf_free(g);
        } else {
            T_TRUE(err.msg[0] != 0);
        }
        free(p);
    }
    T_EQ_INT(accepted, 0);
    free(buf);
}

static void patch_u64(char *buf, size_t off, uint64_t v)
{
    memcpy(buf + off, &v, 8);
}

static int open_err(char *buf, size_t len, const char *want)
{
    struct sl_gguf *g = NULL;
    struct sl_err err = {0};
    int rc = sl_gguf_open_mem(&g, buf, len, &err);
    sl_gguf_free(g);
    if (rc == 0) {
        T_FAIL_AT("hostile file accepted (wanted an error containing '%s')", want);
        return rc;
    }
    if (!strstr(err.msg, want)) T_FAIL_AT("message '%s' does not mention '%s'", err.msg, want);
    return rc;
}

static void gguf_rejects_hostile_headers(void)
{
    size_t len;
    char *buf = make_file(&len, 0), *c = malloc(len);

    memcpy(c, buf, len);
    memcpy(c, "GGML", 4);
    open_err(c, len, "magic");

    memcpy(c, buf, len);
    c[4] = 1;
    open_err(c, len, "version 1");

    memcpy(c, buf, len);
    c[4] = 9;
    open_err(c, len, "version");

    memcpy(c, buf, len);
    patch_u64(c, 8, 1ull << 60); /* tensor count */
    open_err(c, len, "tensor count");

    memcpy(c, buf, len);
    patch_u64(c, 16, UINT64_MAX); /* metadata count */
    open_err(c, len, "metadata count");

    memcpy(c, buf, len);
    patch_u64(c, 24, 1ull << 62); /* first key's length */
    open_err(c, len, "string length");
    free(c);
    free(buf);
}

/* Locate a tensor info by name in the raw header and return the offset of
 * the byte after its name. */
static size_t find_info(const char *buf, size_t len, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 8; i + n + 4 < len; i++) {
        uint64_t l;
        memcpy(&l, buf + i - 8, 8);
        if (l == n && memcmp(buf + i, name, n) == 0) return i + n;
    }
    return 0;
}

static void gguf_rejects_bad_tensor_infos(void)
{
    size_t len;
    char *buf = make_file(&len, 0), *c = malloc(len);
    size_t at = find_info(buf, len, "mat"); /* n_dims u32, ne[2] u64, type u32, offset u64 */
    T_TRUE(at > 0);
    if (!at) return;

    memcpy(c, buf, len);
    uint32_t dims = 7;
    memcpy(c + at, &dims, 4);
    open_err(c, len, "dimensions");

    memcpy(c, buf, len);
    patch_u64(c, at + 4, 0);
    open_err(c, len, "bad dimension");

    memcpy(c, buf, len);
    patch_u64(c, at + 12, 1ull << 40); /* rows: data would run past the end */
    open_err(c, len, "past the end");

    memcpy(c, buf, len);
    patch_u64(c, at + 4, 1ull << 62);
    patch_u64(c, at + 12, 1ull << 62); /* element count overflows */
    open_err(c, len, "dimension");

    memcpy(c, buf, len);
    uint32_t type = 99;
    memcpy(c + at + 20, &type, 4);
    open_err(c, len, "unknown type");

    memcpy(c, buf, len);
    patch_u64(c, at + 24, 8); /* misaligned offset */
    open_err(c, len, "aligned");

    memcpy(c, buf, len);
    patch_u64(c, at + 24, UINT64_MAX - 63);
    open_err(c, len, "past the end");

    memcpy(c, buf, len);
    type = SL_TYPE_Q4_0; /* 32 values per block is fine, but the size no longer matches? */
    memcpy(c + at + 20, &type, 4);
    struct sl_gguf *g = NULL;
    struct sl_err err = {0};
    /* Q4_0 rows of 32 need 18 bytes: smaller than F16's 64, so it fits */
    T_OK(sl_gguf_open_mem(&g, c, len, &err), &err);
    sl_gguf_free(g);
    free(c);
    free(buf);
}

static void gguf_open_reports_missing_and_empty_files(void)
{
    struct sl_gguf *g = NULL;
    struct sl_err err = {0};
    T_EQ_INT(sl_gguf_open(&g, "/nonexistent/model.gguf", &err), SL_EIO);
    T_TRUE(strstr(err.msg, "/nonexistent/model.gguf") != NULL);
    const char *p = t_tmp_path("empty.gguf");
    FILE *f = fopen(p, "wb");
    fclose(f);
    T_EQ_INT(sl_gguf_open(&g, p, &err), SL_EFORMAT);
    T_TRUE(strstr(err.msg, "empty") != NULL);
    remove(p);
    T_EQ_INT(sl_gguf_open(&g, "/", &err), SL_EIO);
}

static void gguf_reads_a_v2_file(void)
{
    size_t len;
    char *buf = make_file(&len, 0);
    struct sl_gguf *g = NULL;
    struct sl_err err = {0};
    buf[4] = 2; /* v2 has the same layout as v3 for little-endian files */
    T_OK(sl_gguf_open_mem(&g, buf, len, &err), &err);
    if (g) T_EQ_INT(g->version, 2);
    sl_gguf_free(g);
    free(buf);
}

int main(void)
{
    T_RUN(gguf_writer_round_trips_every_value_type);
    T_RUN(gguf_honours_general_alignment);
    T_RUN(gguf_reads_a_v2_file);
    T_RUN(gguf_rejects_every_truncation);
    T_RUN(gguf_rejects_hostile_headers);
    T_RUN(gguf_rejects_bad_tensor_infos);
    T_RUN(gguf_open_reports_missing_and_empty_files);
    return t_done();
}
