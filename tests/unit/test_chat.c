/*
 * test_chat.c - chat template detection and rendering.
 *
 * Expected outputs follow llama.cpp's tests/test-chat-template.cpp, which
 * renders this six-message conversation through llama_chat_apply_template.
 */
#define _GNU_SOURCE /* memmem */
#include "engine/chat.h"

#include <stdint.h>

#include "test.h"

static const struct sl_chat_msg conv[] = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
    {"assistant", "   I am an assistant   "},
    {"user", "Another question"},
};
#define N_CONV (sizeof conv / sizeof conv[0])

/* Render conv in family f and compare with want. */
static void check_render(enum sl_chat_family f, bool gen, const char *want)
{
    struct sl_err err = {0};
    char *out = NULL;
    T_OK(sl_chat_apply(f, conv, N_CONV, gen, &out, &err), &err);
    if (out && strcmp(out, want) != 0)
        fprintf(stderr, "family %s:\n got: [%s]\nwant: [%s]\n", sl_chat_family_name(f), out, want);
    T_EQ_STR(out, want);
    free(out);
}

/* ------------------------------------------------------------------------ */
/* Rendering, one test per family                                           */
/* ------------------------------------------------------------------------ */

static void chatml_renders_like_llama_cpp(void)
{
    check_render(SL_CHAT_CHATML, true,
                 "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"
                 "<|im_start|>user\nHello<|im_end|>\n"
                 "<|im_start|>assistant\nHi there<|im_end|>\n"
                 "<|im_start|>user\nWho are you<|im_end|>\n"
                 "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n"
                 "<|im_start|>user\nAnother question<|im_end|>\n"
                 "<|im_start|>assistant\n");
}

static void chatml_without_generation_prompt_ends_after_last_turn(void)
{
    struct sl_err err = {0};
    char *out = NULL;
    T_OK(sl_chat_apply(SL_CHAT_CHATML, conv + 1, 1, false, &out, &err), &err);
    T_EQ_STR(out, "<|im_start|>user\nHello<|im_end|>\n");
    free(out);
}

static void llama3_renders_trimmed_turns_without_begin_of_text(void)
{
    check_render(SL_CHAT_LLAMA3, true,
                 "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void llama2_variants_render_like_llama_cpp(void)
{
    /* Mistral-7B-Instruct-v0.2's old template: no <<SYS>> */
    check_render(SL_CHAT_LLAMA2, true,
                 "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>"
                 "[INST] Who are you [/INST]   I am an assistant   </s>"
                 "[INST] Another question [/INST]");
    check_render(SL_CHAT_LLAMA2_SYS, true,
                 "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>"
                 "[INST] Who are you [/INST]   I am an assistant   </s>"
                 "[INST] Another question [/INST]");
    /* TheBloke/FusionNet_34Bx2_MoE */
    check_render(SL_CHAT_LLAMA2_SYS_BOS, true,
                 "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>"
                 "<s>[INST] Who are you [/INST]   I am an assistant   </s>"
                 "<s>[INST] Another question [/INST]");
    /* bofenghuang/vigogne-2-70b-chat */
    check_render(SL_CHAT_LLAMA2_SYS_STRIP, true,
                 "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]Hi there</s>"
                 "[INST] Who are you [/INST]I am an assistant</s>"
                 "[INST] Another question [/INST]");
}

static void mistral_variants_render_like_llama_cpp(void)
{
    check_render(SL_CHAT_MISTRAL_V1, true,
                 " [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s>"
                 " [INST] Who are you [/INST]    I am an assistant   </s>"
                 " [INST] Another question [/INST]");
    check_render(SL_CHAT_MISTRAL_V3, true,
                 "[INST] You are a helpful assistant\n\nHello[/INST] Hi there</s>"
                 "[INST] Who are you[/INST] I am an assistant</s>"
                 "[INST] Another question[/INST]");
    check_render(SL_CHAT_MISTRAL_V3_TEKKEN, true,
                 "[INST]You are a helpful assistant\n\nHello[/INST]Hi there</s>"
                 "[INST]Who are you[/INST]   I am an assistant   </s>"
                 "[INST]Another question[/INST]");
    check_render(SL_CHAT_MISTRAL_V7, true,
                 "[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT]"
                 "[INST] Hello[/INST] Hi there</s>"
                 "[INST] Who are you[/INST]    I am an assistant   </s>"
                 "[INST] Another question[/INST]");
    check_render(SL_CHAT_MISTRAL_V7_TEKKEN, true,
                 "[SYSTEM_PROMPT]You are a helpful assistant[/SYSTEM_PROMPT]"
                 "[INST]Hello[/INST]Hi there</s>"
                 "[INST]Who are you[/INST]   I am an assistant   </s>"
                 "[INST]Another question[/INST]");
}

static void phi3_renders_like_llama_cpp(void)
{
    check_render(SL_CHAT_PHI3, true,
                 "<|system|>\nYou are a helpful assistant<|end|>\n"
                 "<|user|>\nHello<|end|>\n"
                 "<|assistant|>\nHi there<|end|>\n"
                 "<|user|>\nWho are you<|end|>\n"
                 "<|assistant|>\n   I am an assistant   <|end|>\n"
                 "<|user|>\nAnother question<|end|>\n"
                 "<|assistant|>\n");
}

static void phi4_renders_like_llama_cpp(void)
{
    check_render(SL_CHAT_PHI4, true,
                 "<|im_start|>system<|im_sep|>You are a helpful assistant<|im_end|>"
                 "<|im_start|>user<|im_sep|>Hello<|im_end|>"
                 "<|im_start|>assistant<|im_sep|>Hi there<|im_end|>"
                 "<|im_start|>user<|im_sep|>Who are you<|im_end|>"
                 "<|im_start|>assistant<|im_sep|>   I am an assistant   <|im_end|>"
                 "<|im_start|>user<|im_sep|>Another question<|im_end|>"
                 "<|im_start|>assistant<|im_sep|>");
}

static void gemma_merges_system_into_first_user_turn_and_says_model(void)
{
    check_render(SL_CHAT_GEMMA, true,
                 "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n"
                 "<start_of_turn>model\nHi there<end_of_turn>\n"
                 "<start_of_turn>user\nWho are you<end_of_turn>\n"
                 "<start_of_turn>model\nI am an assistant<end_of_turn>\n"
                 "<start_of_turn>user\nAnother question<end_of_turn>\n"
                 "<start_of_turn>model\n");
}

static void zephyr_ends_each_turn_with_eos_text(void)
{
    check_render(SL_CHAT_ZEPHYR, true,
                 "<|system|>\nYou are a helpful assistant</s>\n"
                 "<|user|>\nHello</s>\n"
                 "<|assistant|>\nHi there</s>\n"
                 "<|user|>\nWho are you</s>\n"
                 "<|assistant|>\n   I am an assistant   </s>\n"
                 "<|user|>\nAnother question</s>\n"
                 "<|assistant|>\n");
    check_render(SL_CHAT_ZEPHYR_ENDOFTEXT, false,
                 "<|system|>\nYou are a helpful assistant<|endoftext|>\n"
                 "<|user|>\nHello<|endoftext|>\n"
                 "<|assistant|>\nHi there<|endoftext|>\n"
                 "<|user|>\nWho are you<|endoftext|>\n"
                 "<|assistant|>\n   I am an assistant   <|endoftext|>\n"
                 "<|user|>\nAnother question<|endoftext|>\n");
}

static void short_conversation_renders_in_every_family_without_bos(void)
{
    static const struct sl_chat_msg m[] = {{"system", "S"}, {"user", "U1"},
                                           {"assistant", "A1"}, {"user", "U2"}};
    for (int f = SL_CHAT_UNKNOWN + 1; f < SL_CHAT_FAMILY_COUNT; f++) {
        struct sl_err err = {0};
        char *out = NULL;
        T_OK(sl_chat_apply((enum sl_chat_family)f, m, 4, true, &out, &err), &err);
        T_TRUE(out != NULL);
        if (!out) continue;
        T_TRUE(strncmp(out, "<s>", 3) != 0);
        T_TRUE(strncmp(out, "<bos>", 5) != 0);
        T_TRUE(strstr(out, "<|begin_of_text|>") == NULL);
        T_TRUE(strstr(out, "U2") != NULL);
        free(out);
    }
}

static void empty_conversation_gives_only_the_generation_prompt(void)
{
    struct sl_err err = {0};
    char *out = NULL;
    T_OK(sl_chat_apply(SL_CHAT_CHATML, NULL, 0, true, &out, &err), &err);
    T_EQ_STR(out, "<|im_start|>assistant\n");
    free(out);
    out = NULL;
    T_OK(sl_chat_apply(SL_CHAT_LLAMA3, NULL, 0, false, &out, &err), &err);
    T_EQ_STR(out, "");
    free(out);
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

static void unknown_family_is_an_error_that_lists_the_names(void)
{
    struct sl_err err = {0};
    char *out = (char *)"sentinel";
    T_EQ_INT(sl_chat_apply(SL_CHAT_UNKNOWN, conv, N_CONV, true, &out, &err), SL_EINVAL);
    T_TRUE(out == NULL);
    T_EQ_INT(err.code, SL_EINVAL);
    T_TRUE(strstr(err.msg, "--chat-template") != NULL);
    T_TRUE(strstr(err.msg, "chatml") != NULL);
    T_TRUE(strstr(err.msg, "llama3") != NULL);
    T_TRUE(strstr(err.msg, "gemma") != NULL);
    T_EQ_INT(sl_chat_apply((enum sl_chat_family)999, conv, N_CONV, true, &out, &err), SL_EINVAL);
}

static void bad_role_is_an_error_naming_the_role(void)
{
    static const struct sl_chat_msg m[] = {{"user", "hi"}, {"wizard", "abracadabra"}};
    struct sl_err err = {0};
    char *out = NULL;
    T_EQ_INT(sl_chat_apply(SL_CHAT_CHATML, m, 2, true, &out, &err), SL_EINVAL);
    T_TRUE(out == NULL);
    T_TRUE(strstr(err.msg, "wizard") != NULL);
    T_TRUE(strstr(err.msg, "message 1") != NULL);

    /* "tool" is fine where the role is written verbatim, not in llama2 */
    static const struct sl_chat_msg t[] = {{"tool", "42"}};
    T_OK(sl_chat_apply(SL_CHAT_CHATML, t, 1, false, &out, &err), &err);
    T_EQ_STR(out, "<|im_start|>tool\n42<|im_end|>\n");
    free(out);
    out = NULL;
    T_EQ_INT(sl_chat_apply(SL_CHAT_LLAMA2_SYS, t, 1, false, &out, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "llama2-sys") != NULL);

    static const struct sl_chat_msg nul[] = {{"user", NULL}};
    T_EQ_INT(sl_chat_apply(SL_CHAT_CHATML, nul, 1, false, &out, &err), SL_EINVAL);
    static const struct sl_chat_msg norole[] = {{NULL, "x"}};
    T_EQ_INT(sl_chat_apply(SL_CHAT_CHATML, norole, 1, false, &out, &err), SL_EINVAL);
}

/* ------------------------------------------------------------------------ */
/* Names and stop strings                                                   */
/* ------------------------------------------------------------------------ */

static void every_family_name_round_trips_and_is_listed(void)
{
    const char *list = sl_chat_family_names();
    for (int f = SL_CHAT_UNKNOWN + 1; f < SL_CHAT_FAMILY_COUNT; f++) {
        const char *name = sl_chat_family_name((enum sl_chat_family)f);
        T_EQ_INT(sl_chat_family_from_name(name), f);
        T_EQ_INT(sl_chat_detect(name), f);
        /* listed as a whole item of the comma-separated list */
        size_t len = strlen(name);
        bool found = false;
        for (const char *p = list; (p = strstr(p, name)) != NULL; p++)
            if ((p == list || p[-1] == ' ') && (p[len] == ',' || p[len] == 0)) found = true;
        if (!found) T_FAIL_AT("family '%s' missing from sl_chat_family_names()", name);
    }
    T_EQ_INT(sl_chat_family_from_name("jinja"), -1);
    T_EQ_INT(sl_chat_family_from_name(NULL), -1);
    T_EQ_STR(sl_chat_family_name(SL_CHAT_UNKNOWN), "unknown");
    T_EQ_STR(sl_chat_family_name((enum sl_chat_family)1234), "unknown");
}

static void stop_strings_name_each_family_end_of_turn(void)
{
    size_t n = 99;
    const char *const *s = sl_chat_stop_strings(SL_CHAT_CHATML, &n);
    T_EQ_INT(n, 1);
    T_EQ_STR(s[0], "<|im_end|>");
    T_TRUE(s[1] == NULL);
    T_EQ_STR(sl_chat_stop_strings(SL_CHAT_LLAMA3, NULL)[0], "<|eot_id|>");
    T_EQ_STR(sl_chat_stop_strings(SL_CHAT_GEMMA, NULL)[0], "<end_of_turn>");
    T_EQ_STR(sl_chat_stop_strings(SL_CHAT_PHI3, NULL)[0], "<|end|>");
    T_EQ_STR(sl_chat_stop_strings(SL_CHAT_ZEPHYR, NULL)[0], "</s>");
    T_EQ_STR(sl_chat_stop_strings(SL_CHAT_MISTRAL_V7, NULL)[0], "</s>");
    T_EQ_STR(sl_chat_stop_strings(SL_CHAT_ZEPHYR_ENDOFTEXT, NULL)[0], "<|endoftext|>");
    s = sl_chat_stop_strings(SL_CHAT_UNKNOWN, &n);
    T_EQ_INT(n, 0);
    T_TRUE(s[0] == NULL);
    for (int f = SL_CHAT_UNKNOWN + 1; f < SL_CHAT_FAMILY_COUNT; f++) {
        sl_chat_stop_strings((enum sl_chat_family)f, &n);
        T_TRUE(n >= 1);
    }
}

/* ------------------------------------------------------------------------ */
/* Detection from Jinja text                                                */
/* ------------------------------------------------------------------------ */

struct detect_case {
    const char *what;
    const char *tmpl;
    enum sl_chat_family want;
};

static const struct detect_case detect_cases[] = {
    {"chatml (OpenHermes)",
     "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] "
     "+ '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' "
     "}}{% endif %}",
     SL_CHAT_CHATML},
    {"llama3",
     "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
     "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim "
     "+ '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif "
     "%}{{ content }}{% endfor %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}",
     SL_CHAT_LLAMA3},
    {"llama2 chat (<<SYS>>)",
     "{% if messages[0]['role'] == 'system' %}{% set system_message = messages[0]['content'] %}"
     "{% endif %}{% for message in loop_messages %}{% if loop.index0 == 0 and system_message %}"
     "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
     "{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content + ' [/INST]' "
     "}}{% elif message['role'] == 'assistant' %}{{ ' ' + content + ' ' + eos_token }}{% endif %}"
     "{% endfor %}",
     SL_CHAT_LLAMA2_SYS_BOS},
    {"llama2 without system (Mistral-7B v0.2 old)",
     "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + "
     "message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ "
     "message['content'] + eos_token}}{% endif %}{% endfor %}",
     SL_CHAT_LLAMA2},
    {"llama2-sys",
     "{% for m in messages %}{% if m['role'] == 'system' %}{{ '[INST] <<SYS>>\\n' + m['content'] + "
     "'\\n<</SYS>>\\n\\n' }}{% elif m['role'] == 'user' %}{{ m['content'] + ' [/INST]' }}{% endif %}"
     "{% endfor %}",
     SL_CHAT_LLAMA2_SYS},
    {"llama2-sys-strip (vigogne)",
     "{% if message['role'] == 'user' %}{{ '[INST] ' + content.strip() + ' [/INST]' }}{% endif %}",
     SL_CHAT_LLAMA2_SYS_STRIP},
    {"mistral v1",
     "{{- bos_token }}{%- for message in loop_messages %}{%- if loop.first and system_message is "
     "defined %}{{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}"
     "{%- else %}{{- ' [INST] ' + message['content'] + ' [/INST]' }}{%- endif %}{%- endfor %}",
     SL_CHAT_MISTRAL_V1},
    {"mistral v3",
     "{%- if tools is not none %}{{- \"[AVAILABLE_TOOLS] [\" }}{%- endif %}{{- \"[INST] \" + "
     "message[\"content\"] + \"[/INST]\" }}{{- \" \" + message[\"content\"]|trim + eos_token}}",
     SL_CHAT_MISTRAL_V3},
    {"mistral v3 tekken",
     "{%- if tools is not none %}{{- \"[AVAILABLE_TOOLS][\" }}{%- endif %}{{- \"[INST]\" + "
     "message[\"content\"] + \"[/INST]\" }}{{- message[\"content\"] + eos_token}}",
     SL_CHAT_MISTRAL_V3_TEKKEN},
    {"mistral v7",
     "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + "
     "message['content'] + '[/INST]' }}{% elif message['role'] == 'system' %}{{ '[SYSTEM_PROMPT] ' "
     "+ message['content'] + '[/SYSTEM_PROMPT]' }}{% endif %}{% endfor %}",
     SL_CHAT_MISTRAL_V7},
    {"phi3 (mini)",
     "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' "
     "+ '\n' + message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}{% elif "
     "(message['role'] == 'assistant') %}{{message['content'] + '<|end|>' + '\n'}}{% endif %}{% "
     "endfor %}",
     SL_CHAT_PHI3},
    {"phi4",
     "{% for message in messages %}{% if (message['role'] == 'system') %}{{'<|im_start|>system"
     "<|im_sep|>' + message['content'] + '<|im_end|>'}}{% endif %}{% endfor %}",
     SL_CHAT_PHI4},
    {"gemma",
     "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set "
     "role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + "
     "role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if "
     "add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}",
     SL_CHAT_GEMMA},
    {"zephyr (zephyr-7b-beta, TinyLlama)",
     "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
     "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + "
     "message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ "
     "'<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and "
     "add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}",
     SL_CHAT_ZEPHYR},
    {"zephyr with literal <|endoftext|>",
     "{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\n' + "
     "message['content'] + '<|endoftext|>' }}{% elif message['role'] == 'assistant' %}{{ "
     "'<|assistant|>\n' + message['content'] + '<|endoftext|>' }}{% endif %}{% endfor %}",
     SL_CHAT_ZEPHYR_ENDOFTEXT},
    /* templates of families we do not render: UNKNOWN, never a wrong family */
    {"falcon3-like (no eos after user)",
     "{%- if message['role'] == 'user' %}{{- '<|user|>\\n' + message['content'] + '\\n' }}{%- elif "
     "message['role'] == 'assistant' %}{{- '<|assistant|>\\n' + message['content'] + eos_token }}"
     "{%- endif %}",
     SL_CHAT_UNKNOWN},
    {"smolvlm", "<|im_start|>{% for message in messages %}{{ 'User:' }}<end_of_utterance>{% endfor %}",
     SL_CHAT_UNKNOWN},
    {"command-r",
     "{{ '<|START_OF_TURN_TOKEN|><|USER_TOKEN|>' + content.strip() + '<|END_OF_TURN_TOKEN|>' }}",
     SL_CHAT_UNKNOWN},
    {"vicuna", "{{-'USER: ' + message['content'] + '\\n'-}}{{-'ASSISTANT: ' + message['content']}}",
     SL_CHAT_UNKNOWN},
    {"plain text", "hello {{ messages }}", SL_CHAT_UNKNOWN},
    {"empty", "", SL_CHAT_UNKNOWN},
};

static void detection_recognises_each_family_from_jinja_text(void)
{
    for (size_t i = 0; i < sizeof detect_cases / sizeof detect_cases[0]; i++) {
        const struct detect_case *c = &detect_cases[i];
        enum sl_chat_family got = sl_chat_detect(c->tmpl);
        t_checks++;
        if (got != c->want)
            T_FAIL_AT("%s: detected %s, want %s", c->what, sl_chat_family_name(got),
                      sl_chat_family_name(c->want));
    }
    T_EQ_INT(sl_chat_detect(NULL), SL_CHAT_UNKNOWN);
}

/* ------------------------------------------------------------------------ */
/* Detection from the real templates in ../shared/assets                   */
/* ------------------------------------------------------------------------ */

static void put_utf8(char **o, uint32_t cp)
{
    unsigned char *p = (unsigned char *)*o;
    if (cp < 0x80) {
        *p++ = (unsigned char)cp;
    } else if (cp < 0x800) {
        *p++ = (unsigned char)(0xC0 | (cp >> 6));
        *p++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *p++ = (unsigned char)(0xE0 | (cp >> 12));
        *p++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        *p++ = (unsigned char)(0x80 | (cp & 0x3F));
    } else {
        *p++ = (unsigned char)(0xF0 | (cp >> 18));
        *p++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        *p++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        *p++ = (unsigned char)(0x80 | (cp & 0x3F));
    }
    *o = (char *)p;
}

/*
 * Crude scanner: the decoded JSON string value of the first "key": "..." in
 * json. Enough for tokenizer_config.json; malloc'd, NULL if absent or bad.
 */
static char *json_string_value(const char *json, const char *key)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\"", key);
    const char *p = strstr(json, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
    if (*p++ != ':') return NULL;
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
    if (*p++ != '"') return NULL;
    char *out = malloc(strlen(p) + 1), *o = out;
    if (!out) return NULL;
    while (*p && *p != '"') {
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        p++;
        char c = *p++;
        switch (c) {
        case 'n': *o++ = '\n'; break;
        case 't': *o++ = '\t'; break;
        case 'r': *o++ = '\r'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'u': {
            uint32_t cp = (uint32_t)strtoul((char[5]){p[0], p[1], p[2], p[3], 0}, NULL, 16);
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && p[0] == '\\' && p[1] == 'u') {
                uint32_t lo = (uint32_t)strtoul((char[5]){p[2], p[3], p[4], p[5], 0}, NULL, 16);
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            put_utf8(&o, cp);
            break;
        }
        case 0: free(out); return NULL;
        default: *o++ = c; break; /* \" \\ \/ */
        }
    }
    if (*p != '"') {
        free(out);
        return NULL;
    }
    *o = 0;
    return out;
}

static char *asset_template_json(const char *rel)
{
    const char *path = t_asset(rel);
    char *json = path ? t_read_file(path, NULL) : NULL;
    if (!json) return NULL;
    char *tmpl = json_string_value(json, "chat_template");
    free(json);
    return tmpl;
}

static void llama3_tokenizer_config_template_is_llama3(void)
{
    char *tmpl = asset_template_json("tokenizers/llama3/tokenizer_config.json");
    if (!tmpl) {
        t_skip("no shared/assets/tokenizers/llama3/tokenizer_config.json");
        return;
    }
    T_TRUE(strstr(tmpl, "<|start_header_id|>") != NULL);
    T_EQ_STR(sl_chat_family_name(sl_chat_detect(tmpl)), "llama3");
    free(tmpl);
}

static void qwen_tokenizer_config_template_is_chatml(void)
{
    char *tmpl = asset_template_json("tokenizers/qwen/tokenizer_config.json");
    if (!tmpl) {
        t_skip("no shared/assets/tokenizers/qwen/tokenizer_config.json");
        return;
    }
    T_TRUE(strstr(tmpl, "<|im_start|>") != NULL);
    T_EQ_STR(sl_chat_family_name(sl_chat_detect(tmpl)), "chatml");
    free(tmpl);
}

/* GGUF metadata: key, then u32 type (8 = string), u64 length, bytes. */
static void phi3_vocab_gguf_template_is_phi3(void)
{
    const char *path = t_asset("tokenizers/ggml-vocab/ggml-vocab-phi-3.gguf");
    size_t len = 0;
    char *buf = path ? t_read_file(path, &len) : NULL;
    if (!buf) {
        t_skip("no shared/assets/tokenizers/ggml-vocab/ggml-vocab-phi-3.gguf");
        return;
    }
    static const char key[] = "tokenizer.chat_template";
    const char *p = memmem(buf, len, key, sizeof key - 1);
    char *tmpl = NULL;
    if (p && (size_t)(p - buf) + sizeof key - 1 + 12 <= len) {
        const unsigned char *q = (const unsigned char *)p + sizeof key - 1;
        uint32_t type = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 |
                        (uint32_t)q[3] << 24;
        uint64_t n = 0;
        for (int i = 7; i >= 0; i--) n = n << 8 | q[4 + i];
        size_t off = (size_t)(q + 12 - (const unsigned char *)buf);
        if (type == 8 && n <= len - off) {
            tmpl = malloc((size_t)n + 1);
            if (tmpl) {
                memcpy(tmpl, q + 12, (size_t)n);
                tmpl[n] = 0;
            }
        }
    }
    free(buf);
    T_TRUE(tmpl != NULL);
    if (!tmpl) return;
    T_EQ_STR(sl_chat_family_name(sl_chat_detect(tmpl)), "phi3");
    free(tmpl);
}

int main(void)
{
    T_RUN(chatml_renders_like_llama_cpp);
    T_RUN(chatml_without_generation_prompt_ends_after_last_turn);
    T_RUN(llama3_renders_trimmed_turns_without_begin_of_text);
    T_RUN(llama2_variants_render_like_llama_cpp);
    T_RUN(mistral_variants_render_like_llama_cpp);
    T_RUN(phi3_renders_like_llama_cpp);
    T_RUN(phi4_renders_like_llama_cpp);
    T_RUN(gemma_merges_system_into_first_user_turn_and_says_model);
    T_RUN(zephyr_ends_each_turn_with_eos_text);
    T_RUN(short_conversation_renders_in_every_family_without_bos);
    T_RUN(empty_conversation_gives_only_the_generation_prompt);
    T_RUN(unknown_family_is_an_error_that_lists_the_names);
    T_RUN(bad_role_is_an_error_naming_the_role);
    T_RUN(every_family_name_round_trips_and_is_listed);
    T_RUN(stop_strings_name_each_family_end_of_turn);
    T_RUN(detection_recognises_each_family_from_jinja_text);
    T_RUN(llama3_tokenizer_config_template_is_llama3);
    T_RUN(qwen_tokenizer_config_template_is_chatml);
    T_RUN(phi3_vocab_gguf_template_is_phi3);
    return t_done();
}
