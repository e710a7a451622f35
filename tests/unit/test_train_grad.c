/*
 * test_train_grad.c - every gradient of the trainer against double-precision
 * central finite differences on a tiny model (train layer).
 *
 * lm.c is compiled here a second time with sl_real = double, so the
 * finite differences measure the math, not float rounding. For each
 * parameter tensor a sample of elements is perturbed by +-SL_FD_STEP and
 * the relative error ||num - ana|| / (||num|| + ||ana||) over the sample
 * must stay under SL_TOL_GRAD.
 */
#define SL_LM_REAL double
#include "train/lm.c"

#include "test.h"

#define SL_FD_STEP 1e-5
#define SL_TOL_GRAD 1e-6
#define FD_SAMPLES 24 /* elements checked per tensor */

static const struct sl_lm_config tiny = {.n_vocab = 13, .n_embd = 8, .n_layer = 2, .n_head = 4, .n_head_kv = 2,
                                         .n_ff = 12, .n_ctx = 16, .norm_eps = 1e-5f, .rope_base = 10000.0f,
                                         .tied = false};

enum { B_ = 2, T_ = 5 };
static int32_t inputs[B_ * T_], targets[B_ * T_];

static double loss_of(struct sl_lm *lm)
{
    return sl_lm_forward(lm, inputs, targets, B_, T_, NULL);
}

/* Perturb sampled elements of p (n), compare with analytic g. */
static void check_tensor(struct sl_lm *lm, const char *name, double *p, const double *g, size_t n)
{
    double num2 = 0, ana2 = 0, diff2 = 0;
    struct sl_rng r;
    sl_rng_seed(&r, n);
    for (int s = 0; s < FD_SAMPLES; s++) {
        size_t i = n <= FD_SAMPLES ? (size_t)s : (size_t)(sl_rng_u64(&r) % n);
        if (i >= n) break;
        double keep = p[i];
        p[i] = keep + SL_FD_STEP;
        double lp = loss_of(lm);
        p[i] = keep - SL_FD_STEP;
        double lmn = loss_of(lm);
        p[i] = keep;
        double num = (lp - lmn) / (2 * SL_FD_STEP);
        num2 += num * num;
        ana2 += g[i] * g[i];
        diff2 += (num - g[i]) * (num - g[i]);
    }
    double rel = sqrt(diff2) / (sqrt(num2) + sqrt(ana2) + 1e-30);
    t_checks++;
    if (!(rel <= SL_TOL_GRAD) || ana2 == 0)
        T_FAIL_AT("tensor %s: relative error %.3g (tol %g), |grad| %.3g", name, rel, SL_TOL_GRAD, sqrt(ana2));
    else
        fprintf(stderr, "      %-10s rel err %.2e  |grad| %.2e\n", name, rel, sqrt(ana2));
}

static void setup(struct sl_lm *lm, bool tied)
{
    struct sl_lm_config c = tiny;
    c.tied = tied;
    struct sl_err err = {0};
    T_OK(sl_lm_init(lm, &c, 1, &err), &err); /* one thread: thousands of tiny passes */
    /* larger weights than training init, so every path carries signal */
    struct sl_rng r;
    sl_rng_seed(&r, 7);
    for (size_t i = 0; i < lm->n_params; i++) lm->params_mem[i] = 0.4 * sl_rng_normal(&r);
    for (size_t i = 0; i < (size_t)c.n_layer * c.n_embd; i++) {
        lm->w.attn_norm[i] = 1 + 0.2 * sl_rng_normal(&r);
        lm->w.ffn_norm[i] = 1 + 0.2 * sl_rng_normal(&r);
    }
    for (int i = 0; i < B_ * T_; i++) {
        inputs[i] = (int32_t)sl_rng_below(&r, (uint32_t)c.n_vocab);
        targets[i] = i % 4 == 3 ? -1 : (int32_t)sl_rng_below(&r, (uint32_t)c.n_vocab); /* some ignored */
    }
}

static void check_all(struct sl_lm *lm)
{
    const struct sl_lm_config *c = &lm->cfg;
    size_t V = (size_t)c->n_vocab, E = (size_t)c->n_embd, L = (size_t)c->n_layer, F = (size_t)c->n_ff;
    size_t nq = (size_t)c->n_head * lm->head_dim, nk = (size_t)c->n_head_kv * lm->head_dim;
    double l0 = loss_of(lm);
    T_TRUE(isfinite(l0));
    sl_lm_zero_grad(lm);
    sl_lm_backward(lm, inputs, targets);
    /* backward overwrote the probabilities; gradients are kept in lm->g */
    check_tensor(lm, "tok_embd", lm->w.tok_embd, lm->g.tok_embd, V * E);
    check_tensor(lm, "attn_norm", lm->w.attn_norm, lm->g.attn_norm, L * E);
    check_tensor(lm, "wq", lm->w.wq, lm->g.wq, L * nq * E);
    check_tensor(lm, "wk", lm->w.wk, lm->g.wk, L * nk * E);
    check_tensor(lm, "wv", lm->w.wv, lm->g.wv, L * nk * E);
    check_tensor(lm, "wo", lm->w.wo, lm->g.wo, L * E * nq);
    check_tensor(lm, "ffn_norm", lm->w.ffn_norm, lm->g.ffn_norm, L * E);
    check_tensor(lm, "gate", lm->w.gate, lm->g.gate, L * F * E);
    check_tensor(lm, "up", lm->w.up, lm->g.up, L * F * E);
    check_tensor(lm, "down", lm->w.down, lm->g.down, L * E * F);
    check_tensor(lm, "out_norm", lm->w.out_norm, lm->g.out_norm, E);
    if (lm->w.output) check_tensor(lm, "output", lm->w.output, lm->g.output, V * E);
}

static void lm_grads_match_finite_differences_untied(void)
{
    struct sl_lm lm;
    setup(&lm, false);
    check_all(&lm);
    sl_lm_free(&lm);
}

static void lm_grads_match_finite_differences_tied(void)
{
    struct sl_lm lm;
    setup(&lm, true);
    check_all(&lm);
    sl_lm_free(&lm);
}

static void lora_grads_match_finite_differences(void)
{
    struct sl_lm lm;
    struct sl_lm_lora lo;
    struct sl_err err = {0};
    setup(&lm, true);
    T_OK(sl_lm_lora_init(&lo, &lm, 3, 6.0f, (1u << SL_LORA_N_TARGETS) - 1, 3, &err), &err);
    struct sl_rng r;
    sl_rng_seed(&r, 11);
    for (size_t i = 0; i < lo.n_params; i++) lo.mem[i] = 0.3 * sl_rng_normal(&r); /* B != 0 */
    lm.lora = &lo;
    lm.train_base = false;
    loss_of(&lm);
    sl_lm_zero_grad(&lm);
    sl_lm_backward(&lm, inputs, targets);
    static const char *const names[] = {"lora q", "lora k", "lora v", "lora o", "lora gate", "lora up", "lora down"};
    for (int t = 0; t < SL_LORA_N_TARGETS; t++) {
        int in, out;
        sl_lm_lora_dims(&lm, t, &in, &out);
        size_t L = (size_t)lm.cfg.n_layer;
        char na[32], nb[32];
        snprintf(na, sizeof na, "%s A", names[t]);
        snprintf(nb, sizeof nb, "%s B", names[t]);
        check_tensor(&lm, na, lo.a[t], lo.da[t], L * (size_t)lo.rank * in);
        check_tensor(&lm, nb, lo.b[t], lo.db[t], L * (size_t)out * lo.rank);
    }
    /* frozen base: no gradient was written */
    double gsum = 0;
    for (size_t i = 0; i < lm.n_params; i++) gsum += fabs(lm.grads_mem[i]);
    T_NEAR(gsum, 0, 0);
    sl_lm_lora_free(&lo);
    sl_lm_free(&lm);
}

int main(void)
{
    T_RUN(lm_grads_match_finite_differences_untied);
    T_RUN(lm_grads_match_finite_differences_tied);
    T_RUN(lora_grads_match_finite_differences);
    return t_done();
}
