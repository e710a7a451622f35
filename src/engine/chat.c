/*
 * chat.c - chat template detection and rendering (engine layer).
 *
 * Models ship a Jinja template; we ship no Jinja interpreter. Instead we
 * recognise the family of the template by marker strings, in the same order
 * and with the same markers as llama.cpp's llm_chat_detect_template (so a
 * GGUF is classified the way llama.cpp classifies it), and render each
 * family with a few lines of C that reproduce llama.cpp's
 * llm_chat_apply_template output byte for byte. Families llama.cpp knows but
 * we do not render are detected as UNKNOWN rather than mistaken for one of
 * ours; the caller then asks the user for --chat-template NAME.
 *
 * Libc only. No global state.
 */
#include "chat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Family table                                                              */
/* ------------------------------------------------------------------------ */

/* Which roles a family can express. */
enum role_set {
    ROLES_BASIC,    /* system, user, assistant */
    ROLES_WITH_TOOL /* ...and tool: the family writes the role name verbatim */
};

struct family_info {
    const char *name;
    enum role_set roles;
    const char *const *stops; /* NULL-terminated */
};

static const char *const stops_none[] = {NULL};
static const char *const stops_chatml[] = {"<|im_end|>", NULL};
static const char *const stops_llama3[] = {"<|eot_id|>", "<|end_of_text|>", NULL};
static const char *const stops_eos[] = {"</s>", NULL};
static const char *const stops_phi3[] = {"<|end|>", "<|endoftext|>", NULL};
static const char *const stops_gemma[] = {"<end_of_turn>", NULL};
static const char *const stops_endoftext[] = {"<|endoftext|>", NULL};

static const struct family_info families[SL_CHAT_FAMILY_COUNT] = {
    [SL_CHAT_UNKNOWN] = {"unknown", ROLES_BASIC, stops_none},
    [SL_CHAT_CHATML] = {"chatml", ROLES_WITH_TOOL, stops_chatml},
    [SL_CHAT_LLAMA3] = {"llama3", ROLES_WITH_TOOL, stops_llama3},
    [SL_CHAT_LLAMA2] = {"llama2", ROLES_BASIC, stops_eos},
    [SL_CHAT_LLAMA2_SYS] = {"llama2-sys", ROLES_BASIC, stops_eos},
    [SL_CHAT_LLAMA2_SYS_BOS] = {"llama2-sys-bos", ROLES_BASIC, stops_eos},
    [SL_CHAT_LLAMA2_SYS_STRIP] = {"llama2-sys-strip", ROLES_BASIC, stops_eos},
    [SL_CHAT_MISTRAL_V1] = {"mistral-v1", ROLES_BASIC, stops_eos},
    [SL_CHAT_MISTRAL_V3] = {"mistral-v3", ROLES_BASIC, stops_eos},
    [SL_CHAT_MISTRAL_V3_TEKKEN] = {"mistral-v3-tekken", ROLES_BASIC, stops_eos},
    [SL_CHAT_MISTRAL_V7] = {"mistral-v7", ROLES_BASIC, stops_eos},
    [SL_CHAT_MISTRAL_V7_TEKKEN] = {"mistral-v7-tekken", ROLES_BASIC, stops_eos},
    [SL_CHAT_PHI3] = {"phi3", ROLES_WITH_TOOL, stops_phi3},
    [SL_CHAT_PHI4] = {"phi4", ROLES_WITH_TOOL, stops_chatml},
    [SL_CHAT_GEMMA] = {"gemma", ROLES_BASIC, stops_gemma},
    [SL_CHAT_ZEPHYR] = {"zephyr", ROLES_WITH_TOOL, stops_eos},
    [SL_CHAT_ZEPHYR_ENDOFTEXT] = {"zephyr-endoftext", ROLES_WITH_TOOL, stops_endoftext},
};

/* Kept in table order; test_chat checks that it lists every family. */
static const char family_names_list[] =
    "chatml, llama3, llama2, llama2-sys, llama2-sys-bos, llama2-sys-strip, mistral-v1, "
    "mistral-v3, mistral-v3-tekken, mistral-v7, mistral-v7-tekken, phi3, phi4, gemma, "
    "zephyr, zephyr-endoftext";

const char *sl_chat_family_names(void)
{
    return family_names_list;
}

const char *sl_chat_family_name(enum sl_chat_family f)
{
    if ((int)f <= SL_CHAT_UNKNOWN || (int)f >= SL_CHAT_FAMILY_COUNT) return "unknown";
    return families[f].name;
}

int sl_chat_family_from_name(const char *name)
{
    if (!name) return -1;
    for (int f = SL_CHAT_UNKNOWN + 1; f < SL_CHAT_FAMILY_COUNT; f++)
        if (strcmp(name, families[f].name) == 0) return f;
    return -1;
}

const char *const *sl_chat_stop_strings(enum sl_chat_family f, size_t *n)
{
    const char *const *s = stops_none;
    if ((int)f > SL_CHAT_UNKNOWN && (int)f < SL_CHAT_FAMILY_COUNT) s = families[f].stops;
    if (n) {
        size_t k = 0;
        while (s[k]) k++;
        *n = k;
    }
    return s;
}

/* ------------------------------------------------------------------------ */
/* Detection                                                                 */
/* ------------------------------------------------------------------------ */

static bool has(const char *tmpl, const char *needle)
{
    return strstr(tmpl, needle) != NULL;
}

/*
 * Zephyr puts the end-of-sequence text right after the user's content
 * ("'<|user|>\n' + message['content'] + eos_token"); Falcon 3, which shares
 * the <|user|>/<|assistant|> markers, puts a newline there. So: after the
 * first "<|user|>", does an end-of-sequence marker ("eos_token", "</s>" or
 * "<|endoftext|>") come no later than the next "<|"?
 */
static bool zephyr_eos_after_user(const char *tmpl)
{
    static const char *const eos_marks[] = {"eos_token", "</s>", "<|endoftext|>"};
    const char *u = strstr(tmpl, "<|user|>");
    if (!u) return false;
    u += strlen("<|user|>");
    const char *next = strstr(u, "<|");
    const char *eos = NULL;
    for (size_t i = 0; i < sizeof eos_marks / sizeof eos_marks[0]; i++) {
        const char *e = strstr(u, eos_marks[i]);
        if (e && (!eos || e < eos)) eos = e;
    }
    return eos && (!next || eos <= next);
}

/* The llama.cpp chain for templates mentioning [INST] or starting with "mistral". */
static enum sl_chat_family detect_inst(const char *tmpl)
{
    if (has(tmpl, "[SYSTEM_PROMPT]")) return SL_CHAT_MISTRAL_V7;
    /* official mistral v1 ("' [INST] ' + system_message"), v3 and v3-tekken ([AVAILABLE_TOOLS]) */
    if (has(tmpl, "' [INST] ' + system_message") || has(tmpl, "[AVAILABLE_TOOLS]")) {
        if (has(tmpl, " [INST]")) return SL_CHAT_MISTRAL_V1;
        if (has(tmpl, "\"[INST]\"")) return SL_CHAT_MISTRAL_V3_TEKKEN;
        return SL_CHAT_MISTRAL_V3;
    }
    /* llama2 and its variants */
    if (has(tmpl, "content.strip()")) return SL_CHAT_LLAMA2_SYS_STRIP;
    if (has(tmpl, "bos_token + '[INST]")) return SL_CHAT_LLAMA2_SYS_BOS;
    if (has(tmpl, "<<SYS>>")) return SL_CHAT_LLAMA2_SYS;
    return SL_CHAT_LLAMA2;
}

enum sl_chat_family sl_chat_detect(const char *tmpl)
{
    if (!tmpl || !*tmpl) return SL_CHAT_UNKNOWN;
    if (strnlen(tmpl, SL_CHAT_MAX_TEMPLATE + 1) > SL_CHAT_MAX_TEMPLATE) return SL_CHAT_UNKNOWN;

    int by_name = sl_chat_family_from_name(tmpl);
    if (by_name > 0) return (enum sl_chat_family)by_name;

    /*
     * Same order as llama.cpp: an earlier rule wins. Rules for families we do
     * not render return UNKNOWN so that their templates do not fall through
     * to a later, wrong family.
     */
    if (has(tmpl, "<|im_start|>")) {
        if (has(tmpl, "<|im_sep|>")) return SL_CHAT_PHI4;
        if (has(tmpl, "<end_of_utterance>")) return SL_CHAT_UNKNOWN; /* SmolVLM: not chatml */
        return SL_CHAT_CHATML;
    }
    if (strncmp(tmpl, "mistral", 7) == 0 || has(tmpl, "[INST]")) return detect_inst(tmpl);
    if (has(tmpl, "<|assistant|>") && has(tmpl, "<|end|>")) return SL_CHAT_PHI3;
    if (has(tmpl, "[gMASK]<sop>")) return SL_CHAT_UNKNOWN; /* chatglm4 */
    if (has(tmpl, "<|assistant|>") && has(tmpl, "<|user|>")) {
        /* llama.cpp: falcon3 or glmedge; we add zephyr (llama.cpp misreads it as glmedge) */
        if (has(tmpl, "[gMASK]") || has(tmpl, "<|begin_of_image|>")) return SL_CHAT_UNKNOWN;
        if (zephyr_eos_after_user(tmpl))
            return has(tmpl, "<|endoftext|>") ? SL_CHAT_ZEPHYR_ENDOFTEXT : SL_CHAT_ZEPHYR;
        return SL_CHAT_UNKNOWN;
    }
    if (has(tmpl, "<|{{ item['role'] }}|>") && has(tmpl, "<|begin_of_image|>"))
        return SL_CHAT_UNKNOWN; /* glmedge */
    if (has(tmpl, "<|user|>") && has(tmpl, "<|endoftext|>")) return SL_CHAT_ZEPHYR_ENDOFTEXT;
    if (has(tmpl, "bos_token + message['role']")) return SL_CHAT_UNKNOWN;   /* monarch */
    if (has(tmpl, "<start_of_turn>")) return SL_CHAT_GEMMA;
    if (has(tmpl, "'\\n\\nAssistant: ' + eos_token")) return SL_CHAT_UNKNOWN; /* orion */
    if (has(tmpl, "GPT4 Correct ")) return SL_CHAT_UNKNOWN;                  /* openchat */
    if (has(tmpl, "USER: ") && has(tmpl, "ASSISTANT: ")) return SL_CHAT_UNKNOWN; /* vicuna */
    if (has(tmpl, "### Instruction:") && has(tmpl, "<|EOT|>")) return SL_CHAT_UNKNOWN; /* deepseek */
    if (has(tmpl, "<|START_OF_TURN_TOKEN|>") && has(tmpl, "<|USER_TOKEN|>"))
        return SL_CHAT_UNKNOWN; /* command-r */
    if (has(tmpl, "<|start_header_id|>") && has(tmpl, "<|end_header_id|>")) return SL_CHAT_LLAMA3;
    return SL_CHAT_UNKNOWN;
}

/* ------------------------------------------------------------------------ */
/* Rendering                                                                 */
/* ------------------------------------------------------------------------ */

/* A growable output string; `oom` is sticky so callers check once at the end. */
struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void sb_put(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (n > SIZE_MAX - b->len - 1) {
        b->oom = true;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap = cap > SIZE_MAX / 2 ? b->len + n + 1 : cap * 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_puts(struct sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* C-locale isspace, as llama.cpp's trim() sees it. */
static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static void sb_put_trim(struct sbuf *b, const char *s)
{
    size_t n = strlen(s);
    while (n > 0 && is_space(*s)) s++, n--;
    while (n > 0 && is_space(s[n - 1])) n--;
    sb_put(b, s, n);
}

static void sb_put_maybe_trim(struct sbuf *b, const char *s, bool trim)
{
    if (trim)
        sb_put_trim(b, s);
    else
        sb_puts(b, s);
}

static bool is_role(const char *role, const char *want)
{
    return strcmp(role, want) == 0;
}

/* ChatML: <|im_start|>role\ncontent<|im_end|>\n */
static void render_chatml(struct sbuf *b, const struct sl_chat_msg *m, size_t n, bool gen)
{
    for (size_t i = 0; i < n; i++) {
        sb_puts(b, "<|im_start|>");
        sb_puts(b, m[i].role);
        sb_puts(b, "\n");
        sb_puts(b, m[i].content);
        sb_puts(b, "<|im_end|>\n");
    }
    if (gen) sb_puts(b, "<|im_start|>assistant\n");
}

/* Phi 4: <|im_start|>role<|im_sep|>content<|im_end|> */
static void render_phi4(struct sbuf *b, const struct sl_chat_msg *m, size_t n, bool gen)
{
    for (size_t i = 0; i < n; i++) {
        sb_puts(b, "<|im_start|>");
        sb_puts(b, m[i].role);
        sb_puts(b, "<|im_sep|>");
        sb_puts(b, m[i].content);
        sb_puts(b, "<|im_end|>");
    }
    if (gen) sb_puts(b, "<|im_start|>assistant<|im_sep|>");
}

/* Llama 3: <|start_header_id|>role<|end_header_id|>\n\ntrim(content)<|eot_id|> */
static void render_llama3(struct sbuf *b, const struct sl_chat_msg *m, size_t n, bool gen)
{
    for (size_t i = 0; i < n; i++) {
        sb_puts(b, "<|start_header_id|>");
        sb_puts(b, m[i].role);
        sb_puts(b, "<|end_header_id|>\n\n");
        sb_put_trim(b, m[i].content);
        sb_puts(b, "<|eot_id|>");
    }
    if (gen) sb_puts(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/*
 * Llama 2: "[INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST]assistant</s>[INST] ...".
 * The BOS of the first turn is left to the tokenizer. Variants: no <<SYS>>
 * (system text plus "\n" goes into the first turn), "<s>" before each later
 * [INST], contents trimmed. There is no generation prompt: the text already
 * ends with [/INST].
 */
static void render_llama2(struct sbuf *b, enum sl_chat_family f, const struct sl_chat_msg *m,
                          size_t n)
{
    bool support_system = f != SL_CHAT_LLAMA2;
    bool bos_inside = f == SL_CHAT_LLAMA2_SYS_BOS;
    bool strip = f == SL_CHAT_LLAMA2_SYS_STRIP;
    bool inside_turn = true; /* the first [INST] goes without BOS */
    sb_puts(b, "[INST] ");
    for (size_t i = 0; i < n; i++) {
        if (!inside_turn) {
            inside_turn = true;
            sb_puts(b, bos_inside ? "<s>[INST] " : "[INST] ");
        }
        if (is_role(m[i].role, "system")) {
            if (support_system) {
                sb_puts(b, "<<SYS>>\n");
                sb_put_maybe_trim(b, m[i].content, strip);
                sb_puts(b, "\n<</SYS>>\n\n");
            } else {
                sb_put_maybe_trim(b, m[i].content, strip);
                sb_puts(b, "\n");
            }
        } else if (is_role(m[i].role, "user")) {
            sb_put_maybe_trim(b, m[i].content, strip);
            sb_puts(b, " [/INST]");
        } else {
            sb_put_maybe_trim(b, m[i].content, strip);
            sb_puts(b, "</s>");
            inside_turn = false;
        }
    }
}

/*
 * Mistral v1/v3/v3-tekken: system text and the next user message share one
 * [INST] block. v1 puts a space before [INST] and [/INST]; tekken has no
 * space after [INST] or before the answer; v3 trims the answer.
 */
static void render_mistral(struct sbuf *b, enum sl_chat_family f, const struct sl_chat_msg *m,
                           size_t n)
{
    const char *lead = f == SL_CHAT_MISTRAL_V1 ? " " : "";
    const char *trail = f == SL_CHAT_MISTRAL_V3_TEKKEN ? "" : " ";
    bool trim_answer = f == SL_CHAT_MISTRAL_V3;
    bool inside_turn = false;
    for (size_t i = 0; i < n; i++) {
        if (!inside_turn) {
            sb_puts(b, lead);
            sb_puts(b, "[INST]");
            sb_puts(b, trail);
            inside_turn = true;
        }
        if (is_role(m[i].role, "system")) {
            sb_puts(b, m[i].content);
            sb_puts(b, "\n\n");
        } else if (is_role(m[i].role, "user")) {
            sb_puts(b, m[i].content);
            sb_puts(b, lead);
            sb_puts(b, "[/INST]");
        } else {
            sb_puts(b, trail);
            sb_put_maybe_trim(b, m[i].content, trim_answer);
            sb_puts(b, "</s>");
            inside_turn = false;
        }
    }
}

/* Mistral v7: [SYSTEM_PROMPT] sys[/SYSTEM_PROMPT][INST] user[/INST] answer</s> */
static void render_mistral_v7(struct sbuf *b, enum sl_chat_family f,
                              const struct sl_chat_msg *m, size_t n)
{
    const char *sp = f == SL_CHAT_MISTRAL_V7 ? " " : "";
    for (size_t i = 0; i < n; i++) {
        if (is_role(m[i].role, "system")) {
            sb_puts(b, "[SYSTEM_PROMPT]");
            sb_puts(b, sp);
            sb_puts(b, m[i].content);
            sb_puts(b, "[/SYSTEM_PROMPT]");
        } else if (is_role(m[i].role, "user")) {
            sb_puts(b, "[INST]");
            sb_puts(b, sp);
            sb_puts(b, m[i].content);
            sb_puts(b, "[/INST]");
        } else {
            sb_puts(b, sp);
            sb_puts(b, m[i].content);
            sb_puts(b, "</s>");
        }
    }
}

/* Phi 3: <|role|>\ncontent<|end|>\n */
static void render_phi3(struct sbuf *b, const struct sl_chat_msg *m, size_t n, bool gen)
{
    for (size_t i = 0; i < n; i++) {
        sb_puts(b, "<|");
        sb_puts(b, m[i].role);
        sb_puts(b, "|>\n");
        sb_puts(b, m[i].content);
        sb_puts(b, "<|end|>\n");
    }
    if (gen) sb_puts(b, "<|assistant|>\n");
}

/* Zephyr: <|role|>\ncontent EOS \n, EOS being </s> or <|endoftext|>. */
static void render_zephyr(struct sbuf *b, const char *eos, const struct sl_chat_msg *m, size_t n,
                          bool gen)
{
    for (size_t i = 0; i < n; i++) {
        sb_puts(b, "<|");
        sb_puts(b, m[i].role);
        sb_puts(b, "|>\n");
        sb_puts(b, m[i].content);
        sb_puts(b, eos);
        sb_puts(b, "\n");
    }
    if (gen) sb_puts(b, "<|assistant|>\n");
}

/*
 * Gemma: <start_of_turn>user\ncontent<end_of_turn>\n, "assistant" is
 * "model", contents trimmed. Gemma has no system turn: the (trimmed) system
 * text opens the next user turn, followed by "\n\n".
 */
static void render_gemma(struct sbuf *b, const struct sl_chat_msg *m, size_t n, bool gen)
{
    struct sbuf sys = {0};
    for (size_t i = 0; i < n; i++) {
        if (is_role(m[i].role, "system")) {
            sb_put_trim(&sys, m[i].content);
            continue;
        }
        bool model = is_role(m[i].role, "assistant");
        sb_puts(b, "<start_of_turn>");
        sb_puts(b, model ? "model" : m[i].role);
        sb_puts(b, "\n");
        if (sys.len > 0 && !model) {
            sb_put(b, sys.p, sys.len);
            sb_puts(b, "\n\n");
            sys.len = 0;
        }
        sb_put_trim(b, m[i].content);
        sb_puts(b, "<end_of_turn>\n");
    }
    if (sys.oom) b->oom = true;
    free(sys.p);
    if (gen) sb_puts(b, "<start_of_turn>model\n");
}

static int check_messages(enum sl_chat_family f, const struct sl_chat_msg *msgs, size_t n,
                          struct sl_err *err)
{
    if (n > 0 && !msgs) return sl_err_set(err, SL_EINVAL, "%s: %zu messages but msgs is NULL",
                                          __func__, n);
    for (size_t i = 0; i < n; i++) {
        const char *role = msgs[i].role;
        if (!role) return sl_err_set(err, SL_EINVAL, "chat: message %zu has no role", i);
        if (!msgs[i].content)
            return sl_err_set(err, SL_EINVAL, "chat: message %zu (%s) has no content", i, role);
        bool ok = is_role(role, "system") || is_role(role, "user") || is_role(role, "assistant");
        if (!ok && families[f].roles == ROLES_WITH_TOOL) ok = is_role(role, "tool");
        if (!ok)
            return sl_err_set(err, SL_EINVAL,
                              "chat: message %zu has role '%.64s', which the %s template "
                              "cannot express (use system, user, assistant%s)",
                              i, role, families[f].name,
                              families[f].roles == ROLES_WITH_TOOL ? " or tool" : "");
    }
    return 0;
}

int sl_chat_apply(enum sl_chat_family f, const struct sl_chat_msg *msgs, size_t n,
                  bool add_generation_prompt, char **out, struct sl_err *err)
{
    struct sbuf b = {0};
    int rc;
    if (!out) return sl_err_set(err, SL_EINVAL, "%s: out is NULL", __func__);
    *out = NULL;
    if ((int)f <= SL_CHAT_UNKNOWN || (int)f >= SL_CHAT_FAMILY_COUNT)
        return sl_err_set(err, SL_EINVAL,
                          "chat: unknown chat template; known templates: %s. "
                          "Pass --chat-template NAME to choose one",
                          family_names_list);
    rc = check_messages(f, msgs, n, err);
    if (rc) return rc;

    bool gen = add_generation_prompt;
    switch (f) {
    case SL_CHAT_CHATML: render_chatml(&b, msgs, n, gen); break;
    case SL_CHAT_PHI4: render_phi4(&b, msgs, n, gen); break;
    case SL_CHAT_LLAMA3: render_llama3(&b, msgs, n, gen); break;
    case SL_CHAT_LLAMA2:
    case SL_CHAT_LLAMA2_SYS:
    case SL_CHAT_LLAMA2_SYS_BOS:
    case SL_CHAT_LLAMA2_SYS_STRIP: render_llama2(&b, f, msgs, n); break;
    case SL_CHAT_MISTRAL_V1:
    case SL_CHAT_MISTRAL_V3:
    case SL_CHAT_MISTRAL_V3_TEKKEN: render_mistral(&b, f, msgs, n); break;
    case SL_CHAT_MISTRAL_V7:
    case SL_CHAT_MISTRAL_V7_TEKKEN: render_mistral_v7(&b, f, msgs, n); break;
    case SL_CHAT_PHI3: render_phi3(&b, msgs, n, gen); break;
    case SL_CHAT_GEMMA: render_gemma(&b, msgs, n, gen); break;
    case SL_CHAT_ZEPHYR: render_zephyr(&b, "</s>", msgs, n, gen); break;
    case SL_CHAT_ZEPHYR_ENDOFTEXT: render_zephyr(&b, "<|endoftext|>", msgs, n, gen); break;
    case SL_CHAT_UNKNOWN:
    case SL_CHAT_FAMILY_COUNT: break; /* rejected above */
    }
    if (!b.oom && !b.p) sb_put(&b, "", 0); /* empty result is still a string */
    if (b.oom) {
        free(b.p);
        return sl_err_set(err, SL_ENOMEM, "chat: out of memory rendering %zu messages", n);
    }
    *out = b.p;
    return 0;
}
