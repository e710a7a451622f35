/*
 * test_config.c - the YAML config: defaults from the option table, a full
 * file, and errors that name the line, the key and what was expected.
 */
#include "config/config.h"

#include <string.h>

#include "test.h"

static int parse(struct sl_config *c, const char *yaml, struct sl_err *err)
{
    sl_config_init(c, err);
    return sl_config_parse(c, yaml, strlen(yaml), err);
}

static void config_defaults_come_from_the_table(void)
{
    struct sl_config c;
    struct sl_err err = {0};
    T_OK(sl_config_init(&c, &err), &err);
    T_EQ_STR(c.server.host, "127.0.0.1");
    T_EQ_INT(c.server.port, 8080);
    T_EQ_STR(c.server.chat_template, "chatml");
    T_EQ_INT(c.limits.max_n, 16);
    struct sl_model_config *m;
    T_OK(sl_config_add_model(&c, "m", "/x.gguf", &m, &err), &err);
    T_EQ_INT(m->slots, 8);
    T_EQ_INT(m->pooling, SL_POOLING_MEAN);
    T_TRUE(m->chat_template == NULL);
    T_EQ_INT(sl_config_validate(&c, &err), 0);
    sl_config_free(&c);
}

static void config_reads_a_full_file(void)
{
    const char *y = "server:\n  host: 0.0.0.0\n  port: 9000\n  max_body_bytes: 2048\n"
                    "limits:\n  max_completion_tokens: 100\n"
                    "models:\n  small:\n    path: /m/small.gguf\n    slots: 4\n    ctx: 1024\n"
                    "    chat_template: llama3\n    pooling: last\n"
                    "  other: /m/other.gguf\n"
                    "api_keys:\n  - name: ci\n    sha256: "
                    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"
                    "    models: [small]\n";
    struct sl_config c;
    struct sl_err err = {0};
    T_OK(parse(&c, y, &err), &err);
    T_EQ_STR(c.server.host, "0.0.0.0");
    T_EQ_INT(c.server.port, 9000);
    T_EQ_INT(c.server.max_body_bytes, 2048);
    T_EQ_INT(c.limits.max_completion_tokens, 100);
    T_EQ_INT(c.n_models, 2);
    T_EQ_STR(c.models[0].name, "small");
    T_EQ_STR(c.models[0].path, "/m/small.gguf");
    T_EQ_INT(c.models[0].slots, 4);
    T_EQ_INT(c.models[0].ctx, 1024);
    T_EQ_STR(c.models[0].chat_template, "llama3");
    T_EQ_INT(c.models[0].pooling, SL_POOLING_LAST);
    T_EQ_STR(c.models[1].path, "/m/other.gguf");
    T_EQ_INT(c.models[1].slots, 8);
    T_EQ_INT(c.n_keys, 1);
    T_EQ_STR(c.keys[0].name, "ci");
    uint8_t d[SL_SHA256_LEN];
    sl_sha256("abc", 3, d);
    T_TRUE(sl_sha256_equal(d, c.keys[0].sha256));
    T_EQ_INT(c.keys[0].n_models, 1);
    T_EQ_STR(c.keys[0].models[0], "small");
    T_OK(sl_config_validate(&c, &err), &err);
    sl_config_free(&c);
}

/* Parse y, expect rc and every needle in the message. */
static void expect_error(const char *y, int rc, const char *needle1, const char *needle2)
{
    struct sl_config c;
    struct sl_err err = {0};
    int got = parse(&c, y, &err);
    if (got == 0) got = sl_config_validate(&c, &err);
    T_EQ_INT(got, rc);
    if (needle1 && !strstr(err.msg, needle1))
        T_FAIL_AT("'%s' not in message: %s", needle1, err.msg);
    if (needle2 && !strstr(err.msg, needle2))
        T_FAIL_AT("'%s' not in message: %s", needle2, err.msg);
    sl_config_free(&c);
}

static void config_rejects_unknown_keys_and_names_the_known_ones(void)
{
    expect_error("server:\n  prot: 80\n", SL_EINVAL, "line 2", "known: host, port");
    expect_error("models:\n  m:\n    path: x\n    slot: 3\n", SL_EINVAL, "unknown key 'slot'",
                 "slots");
    expect_error("serve:\n  port: 80\n", SL_EINVAL, "unknown section 'serve'", NULL);
    expect_error("routes:\n  - a\n", SL_EUNSUPPORTED, "routes", "not read by this version");
}

static void config_rejects_bad_values_with_their_range(void)
{
    expect_error("server:\n  port: 70000\n", SL_EINVAL, "port", "[0, 65535]");
    expect_error("server:\n  port: eighty\n", SL_EINVAL, "'eighty'", NULL);
    expect_error("models:\n  m:\n    path: x\n    pooling: max\n", SL_EINVAL, "none|mean|last",
                 NULL);
    expect_error("server:\n  port: [1, 2]\n", SL_EFORMAT, "server.port must be a scalar", NULL);
    expect_error("server: 8080\n", SL_EFORMAT, "server must be a mapping", NULL);
    expect_error("- a\n- b\n", SL_EFORMAT, "top level", NULL);
}

static void config_rejects_broken_yaml_with_the_line(void)
{
    expect_error("server:\n  host: [unclosed\n", SL_EFORMAT, "not valid YAML", "line");
}

static void config_checks_models_and_keys_across_the_file(void)
{
    expect_error("server:\n  port: 1\n", SL_EINVAL, "no models", NULL);
    expect_error("models:\n  m:\n    slots: 2\n", SL_EINVAL, "has no path", NULL);
    expect_error("models:\n  m:\n    path: x\n    slots: 8\n    batch: 4\n", SL_EINVAL,
                 "batch (4) must be at least", NULL);
    expect_error("models:\n  m: x\napi_keys:\n  - sha256: "
                 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
                 "    models: [other]\n",
                 SL_EINVAL, "unknown model 'other'", NULL);
    expect_error("models:\n  m: x\napi_keys:\n  - name: k\n    sha256: secret\n", SL_EINVAL,
                 "64 hex digits", "--hash-key");
    expect_error("models:\n  m: x\napi_keys:\n  - name: k\n", SL_EINVAL, "without sha256", NULL);
}

static void config_empty_file_is_all_defaults(void)
{
    struct sl_config c;
    struct sl_err err = {0};
    T_OK(parse(&c, "", &err), &err);
    T_EQ_INT(c.server.port, 8080);
    T_EQ_INT(c.n_models, 0);
    sl_config_free(&c);
}

static void config_reference_lists_every_section(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    sl_config_describe(f);
    fclose(f);
    T_TRUE(strstr(buf, "`server:`") && strstr(buf, "`limits:`") && strstr(buf, "`models.<name>:`"));
    T_TRUE(strstr(buf, "| `cache_cells` |") && strstr(buf, "`api_keys:`"));
    T_TRUE(strstr(buf, "`tasks.<name>:`") && strstr(buf, "| `temperature` | number |"));
    free(buf);
}

static void config_reads_tasks(void)
{
    const char *y = "models:\n  m: /m.gguf\n"
                    "tasks:\n"
                    "  triage:\n    kind: classify\n    model: m\n    instruction: Route it.\n"
                    "    temperature: 1.7\n    prompt_mode: plain\n"
                    "    labels:\n      - name: billing\n        description: money\n      - bug\n"
                    "    examples:\n      - {input: charged twice, label: billing}\n"
                    "  person:\n    kind: extract\n    model: m\n    max_tokens: 64\n"
                    "    schema:\n      type: object\n      properties:\n"
                    "        name: {type: string, maxLength: 8}\n"
                    "        age: {type: integer}\n        kind: {enum: [\"1\", 2, true]}\n"
                    "      required: [name]\n"
                    "  json:\n    kind: extract\n    model: m\n"
                    "    schema: '{\"type\": \"boolean\"}'\n"
                    "  greet:\n    kind: generate\n    model: m\n    prompt: \"Hi {input}\"\n";
    struct sl_config c;
    struct sl_err err = {0};
    T_OK(parse(&c, y, &err), &err);
    T_OK(sl_config_validate(&c, &err), &err);
    T_EQ_INT(c.n_tasks, 4);
    const struct sl_task_config *t = sl_config_task(&c, "triage");
    T_TRUE(t != NULL);
    T_EQ_INT(t->kind, SL_TASK_CLASSIFY);
    T_EQ_STR(t->model, "m");
    T_EQ_STR(t->instruction, "Route it.");
    T_NEAR(t->temperature, 1.7, 1e-12);
    T_EQ_INT(t->prompt_mode, 2);
    T_EQ_INT(t->n_labels, 2);
    T_EQ_STR(t->labels[0], "billing");
    T_EQ_STR(t->descriptions[0], "money");
    T_TRUE(t->descriptions[1] == NULL);
    T_EQ_STR(t->labels[1], "bug");
    T_EQ_INT(t->n_examples, 1);
    T_EQ_STR(t->ex_inputs[0], "charged twice");
    T_EQ_STR(t->ex_labels[0], "billing");
    t = sl_config_task(&c, "person");
    T_EQ_INT(t->kind, SL_TASK_EXTRACT);
    T_EQ_INT(t->max_tokens, 64);
    T_TRUE(t->grammar != NULL && t->grammar[0]);
    /* YAML scalars keep their JSON types; quoted ones stay strings */
    T_TRUE(strstr(t->schema, "\"maxLength\":8") && strstr(t->schema, "[\"1\",2,true]"));
    T_EQ_STR(sl_config_task(&c, "json")->schema, "{\"type\":\"boolean\"}");
    T_EQ_INT(sl_config_task(&c, "greet")->kind, SL_TASK_GENERATE);
    T_EQ_INT(sl_config_task(&c, "greet")->max_tokens, 256);
    T_NEAR(sl_config_task(&c, "greet")->temperature, 1.0, 0);
    T_TRUE(sl_config_task(&c, "nope") == NULL);
    sl_config_free(&c);
}

static void config_rejects_bad_tasks_at_load(void)
{
    const char *m = "models:\n  m: x\n";
    char y[1024];
#define TASK(body) (snprintf(y, sizeof y, "%stasks:\n  t:\n%s", m, body), y)
    /* an unsupported schema keyword fails at load, naming it */
    expect_error(TASK("    kind: extract\n    model: m\n    schema:\n      type: string\n"
                      "      pattern: \"^a\"\n"),
                 SL_EUNSUPPORTED, "tasks.t.schema", "pattern");
    expect_error(TASK("    kind: extract\n    model: m\n    schema: '{\"oneOf\": []}'\n"),
                 SL_EUNSUPPORTED, "oneOf", NULL);
    expect_error(TASK("    kind: extract\n    model: m\n    schema: '{bad'\n"), SL_EFORMAT,
                 "not JSON", NULL);
    expect_error(TASK("    kind: extract\n    model: m\n"), SL_EINVAL, "has no schema", NULL);
    expect_error(TASK("    model: m\n    labels: [a]\n"), SL_EINVAL, "has no kind", NULL);
    expect_error(TASK("    kind: sort\n    model: m\n"), SL_EINVAL, "classify|extract|generate",
                 NULL);
    expect_error(TASK("    kind: classify\n    labels: [a]\n"), SL_EINVAL, "has no model", NULL);
    expect_error(TASK("    kind: classify\n    model: m\n"), SL_EINVAL, "has no labels", NULL);
    expect_error(TASK("    kind: classify\n    model: m\n    labels: [a, a]\n"), SL_EINVAL,
                 "'a' twice", NULL);
    expect_error(TASK("    kind: classify\n    model: m\n    labels: [a]\n"
                      "    examples: [{input: x, label: b}]\n"),
                 SL_EINVAL, "not one of the task's labels", NULL);
    expect_error(TASK("    kind: classify\n    model: m\n    labels: [a]\n    temperature: 0\n"),
                 SL_EINVAL, "temperature", "[0.01, 100]");
    expect_error(TASK("    kind: classify\n    model: m\n    labels: [a]\n    colour: red\n"),
                 SL_EINVAL, "unknown key 'colour'", "labels, examples, schema");
    expect_error(TASK("    kind: classify\n    model: m\n    labels: [{name: a, desc: b}]\n"),
                 SL_EINVAL, "unknown key 'desc'", NULL);
    expect_error(TASK("    kind: generate\n    model: m\n"), SL_EINVAL, "has no prompt", NULL);
    expect_error(TASK("    kind: generate\n    model: m\n    prompt: x\n    labels: [a]\n"),
                 SL_EINVAL, "for classify tasks", NULL);
    expect_error(TASK("    kind: classify\n    model: other\n    labels: [a]\n"), SL_EINVAL,
                 "unknown model 'other'", NULL);
    expect_error("models:\n  m: x\ntasks: [a]\n", SL_EFORMAT, "tasks must be a mapping", NULL);
#undef TASK
}

int main(void)
{
    T_RUN(config_defaults_come_from_the_table);
    T_RUN(config_reads_a_full_file);
    T_RUN(config_rejects_unknown_keys_and_names_the_known_ones);
    T_RUN(config_rejects_bad_values_with_their_range);
    T_RUN(config_rejects_broken_yaml_with_the_line);
    T_RUN(config_checks_models_and_keys_across_the_file);
    T_RUN(config_empty_file_is_all_defaults);
    T_RUN(config_reference_lists_every_section);
    T_RUN(config_reads_tasks);
    T_RUN(config_rejects_bad_tasks_at_load);
    return t_done();
}
