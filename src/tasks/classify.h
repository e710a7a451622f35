/*
 * classify.h - classification by scoring label continuations (tasks layer).
 *
 * A task (instruction, labels with optional descriptions, optional few-shot
 * examples) and an input are rendered into a prompt; every label is then
 * scored as a continuation of that prompt, never generated:
 *
 *   prefix (shared)  ->  label 0 tokens on seq a
 *                    ->  label 1 tokens on seq b     (one batched sl_decode)
 *                    ->  ...
 *
 * The prompt is evaluated once; every label's tokens share its KV cells
 * (sl_kv_seq_cp) and all labels of a group of inputs are scored in one
 * sl_decode. The score of a label is its length-normalised log-likelihood
 * (mean token log-probability under the raw model distribution); the
 * probabilities are softmax(score / T) over the labels, T being the task's
 * calibration temperature (calibrate.h). See docs/tasks.md.
 *
 * Tokenization at the boundary: the prompt and each continuation are
 * tokenized jointly (prompt + continuation as one text) and split at the
 * longest token prefix they all share, so a label starting with a space or
 * merging with the prompt's last bytes is tokenized as the model would see
 * it in running text, for SentencePiece and byte-level BPE vocabularies alike.
 *
 * Caching: the part of the prompt before the input (instruction, labels,
 * examples) is kept on sequence 0 of the context between calls; each input
 * re-uses the longest token prefix it shares with it.
 *
 * Through a head: a task with head_path (a `sluice train head` GGUF trained
 * on the same model's embeddings) is classified without label scoring: the
 * input is embedded by the task's model (mean of the final hidden states,
 * src/train/head.h) on a private embeddings context the classifier makes on
 * ctx's model, and the head gives the label probabilities (at the task's
 * temperature: softmax(log p / T)). The head's labels must be the task's
 * (in any order) and its input width the model's n_embd, and it must have
 * been trained on this model file (sluice-head.source.hash).
 *
 * Threads: a classifier owns every sequence of the context it is given and
 * is used by one thread at a time. The task is copied at init.
 */
#ifndef SL_CLASSIFY_H
#define SL_CLASSIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "engine/forward.h"

#define SL_CLASSIFY_MAX_LABELS 4096
#define SL_CLASSIFY_MAX_LABEL_LEN 1024 /* bytes of one label */

enum sl_prompt_mode {
    SL_PROMPT_AUTO = 0, /* the model's chat template if it has one, else PLAIN */
    SL_PROMPT_CHAT,     /* the chat template (family given or detected) */
    SL_PROMPT_PLAIN,    /* "instruction ... Input: X\nLabel:" and " label" */
    SL_PROMPT_RAW,      /* instruction + input verbatim, then the label verbatim */
};

struct sl_classify_example {
    const char *input;
    const char *label; /* one of the task's labels */
};

struct sl_classify_task {
    const char *instruction;         /* NULL: a default instruction */
    const char *const *labels;       /* (n_labels) distinct, non-empty */
    const char *const *descriptions; /* (n_labels) or NULL; entries may be NULL */
    size_t n_labels;
    const struct sl_classify_example *examples; /* few-shot, may be NULL */
    size_t n_examples;
    float temperature;      /* calibration T > 0; 1 = uncalibrated */
    enum sl_prompt_mode mode;
    int chat_family;        /* enum sl_chat_family for CHAT/AUTO; 0 = detect */
    const char *head_path;  /* classify through this head GGUF instead of label
                             * scoring (see above); NULL = label scoring */
};

struct sl_classify_task sl_classify_default_task(void);

struct sl_classify_result {
    int32_t label;      /* index of the most likely label */
    float confidence;   /* its probability */
    float margin;       /* minus the runner-up's probability (1 with one label) */
    float entropy;      /* of probs, in nats */
    float *probs;       /* (n_labels) calibrated, sum to 1 */
    float *scores;      /* (n_labels) mean token log-probability (raw, before T) */
    int32_t *n_tokens;  /* (n_labels) tokens scored for each label */
    int32_t n_prompt;   /* tokens of the prompt */
    int32_t n_cached;   /* prompt tokens that came from the cached instruction */
    int32_t n_eval;     /* tokens evaluated for this input: prompt past the cache + labels' */
    /* through a head: scores are log head probabilities, n_tokens 0, n_prompt =
     * n_eval = tokens embedded, n_cached 0 */
};

void sl_classify_result_free(struct sl_classify_result *r);

struct sl_classifier;

/* Build a classifier for task on ctx (whose model must have a vocab).
 * Copies the task. ctx is borrowed: it must outlive the classifier, and the
 * classifier uses all of its sequences. Errors: SL_EINVAL (no labels,
 * duplicate or empty label, an example naming an unknown label, T <= 0; a
 * head whose labels, width or source model do not match), SL_EUNSUPPORTED
 * (CHAT with no template), SL_EIO/SL_EFORMAT (head file), SL_ENOMEM. */
int sl_classifier_init(struct sl_classifier **out, struct sl_ctx *ctx,
                       const struct sl_classify_task *task, struct sl_err *err);
void sl_classifier_free(struct sl_classifier *c);

/* Change the calibration temperature (T > 0). */
int sl_classifier_set_temperature(struct sl_classifier *c, float t, struct sl_err *err);

/* Classify inputs[0..n) into res[0..n) (free each with
 * sl_classify_result_free). Inputs are scored in groups that fill one
 * batch. On error every res[i] is left empty. Errors: SL_ERANGE (the
 * prompt does not fit the context), SL_ENOMEM, decode errors. */
int sl_classify_batch(struct sl_classifier *c, const char *const *inputs, size_t n,
                      struct sl_classify_result *res, struct sl_err *err);

/* One input. */
int sl_classify(struct sl_classifier *c, const char *input, struct sl_classify_result *res,
                struct sl_err *err);

/* The prompt text for input (head + input + tail) and the continuation of
 * label i, as the classifier scores them; malloc'd, the caller frees. For
 * tests and `--print-prompt`. */
int sl_classifier_render(const struct sl_classifier *c, const char *input, char **prompt,
                         struct sl_err *err);
const char *sl_classifier_continuation(const struct sl_classifier *c, size_t label);

/* Does c classify through a head? */
bool sl_classifier_has_head(const struct sl_classifier *c);

/* Turn raw scores into probs/confidence/margin/entropy at temperature t
 * (shared with calibrate.c). probs has n entries. Returns the argmax. */
int32_t sl_classify_softmax(const float *scores, size_t n, float t, float *probs, float *margin,
                            float *entropy);

#endif
