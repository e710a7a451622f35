/*
 * ops.h - the numeric building blocks of the forward pass (engine layer).
 *
 * Each op is written plainly; the matmul hands its inner dot products to the
 * kernel table (kernels.h), so SIMD and threading stay out of forward.c.
 * Shapes: x is (T, N) row-major unless said otherwise.
 */
#ifndef SL_OPS_H
#define SL_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "../base/pool.h"
#include "model.h"

/* y = x / sqrt(mean(x^2) + eps) * w, over n values; w may be NULL. */
void sl_op_rmsnorm(float *y, const float *x, const float *w, int n, float eps);

/* y (T, R) = x (T, N) . W^T for W (R, N) of any weight type. Activations are
 * first converted to W's dot type, or packed for the kernel table's matrix
 * tiles (kernels.h struct sl_mm), into qbuf, which must hold T rows of
 * sl_matmul_qbuf_size bytes. Parallel over blocks of (rows of W) x (rows
 * of x); T = 0 does nothing. */
void sl_op_matmul(struct sl_pool *pool, const struct sl_tensor *w, const float *x, float *y, int T,
                  void *qbuf);
size_t sl_matmul_qbuf_size(const struct sl_tensor *w);

/* y[k] = x . w[k]^T for count (<= SL_MATMUL_SET_MAX) weights that read the
 * same activations (q, k, v; gate, up): x is converted once when every
 * w[k] takes it in the same form, and all the products run as one pool
 * job, so a thread that runs out of one weight's rows goes on to the
 * next weight's instead of waiting at a barrier. Otherwise (e.g. a Q6_K v
 * beside Q5_0 q and k) it is sl_op_matmul once per weight. */
#define SL_MATMUL_SET_MAX 3
void sl_op_matmul_set(struct sl_pool *pool, int count, const struct sl_tensor *const *w, const float *x,
                      float *const *y, int T, void *qbuf);

/* Row r of a weight, dequantized to float (n = ne[0] values). */
void sl_op_get_row(const struct sl_tensor *w, int64_t r, float *out);

/* RoPE in two steps, so that one position's angles serve every head:
 * sl_op_rope_angles writes cos, sin of the n_rot / 2 angles of a position
 * as n_rot floats (cos_0, sin_0, cos_1, ...; freq_div may be NULL), and
 * sl_op_rope_apply rotates the n_rot first dimensions of one head vector x
 * with them: pairs (2i, 2i+1), or (i, i + n_rot/2) when neox. */
void sl_op_rope_angles(float *cs, int n_rot, int32_t pos, float base, float scale, const float *freq_div);
void sl_op_rope_apply(float *x, int n_rot, const float *cs, int neox);

void sl_op_softmax(float *x, int n);

#endif
