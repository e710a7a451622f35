/*
 * test_quant.c - tests of engine/quant.c.
 *
 * - half and bfloat16 conversion against hand-derived bit patterns, every
 *   half round-trips, every tie between neighbouring halves goes to even;
 * - hand-built blocks whose values were worked out by hand from the block
 *   layout (a swapped nibble, a misplaced high bit or a scale unpacked from
 *   the wrong bits changes at least one of them);
 * - quantize -> dequantize of random rows for every type within a named
 *   relative RMS error budget, and the integer dot products against a
 *   double-precision dot of the dequantized rows;
 * - the llama.cpp-made files in ../shared/assets/conformance/models: every
 *   2-D tensor dequantizes to the F32 file's weights within the same budget,
 *   and re-quantizing the F32 weights reproduces llama.cpp's bytes.
 *
 * Set SL_TEST_VERBOSE=1 to print the measured errors.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"
#include "engine/quant.h"
#include "test.h"

/* Relative RMS error budgets, sqrt(sum (x - q)^2 / sum x^2), for Gaussian
 * data: the worst measured over the random rows below and the conformance
 * weights (rows of 32 to 2816 values), times about 1.25. A layout bug (a
 * swapped nibble order, a misplaced high bit) gives 0.5 to 1.5. */
#define SL_TOL_RMSE_F32 0.0    /* exact */
#define SL_TOL_RMSE_F16 0.00035 /* measured 0.00026 */
#define SL_TOL_RMSE_BF16 0.0025 /* 0.00197 */
#define SL_TOL_RMSE_Q8_0 0.0090 /* 0.00729 (one block of 32) */
#define SL_TOL_RMSE_Q8_1 0.0090 /* the Q8_0 quantizer */
#define SL_TOL_RMSE_Q8_K 0.0105 /* 0.00832 */
#define SL_TOL_RMSE_Q6_K 0.0235 /* 0.01892 */
#define SL_TOL_RMSE_Q5_0 0.060  /* 0.04812 */
#define SL_TOL_RMSE_Q5_1 0.049  /* 0.03886 */
#define SL_TOL_RMSE_Q5_K 0.047  /* 0.03795 */
#define SL_TOL_RMSE_Q4_0 0.110  /* 0.08750 */
#define SL_TOL_RMSE_Q4_1 0.102  /* 0.08168 */
#define SL_TOL_RMSE_Q4_K 0.094  /* 0.07547 */
#define SL_TOL_RMSE_Q3_K 0.190  /* 0.15407 */
#define SL_TOL_RMSE_Q2_K 0.400  /* 0.32153 */

/* vec_dot_ref against sum(dequant(w) * dequant(a)) in double, relative to
 * sum |dequant(w) * dequant(a)|: only float rounding should differ ... */
#define SL_TOL_DOT_EXACT 2e-6
/* ... except for Q4_1/Q5_1, whose min term uses the Q8_1 block sum s that
 * is stored as fp16 (relative rounding 2^-11 of d * sum(q)). */
#define SL_TOL_DOT_Q8_1_SUM 2e-3

static int verbose;

/* ------------------------------------------------------------------------ */
/* helpers                                                                   */
/* ------------------------------------------------------------------------ */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static void rng_seed(uint64_t s)
{
    rng_state = s * 0x9E3779B97F4A7C15ull + 1;
}

static double rng_uniform(void) /* in (0, 1) */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return ((double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) + 0.5) / 9007199254740992.0;
}

static float rng_gauss(void)
{
    return (float)(sqrt(-2.0 * log(rng_uniform())) * cos(6.283185307179586 * rng_uniform()));
}

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static double rel_rmse(const float *x, const float *y, int64_t n)
{
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        s += (double)x[i] * x[i];
    }
    return s > 0 ? sqrt(e / s) : sqrt(e);
}

/* Compare a dequantized block with expected values; report the first few
 * differences with their index so a layout bug shows where it is. */
static void check_values(const char *what, const float *got, const float *want, int n)
{
    int bad = 0;
    for (int i = 0; i < n; i++) {
        t_checks++;
        if (got[i] != want[i] && !(isnan(got[i]) && isnan(want[i]))) {
            if (bad < 6) T_FAIL_AT("%s: value %d is %.9g, expected %.9g", what, i, got[i], want[i]);
            else t_failures++;
            bad++;
        }
    }
    if (bad > 6) fprintf(stderr, "     ... %d values differ in all\n", bad);
}

struct type_case {
    int type;
    double rmse; /* SL_TOL_RMSE_* */
};

static const struct type_case all_types[] = {
    {SL_TYPE_F32, SL_TOL_RMSE_F32},   {SL_TYPE_F16, SL_TOL_RMSE_F16},
    {SL_TYPE_BF16, SL_TOL_RMSE_BF16}, {SL_TYPE_Q8_0, SL_TOL_RMSE_Q8_0},
    {SL_TYPE_Q8_1, SL_TOL_RMSE_Q8_1}, {SL_TYPE_Q8_K, SL_TOL_RMSE_Q8_K},
    {SL_TYPE_Q6_K, SL_TOL_RMSE_Q6_K}, {SL_TYPE_Q5_0, SL_TOL_RMSE_Q5_0},
    {SL_TYPE_Q5_1, SL_TOL_RMSE_Q5_1}, {SL_TYPE_Q5_K, SL_TOL_RMSE_Q5_K},
    {SL_TYPE_Q4_0, SL_TOL_RMSE_Q4_0}, {SL_TYPE_Q4_1, SL_TOL_RMSE_Q4_1},
    {SL_TYPE_Q4_K, SL_TOL_RMSE_Q4_K}, {SL_TYPE_Q3_K, SL_TOL_RMSE_Q3_K},
    {SL_TYPE_Q2_K, SL_TOL_RMSE_Q2_K},
};
#define N_TYPES (int)(sizeof all_types / sizeof all_types[0])

static double rmse_budget(int type)
{
    for (int i = 0; i < N_TYPES; i++)
        if (all_types[i].type == type) return all_types[i].rmse;
    return 0;
}

static const char *tname(int type)
{
    const struct sl_type_traits *tr = sl_type_traits((uint32_t)type);
    return tr ? tr->name : "?";
}

/* ------------------------------------------------------------------------ */
/* half and bfloat16                                                         */
/* ------------------------------------------------------------------------ */

static void fp16_from_fp32_gives_hand_derived_bits(void)
{
    static const struct {
        uint32_t f; /* float bits */
        uint16_t h;
        const char *why;
    } cases[] = {
        {0x00000000, 0x0000, "+0"},
        {0x80000000, 0x8000, "-0 keeps its sign"},
        {0x3f800000, 0x3c00, "1"},
        {0xc0000000, 0xc000, "-2"},
        {0x3dcccccd, 0x2e66, "0.1: 1.6 * 2^-4, mantissa 614.4 -> 614"},
        {0x477fe000, 0x7bff, "65504, the largest half"},
        {0x477fefff, 0x7bff, "just below 65520 rounds down to 65504"},
        {0x477ff000, 0x7c00, "65520 is a tie between 65504 (odd) and 2^16 (inf): inf"},
        {0x49742400, 0x7c00, "1e6 overflows to inf"},
        {0x7f800000, 0x7c00, "+inf"},
        {0xff800000, 0xfc00, "-inf"},
        {0x7fc00000, 0x7e00, "NaN becomes the quiet NaN 0x7e00"},
        {0xff812345, 0xfe00, "a negative signalling NaN: sign kept, payload dropped"},
        {0x33800000, 0x0001, "2^-24, the smallest subnormal"},
        {0x33000000, 0x0000, "2^-25 is a tie between 0 and 2^-24: 0 (even)"},
        {0x33000001, 0x0001, "just above 2^-25 rounds up"},
        {0x33c00000, 0x0002, "3 * 2^-25 is a tie between 1 and 2 subnormal units: 2"},
        {0x387fc000, 0x03ff, "1023 * 2^-24, the largest subnormal"},
        {0x38800000, 0x0400, "2^-14, the smallest normal"},
        {0x387fe000, 0x0400, "2047 * 2^-25 is a tie between 0x3ff and 0x400: 0x400"},
        {0x3f801000, 0x3c00, "1 + 2^-11 is a tie between 1 and 1 + 2^-10: 1 (even)"},
        {0x3f803000, 0x3c02, "1 + 3 * 2^-11 is a tie between 0x3c01 and 0x3c02: 0x3c02"},
        {0x3f801001, 0x3c01, "just above 1 + 2^-11 rounds up"},
        {0x00000001, 0x0000, "a float subnormal is far below the half range"},
        {0xb3800000, 0x8001, "-2^-24"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t h = sl_fp32_to_fp16(from_bits(cases[i].f));
        t_checks++;
        if (h != cases[i].h)
            T_FAIL_AT("fp32 0x%08x (%s) -> 0x%04x, expected 0x%04x", cases[i].f, cases[i].why, h,
                      cases[i].h);
    }
}

static void fp16_to_fp32_gives_hand_derived_values(void)
{
    static const struct {
        uint16_t h;
        uint32_t f; /* float bits */
        const char *why;
    } cases[] = {
        {0x0000, 0x00000000, "+0"},
        {0x8000, 0x80000000, "-0"},
        {0x3c00, 0x3f800000, "1"},
        {0xc000, 0xc0000000, "-2"},
        {0x3555, 0x3eaaa000, "0x3555 = 1.3330078125 * 2^-2"},
        {0x7bff, 0x477fe000, "65504"},
        {0x0001, 0x33800000, "2^-24"},
        {0x8001, 0xb3800000, "-2^-24"},
        {0x03ff, 0x387fc000, "1023 * 2^-24"},
        {0x0400, 0x38800000, "2^-14"},
        {0x7c00, 0x7f800000, "+inf"},
        {0xfc00, 0xff800000, "-inf"},
        {0x7e00, 0x7fc00000, "quiet NaN"},
        {0x7c01, 0x7fc02000, "signalling NaN comes back quiet with its payload (as F16C)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint32_t f = bits_of(sl_fp16_to_fp32(cases[i].h));
        t_checks++;
        if (f != cases[i].f)
            T_FAIL_AT("half 0x%04x (%s) -> 0x%08x, expected 0x%08x", cases[i].h, cases[i].why, f,
                      cases[i].f);
    }
}

static void fp16_round_trips_every_half_and_rounds_every_tie_to_even(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        const float f = sl_fp16_to_fp32((uint16_t)h);
        const uint16_t back = sl_fp32_to_fp16(f);
        const int is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        const int ok = is_nan ? (back & 0x7fff) == 0x7e00 && (back & 0x8000) == (h & 0x8000)
                              : back == h;
        if (!ok && bad++ < 5) T_FAIL_AT("half 0x%04x -> %.9g -> 0x%04x", h, f, back);
    }
    /* midpoints between neighbours (exact in float), and one ulp either side */
    for (uint32_t h = 0; h < 0x7bff; h++) {
        for (int s = 0; s < 2; s++) {
            const uint16_t lo = (uint16_t)(h | (s ? 0x8000 : 0)), hi = (uint16_t)(lo + 1);
            const float a = sl_fp16_to_fp32(lo), b = sl_fp16_to_fp32(hi);
            const float mid = a + (b - a) / 2;
            const uint16_t even = (lo & 1) ? hi : lo;
            const uint16_t r = sl_fp32_to_fp16(mid);
            const uint16_t up = sl_fp32_to_fp16(nextafterf(mid, b));
            const uint16_t dn = sl_fp32_to_fp16(nextafterf(mid, a));
            if ((r != even || up != hi || dn != lo) && bad++ < 5)
                T_FAIL_AT("between 0x%04x and 0x%04x: tie -> 0x%04x (want 0x%04x), above -> 0x%04x,"
                          " below -> 0x%04x",
                          lo, hi, r, even, up, dn);
        }
    }
    t_checks++;
    if (bad > 5) fprintf(stderr, "     ... %d failures in all\n", bad);
}

static void bf16_conversion_rounds_to_nearest_even_and_quiets_nan(void)
{
    static const struct {
        uint32_t f;
        uint16_t h;
        const char *why;
    } cases[] = {
        {0x3f800000, 0x3f80, "1"},
        {0x80000000, 0x8000, "-0"},
        {0x7f800000, 0x7f80, "+inf"},
        {0xff800000, 0xff80, "-inf"},
        {0x7fc00000, 0x7fc0, "quiet NaN"},
        {0x7f800001, 0x7fc0, "signalling NaN is made quiet"},
        {0x7fa12345, 0x7fe1, "NaN keeps its top payload bits, quiet bit set"},
        {0x3f808000, 0x3f80, "1 + 2^-8 is a tie: even 0x3f80"},
        {0x3f818000, 0x3f82, "tie between 0x3f81 and 0x3f82: 0x3f82"},
        {0x3f808001, 0x3f81, "just above the tie rounds up"},
        {0xbf807fff, 0xbf80, "just below the tie rounds down (negative)"},
        {0x7f7fffff, 0x7f80, "FLT_MAX rounds up to inf"},
        {0x00012345, 0x0001, "float subnormals are rounded, not flushed (current ggml)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t h = sl_fp32_to_bf16(from_bits(cases[i].f));
        t_checks++;
        if (h != cases[i].h)
            T_FAIL_AT("fp32 0x%08x (%s) -> bf16 0x%04x, expected 0x%04x", cases[i].f, cases[i].why,
                      h, cases[i].h);
    }
    T_EQ_INT(bits_of(sl_bf16_to_fp32(0xc0a0)), 0xc0a00000); /* -5 */
    T_EQ_INT(bits_of(sl_bf16_to_fp32(0x0001)), 0x00010000);
}

/* ------------------------------------------------------------------------ */
/* traits                                                                    */
/* ------------------------------------------------------------------------ */

static void type_traits_match_ggml_block_sizes_and_dot_types(void)
{
    static const struct {
        int type;
        const char *name;
        int blck;
        size_t size;
        int dot;
    } want[] = {
        {SL_TYPE_F32, "F32", 1, 4, SL_TYPE_F32},
        {SL_TYPE_F16, "F16", 1, 2, SL_TYPE_F16},
        {SL_TYPE_BF16, "BF16", 1, 2, SL_TYPE_BF16},
        {SL_TYPE_Q4_0, "Q4_0", 32, 18, SL_TYPE_Q8_0},
        {SL_TYPE_Q4_1, "Q4_1", 32, 20, SL_TYPE_Q8_1},
        {SL_TYPE_Q5_0, "Q5_0", 32, 22, SL_TYPE_Q8_0},
        {SL_TYPE_Q5_1, "Q5_1", 32, 24, SL_TYPE_Q8_1},
        {SL_TYPE_Q8_0, "Q8_0", 32, 34, SL_TYPE_Q8_0},
        {SL_TYPE_Q8_1, "Q8_1", 32, 36, -1},
        {SL_TYPE_Q2_K, "Q2_K", 256, 84, SL_TYPE_Q8_K},
        {SL_TYPE_Q3_K, "Q3_K", 256, 110, SL_TYPE_Q8_K},
        {SL_TYPE_Q4_K, "Q4_K", 256, 144, SL_TYPE_Q8_K},
        {SL_TYPE_Q5_K, "Q5_K", 256, 176, SL_TYPE_Q8_K},
        {SL_TYPE_Q6_K, "Q6_K", 256, 210, SL_TYPE_Q8_K},
        {SL_TYPE_Q8_K, "Q8_K", 256, 292, -1},
        {SL_TYPE_I8, "I8", 1, 1, -1},
        {SL_TYPE_I16, "I16", 1, 2, -1},
        {SL_TYPE_I32, "I32", 1, 4, -1},
        {SL_TYPE_I64, "I64", 1, 8, -1},
        {SL_TYPE_F64, "F64", 1, 8, -1},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const struct sl_type_traits *tr = sl_type_traits((uint32_t)want[i].type);
        T_TRUE(tr != NULL);
        if (!tr) continue;
        T_EQ_STR(tr->name, want[i].name);
        T_EQ_INT(tr->blck, want[i].blck);
        T_EQ_INT(tr->type_size, want[i].size);
        T_EQ_INT(tr->dot_type, want[i].dot);
        T_EQ_INT(tr->weight_ok, want[i].dot >= 0);
        T_EQ_INT(tr->is_quant, want[i].blck > 1);
    }
    T_TRUE(sl_type_traits(4) == NULL); /* the removed Q4_2 */
    T_TRUE(sl_type_traits(SL_TYPE_COUNT) == NULL);
    T_TRUE(sl_type_traits(0xffffffffu) == NULL);
}

static void type_names_parse_case_insensitively(void)
{
    T_EQ_INT(sl_type_from_name("q4_k"), SL_TYPE_Q4_K);
    T_EQ_INT(sl_type_from_name("Q8_0"), SL_TYPE_Q8_0);
    T_EQ_INT(sl_type_from_name("f16"), SL_TYPE_F16);
    T_EQ_INT(sl_type_from_name("bf16"), SL_TYPE_BF16);
    T_EQ_INT(sl_type_from_name("Q4_K_M"), -1);
    T_EQ_INT(sl_type_from_name(""), -1);
    T_EQ_INT(sl_type_from_name(NULL), -1);
}

static void row_size_counts_whole_blocks_and_rejects_partial_ones(void)
{
    T_EQ_INT(sl_row_size(SL_TYPE_Q4_0, 64), 36);
    T_EQ_INT(sl_row_size(SL_TYPE_Q4_0, 48), 0);
    T_EQ_INT(sl_row_size(SL_TYPE_Q6_K, 512), 420);
    T_EQ_INT(sl_row_size(SL_TYPE_Q6_K, 32), 0);
    T_EQ_INT(sl_row_size(SL_TYPE_F32, 3), 12);
    T_EQ_INT(sl_row_size(SL_TYPE_F32, -1), 0);
    T_EQ_INT(sl_row_size(5, 32), 0); /* unknown type */
    T_EQ_INT(sl_row_size(-1, 32), 0);
}

/* ------------------------------------------------------------------------ */
/* hand-built blocks                                                         */
/* ------------------------------------------------------------------------ */

static void q4_0_block_holds_first_16_values_in_low_nibbles(void)
{
    uint8_t b[18];
    float got[32];
    put_u16(b, 0x3800); /* d = 0.5 */
    for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)(j | ((15 - j) << 4));
    /* value j = (j - 8) * 0.5; value 16 + j = ((15 - j) - 8) * 0.5 */
    static const float want[32] = {
        -4.0f, -3.5f, -3.0f, -2.5f, -2.0f, -1.5f, -1.0f, -0.5f, 0.0f,  0.5f,  1.0f,
        1.5f,  2.0f,  2.5f,  3.0f,  3.5f,  3.5f,  3.0f,  2.5f,  2.0f,  1.5f,  1.0f,
        0.5f,  0.0f,  -0.5f, -1.0f, -1.5f, -2.0f, -2.5f, -3.0f, -3.5f, -4.0f,
    };
    sl_dequantize_row(SL_TYPE_Q4_0, b, got, 32);
    check_values("Q4_0", got, want, 32);
}

static void q8_0_block_is_d_times_signed_bytes(void)
{
    uint8_t b[34];
    float got[32], want[32];
    put_u16(b, 0x3000); /* d = 0.125 */
    for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)(j - 16);
    b[2 + 31] = 0x80; /* -128 */
    for (int j = 0; j < 31; j++) want[j] = (float)(j - 16) / 8;
    want[31] = -16.0f;
    sl_dequantize_row(SL_TYPE_Q8_0, b, got, 32);
    check_values("Q8_0", got, want, 32);
}

static void q5_0_block_takes_bit_4_of_value_j_from_bit_j_of_qh(void)
{
    struct sl_block_q5_0 b;
    float got[32], want[32];
    put_u16((uint8_t *)&b.d, 0x3c00);   /* d = 1 */
    memcpy(b.qh, "\x01\x00\x01\x00", 4); /* bits 0 and 16: values 0 and 16 */
    memset(b.qs, 0x88, sizeof b.qs);    /* default 8 - 16 = -8 */
    b.qs[0] = 0x21;                     /* v0 = (1 | 16) - 16 = 1, v16 = (2 | 16) - 16 = 2 */
    b.qs[1] = 0xf0;                     /* v1 = 0 - 16, v17 = 15 - 16 */
    for (int j = 0; j < 32; j++) want[j] = -8.0f;
    want[0] = 1.0f;
    want[16] = 2.0f;
    want[1] = -16.0f;
    want[17] = -1.0f;
    sl_dequantize_row(SL_TYPE_Q5_0, &b, got, 32);
    check_values("Q5_0", got, want, 32);
}

static void q2_k_block_unpacks_2_bit_quants_and_4_bit_scales_and_mins(void)
{
    struct sl_block_q2_K b;
    float got[256], want[256];
    memset(&b, 0, sizeof b);
    put_u16((uint8_t *)&b.d, 0x3c00);    /* d = 1 */
    put_u16((uint8_t *)&b.dmin, 0x3800); /* dmin = 0.5 */
    b.scales[0] = 0x21;                  /* sub-block 0: scale 1, min 2 */
    b.scales[7] = 0x1f;                  /* sub-block 7 (values 112..127): scale 15, min 1 */
    b.qs[3] = 0x03;  /* value 3: byte 3, bits 0-1 = 3 */
    b.qs[19] = 0x80; /* value 115: byte 19, bits 6-7 (115 / 32 = 3) = 2 */
    for (int v = 0; v < 256; v++) want[v] = v < 16 ? -1.0f : (v >= 112 && v < 128) ? -0.5f : 0.0f;
    want[3] = 1 * 3 - 0.5f * 2;   /* 2 */
    want[115] = 15 * 2 - 0.5f * 1; /* 29.5 */
    sl_dequantize_row(SL_TYPE_Q2_K, &b, got, 256);
    check_values("Q2_K", got, want, 256);
}

static void q3_k_block_unpacks_hmask_and_12_byte_scales(void)
{
    struct sl_block_q3_K b;
    float got[256], want[256];
    memset(&b, 0, sizeof b);
    put_u16((uint8_t *)&b.d, 0x3800); /* d = 0.5 */
    /* 6-bit scales s_j, value sc_j = s_j - 32: s = 32 everywhere except
     * s0 = 33 (+1), s6 = 30 (-2), s10 = 35 (+3), s13 = 0 (-32).
     * bytes 0..7: low 4 bits of s_j (low nibble) and s_{j+8} (high nibble);
     * byte 8 + k: top 2 bits of s_k, s_k+4, s_k+8, s_k+12 at bits 0, 2, 4, 6
     * (s6 and s13 sit off the diagonal, where k and the field differ). */
    static const uint8_t scales[12] = {
        0x01,                   /* low(s0) = 1 */
        0x00, 0x30,             /* low(s10) = 3 in the high nibble of byte 2 */
        0x00, 0x00, 0x00, 0x0e, /* low(s6) = 14 */
        0x00, 0xaa,             /* top bits 2 = 0b10 everywhere ... */
        0x2a,                   /* ... but s13 (byte 9, bits 6-7) = 0 */
        0xa6,                   /* ... and s6 (byte 10, bits 2-3) = 1 */
        0xaa,
    };
    memcpy(b.scales, scales, 12);
    /* all quants 0 and all hmask bits clear: q = 0 - 4 = -4, value -2 * sc */
    for (int v = 0; v < 256; v++) want[v] = 0.0f;
    for (int v = 0; v < 16; v++) want[v] = -2.0f;    /* sc +1 */
    for (int v = 96; v < 112; v++) want[v] = 4.0f;   /* sc -2 */
    for (int v = 160; v < 176; v++) want[v] = -6.0f; /* sc +3 */
    for (int v = 208; v < 224; v++) want[v] = 64.0f; /* sc -32 */
    b.qs[0] = 0x03;                 /* value 0: bits 0-1 = 3 ... */
    b.hmask[0] = 0x01;              /* ... high bit set: q = 3 */
    want[0] = 0.5f * 1 * 3;         /* 1.5 */
    b.qs[1] = 0x80;                 /* value 97: byte 1, bits 6-7 (97 / 32 = 3) = 2 */
    b.hmask[1] = 0x08;              /* hmask[97 % 32] bit 97 / 32 = 3: q = 2 */
    want[97] = 0.5f * -2 * 2;       /* -2 */
    b.qs[58] = 0x10;                /* value 218: byte 32 + 26, bits 4-5 = 1 */
    b.hmask[26] = 0x40;             /* bit 218 / 32 = 6: q = 1 */
    want[218] = 0.5f * -32 * 1;     /* -16 */
    b.qs[32] = 0x04;                /* value 160: byte 32, bits 2-3 = 1, no high bit */
    want[160] = 0.5f * 3 * (1 - 4); /* -4.5 */
    sl_dequantize_row(SL_TYPE_Q3_K, &b, got, 256);
    check_values("Q3_K", got, want, 256);
}

static void q4_k_block_unpacks_6_bit_scales_and_mins(void)
{
    struct sl_block_q4_K b;
    float got[256], want[256];
    memset(&b, 0, sizeof b);
    put_u16((uint8_t *)&b.d, 0x3c00);    /* d = 1 */
    put_u16((uint8_t *)&b.dmin, 0x3800); /* dmin = 0.5 */
    /* sub-block j < 4: scale = scales[j] & 63, min = scales[j + 4] & 63;
     * j >= 4: scale = (scales[j + 4] & 15) | (scales[j - 4] >> 6) << 4,
     *         min   = (scales[j + 4] >> 4) | (scales[j] >> 6) << 4. */
    static const uint8_t scales[12] = {
        0x41, /* sc0 = 1, top bits 01 -> sc4 += 16 */
        0x02, /* sc1 = 2 */
        0x03, /* sc2 = 3 */
        0xc4, /* sc3 = 4, top bits 11 -> sc7 += 48 */
        0x81, /* m0 = 1, top bits 10 -> m4 += 32 */
        0x00, /* m1 = 0 */
        0x02, /* m2 = 2 */
        0x03, /* m3 = 3 */
        0x15, /* sc4 = 5 + 16 = 21, m4 = 1 + 32 = 33 */
        0x00, /* sc5 = 0, m5 = 0 */
        0x07, /* sc6 = 7, m6 = 0 */
        0x21, /* sc7 = 1 + 48 = 49, m7 = 2 */
    };
    memcpy(b.scales, scales, 12);
    /* bytes 32g..32g+31 hold sub-block 2g in low nibbles, 2g+1 in high ones */
    memset(b.qs, 0xf3, sizeof b.qs); /* even sub-blocks q = 3, odd ones q = 15 */
    static const float sub[8] = {
        1 * 3 - 0.5f * 1,   /* 2.5 */
        2 * 15 - 0.5f * 0,  /* 30 */
        3 * 3 - 0.5f * 2,   /* 8 */
        4 * 15 - 0.5f * 3,  /* 58.5 */
        21 * 3 - 0.5f * 33, /* 46.5 */
        0 * 15 - 0.5f * 0,  /* 0 */
        7 * 3 - 0.5f * 0,   /* 21 */
        49 * 15 - 0.5f * 2, /* 734 */
    };
    for (int v = 0; v < 256; v++) want[v] = sub[v / 32];
    b.qs[0] = 0x5a;   /* value 0 (sub 0): 10; value 32 (sub 1): 5 */
    want[0] = 1 * 10 - 0.5f * 1;
    want[32] = 2 * 5 - 0.5f * 0;
    b.qs[100] = 0x1e; /* byte 96 + 4: value 196 (sub 6): 14; value 228 (sub 7): 1 */
    want[196] = 7 * 14 - 0.5f * 0;
    want[228] = 49 * 1 - 0.5f * 2;
    sl_dequantize_row(SL_TYPE_Q4_K, &b, got, 256);
    check_values("Q4_K", got, want, 256);
}

static void q5_k_block_takes_bit_4_from_qh_bit_v_div_32(void)
{
    struct sl_block_q5_K b;
    float got[256], want[256];
    memset(&b, 0, sizeof b);
    put_u16((uint8_t *)&b.d, 0x3c00); /* d = 1, dmin = 0 */
    memset(b.scales, 0, 12);
    for (int j = 0; j < 4; j++) b.scales[j] = 1; /* sc0..3 = 1, sc4..7 = 1 via bytes 8..11 */
    for (int j = 8; j < 12; j++) b.scales[j] = 0x01;
    memset(b.qs, 0x21, sizeof b.qs); /* low nibble 1, high nibble 2 */
    for (int v = 0; v < 256; v++) want[v] = (v / 32) % 2 ? 2.0f : 1.0f;
    b.qh[5] = 0x81; /* value 5 (bit 0) and value 229 (bit 7) get +16 */
    want[5] = 17.0f;
    want[229] = 18.0f;
    b.qh[31] = 0x04; /* value 2 * 32 + 31 = 95 gets +16 */
    want[95] = 17.0f;
    sl_dequantize_row(SL_TYPE_Q5_K, &b, got, 256);
    check_values("Q5_K", got, want, 256);
}

static void q6_k_block_unpacks_ql_qh_and_signed_scales(void)
{
    struct sl_block_q6_K b;
    float got[256], want[256];
    memset(&b, 0, sizeof b);
    put_u16((uint8_t *)&b.d, 0x3400); /* d = 0.25 */
    for (int k = 0; k < 16; k++) b.scales[k] = (int8_t)(k % 2 ? -(k + 1) : k + 1);
    /* all ql and qh 0: q = -32, value = 0.25 * sc * -32 = -8 * sc[v / 16] */
    for (int v = 0; v < 256; v++) want[v] = -8.0f * b.scales[v / 16];
    b.ql[0] = 0x21;  /* low nibble -> value 0, high nibble -> value 64 */
    b.ql[32] = 0x43; /* low nibble -> value 32, high nibble -> value 96 */
    b.qh[0] = 0xe4;  /* 2-bit fields 0, 1, 2, 3 -> values 0, 32, 64, 96 */
    want[0] = 0.25f * 1 * ((1 | 0 << 4) - 32);  /* -7.75 */
    want[32] = 0.25f * 3 * ((3 | 1 << 4) - 32); /* -9.75 */
    want[64] = 0.25f * 5 * ((2 | 2 << 4) - 32); /* 2.5 */
    want[96] = 0.25f * 7 * ((4 | 3 << 4) - 32); /* 35 */
    b.ql[64 + 17] = 0x0f; /* second half, t = 17: value 145 low nibble 15 */
    b.qh[32 + 17] = 0x03; /* value 145 top bits 3 */
    want[145] = 0.25f * -10 * ((15 | 3 << 4) - 32); /* sc[9] = -10: -77.5 */
    sl_dequantize_row(SL_TYPE_Q6_K, &b, got, 256);
    check_values("Q6_K", got, want, 256);
}

static void q8_1_and_q8_k_store_block_sums(void)
{
    float x[256];
    rng_seed(7);
    for (int i = 0; i < 256; i++) x[i] = rng_gauss();
    struct sl_block_q8_1 q1[8];
    T_EQ_INT(sl_quantize_row_ref(SL_TYPE_Q8_1, x, q1, 256), sizeof q1);
    for (int b = 0; b < 8; b++) {
        /* s = fp16(sum(q) * d) with the unrounded d = amax / 127, as ggml */
        int sum = 0;
        float amax = 0;
        for (int j = 0; j < 32; j++) {
            sum += q1[b].qs[j];
            amax = fmaxf(amax, fabsf(x[32 * b + j]));
        }
        T_EQ_INT(q1[b].d, sl_fp32_to_fp16(amax / 127));
        T_EQ_INT(q1[b].s, sl_fp32_to_fp16((float)sum * (amax / 127)));
    }
    struct sl_block_q8_K qk;
    T_EQ_INT(sl_quantize_row_ref(SL_TYPE_Q8_K, x, &qk, 256), sizeof qk);
    for (int g = 0; g < 16; g++) {
        int sum = 0;
        for (int j = 0; j < 16; j++) sum += qk.qs[16 * g + j];
        T_EQ_INT(qk.bsums[g], sum);
    }
}

/* ------------------------------------------------------------------------ */
/* random rows                                                               */
/* ------------------------------------------------------------------------ */

static void quantize_then_dequantize_stays_within_budget_for_every_type(void)
{
    static const int nblocks[] = {1, 3, 8, 11};
    for (int t = 0; t < N_TYPES; t++) {
        const int type = all_types[t].type;
        const struct sl_type_traits *tr = sl_type_traits((uint32_t)type);
        double worst = 0;
        for (size_t k = 0; k < sizeof nblocks / sizeof nblocks[0]; k++) {
            for (int dist = 0; dist < 2; dist++) {
                const int64_t n = (int64_t)nblocks[k] * tr->blck * (tr->blck == 1 ? 64 : 1);
                float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
                void *q = malloc(sl_row_size(type, n));
                rng_seed((uint64_t)(1000 * t + 10 * k + dist));
                /* N(0,1), and N(0.5, 0.02^2)-ish weights with a positive offset */
                for (int64_t i = 0; i < n; i++)
                    x[i] = dist == 0 ? rng_gauss() : 0.02f * rng_gauss() + 0.01f;
                T_EQ_INT(sl_quantize_row_ref(type, x, q, n), sl_row_size(type, n));
                sl_dequantize_row(type, q, y, n);
                const double e = rel_rmse(x, y, n);
                if (e > worst) worst = e;
                t_checks++;
                if (!(e <= all_types[t].rmse))
                    T_FAIL_AT("%s, %lld values (distribution %d): relative RMS error %.5f over "
                              "budget %.5f",
                              tr->name, (long long)n, dist, e, all_types[t].rmse);
                free(x);
                free(y);
                free(q);
            }
        }
        if (verbose) fprintf(stderr, "     %-5s worst relative RMS error %.5f\n", tr->name, worst);
    }
}

static void vec_dot_ref_matches_float_dot_of_dequantized_rows(void)
{
    static const int nblocks[] = {1, 3, 11};
    for (int t = 0; t < N_TYPES; t++) {
        const int type = all_types[t].type;
        const struct sl_type_traits *tr = sl_type_traits((uint32_t)type);
        if (!tr->weight_ok) continue;
        const int at = tr->dot_type;
        const double tol = (at == SL_TYPE_Q8_1) ? SL_TOL_DOT_Q8_1_SUM : SL_TOL_DOT_EXACT;
        double worst = 0, worst_true = 0;
        for (size_t k = 0; k < sizeof nblocks / sizeof nblocks[0]; k++) {
            const int64_t n = (int64_t)nblocks[k] * (tr->blck == 1 ? 256 : tr->blck);
            float *w = malloc((size_t)n * sizeof *w), *a = malloc((size_t)n * sizeof *a);
            float *wd = malloc((size_t)n * sizeof *wd), *ad = malloc((size_t)n * sizeof *ad);
            void *wq = malloc(sl_row_size(type, n)), *aq = malloc(sl_row_size(at, n));
            rng_seed((uint64_t)(77 + 100 * t + k));
            for (int64_t i = 0; i < n; i++) {
                w[i] = 0.02f * rng_gauss() + 0.005f; /* an offset exercises the min terms */
                a[i] = rng_gauss();
            }
            sl_quantize_row_ref(type, w, wq, n);
            sl_quantize_row_ref(at, a, aq, n);
            sl_dequantize_row(type, wq, wd, n);
            sl_dequantize_row(at, aq, ad, n);
            double ref = 0, mag = 0, exact = 0, exact_mag = 0;
            for (int64_t i = 0; i < n; i++) {
                ref += (double)wd[i] * ad[i];
                mag += fabs((double)wd[i] * ad[i]);
                exact += (double)w[i] * a[i];
                exact_mag += fabs((double)w[i] * a[i]);
            }
            const float got = sl_vec_dot_ref(type, n, wq, aq);
            const double e = fabs(got - ref) / mag;
            const double e_true = fabs(got - exact) / exact_mag;
            if (e > worst) worst = e;
            if (e_true > worst_true) worst_true = e_true;
            t_checks++;
            if (!(e <= tol))
                T_FAIL_AT("%s x %s, %lld values: dot %.9g, dequantized dot %.9g, error %.3g of "
                          "sum|w a| (tol %g)",
                          tr->name, tname(at), (long long)n, got, ref, e, tol);
            /* and near the exact dot: both rows' quantization noise, loosely */
            const double loose = 4 * (all_types[t].rmse + rmse_budget(at)) + 1e-6;
            t_checks++;
            if (!(e_true <= loose))
                T_FAIL_AT("%s x %s, %lld values: dot %.9g, float dot %.9g, error %.3g of "
                          "sum|w a| (tol %g)",
                          tr->name, tname(at), (long long)n, got, exact, e_true, loose);
            free(w);
            free(a);
            free(wd);
            free(ad);
            free(wq);
            free(aq);
        }
        if (verbose)
            fprintf(stderr, "     %-5s dot vs dequantized %.2e, vs float %.2e\n", tr->name, worst,
                    worst_true);
    }
}

static void quantizers_handle_zero_constant_and_spiky_blocks(void)
{
    enum { N = 512 };
    static float x[N], y[N];
    static uint8_t q[N * 4 + 64];
    for (int t = 0; t < N_TYPES; t++) {
        const int type = all_types[t].type;
        for (int pattern = 0; pattern < 5; pattern++) {
            for (int i = 0; i < N; i++) {
                switch (pattern) {
                case 0: x[i] = 0.0f; break;
                case 1: x[i] = 1.0f; break;
                case 2: x[i] = -1e-3f; break;
                case 3: x[i] = i == 77 ? 100.0f : 0.0f; break;
                default: x[i] = 1e-30f; break;
                }
            }
            sl_quantize_row_ref(type, x, q, N);
            sl_dequantize_row(type, q, y, N);
            int bad = 0;
            for (int i = 0; i < N; i++) {
                if (!isfinite(y[i]) || (pattern == 0 && y[i] != 0.0f)) bad++;
            }
            t_checks++;
            if (bad)
                T_FAIL_AT("%s, pattern %d: %d values not finite (or not zero for a zero row)",
                          tname(type), pattern, bad);
            if (pattern == 3 && type != SL_TYPE_Q2_K) /* the spike itself survives */
                T_NEAR(y[77], 100.0, 100.0 * 4 * all_types[t].rmse + 1e-3);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* llama.cpp-made files                                                      */
/* ------------------------------------------------------------------------ */

static const char *const file_types[] = {"F16",  "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
                                         "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q4_K_M"};
#define N_FILES (int)(sizeof file_types / sizeof file_types[0])

static struct sl_gguf *open_model(const char *type_name, struct sl_err *err)
{
    char rel[256];
    struct sl_gguf *g = NULL;
    snprintf(rel, sizeof rel, "conformance/models/llama-s1-%s.gguf", type_name);
    const char *path = t_asset(rel);
    if (!path) return NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fclose(f);
    if (sl_gguf_open(&g, path, err) != 0) {
        T_FAIL_AT("sl_gguf_open(%s): %s", path, err->msg);
        return NULL;
    }
    return g;
}

static const struct sl_gguf_tensor *find_f32_twin(const struct sl_gguf *f32,
                                                  const struct sl_gguf_tensor *t)
{
    for (uint64_t i = 0; i < f32->n_tensors; i++) {
        const struct sl_gguf_tensor *u = &f32->tensors[i];
        if (u->name.len == t->name.len && memcmp(u->name.ptr, t->name.ptr, t->name.len) == 0)
            return u;
    }
    return NULL;
}

static void llama_cpp_files_dequantize_to_the_f32_weights(void)
{
    struct sl_err err = {0};
    struct sl_gguf *f32 = open_model("F32", &err);
    if (!f32) {
        t_skip("conformance/models/llama-s1-F32.gguf not found (../shared/assets absent?)");
        return;
    }
    for (int k = 0; k < N_FILES; k++) {
        struct sl_gguf *g = open_model(file_types[k], &err);
        if (!g) {
            T_FAIL_AT("llama-s1-%s.gguf missing next to llama-s1-F32.gguf", file_types[k]);
            continue;
        }
        int n2d = 0;
        double worst = 0;
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const struct sl_gguf_tensor *t = &g->tensors[i];
            if (t->n_dims != 2) continue;
            const struct sl_gguf_tensor *u = find_f32_twin(f32, t);
            t_checks++;
            if (!u || u->type != SL_TYPE_F32 || u->ne[0] != t->ne[0] || u->ne[1] != t->ne[1]) {
                T_FAIL_AT("%s: tensor '%.*s' has no F32 twin of the same shape", file_types[k],
                          (int)t->name.len, t->name.ptr);
                continue;
            }
            const int64_t n = t->ne[0] * t->ne[1];
            float *y = malloc((size_t)n * sizeof *y);
            const size_t rs = sl_row_size((int)t->type, t->ne[0]);
            for (int64_t r = 0; r < t->ne[1]; r++)
                sl_dequantize_row((int)t->type, (const uint8_t *)t->data + (size_t)r * rs,
                                  y + r * t->ne[0], t->ne[0]);
            const double e = rel_rmse(u->data, y, n);
            const double budget = rmse_budget((int)t->type);
            if (e > worst) worst = e;
            t_checks++;
            if (!(e <= budget))
                T_FAIL_AT("%s: tensor '%.*s' (%s) dequantizes with relative RMS error %.5f vs the "
                          "F32 weights, budget %.5f",
                          file_types[k], (int)t->name.len, t->name.ptr, tname((int)t->type), e,
                          budget);
            free(y);
            n2d++;
        }
        T_TRUE(n2d > 0);
        if (verbose)
            fprintf(stderr, "     %-6s %d 2-D tensors, worst relative RMS error %.5f\n",
                    file_types[k], n2d, worst);
        sl_gguf_free(g);
    }
    sl_gguf_free(f32);
}

static void requantized_f32_weights_reproduce_llama_cpp_bytes(void)
{
    struct sl_err err = {0};
    struct sl_gguf *f32 = open_model("F32", &err);
    if (!f32) {
        t_skip("conformance/models/llama-s1-F32.gguf not found (../shared/assets absent?)");
        return;
    }
    char same[512] = "", differ[512] = "";
    for (int k = 0; k < N_FILES; k++) {
        struct sl_gguf *g = open_model(file_types[k], &err);
        if (!g) {
            T_FAIL_AT("llama-s1-%s.gguf missing next to llama-s1-F32.gguf", file_types[k]);
            continue;
        }
        int64_t rows = 0, bad_rows = 0;
        for (uint64_t i = 0; i < g->n_tensors; i++) {
            const struct sl_gguf_tensor *t = &g->tensors[i];
            if (t->n_dims != 2) continue;
            const struct sl_gguf_tensor *u = find_f32_twin(f32, t);
            if (!u || u->ne[0] != t->ne[0] || u->ne[1] != t->ne[1]) continue; /* reported above */
            const size_t rs = sl_row_size((int)t->type, t->ne[0]);
            uint8_t *q = malloc(rs);
            for (int64_t r = 0; r < t->ne[1]; r++) {
                const float *x = (const float *)u->data + r * t->ne[0];
                const uint8_t *want = (const uint8_t *)t->data + (size_t)r * rs;
                sl_quantize_row_ref((int)t->type, x, q, t->ne[0]);
                rows++;
                if (memcmp(q, want, rs) != 0) {
                    size_t at = 0;
                    while (q[at] == want[at]) at++;
                    if (bad_rows++ < 3)
                        T_FAIL_AT("%s: tensor '%.*s' (%s) row %lld differs from llama.cpp's at "
                                  "byte %zu (block %zu): 0x%02x, llama.cpp 0x%02x",
                                  file_types[k], (int)t->name.len, t->name.ptr,
                                  tname((int)t->type), (long long)r, at,
                                  at / sl_type_traits(t->type)->type_size, q[at], want[at]);
                    else
                        t_failures++;
                }
                t_checks++;
            }
            free(q);
        }
        char *list = bad_rows ? differ : same;
        snprintf(list + strlen(list), 512 - strlen(list), " %s", file_types[k]);
        if (bad_rows)
            fprintf(stderr, "     %s: %lld of %lld rows differ\n", file_types[k],
                    (long long)bad_rows, (long long)rows);
        sl_gguf_free(g);
    }
    if (verbose || differ[0])
        fprintf(stderr, "     byte-identical to llama.cpp:%s\n     differing:%s\n", same,
                differ[0] ? differ : " none");
    sl_gguf_free(f32);
}

int main(void)
{
    const char *v = getenv("SL_TEST_VERBOSE");
    verbose = v && *v && *v != '0';
    T_RUN(fp16_from_fp32_gives_hand_derived_bits);
    T_RUN(fp16_to_fp32_gives_hand_derived_values);
    T_RUN(fp16_round_trips_every_half_and_rounds_every_tie_to_even);
    T_RUN(bf16_conversion_rounds_to_nearest_even_and_quiets_nan);
    T_RUN(type_traits_match_ggml_block_sizes_and_dot_types);
    T_RUN(type_names_parse_case_insensitively);
    T_RUN(row_size_counts_whole_blocks_and_rejects_partial_ones);
    T_RUN(q4_0_block_holds_first_16_values_in_low_nibbles);
    T_RUN(q8_0_block_is_d_times_signed_bytes);
    T_RUN(q5_0_block_takes_bit_4_of_value_j_from_bit_j_of_qh);
    T_RUN(q2_k_block_unpacks_2_bit_quants_and_4_bit_scales_and_mins);
    T_RUN(q3_k_block_unpacks_hmask_and_12_byte_scales);
    T_RUN(q4_k_block_unpacks_6_bit_scales_and_mins);
    T_RUN(q5_k_block_takes_bit_4_from_qh_bit_v_div_32);
    T_RUN(q6_k_block_unpacks_ql_qh_and_signed_scales);
    T_RUN(q8_1_and_q8_k_store_block_sums);
    T_RUN(quantize_then_dequantize_stays_within_budget_for_every_type);
    T_RUN(vec_dot_ref_matches_float_dot_of_dequantized_rows);
    T_RUN(quantizers_handle_zero_constant_and_spiky_blocks);
    T_RUN(llama_cpp_files_dequantize_to_the_f32_weights);
    T_RUN(requantized_f32_weights_reproduce_llama_cpp_bytes);
    return t_done();
}
