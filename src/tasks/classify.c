/*
 * classify.c - classification by scoring label continuations (tasks layer).
 *
 * For a group of inputs the work is two kinds of sl_decode call:
 *
 *   1. prompts:  for each input i, the tokens of its prompt past what it
 *                shares with the cached head (seq 0), on seq s_i, logits
 *                only for the last prompt token (it predicts every label's
 *                first token);
 *   2. labels:   for each (input, label) with two or more tokens, seq q
 *                shares s_i's cells (sl_kv_seq_cp) and runs the label's
 *                tokens but the last, logits at each (token k predicts k+1).
 *
 * A label of one token costs nothing past step 1. Outputs are tagged in the
 * order their entries were added (sl_ctx_logits returns them so).
 *
 * A task with a head (classify.h) skips all of that: each input is embedded
 * on the classifier's own embeddings context and the head is applied.
 */
#include "classify.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/chat.h"
#include "engine/vocab.h"
#include "train/head.h"

#define INPUT_MARK "\x01sluice-input\x01"
#define MAX_SEQ_GROUP 32 /* inputs of one group */

struct sl_classifier {
    struct sl_ctx *ctx; /* borrowed */
    const struct sl_vocab *vocab;
    struct sl_classify_task task; /* deep copy; strings in the arrays below */
    char **labels;
    char **descs;
    char **conts;     /* (n_labels) continuation text of each label */
    struct sl_classify_example *examples;
    char *instruction;
    char *head;       /* prompt text before the input */
    char *tail;       /* prompt text after the input */
    bool parse_special;
    int32_t *cache;   /* (n_cache) tokens held on seq 0 */
    size_t n_cache;
    struct sl_batch batch;
    int32_t max_out;  /* output rows per decode (sl_logit_rows) */
    /* through a head (task.head_path) */
    struct sl_head *hd;    /* owned, or NULL: label scoring */
    struct sl_ctx *ectx;   /* owned embeddings context on ctx's model */
    int32_t *hmap;         /* (n_labels) task label -> head class */
    float *emb;            /* (E) */
    float *hprobs;         /* (head classes) */
};

/* Per-input working state of one group. */
struct item {
    int32_t *prompt;   /* (n_prompt) tokens of head+input+tail */
    size_t n_prompt;
    int32_t c;         /* split: tokens [0, c) are shared by every label */
    int32_t r;         /* tokens [0, r) come from seq 0 */
    int32_t **ltoks;   /* (n_labels) label tokens after the split */
    int32_t *nl;       /* (n_labels) */
    double *lp;        /* (n_labels) summed log-probabilities */
    int seq;
};

struct tag {
    int32_t item, label, k; /* label -1: the prompt's last token */
};

struct sl_classify_task sl_classify_default_task(void)
{
    return (struct sl_classify_task){.temperature = 1.0f, .mode = SL_PROMPT_AUTO};
}

void sl_classify_result_free(struct sl_classify_result *r)
{
    if (!r) return;
    free(r->probs);
    free(r->scores);
    free(r->n_tokens);
    memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------------------ */
/* Text helpers                                                              */
/* ------------------------------------------------------------------------ */

struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_str(struct sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static char *dup_str(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

static const char *default_instruction =
    "Classify the input into exactly one of the labels below. Answer with the label only.";

/* The user-facing task text up to the input, as plain text. */
static void task_text(const struct sl_classifier *c, struct sbuf *b, const char *input)
{
    const struct sl_classify_task *t = &c->task;
    sb_str(b, t->instruction ? t->instruction : default_instruction);
    sb_str(b, "\n\nLabels:\n");
    for (size_t i = 0; i < t->n_labels; i++) {
        sb_str(b, "- ");
        sb_str(b, t->labels[i]);
        if (t->descriptions && t->descriptions[i]) {
            sb_str(b, ": ");
            sb_str(b, t->descriptions[i]);
        }
        sb_str(b, "\n");
    }
    for (size_t i = 0; i < t->n_examples; i++) {
        sb_str(b, "\nInput: ");
        sb_str(b, t->examples[i].input);
        sb_str(b, "\nLabel: ");
        sb_str(b, t->examples[i].label);
        sb_str(b, "\n");
    }
    sb_str(b, "\nInput: ");
    sb_str(b, input);
}

/* Fill c->head, c->tail, c->conts. */
static int render_parts(struct sl_classifier *c, enum sl_chat_family fam, struct sl_err *err)
{
    struct sbuf b = {0};
    char *chat = NULL;
    const struct sl_classify_task *t = &c->task;
    int rc = 0;
    bool plain_cont = false;

    if (t->mode == SL_PROMPT_RAW) {
        sb_str(&b, t->instruction ? t->instruction : "");
        sb_str(&b, INPUT_MARK);
    } else if (t->mode == SL_PROMPT_PLAIN) {
        task_text(c, &b, INPUT_MARK);
        sb_str(&b, "\nLabel:");
        plain_cont = true;
    } else {
        struct sbuf u = {0};
        task_text(c, &u, INPUT_MARK);
        if (u.oom) {
            free(u.p);
            return sl_err_set(err, SL_ENOMEM, "classify: out of memory");
        }
        struct sl_chat_msg msg = {"user", u.p};
        rc = sl_chat_apply(fam, &msg, 1, true, &chat, err);
        free(u.p);
        if (rc) return rc;
        sb_str(&b, chat);
        c->parse_special = true;
    }
    if (b.oom) goto oom; /* allocation failure */
    char *m = strstr(b.p, INPUT_MARK);
    if (SL_NEVER(!m)) {
        rc = sl_err_set(err, SL_EINVAL, "classify: the template dropped the input");
        goto out; /* template bug */
    }
    size_t hl = (size_t)(m - b.p);
    c->head = malloc(hl + 1);
    c->tail = dup_str(m + strlen(INPUT_MARK));
    if (!c->head || !c->tail) goto oom; /* allocation failure */
    memcpy(c->head, b.p, hl);
    c->head[hl] = 0;
    if (!(c->conts = calloc(t->n_labels, sizeof *c->conts))) goto oom; /* allocation failure */
    for (size_t i = 0; i < t->n_labels; i++) {
        size_t n = strlen(t->labels[i]);
        if (!(c->conts[i] = malloc(n + 2))) goto oom; /* allocation failure */
        snprintf(c->conts[i], n + 2, "%s%s", plain_cont ? " " : "", t->labels[i]);
    }
    goto out;
oom:
    rc = sl_err_set(err, SL_ENOMEM, "classify: out of memory");
out:
    free(b.p);
    free(chat);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Head                                                                      */
/* ------------------------------------------------------------------------ */

/* Load the head at path, check it against the task and the model, map the
 * task's labels onto its classes and make the embeddings context. */
static int head_open(struct sl_classifier *c, const char *path, struct sl_err *err)
{
    const struct sl_model *m = c->ctx->model;
    size_t L = c->task.n_labels;
    int rc;

    if (!(c->hd = calloc(1, sizeof *c->hd))) return sl_err_set(err, SL_ENOMEM, "classify: out of memory");
    if ((rc = sl_head_load(c->hd, path, err))) {
        free(c->hd);
        c->hd = NULL;
        return rc; /* unreadable or not a head */
    }
    const struct sl_head *h = c->hd;
    if (h->n_in != m->hp.n_embd)
        return sl_err_set(err, SL_EINVAL,
                          "classify: head %s takes %d-wide embeddings, the model '%s' gives %d: train the head on this model",
                          path, h->n_in, m->name ? m->name : "?", m->hp.n_embd);
    uint64_t mh = sl_head_model_hash(m);
    if (h->source_hash && h->source_hash != mh)
        return sl_err_set(err, SL_EINVAL,
                          "classify: head %s was trained on another model file ('%s', hash %016llx; this one "
                          "hashes to %016llx): train the head on this model",
                          path, h->source_name ? h->source_name : "?", (unsigned long long)h->source_hash,
                          (unsigned long long)mh);
    if ((size_t)h->n_out != L)
        return sl_err_set(err, SL_EINVAL, "classify: head %s has %d labels, the task %zu: they must be the same",
                          path, h->n_out, L);
    if (!(c->hmap = malloc(L * sizeof *c->hmap))) return sl_err_set(err, SL_ENOMEM, "classify: out of memory");
    for (size_t l = 0; l < L; l++) {
        c->hmap[l] = -1;
        for (int32_t k = 0; k < h->n_out && c->hmap[l] < 0; k++)
            if (!strcmp(h->labels[k], c->task.labels[l])) c->hmap[l] = k;
        if (c->hmap[l] < 0)
            return sl_err_set(err, SL_EINVAL,
                              "classify: the task's label '%s' is not one of head %s's labels (its first: '%s')",
                              c->task.labels[l], path, h->labels[0]);
    }
    c->emb = malloc((size_t)h->n_in * sizeof *c->emb);
    c->hprobs = malloc((size_t)h->n_out * sizeof *c->hprobs);
    if (!c->emb || !c->hprobs) return sl_err_set(err, SL_ENOMEM, "classify: out of memory");
    struct sl_ctx_params cp = sl_ctx_default_params();
    cp.n_ctx = SL_MIN(h->n_ctx > 0 ? h->n_ctx : 256, SL_HEAD_MAX_TOKENS);
    cp.n_batch = cp.n_ctx;
    cp.n_threads = c->ctx->params.n_threads;
    cp.embeddings = true;
    cp.no_logits = true;
    return sl_ctx_init(&c->ectx, m, &cp, err);
}

/* Classify one input through the head. */
static int head_classify(struct sl_classifier *c, const char *input, struct sl_classify_result *r,
                         struct sl_err *err)
{
    size_t L = c->task.n_labels;
    int32_t nt = 0;
    int rc;
    if ((rc = sl_embed_text(c->ectx, input, c->emb, &nt, err))) return rc; /* decode error */
    sl_head_classify(c->hd, c->emb, c->hprobs);
    r->probs = malloc(L * sizeof *r->probs);
    r->scores = malloc(L * sizeof *r->scores);
    r->n_tokens = calloc(L, sizeof *r->n_tokens);
    if (!r->probs || !r->scores || !r->n_tokens) return sl_err_set(err, SL_ENOMEM, "classify: out of memory");
    for (size_t l = 0; l < L; l++) r->scores[l] = logf(SL_MAX(c->hprobs[c->hmap[l]], 1e-30f));
    r->label = sl_classify_softmax(r->scores, L, c->task.temperature, r->probs, &r->margin, &r->entropy);
    r->confidence = r->probs[r->label];
    r->n_prompt = nt;
    r->n_cached = 0;
    r->n_eval = r->n_prompt;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Init                                                                      */
/* ------------------------------------------------------------------------ */

int sl_classifier_init(struct sl_classifier **out, struct sl_ctx *ctx,
                       const struct sl_classify_task *task, struct sl_err *err)
{
    struct sl_classifier *c = NULL;
    const struct sl_model *m = ctx->model;
    size_t n = task->n_labels;
    int rc;

    *out = NULL;
    if (!m->vocab) return sl_err_set(err, SL_EINVAL, "classify: the model has no tokenizer");
    if (n == 0) return sl_err_set(err, SL_EINVAL, "classify: the task has no labels");
    if (n > SL_CLASSIFY_MAX_LABELS)
        return sl_err_set(err, SL_ERANGE, "classify: %zu labels, more than %d", n,
                          SL_CLASSIFY_MAX_LABELS);
    if (!(task->temperature > 0) || !isfinite(task->temperature))
        return sl_err_set(err, SL_EINVAL, "classify: temperature must be > 0 (got %g)",
                          (double)task->temperature);
    for (size_t i = 0; i < n; i++) {
        if (!task->labels[i] || !task->labels[i][0])
            return sl_err_set(err, SL_EINVAL, "classify: label %zu is empty", i);
        if (strlen(task->labels[i]) > SL_CLASSIFY_MAX_LABEL_LEN)
            return sl_err_set(err, SL_ERANGE, "classify: label %zu is longer than %d bytes", i,
                              SL_CLASSIFY_MAX_LABEL_LEN);
        for (size_t j = 0; j < i; j++)
            if (strcmp(task->labels[i], task->labels[j]) == 0)
                return sl_err_set(err, SL_EINVAL, "classify: label '%s' appears twice",
                                  task->labels[i]);
    }
    for (size_t i = 0; i < task->n_examples; i++) {
        bool found = false;
        if (!task->examples[i].input || !task->examples[i].label)
            return sl_err_set(err, SL_EINVAL, "classify: example %zu has no input or label", i);
        for (size_t j = 0; j < n && !found; j++) found = !strcmp(task->examples[i].label, task->labels[j]);
        if (!found)
            return sl_err_set(err, SL_EINVAL, "classify: example %zu has label '%s', not one of the labels",
                              i, task->examples[i].label);
    }
    enum sl_chat_family fam = (enum sl_chat_family)task->chat_family;
    if (task->mode == SL_PROMPT_AUTO || task->mode == SL_PROMPT_CHAT) {
        if (fam == SL_CHAT_UNKNOWN && m->chat_template) fam = sl_chat_detect(m->chat_template);
        if (fam == SL_CHAT_UNKNOWN && task->mode == SL_PROMPT_CHAT)
            return sl_err_set(err, SL_EUNSUPPORTED,
                              "classify: the model has no chat template we know; name one or use a plain prompt");
    }

    if (!(c = calloc(1, sizeof *c))) goto oom; /* allocation failure */
    c->ctx = ctx;
    c->vocab = m->vocab;
    c->task = *task;
    if (c->task.mode == SL_PROMPT_AUTO)
        c->task.mode = fam == SL_CHAT_UNKNOWN ? SL_PROMPT_PLAIN : SL_PROMPT_CHAT;
    if (!(c->labels = calloc(n, sizeof *c->labels))) goto oom;  /* allocation failure */
    if (!(c->descs = calloc(n, sizeof *c->descs))) goto oom;    /* allocation failure */
    for (size_t i = 0; i < n; i++) {
        if (!(c->labels[i] = dup_str(task->labels[i]))) goto oom; /* allocation failure */
        if (task->descriptions && task->descriptions[i] &&
            !(c->descs[i] = dup_str(task->descriptions[i])))
            goto oom; /* allocation failure */
    }
    c->task.labels = (const char *const *)c->labels;
    c->task.descriptions = (const char *const *)c->descs;
    if (task->instruction && !(c->instruction = dup_str(task->instruction))) goto oom; /* allocation failure */
    c->task.instruction = c->instruction;
    if (task->n_examples) {
        if (!(c->examples = calloc(task->n_examples, sizeof *c->examples))) goto oom; /* allocation failure */
        for (size_t i = 0; i < task->n_examples; i++) {
            c->examples[i].input = dup_str(task->examples[i].input);
            c->examples[i].label = dup_str(task->examples[i].label);
            if (!c->examples[i].input || !c->examples[i].label) goto oom; /* allocation failure */
        }
    }
    c->task.examples = c->examples;
    if ((rc = render_parts(c, fam, err))) goto fail; /* template error */
    c->task.head_path = NULL; /* the path is not kept: the head is */
    if (task->head_path && (rc = head_open(c, task->head_path, err))) goto fail; /* bad head */
    if (sl_batch_init(&c->batch, ctx->params.n_batch)) goto oom; /* allocation failure */
    c->max_out = sl_logit_rows(ctx->model);
    sl_kv_seq_rm(&ctx->kv, -1, 0, -1);
    *out = c;
    return 0;
oom:
    rc = sl_err_set(err, SL_ENOMEM, "classify: out of memory");
fail:
    sl_classifier_free(c);
    return rc;
}

void sl_classifier_free(struct sl_classifier *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->task.n_labels; i++) {
        if (c->labels) free(c->labels[i]);
        if (c->descs) free(c->descs[i]);
        if (c->conts) free(c->conts[i]);
    }
    for (size_t i = 0; c->examples && i < c->task.n_examples; i++) {
        free((char *)c->examples[i].input);
        free((char *)c->examples[i].label);
    }
    free(c->examples);
    free(c->labels);
    free(c->descs);
    free(c->conts);
    free(c->instruction);
    free(c->head);
    free(c->tail);
    free(c->cache);
    sl_batch_free(&c->batch);
    if (c->hd) sl_head_free(c->hd);
    free(c->hd);
    sl_ctx_free(c->ectx);
    free(c->hmap);
    free(c->emb);
    free(c->hprobs);
    free(c);
}

bool sl_classifier_has_head(const struct sl_classifier *c) { return c->hd != NULL; }

int sl_classifier_set_temperature(struct sl_classifier *c, float t, struct sl_err *err)
{
    if (!(t > 0) || !isfinite(t))
        return sl_err_set(err, SL_EINVAL, "classify: temperature must be > 0 (got %g)", (double)t);
    c->task.temperature = t;
    return 0;
}

int sl_classifier_render(const struct sl_classifier *c, const char *input, char **prompt,
                         struct sl_err *err)
{
    struct sbuf b = {0};
    sb_str(&b, c->head);
    sb_str(&b, input);
    sb_str(&b, c->tail);
    if (b.oom) {
        free(b.p);
        *prompt = NULL;
        return sl_err_set(err, SL_ENOMEM, "classify: out of memory");
    }
    *prompt = b.p;
    return 0;
}

const char *sl_classifier_continuation(const struct sl_classifier *c, size_t label)
{
    return label < c->task.n_labels ? c->conts[label] : NULL;
}

/* ------------------------------------------------------------------------ */
/* Scoring                                                                   */
/* ------------------------------------------------------------------------ */

int32_t sl_classify_softmax(const float *scores, size_t n, float t, float *probs, float *margin,
                            float *entropy)
{
    double mx = -INFINITY, z = 0, h = 0;
    int32_t best = 0, second = -1;
    for (size_t i = 0; i < n; i++)
        if ((double)scores[i] / t > mx) mx = (double)scores[i] / t;
    for (size_t i = 0; i < n; i++) z += exp((double)scores[i] / t - mx);
    for (size_t i = 0; i < n; i++) {
        double p = exp((double)scores[i] / t - mx) / z;
        probs[i] = (float)p;
        if (p > 0) h -= p * log(p);
    }
    for (size_t i = 1; i < n; i++)
        if (probs[i] > probs[best]) best = (int32_t)i;
    for (size_t i = 0; i < n; i++)
        if ((int32_t)i != best && (second < 0 || probs[i] > probs[second])) second = (int32_t)i;
    if (margin) *margin = probs[best] - (second >= 0 ? probs[second] : 0.0f);
    if (entropy) *entropy = (float)h;
    return best;
}

static size_t lcp(const int32_t *a, size_t na, const int32_t *b, size_t nb)
{
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

static void item_free(struct item *it, size_t n_labels)
{
    free(it->prompt);
    for (size_t l = 0; it->ltoks && l < n_labels; l++) free(it->ltoks[l]);
    free(it->ltoks);
    free(it->nl);
    free(it->lp);
    memset(it, 0, sizeof *it);
}

/* Tokenize input i's prompt and every label continuation jointly, split. */
static int item_prepare(struct sl_classifier *c, const char *input, struct item *it,
                        struct sl_err *err)
{
    size_t L = c->task.n_labels;
    char *prompt = NULL;
    int32_t *joint = NULL;
    size_t n_joint = 0;
    int rc;
    int32_t *lcps = NULL;

    if ((rc = sl_classifier_render(c, input, &prompt, err))) return rc;
    size_t plen = strlen(prompt);
    rc = sl_tokenize(c->vocab, prompt, plen, true, c->parse_special, &it->prompt, &it->n_prompt, err);
    if (rc) goto out; /* tokenizer error */
    it->ltoks = calloc(L, sizeof *it->ltoks);
    it->nl = calloc(L, sizeof *it->nl);
    it->lp = calloc(L, sizeof *it->lp);
    lcps = calloc(L, sizeof *lcps);
    if (!it->ltoks || !it->nl || !it->lp || !lcps) goto oom; /* allocation failure */
    size_t split = it->n_prompt;
    for (size_t l = 0; l < L; l++) {
        size_t cl = strlen(c->conts[l]);
        char *text = malloc(plen + cl + 1);
        if (!text) goto oom; /* allocation failure */
        memcpy(text, prompt, plen);
        memcpy(text + plen, c->conts[l], cl + 1);
        rc = sl_tokenize(c->vocab, text, plen + cl, true, c->parse_special, &joint, &n_joint, err);
        free(text);
        if (rc) goto out; /* tokenizer error */
        size_t k = lcp(it->prompt, it->n_prompt, joint, n_joint);
        if (k < split) split = k;
        lcps[l] = (int32_t)k;
        /* keep the joint tokens from k on; [split, k) equals the prompt's */
        it->nl[l] = (int32_t)(n_joint - k);
        if (!(it->ltoks[l] = malloc((n_joint - k + 1) * sizeof(int32_t)))) goto oom; /* allocation failure */
        memcpy(it->ltoks[l], joint + k, (n_joint - k) * sizeof(int32_t));
        free(joint);
        joint = NULL;
    }
    if (split == 0) {
        rc = sl_err_set(err, SL_EINVAL,
                        "classify: the prompt is empty and the model adds no BOS: give an instruction");
        goto out; /* nothing to condition on */
    }
    /* rebase every label on the common split */
    for (size_t l = 0; l < L; l++) {
        size_t k = (size_t)lcps[l], extra = k - split, n = (size_t)it->nl[l] + extra;
        int32_t *t = malloc((n + 1) * sizeof *t);
        if (!t) goto oom; /* allocation failure */
        memcpy(t, it->prompt + split, extra * sizeof *t);
        memcpy(t + extra, it->ltoks[l], (size_t)it->nl[l] * sizeof *t);
        free(it->ltoks[l]);
        it->ltoks[l] = t;
        it->nl[l] = (int32_t)n;
        if (SL_NEVER(n == 0)) {
            rc = sl_err_set(err, SL_EINVAL, "classify: label %zu has no tokens", l);
            goto out; /* cannot happen: labels are non-empty */
        }
    }
    it->c = (int32_t)split;
    if ((int64_t)split + 1 >= c->ctx->params.n_ctx) {
        rc = sl_err_set(err, SL_ERANGE, "classify: prompt of %zu tokens does not fit the context (%d)",
                        split, c->ctx->params.n_ctx);
        goto out; /* too long */
    }
    rc = 0;
    goto out;
oom:
    rc = sl_err_set(err, SL_ENOMEM, "classify: out of memory");
out:
    free(lcps);
    free(joint);
    free(prompt);
    return rc;
}

struct flush_state {
    struct tag *tags;
    size_t n_tags, cap_tags;
    struct item *items;
    size_t n_labels;
};

static int add_tag(struct flush_state *fs, struct tag t)
{
    if (fs->n_tags == fs->cap_tags) {
        size_t cap = fs->cap_tags ? fs->cap_tags * 2 : 64;
        struct tag *nt = realloc(fs->tags, cap * sizeof *nt);
        if (!nt) return SL_ENOMEM;
        fs->tags = nt;
        fs->cap_tags = cap;
    }
    fs->tags[fs->n_tags++] = t;
    return 0;
}

static double log_z(const float *x, int32_t n)
{
    float mx = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double s = 0;
    for (int32_t i = 0; i < n; i++) s += exp((double)x[i] - (double)mx);
    return (double)mx + log(s);
}

/* Decode the pending batch and add the flagged outputs to the items. */
static int flush(struct sl_classifier *c, struct flush_state *fs, struct sl_err *err)
{
    int rc;
    int32_t V = c->ctx->model->hp.n_vocab;
    if (c->batch.n_tokens == 0) return 0;
    /* sl_decode divides by zero with no output entry (ops.c sl_op_matmul
       with T = 0): ask for one unused output, after every tagged one */
    if (fs->n_tags == 0) c->batch.logits[c->batch.n_tokens - 1] = 1;
    if ((rc = sl_decode(c->ctx, &c->batch, err))) return rc;
    for (size_t o = 0; o < fs->n_tags; o++) {
        const float *lg = sl_ctx_logits(c->ctx, (int32_t)o);
        struct tag t = fs->tags[o];
        struct item *it = &fs->items[t.item];
        double lz = log_z(lg, V);
        if (t.label < 0) {
            for (size_t l = 0; l < fs->n_labels; l++) it->lp[l] += (double)lg[it->ltoks[l][0]] - lz;
        } else {
            it->lp[t.label] += (double)lg[it->ltoks[t.label][t.k]] - lz;
        }
    }
    sl_batch_clear(&c->batch);
    fs->n_tags = 0;
    return 0;
}

static int push(struct sl_classifier *c, struct flush_state *fs, int32_t tok, int32_t pos,
                int seq, const struct tag *t, struct sl_err *err)
{
    int rc;
    if ((c->batch.n_tokens == c->batch.cap || (t && fs->n_tags >= (size_t)c->max_out)) && (rc = flush(c, fs, err)))
        return rc; /* decode error */
    sl_batch_add(&c->batch, tok, pos, seq, t != NULL);
    if (t && add_tag(fs, *t)) return sl_err_set(err, SL_ENOMEM, "classify: out of memory");
    return 0;
}

/* Make seq 0 hold the head's tokens (re-using what it already has). */
static int sync_head(struct sl_classifier *c, struct sl_err *err)
{
    int32_t *h = NULL;
    size_t nh = 0;
    int rc = sl_tokenize(c->vocab, c->head, strlen(c->head), true, c->parse_special, &h, &nh, err);
    if (rc) return rc;
    if (nh + 1 >= (size_t)c->ctx->params.n_ctx) nh = 0; /* too long to cache: no cache */
    if (sl_kv_seq_pos_max(&c->ctx->kv, 0) != (int32_t)c->n_cache - 1) c->n_cache = 0; /* someone else used seq 0 */
    size_t k = lcp(c->cache, c->n_cache, h, nh);
    sl_kv_seq_rm(&c->ctx->kv, 0, (int32_t)k, -1);
    struct flush_state fs = {0};
    sl_batch_clear(&c->batch);
    for (size_t i = k; i < nh; i++)
        if ((rc = push(c, &fs, h[i], (int32_t)i, 0, NULL, err))) goto out; /* decode error */
    if ((rc = flush(c, &fs, err))) goto out; /* decode error */
    free(c->cache);
    c->cache = h;
    c->n_cache = nh;
    h = NULL;
out:
    if (rc) {
        /* seq 0 is in an unknown state: forget it */
        sl_kv_seq_rm(&c->ctx->kv, 0, 0, -1);
        free(c->cache);
        c->cache = NULL;
        c->n_cache = 0;
    }
    free(h);
    free(fs.tags);
    return rc;
}

static void clear_seqs(struct sl_classifier *c)
{
    for (int s = 1; s < SL_KV_MAX_SEQ; s++) sl_kv_seq_rm(&c->ctx->kv, s, 0, -1);
}

/* Score items[0..g) (prepared) in one group. */
static int score_group(struct sl_classifier *c, struct item *items, size_t g, struct sl_err *err)
{
    size_t L = c->task.n_labels;
    struct flush_state fs = {.items = items, .n_labels = L};
    int rc = 0;

    sl_batch_clear(&c->batch);
    /* 1. prompts */
    for (size_t i = 0; i < g; i++) {
        struct item *it = &items[i];
        it->seq = (int)(i + 1);
        size_t r = lcp(c->cache, c->n_cache, it->prompt, (size_t)it->c);
        if (r >= (size_t)it->c) r = (size_t)it->c - 1; /* re-run the last token for its logits */
        it->r = (int32_t)r;
        if (r > 0) sl_kv_seq_cp(&c->ctx->kv, 0, it->seq, 0, (int32_t)r);
        for (size_t p = r; p < (size_t)it->c; p++) {
            struct tag t = {(int32_t)i, -1, 0};
            bool last = p + 1 == (size_t)it->c;
            if ((rc = push(c, &fs, it->prompt[p], (int32_t)p, it->seq, last ? &t : NULL, err)))
                goto out; /* decode error */
        }
    }
    if ((rc = flush(c, &fs, err))) goto out; /* decode error */

    /* 2. labels of two or more tokens, each on a sequence sharing its prompt */
    int next = (int)g + 1;
    for (size_t i = 0; i < g; i++) {
        struct item *it = &items[i];
        for (size_t l = 0; l < L; l++) {
            if (it->nl[l] < 2) continue;
            if (next >= SL_KV_MAX_SEQ) {
                if ((rc = flush(c, &fs, err))) goto out; /* decode error */
                for (int s = (int)g + 1; s < SL_KV_MAX_SEQ; s++) sl_kv_seq_rm(&c->ctx->kv, s, 0, -1);
                next = (int)g + 1;
            }
            int q = next++;
            sl_kv_seq_cp(&c->ctx->kv, it->seq, q, 0, it->c);
            for (int32_t k = 0; k + 1 < it->nl[l]; k++) {
                struct tag t = {(int32_t)i, (int32_t)l, k + 1};
                if ((rc = push(c, &fs, it->ltoks[l][k], it->c + k, q, &t, err)))
                    goto out; /* decode error */
            }
        }
    }
    if ((rc = flush(c, &fs, err))) goto out; /* decode error */
out:
    sl_batch_clear(&c->batch);
    clear_seqs(c);
    free(fs.tags);
    return rc;
}

static int fill_result(const struct sl_classifier *c, const struct item *it,
                       struct sl_classify_result *r)
{
    size_t L = c->task.n_labels;
    r->probs = malloc(L * sizeof *r->probs);
    r->scores = malloc(L * sizeof *r->scores);
    r->n_tokens = malloc(L * sizeof *r->n_tokens);
    if (!r->probs || !r->scores || !r->n_tokens) return SL_ENOMEM;
    for (size_t l = 0; l < L; l++) {
        r->scores[l] = (float)(it->lp[l] / it->nl[l]);
        r->n_tokens[l] = it->nl[l];
    }
    r->label = sl_classify_softmax(r->scores, L, c->task.temperature, r->probs, &r->margin,
                                   &r->entropy);
    r->confidence = r->probs[r->label];
    r->n_prompt = it->c;
    r->n_cached = it->r;
    r->n_eval = it->c - it->r;
    for (size_t l = 0; l < L; l++)
        if (it->nl[l] > 1) r->n_eval += it->nl[l] - 1;
    return 0;
}

/* KV cells an item needs past what seq 0 holds. */
static int64_t item_cells(const struct sl_classifier *c, const struct item *it)
{
    size_t r = lcp(c->cache, c->n_cache, it->prompt, (size_t)it->c);
    if (r >= (size_t)it->c) r = (size_t)it->c - 1;
    int64_t n = it->c - (int64_t)r;
    for (size_t l = 0; l < c->task.n_labels; l++) n += it->nl[l] > 1 ? it->nl[l] - 1 : 0;
    return n;
}

int sl_classify_batch(struct sl_classifier *c, const char *const *inputs, size_t n,
                      struct sl_classify_result *res, struct sl_err *err)
{
    struct item items[MAX_SEQ_GROUP];
    size_t L = c->task.n_labels, g = 0;
    int rc = 0;

    memset(items, 0, sizeof items);
    for (size_t i = 0; i < n; i++) memset(&res[i], 0, sizeof res[i]);
    if (c->hd) {
        for (size_t i = 0; i < n; i++)
            if ((rc = head_classify(c, inputs[i], &res[i], err))) {
                for (size_t k = 0; k <= i; k++) sl_classify_result_free(&res[k]);
                return rc; /* decode error or OOM */
            }
        return 0;
    }
    if ((rc = sync_head(c, err))) return rc;
    for (size_t i = 0; i < n;) {
        /* a group: as many inputs as fit the free cells and the sequences */
        int64_t free_cells = c->ctx->params.n_ctx - c->ctx->kv.n_used, used = 0;
        size_t first = i;
        g = 0;
        while (i < n && g < MAX_SEQ_GROUP) {
            if ((rc = item_prepare(c, inputs[i], &items[g], err))) {
                g++;
                goto fail; /* tokenizer error or too long */
            }
            int64_t need = item_cells(c, &items[g]);
            if (used + need > free_cells) {
                if (g == 0) {
                    rc = sl_err_set(err, SL_ERANGE,
                                    "classify: input %zu needs %lld KV cells, %lld are free: raise the context size",
                                    i, (long long)need, (long long)free_cells);
                    g++;
                    goto fail; /* does not fit */
                }
                item_free(&items[g], L);
                break;
            }
            used += need;
            g++;
            i++;
        }
        if ((rc = score_group(c, items, g, err))) goto fail; /* decode error */
        for (size_t k = 0; k < g; k++) {
            if (fill_result(c, &items[k], &res[first + k])) {
                rc = sl_err_set(err, SL_ENOMEM, "classify: out of memory");
                goto fail; /* allocation failure */
            }
            item_free(&items[k], L);
        }
        g = 0;
    }
    return 0;
fail:
    for (size_t k = 0; k < g; k++) item_free(&items[k], L);
    for (size_t k = 0; k < n; k++) sl_classify_result_free(&res[k]);
    return rc;
}

int sl_classify(struct sl_classifier *c, const char *input, struct sl_classify_result *res,
                struct sl_err *err)
{
    return sl_classify_batch(c, &input, 1, res, err);
}
