/*
 * sha256.h - SHA-256 (FIPS 180-4), for hashing API keys (base layer).
 *
 * Small and dependency-free; checked against the FIPS test vectors in
 * tests/unit/test_sha256.c. Not constant-time with respect to message
 * length, which is fine for hashing a key before comparing hashes.
 * Thread-safety: no shared state; thread-safe.
 */
#ifndef SL_SHA256_H
#define SL_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SL_SHA256_LEN 32

struct sl_sha256 {
    uint32_t h[8];
    uint64_t n_bytes;
    uint8_t buf[64];
    size_t n_buf;
};

void sl_sha256_init(struct sl_sha256 *s);
void sl_sha256_update(struct sl_sha256 *s, const void *data, size_t len);
void sl_sha256_final(struct sl_sha256 *s, uint8_t out[SL_SHA256_LEN]);

/* One-shot digest of data[0..len). */
void sl_sha256(const void *data, size_t len, uint8_t out[SL_SHA256_LEN]);

/* Lower-case hex of a digest into hex[65] (NUL-terminated). */
void sl_sha256_hex(const uint8_t d[SL_SHA256_LEN], char hex[2 * SL_SHA256_LEN + 1]);

/* Parse 64 hex digits (either case) into d; 0 or SL_EINVAL. */
int sl_sha256_from_hex(const char *hex, uint8_t d[SL_SHA256_LEN]);

/* Compare two digests in time independent of where they differ: 1 if equal. */
int sl_sha256_equal(const uint8_t a[SL_SHA256_LEN], const uint8_t b[SL_SHA256_LEN]);

#endif
