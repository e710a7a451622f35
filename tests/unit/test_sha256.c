/*
 * test_sha256.c - SHA-256 against the FIPS 180-4 / NIST example vectors.
 */
#include "base/err.h"
#include "base/sha256.h"

#include <string.h>

#include "test.h"

static const char *hex_of(const void *data, size_t n)
{
    static char hex[65];
    uint8_t d[SL_SHA256_LEN];
    sl_sha256(data, n, d);
    sl_sha256_hex(d, hex);
    return hex;
}

static void sha256_matches_fips_vectors(void)
{
    T_EQ_STR(hex_of("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    T_EQ_STR(hex_of("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    T_EQ_STR(hex_of(m, strlen(m)),
             "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m2 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmn"
                     "opqklmnopqrlmnopqrsmnopqrstnopqrstu";
    T_EQ_STR(hex_of(m2, strlen(m2)),
             "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

static void sha256_streams_a_million_a_in_odd_pieces(void)
{
    static char a[1000];
    memset(a, 'a', sizeof a);
    struct sl_sha256 s;
    uint8_t d[SL_SHA256_LEN];
    char hex[65];
    sl_sha256_init(&s);
    size_t left = 1000000, k = 1;
    while (left) {
        size_t n = SL_MIN(left, k % 997 + 1);
        sl_sha256_update(&s, a, n);
        left -= n;
        k += 13;
    }
    sl_sha256_final(&s, d);
    sl_sha256_hex(d, hex);
    T_EQ_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static void sha256_hex_round_trips_and_rejects_bad_digits(void)
{
    uint8_t d[SL_SHA256_LEN], e[SL_SHA256_LEN];
    sl_sha256("key", 3, d);
    char hex[65];
    sl_sha256_hex(d, hex);
    T_EQ_INT(sl_sha256_from_hex(hex, e), 0);
    T_TRUE(sl_sha256_equal(d, e));
    e[31] ^= 1;
    T_TRUE(!sl_sha256_equal(d, e));
    T_EQ_INT(sl_sha256_from_hex("abc", e), SL_EINVAL);
    hex[10] = 'g';
    T_EQ_INT(sl_sha256_from_hex(hex, e), SL_EINVAL);
}

int main(void)
{
    T_RUN(sha256_matches_fips_vectors);
    T_RUN(sha256_streams_a_million_a_in_odd_pieces);
    T_RUN(sha256_hex_round_trips_and_rejects_bad_digits);
    return t_done();
}
