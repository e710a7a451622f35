/*
 * chat.h - chat templates: detect the prompt format of a model from the Jinja
 * text in its GGUF metadata (`tokenizer.chat_template`) and render a list of
 * messages in that format with plain C (engine layer).
 *
 * We do not run Jinja. Like llama.cpp's llm_chat_detect_template, detection
 * looks for marker strings ("<|im_start|>", "<start_of_turn>", "[INST]", ...)
 * and the rendering is written out per family, byte for byte as llama.cpp's
 * llama_chat_apply_template produces it. The BOS token text is never emitted
 * at the very start: the tokenizer adds BOS from the model's add_bos flag.
 * See docs/internals/chat.md for the families, markers and known differences.
 *
 * Thread-safety: every function is pure (no global state); thread-safe.
 */
#ifndef SL_CHAT_H
#define SL_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "../base/err.h"

enum sl_chat_family {
    SL_CHAT_UNKNOWN = 0,
    SL_CHAT_CHATML,            /* "chatml": Qwen, SmolLM, OpenHermes, ... */
    SL_CHAT_LLAMA3,            /* "llama3": Llama 3.x */
    SL_CHAT_LLAMA2,            /* "llama2": [INST] without <<SYS>> (system as plain text) */
    SL_CHAT_LLAMA2_SYS,        /* "llama2-sys": Llama 2 chat with <<SYS>> */
    SL_CHAT_LLAMA2_SYS_BOS,    /* "llama2-sys-bos": <s> before each later [INST] */
    SL_CHAT_LLAMA2_SYS_STRIP,  /* "llama2-sys-strip": contents trimmed */
    SL_CHAT_MISTRAL_V1,        /* "mistral-v1": " [INST] ... [/INST]" */
    SL_CHAT_MISTRAL_V3,        /* "mistral-v3": "[INST] ...[/INST]" */
    SL_CHAT_MISTRAL_V3_TEKKEN, /* "mistral-v3-tekken": "[INST]...[/INST]" */
    SL_CHAT_MISTRAL_V7,        /* "mistral-v7": [SYSTEM_PROMPT] ... */
    SL_CHAT_MISTRAL_V7_TEKKEN, /* "mistral-v7-tekken" */
    SL_CHAT_PHI3,              /* "phi3": <|user|>\n...<|end|>\n */
    SL_CHAT_PHI4,              /* "phi4": <|im_start|>user<|im_sep|>...<|im_end|> */
    SL_CHAT_GEMMA,             /* "gemma": <start_of_turn>user\n...<end_of_turn>\n */
    SL_CHAT_ZEPHYR,            /* "zephyr": <|user|>\n...</s>\n (zephyr-7b, TinyLlama) */
    SL_CHAT_ZEPHYR_ENDOFTEXT,  /* "zephyr-endoftext": the same with <|endoftext|>
                                  (StableLM 2 Zephyr; llama.cpp calls this "zephyr") */
    SL_CHAT_FAMILY_COUNT,
};

/* One message. Both strings are NUL-terminated and borrowed for the call. */
struct sl_chat_msg {
    const char *role;    /* "system", "user", "assistant" (some families: "tool") */
    const char *content;
};

/* Longest template text sl_chat_detect looks at; longer text is UNKNOWN. */
#define SL_CHAT_MAX_TEMPLATE (1u << 20)

/*
 * Family of a Jinja chat template, from marker strings in its text.
 * A template that is exactly a family name ("chatml") gives that family.
 * Returns SL_CHAT_UNKNOWN for NULL, empty or unrecognised text.
 */
enum sl_chat_family sl_chat_detect(const char *tmpl);

/* Family for a name as listed above ("chatml", "llama3", ...); -1 if unknown. */
int sl_chat_family_from_name(const char *name);

/* Static name of a family ("chatml"); "unknown" for SL_CHAT_UNKNOWN or out of range. */
const char *sl_chat_family_name(enum sl_chat_family f);

/*
 * Comma-separated list of every family name, for help and error text.
 * Static storage.
 */
const char *sl_chat_family_names(void);

/*
 * Render msgs[0..n) in family f. When add_generation_prompt is true the
 * opening of an assistant turn is appended (families whose format has no
 * such opening, such as llama2 and mistral, end after the last [/INST]).
 *
 * On success *out is a malloc'd NUL-terminated string; the caller frees it.
 * Errors: SL_EINVAL for an unknown family (the message lists the known
 * names and says to pass --chat-template NAME), a NULL role or content, or
 * a role the family cannot express (the message names the role and index);
 * SL_ENOMEM. On error *out is NULL.
 */
int sl_chat_apply(enum sl_chat_family f, const struct sl_chat_msg *msgs, size_t n,
                  bool add_generation_prompt, char **out, struct sl_err *err);

/*
 * The strings that end a turn in family f's format, for stopping generation
 * on text ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "</s>").
 * Returns a NULL-terminated static array; *n (if not NULL) gets its length.
 * SL_CHAT_UNKNOWN gives an empty array.
 */
const char *const *sl_chat_stop_strings(enum sl_chat_family f, size_t *n);

#endif
