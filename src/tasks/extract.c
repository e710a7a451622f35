/*
 * extract.c - schema-constrained JSON generation with per-field confidence
 * (tasks layer). See extract.h.
 */
#include "extract.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "engine/chat.h"
#include "engine/grammar.h"
#include "engine/vocab.h"

struct sl_extractor {
    struct sl_ctx *ctx; /* borrowed */
    const struct sl_vocab *vocab;
    struct sl_extract_task task;
    char *instruction;
    char *schema_text; /* compact JSON of the schema, for the prompt */
    char *grammar_text;
    struct sl_grammar *grammar;
    enum sl_chat_family fam;
    bool parse_special;
};

static const char *default_instruction = "Extract the information from the input as JSON.";

struct sl_extract_task sl_extract_default_task(void)
{
    struct sl_extract_task t = {.mode = SL_PROMPT_AUTO, .max_tokens = 512};
    t.opts = sl_schema_default_opts();
    t.sampling = sl_sampler_default_params();
    t.sampling.temp = 0;
    return t;
}

void sl_extract_result_free(struct sl_extract_result *r)
{
    if (!r) return;
    free(r->output);
    for (size_t i = 0; i < r->n_fields; i++) free(r->fields[i].path);
    free(r->fields);
    memset(r, 0, sizeof *r);
}

int sl_extractor_init(struct sl_extractor **out, struct sl_ctx *ctx,
                      const struct sl_extract_task *task, struct sl_err *err)
{
    struct sl_extractor *x = NULL;
    const struct sl_model *m = ctx->model;
    int rc;
    *out = NULL;
    if (!m->vocab) return sl_err_set(err, SL_EINVAL, "extract: the model has no tokenizer");
    if (task->max_tokens <= 0) return sl_err_set(err, SL_EINVAL, "extract: max_tokens must be > 0");
    if (!task->schema) return sl_err_set(err, SL_EINVAL, "extract: no schema");
    if (!(x = calloc(1, sizeof *x))) return sl_err_set(err, SL_ENOMEM, "extract: out of memory");
    x->ctx = ctx;
    x->vocab = m->vocab;
    x->task = *task;
    x->task.schema = NULL;
    if ((rc = sl_schema_to_grammar(task->schema, &task->opts, &x->grammar_text, err)))
        goto fail; /* unsupported schema */
    if ((rc = sl_grammar_parse(&x->grammar, x->grammar_text, strlen(x->grammar_text), err)))
        goto fail; /* our compiler's bug or a limit */
    {
        /* left recursion or a limit shows at the first state */
        struct sl_grammar_state *st = NULL;
        if ((rc = sl_grammar_state_init(&st, x->grammar, err))) goto fail; /* bad grammar */
        sl_grammar_state_free(st);
    }
    x->schema_text = json_dumps(task->schema, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!x->schema_text) goto oom; /* allocation failure */
    if (task->instruction) {
        size_t n = strlen(task->instruction);
        if (!(x->instruction = malloc(n + 1))) goto oom; /* allocation failure */
        memcpy(x->instruction, task->instruction, n + 1);
    }
    x->task.instruction = x->instruction;
    x->fam = (enum sl_chat_family)task->chat_family;
    if (task->mode == SL_PROMPT_AUTO || task->mode == SL_PROMPT_CHAT) {
        if (x->fam == SL_CHAT_UNKNOWN && m->chat_template) x->fam = sl_chat_detect(m->chat_template);
        if (x->fam == SL_CHAT_UNKNOWN && task->mode == SL_PROMPT_CHAT) {
            rc = sl_err_set(err, SL_EUNSUPPORTED, "extract: the model has no chat template we know");
            goto fail; /* no template */
        }
        x->task.mode = x->fam == SL_CHAT_UNKNOWN ? SL_PROMPT_PLAIN : SL_PROMPT_CHAT;
    }
    x->parse_special = x->task.mode == SL_PROMPT_CHAT;
    *out = x;
    return 0;
oom:
    rc = sl_err_set(err, SL_ENOMEM, "extract: out of memory");
fail:
    sl_extractor_free(x);
    return rc;
}

void sl_extractor_free(struct sl_extractor *x)
{
    if (!x) return;
    sl_grammar_free(x->grammar);
    free(x->grammar_text);
    free(x->schema_text);
    free(x->instruction);
    free(x);
}

const char *sl_extractor_grammar(const struct sl_extractor *x) { return x->grammar_text; }

static int render(const struct sl_extractor *x, const char *input, char **out, struct sl_err *err)
{
    struct sl_buf b;
    const char *ins = x->task.instruction ? x->task.instruction : default_instruction;
    int rc = 0;
    sl_buf_init(&b, 0);
    *out = NULL;
    if (x->task.mode == SL_PROMPT_RAW) {
        rc = sl_buf_appendf(&b, "%s%s", x->task.instruction ? x->task.instruction : "", input);
    } else {
        rc = sl_buf_appendf(&b, "%s\n\nAnswer with JSON matching this JSON Schema:\n%s\n\nInput: %s", ins,
                            x->schema_text, input);
        if (!rc && x->task.mode == SL_PROMPT_PLAIN) rc = sl_buf_appendf(&b, "\nJSON:\n");
    }
    if (rc) {
        sl_buf_free(&b);
        return sl_err_set(err, SL_ENOMEM, "extract: out of memory");
    }
    if (x->task.mode == SL_PROMPT_CHAT) {
        struct sl_chat_msg msg = {"user", b.p};
        rc = sl_chat_apply(x->fam, &msg, 1, true, out, err);
        sl_buf_free(&b);
        return rc;
    }
    *out = sl_buf_take(&b, NULL);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Leaf values of the (valid) output and their byte spans                    */
/* ------------------------------------------------------------------------ */

struct scan {
    const char *s;
    size_t i, n;
    struct sl_extract_result *res;
    size_t cap;
    int rc;
};

static void skip_ws(struct scan *sc)
{
    while (sc->i < sc->n && (sc->s[sc->i] == ' ' || sc->s[sc->i] == '\n' || sc->s[sc->i] == '\t' ||
                             sc->s[sc->i] == '\r'))
        sc->i++;
}

static void skip_string(struct scan *sc)
{
    sc->i++; /* opening quote */
    while (sc->i < sc->n && sc->s[sc->i] != '"') sc->i += sc->s[sc->i] == '\\' ? 2 : 1;
    sc->i++;
}

static void add_field(struct scan *sc, const char *path, size_t start, size_t end)
{
    if (sc->rc) return;
    struct sl_extract_result *r = sc->res;
    if (r->n_fields == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 8;
        struct sl_extract_field *nf = realloc(r->fields, cap * sizeof *nf);
        if (!nf) {
            sc->rc = SL_ENOMEM;
            return;
        }
        r->fields = nf;
        sc->cap = cap;
    }
    size_t pl = strlen(path);
    char *p = malloc(pl + 1);
    if (!p) {
        sc->rc = SL_ENOMEM;
        return;
    }
    memcpy(p, path, pl + 1);
    r->fields[r->n_fields++] = (struct sl_extract_field){.path = p, .start = start, .end = end};
}

/* path is a buffer of 1024 bytes holding the pointer so far. */
static void scan_value(struct scan *sc, char *path, int depth)
{
    skip_ws(sc);
    if (sc->i >= sc->n || depth > 256 || sc->rc) return;
    size_t plen = strlen(path);
    char c = sc->s[sc->i];
    if (c == '{' || c == '[') {
        sc->i++;
        for (size_t idx = 0;; idx++) {
            skip_ws(sc);
            if (sc->i >= sc->n) return;
            if (sc->s[sc->i] == '}' || sc->s[sc->i] == ']') {
                sc->i++;
                return;
            }
            if (sc->s[sc->i] == ',') {
                sc->i++;
                skip_ws(sc);
            }
            if (c == '{') {
                size_t k0 = sc->i + 1;
                skip_string(sc);
                size_t k1 = sc->i - 1, w = plen;
                if (w + 1 < 1024) path[w++] = '/';
                for (size_t k = k0; k < k1 && w + 2 < 1024; k++) {
                    /* JSON pointer: ~ -> ~0, / -> ~1 (escapes inside keys kept as written) */
                    if (sc->s[k] == '~') path[w++] = '~', path[w++] = '0';
                    else if (sc->s[k] == '/') path[w++] = '~', path[w++] = '1';
                    else path[w++] = sc->s[k];
                }
                path[w] = 0;
                skip_ws(sc);
                sc->i++; /* ':' */
            } else {
                snprintf(path + plen, 1024 - plen, "/%zu", idx);
            }
            scan_value(sc, path, depth + 1);
            path[plen] = 0;
        }
    }
    size_t start = sc->i;
    if (c == '"') {
        skip_string(sc);
    } else {
        while (sc->i < sc->n && !strchr(",]} \n\t\r", sc->s[sc->i])) sc->i++;
    }
    add_field(sc, path, start, sc->i);
}

/* ------------------------------------------------------------------------ */
/* Generation                                                                */
/* ------------------------------------------------------------------------ */

int sl_extract(struct sl_extractor *x, const char *input, struct sl_extract_result *res,
               struct sl_err *err)
{
    struct sl_ctx *ctx = x->ctx;
    struct sl_sampler *smp = NULL;
    struct sl_batch b = {0};
    struct sl_buf text;
    char *prompt = NULL;
    int32_t *toks = NULL;
    size_t n_toks = 0;
    float *probs = NULL;
    size_t *tok_end = NULL;
    int rc;
    int32_t V = ctx->model->hp.n_vocab, n_ctx = ctx->params.n_ctx, max = x->task.max_tokens;

    memset(res, 0, sizeof *res);
    sl_buf_init(&text, 0);
    if ((rc = render(x, input, &prompt, err))) goto out; /* template error */
    if ((rc = sl_tokenize(x->vocab, prompt, strlen(prompt), true, x->parse_special, &toks, &n_toks, err)))
        goto out; /* tokenizer error */
    if (n_toks == 0 || (int64_t)n_toks >= n_ctx) {
        rc = sl_err_set(err, SL_ERANGE, "extract: prompt of %zu tokens does not fit the context (%d)",
                        n_toks, n_ctx);
        goto out; /* too long */
    }
    if ((rc = sl_sampler_init(&x->task.sampling, V, &smp, err))) goto out; /* bad sampling params */
    struct sl_sampler_stage stage;
    if ((rc = sl_grammar_stage_init(&stage, x->grammar, x->vocab, err))) goto out; /* allocation failure */
    if ((rc = sl_sampler_insert(smp, SL_SAMPLER_POS_AFTER_PENALTIES, stage, err))) {
        stage.iface->free(stage.ctx);
        goto out; /* chain full */
    }
    probs = malloc((size_t)max * sizeof *probs);
    tok_end = malloc((size_t)max * sizeof *tok_end);
    if (!probs || !tok_end || sl_batch_init(&b, ctx->params.n_batch)) {
        rc = sl_err_set(err, SL_ENOMEM, "extract: out of memory");
        goto out; /* allocation failure */
    }
    sl_kv_seq_rm(&ctx->kv, 0, 0, -1);
    for (size_t i = 0; i < n_toks; i += (size_t)b.cap) {
        sl_batch_clear(&b);
        for (size_t j = i; j < n_toks && j < i + (size_t)b.cap; j++)
            sl_batch_add(&b, toks[j], (int32_t)j, 0, j == n_toks - 1 || j + 1 == i + (size_t)b.cap);
        if ((rc = sl_decode(ctx, &b, err))) goto out; /* decode error */
    }
    res->n_prompt = (int32_t)n_toks;
    int32_t pos = (int32_t)n_toks, n = 0;
    bool done = false;
    while (n < max && !done) {
        struct sl_sample s;
        const float *lg = sl_ctx_logits(ctx, ctx->n_outputs - 1);
        if ((rc = sl_sampler_sample(smp, lg, &s, err))) goto out; /* no valid token */
        double p = exp((double)lg[s.token] - sl_grammar_stage_allowed_lse(stage.ctx));
        sl_sampler_accept(smp, s.token);
        if (sl_vocab_is_eog(x->vocab, s.token)) break;
        char piece[SL_GRAMMAR_MAX_TOKEN_BYTES];
        int pl = sl_token_to_piece(x->vocab, s.token, piece, sizeof piece, false);
        if (pl > 0 && sl_buf_append(&text, piece, (size_t)pl)) {
            rc = sl_err_set(err, SL_ENOMEM, "extract: out of memory");
            goto out; /* allocation failure */
        }
        probs[n] = (float)p;
        tok_end[n] = text.len;
        n++;
        done = sl_grammar_stage_done(stage.ctx);
        if (done || n == max) break;
        if (pos >= n_ctx) break;
        sl_batch_clear(&b);
        sl_batch_add(&b, s.token, pos++, 0, true);
        if ((rc = sl_decode(ctx, &b, err))) goto out; /* full cache */
    }
    if (!sl_grammar_state_can_end(sl_grammar_stage_state(stage.ctx))) {
        rc = sl_err_set(err, SL_ERANGE,
                        "extract: the answer did not finish within %d tokens (or the context): raise max_tokens, or bound the schema with maxLength/maxItems",
                        max);
        goto out; /* truncated */
    }
    res->n_gen = n;
    if (!text.p && sl_buf_append(&text, "", 0)) {
        rc = sl_err_set(err, SL_ENOMEM, "extract: out of memory");
        goto out; /* allocation failure */
    }
    res->output = sl_buf_take(&text, &res->len);
    /* confidence */
    double sum = 0;
    res->p_min = 1;
    for (int32_t i = 0; i < n; i++) {
        sum += probs[i];
        if (probs[i] < res->p_min) res->p_min = probs[i];
    }
    res->p_mean = n ? (float)(sum / n) : 1.0f;
    struct scan sc = {.s = res->output, .n = res->len, .res = res};
    char path[1024] = "";
    scan_value(&sc, path, 0);
    if (sc.rc) {
        rc = sl_err_set(err, SL_ENOMEM, "extract: out of memory");
        goto out; /* allocation failure */
    }
    for (size_t f = 0; f < res->n_fields; f++) {
        struct sl_extract_field *fd = &res->fields[f];
        double fs = 0;
        fd->p_min = 1;
        for (int32_t i = 0; i < n; i++) {
            size_t t0 = i ? tok_end[i - 1] : 0, t1 = tok_end[i];
            if (t1 <= fd->start || t0 >= fd->end) continue;
            fs += probs[i];
            fd->n_tokens++;
            if (probs[i] < fd->p_min) fd->p_min = probs[i];
        }
        fd->p_mean = fd->n_tokens ? (float)(fs / fd->n_tokens) : 1.0f;
    }
    rc = 0;
out:
    if (rc) sl_extract_result_free(res);
    sl_buf_free(&text);
    sl_sampler_free(smp);
    sl_batch_free(&b);
    sl_kv_seq_rm(&ctx->kv, 0, 0, -1);
    free(prompt);
    free(toks);
    free(probs);
    free(tok_end);
    return rc;
}
