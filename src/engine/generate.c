/*
 * generate.c - the decode loop (engine layer). See generate.h.
 */
#include "generate.h"

#include <string.h>
#include <time.h>

struct sl_gen_params sl_gen_default_params(void)
{
    return (struct sl_gen_params){.n_predict = 128, .sampling = sl_sampler_default_params(), .seq = 0};
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

size_t sl_utf8_complete(const char *s, size_t n)
{
    size_t i = n, k = 0;
    while (i > 0 && k < 4 && ((unsigned char)s[i - 1] & 0xC0) == 0x80) i--, k++;
    if (i == 0) return n;
    unsigned char c = (unsigned char)s[i - 1];
    size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return (k + 1 >= need) ? n : i - 1;
}

struct textbuf {
    char *p;
    size_t len, cap;
};

static int tb_append(struct textbuf *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        while (cap < t->len + n + 1) cap *= 2;
        char *np = realloc(t->p, cap);
        if (!np) return SL_ENOMEM;
        t->p = np;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = 0;
    return 0;
}

int sl_generate(struct sl_ctx *ctx, const struct sl_vocab *vocab, const int32_t *prompt, size_t n,
                const struct sl_gen_params *p, sl_gen_cb cb, void *user, struct sl_gen_result *res,
                struct sl_err *err)
{
    struct sl_sampler *smp = NULL;
    struct sl_stop stop = {0};
    struct sl_batch b = {0};
    struct textbuf text = {0};
    int32_t *toks = NULL;
    int rc;
    int32_t V = ctx->model->hp.n_vocab, n_ctx = ctx->params.n_ctx;

    memset(res, 0, sizeof *res);
    if (n == 0) return sl_err_set(err, SL_EINVAL, "generate: empty prompt");
    if (p->n_predict <= 0) return sl_err_set(err, SL_EINVAL, "generate: n_predict must be > 0");
    if ((int64_t)n >= n_ctx)
        return sl_err_set(err, SL_ERANGE, "generate: prompt of %zu tokens does not fit the context (%d)",
                          n, n_ctx);
    if ((rc = sl_sampler_init(&p->sampling, V, &smp, err))) return rc;
    if ((rc = sl_stop_init(&stop, p->stop, p->n_stop, err))) goto out; /* bad stop strings */
    if ((rc = sl_batch_init(&b, ctx->params.n_batch))) {
        sl_err_set(err, rc, "generate: out of memory");
        goto out; /* allocation failure */
    }
    if (!(toks = malloc((size_t)p->n_predict * sizeof *toks))) {
        rc = sl_err_set(err, SL_ENOMEM, "generate: out of memory");
        goto out; /* allocation failure */
    }

    /* prompt: batches of n_batch, logits only for the last entry */
    double t0 = now_ms();
    sl_kv_seq_rm(&ctx->kv, p->seq, 0, -1);
    for (size_t i = 0; i < n; i += (size_t)b.cap) {
        sl_batch_clear(&b);
        for (size_t j = i; j < n && j < i + (size_t)b.cap; j++)
            sl_batch_add(&b, prompt[j], (int32_t)j, p->seq, j == n - 1);
        if ((rc = sl_decode(ctx, &b, err))) goto out; /* bad token or full cache */
    }
    for (size_t i = 0; i < n; i++) sl_sampler_accept(smp, prompt[i]);
    double t1 = now_ms();
    res->n_prompt = (int32_t)n;
    res->t_prompt_ms = t1 - t0;
    res->finish = SL_FINISH_LENGTH;

    size_t sent = 0, checked = 0;
    int32_t pos = (int32_t)n;
    for (int32_t k = 0; k < p->n_predict; k++) {
        struct sl_sample s;
        if ((rc = sl_sampler_sample(smp, sl_ctx_logits(ctx, 0), &s, err))) goto out;
        sl_sampler_accept(smp, s.token);
        toks[res->n_gen++] = s.token;
        bool eog = !p->ignore_eog && sl_vocab_is_eog(vocab, s.token);
        if (!eog) {
            char piece[256];
            int pl = sl_token_to_piece(vocab, s.token, piece, sizeof piece, false);
            if (pl > 0 && (rc = tb_append(&text, piece, (size_t)pl))) {
                sl_err_set(err, rc, "generate: out of memory");
                goto out; /* allocation failure */
            }
        }
        size_t safe;
        enum sl_stop_state st = sl_stop_scan(&stop, text.p ? text.p : "", text.len, checked, &safe);
        checked = text.len;
        if (st == SL_STOP_NONE) safe = sl_utf8_complete(text.p ? text.p : "", text.len);
        bool done = eog || st == SL_STOP_MATCH;
        if (done && st != SL_STOP_MATCH) safe = text.len; /* release the rest */
        if (safe < sent) safe = sent;
        if (cb && cb(user, &s, text.p ? text.p + sent : "", safe - sent)) {
            sent = safe;
            res->finish = SL_FINISH_CANCEL;
            break;
        }
        sent = safe;
        if (done) {
            res->finish = SL_FINISH_STOP;
            break;
        }
        if (k + 1 == p->n_predict) break;
        if (pos >= n_ctx) break; /* context full: finish by length */
        sl_batch_clear(&b);
        sl_batch_add(&b, s.token, pos++, p->seq, true);
        if ((rc = sl_decode(ctx, &b, err))) goto out; /* full cache */
    }
    if (res->finish == SL_FINISH_LENGTH && sent < text.len && cb) {
        /* flush held-back text that no stop string completed */
        cb(user, NULL, text.p + sent, text.len - sent);
    }
    res->t_gen_ms = now_ms() - t1;
    text.len = res->finish == SL_FINISH_LENGTH ? text.len : sent;
    if (!text.p && tb_append(&text, "", 0)) {
        rc = sl_err_set(err, SL_ENOMEM, "generate: out of memory");
        goto out; /* allocation failure */
    }
    text.p[text.len] = 0;
    res->text = text.p;
    res->len = text.len;
    res->tokens = toks;
    text.p = NULL;
    toks = NULL;
    rc = 0;
out:
    free(text.p);
    free(toks);
    sl_batch_free(&b);
    sl_stop_free(&stop);
    sl_sampler_free(smp);
    return rc;
}

void sl_gen_result_free(struct sl_gen_result *r)
{
    free(r->text);
    free(r->tokens);
    memset(r, 0, sizeof *r);
}
