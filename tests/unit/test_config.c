/*
 * test_config.c - the YAML config: defaults from the option table, a full
 * file, the router sections (backends, routes, privacy, log, costs), and
 * errors that name the line, the key and what was expected.
 */
#include "config/config.h"

#include <string.h>

#include "router/privacy.h"
#include "store/costs.h"
#include "store/store.h"
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
    expect_error("routes:\n  - a\n", SL_EFORMAT, "routes must be a mapping", NULL);
    expect_error("costz:\n  a: 1\n", SL_EINVAL, "unknown section 'costz'", "routes, privacy");
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
    T_TRUE(strstr(buf, "`backends.<name>:`") && strstr(buf, "`backends.<name>.breaker:`"));
    T_TRUE(strstr(buf, "`routes.<name>:`") && strstr(buf, "`routes.<name>.predict:`"));
    T_TRUE(strstr(buf, "`routes.<name>.rules[].match:`") && strstr(buf, "| `metadata` |"));
    T_TRUE(strstr(buf, "`log:`") && strstr(buf, "`privacy:`") && strstr(buf, "`costs:`"));
    T_TRUE(strstr(buf, "| `remote` | boolean | - | true|false |") != NULL);
    T_TRUE(strstr(buf, "| `pii` | enum | redact | allow|redact|local-only |") != NULL);
    T_TRUE(strstr(buf, "| `lora_scale` | number | 1 |") && strstr(buf, "| `head` | string |"));
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

/* The router sections of docs/router.md, every field set away from its
 * default. Line numbers matter: errors below name them. */
static const char *full_router_yaml =
    "models:\n"                                                                        /* 1 */
    "  tiny: {path: m.gguf, lora: adapter.gguf, lora_scale: 0.5}\n"                    /* 2 */
    "tasks:\n"                                                                         /* 3 */
    "  spam: {kind: classify, model: tiny, labels: [ham, spam], head: h.gguf}\n"       /* 4 */
    "  topic: {kind: classify, model: tiny, labels: [a, b]}\n"                         /* 5 */
    "backends:\n"                                                                      /* 6 */
    "  small:   {kind: local, model: tiny, infra_per_hour: 0.40}\n"                    /* 7 */
    "  large:\n"                                                                       /* 8 */
    "    kind: openai\n"                                                               /* 9 */
    "    base_url: http://127.0.0.1:9001/v1\n"                                         /* 10 */
    "    model: gpt-4o\n"                                                              /* 11 */
    "    api_key_env: OPENAI_API_KEY\n"                                                /* 12 */
    "    timeout_ms: 30000\n"                                                          /* 13 */
    "    connect_timeout_ms: 1500\n"                                                   /* 14 */
    "    max_retries: 3\n"                                                             /* 15 */
    "    backoff_ms: 100\n"                                                            /* 16 */
    "    task_api: sluice\n"                                                           /* 17 */
    "    remote: false\n"                                                              /* 18 */
    "    input_per_mtok: 2.5\n"                                                        /* 19 */
    "    output_per_mtok: 10\n"                                                        /* 20 */
    "    breaker: {window: 10, min_calls: 4, failure_rate: 0.25, cooldown_ms: 1000}\n" /* 21 */
    "  spare: {kind: openai, base_url: \"https://api.example.com/v1\", model: m2}\n"   /* 22 */
    "routes:\n"                                                                        /* 23 */
    "  ticket-triage:\n"                                                               /* 24 */
    "    policy: rules\n"                                                              /* 25 */
    "    tiers: [small, large]\n"                                                      /* 26 */
    "    threshold: 0.7\n"                                                             /* 27 */
    "    thresholds: {spam: 0.9, topic: 0.6}\n"                                        /* 28 */
    "    fallback: [spare, large]\n"                                                   /* 29 */
    "    budget_per_day: 5.0\n"                                                        /* 30 */
    "    pii: local-only\n"                                                            /* 31 */
    "    task: spam\n"                                                                 /* 32 */
    "    rules:\n"                                                                     /* 33 */
    "      - match: {task: spam, min_chars: 10, max_chars: 2000, regex: \"(?i)refund\",\n"
    "                api_key: ops, metadata: {tier: gold, region: eu}}\n"      /* 35 */
    "        to: large\n"                                                      /* 36 */
    "      - to: small\n"                                                      /* 37 */
    "    default: large\n"                                                     /* 38 */
    "    calibration: {spam: {ece: 0.03, points: [[0.1, 0.2]]}, note: free}\n" /* 39 */
    "  guess:\n"                                                               /* 40 */
    "    policy: predict\n"                                                    /* 41 */
    "    tiers: [small, large]\n"                                              /* 42 */
    "    predict: {model: router.gguf, threshold: 0.3}\n"                      /* 43 */
    "privacy:\n"                                                               /* 44 */
    "  kinds: [email, card, insee_fr]\n"                                       /* 45 */
    "  patterns:\n"                                                            /* 46 */
    "    - {label: EMPLOYEE_ID, regex: \"E\\\\d{6}\"}\n"                       /* 47 */
    "log:\n"                                                                   /* 48 */
    "  db: postgres://u@h/db\n"                                                /* 49 */
    "  inputs: store\n"                                                        /* 50 */
    "  busy_timeout_ms: 250\n"                                                 /* 51 */
    "costs:\n"                                                                 /* 52 */
    "  currency: EUR\n"                                                        /* 53 */
    "  large_input_per_mtok: 2.5\n"                                            /* 54 */
    "  large_output_per_mtok: 10\n"                                            /* 55 */
    "  fixed_monthly: {engineering: 2000}\n";                                  /* 56 */

static void config_reads_every_router_field(void)
{
    struct sl_config c;
    struct sl_err err = {0};
    T_OK(parse(&c, full_router_yaml, &err), &err);
    T_OK(sl_config_validate(&c, &err), &err);
    /* models and tasks: the fields the router work added */
    T_EQ_STR(c.models[0].lora, "adapter.gguf");
    T_NEAR(c.models[0].lora_scale, 0.5, 0);
    T_EQ_STR(sl_config_task(&c, "spam")->head, "h.gguf");
    T_TRUE(sl_config_task(&c, "topic")->head == NULL);

    T_EQ_INT(c.n_backends, 3);
    const struct sl_backend_config *b = sl_config_backend(&c, "small");
    T_TRUE(b == &c.backends[0]);
    T_EQ_STR(b->name, "small");
    T_EQ_INT(b->kind, SL_BACKEND_KIND_LOCAL);
    T_EQ_STR(b->model, "tiny");
    T_NEAR(b->infra_per_hour, 0.40, 0);
    T_EQ_INT(b->remote, 0);
    b = sl_config_backend(&c, "large");
    T_EQ_INT(b->kind, SL_BACKEND_KIND_OPENAI);
    T_EQ_STR(b->base_url, "http://127.0.0.1:9001/v1");
    T_EQ_STR(b->model, "gpt-4o");
    T_EQ_STR(b->api_key_env, "OPENAI_API_KEY");
    T_EQ_INT(b->timeout_ms, 30000);
    T_EQ_INT(b->connect_timeout_ms, 1500);
    T_EQ_INT(b->max_retries, 3);
    T_EQ_INT(b->backoff_ms, 100);
    T_EQ_INT(b->task_api, SL_TASK_API_SLUICE);
    T_EQ_INT(b->remote, 0); /* said so, although openai */
    T_NEAR(b->input_per_mtok, 2.5, 0);
    T_NEAR(b->output_per_mtok, 10, 0);
    T_NEAR(b->infra_per_hour, 0, 0);
    T_EQ_INT(b->breaker_window, 10);
    T_EQ_INT(b->breaker_min_calls, 4);
    T_NEAR(b->breaker_failure_rate, 0.25, 0);
    T_EQ_INT(b->breaker_cooldown_ms, 1000);
    b = sl_config_backend(&c, "spare");
    T_EQ_STR(b->base_url, "https://api.example.com/v1");
    T_EQ_INT(b->remote, 1);
    T_TRUE(b->api_key_env == NULL);
    T_TRUE(sl_config_backend(&c, "nope") == NULL);
    T_TRUE(sl_config_backend(&c, NULL) == NULL);

    T_EQ_INT(c.n_routes, 2);
    const struct sl_route_config *r = sl_config_route(&c, "ticket-triage");
    T_TRUE(r == &c.routes[0]);
    T_EQ_INT(r->policy, SL_ROUTE_RULES);
    T_EQ_INT(r->n_tiers, 2);
    T_EQ_STR(r->tiers[0], "small");
    T_EQ_STR(r->tiers[1], "large");
    T_NEAR(r->threshold, 0.7, 0);
    T_EQ_INT(r->n_thresholds, 2);
    T_EQ_STR(r->threshold_tasks[1], "topic");
    T_NEAR(r->threshold_values[1], 0.6, 0);
    T_NEAR(sl_route_threshold(r, "spam"), 0.9, 0);
    T_NEAR(sl_route_threshold(r, "topic"), 0.6, 0);
    T_NEAR(sl_route_threshold(r, "other"), 0.7, 0);
    T_NEAR(sl_route_threshold(r, NULL), 0.7, 0);
    T_EQ_INT(r->n_fallback, 2);
    T_EQ_STR(r->fallback[0], "spare");
    T_EQ_STR(r->fallback[1], "large");
    T_NEAR(r->budget_per_day, 5.0, 0);
    T_EQ_INT(r->pii, SL_PII_POLICY_LOCAL_ONLY);
    T_EQ_STR(r->task, "spam");
    T_EQ_STR(r->default_tier, "large");
    T_EQ_INT(r->n_rules, 2);
    const struct sl_rule_config *u = &r->rules[0];
    T_EQ_STR(u->task, "spam");
    T_EQ_INT(u->min_chars, 10);
    T_EQ_INT(u->max_chars, 2000);
    T_EQ_STR(u->regex, "(?i)refund");
    T_EQ_STR(u->api_key, "ops");
    T_EQ_INT(u->n_meta, 2);
    T_EQ_STR(u->meta_keys[0], "tier");
    T_EQ_STR(u->meta_values[0], "gold");
    T_EQ_STR(u->meta_keys[1], "region");
    T_EQ_STR(u->meta_values[1], "eu");
    T_EQ_STR(u->to, "large");
    u = &r->rules[1]; /* no match: matches everything */
    T_TRUE(u->task == NULL && u->regex == NULL && u->api_key == NULL);
    T_EQ_INT(u->min_chars, -1);
    T_EQ_INT(u->max_chars, -1);
    T_EQ_INT(u->n_meta, 0);
    T_EQ_STR(u->to, "small");
    T_TRUE(r->predict_model == NULL);
    r = sl_config_route(&c, "guess");
    T_EQ_INT(r->policy, SL_ROUTE_PREDICT);
    T_EQ_STR(r->predict_model, "router.gguf");
    T_NEAR(r->predict_threshold, 0.3, 0);
    T_TRUE(r->default_tier == NULL);
    T_TRUE(sl_config_route(&c, "tiny") == NULL);

    T_EQ_INT(c.privacy.n_kinds, 3);
    T_EQ_STR(c.privacy.kinds[2], "insee_fr");
    T_EQ_INT(sl_config_pii_kinds(&c.privacy),
             (1u << SL_PII_EMAIL) | (1u << SL_PII_CARD) | (1u << SL_PII_INSEE_FR));
    T_EQ_INT(c.privacy.n_patterns, 1);
    T_EQ_STR(c.privacy.pattern_labels[0], "EMPLOYEE_ID");
    T_EQ_STR(c.privacy.pattern_regexes[0], "E\\d{6}");

    T_EQ_STR(c.log.db, "postgres://u@h/db");
    T_EQ_INT(c.log.inputs, SL_STORE_INPUT_STORE);
    T_EQ_INT(c.log.busy_timeout_ms, 250);

    /* costs: kept as text the store's loader reads back to the same values */
    T_TRUE(c.costs_yaml != NULL);
    struct sl_cost_config cc;
    sl_cost_config_default(&cc);
    T_OK(sl_cost_config_parse(&cc, c.costs_yaml, strlen(c.costs_yaml), &err), &err);
    T_EQ_STR(cc.currency, "EUR");
    T_NEAR(cc.large_in_per_mtok, 2.5, 0);
    T_NEAR(cc.large_out_per_mtok, 10, 0);
    T_NEAR(cc.infra_per_hour, -1, 0);
    T_EQ_INT(cc.n_fixed, 1);
    T_EQ_STR(cc.fixed[0].name, "engineering");
    T_NEAR(cc.fixed[0].monthly, 2000, 0);
    /* and `sluice costs --config` reads the server file's costs: directly */
    sl_cost_config_default(&cc);
    T_OK(sl_cost_config_parse(&cc, full_router_yaml, strlen(full_router_yaml), &err), &err);
    T_EQ_STR(cc.currency, "EUR");
    T_NEAR(cc.fixed[0].monthly, 2000, 0);
    sl_config_free(&c);
}

static void config_router_defaults(void)
{
    const char *y = "models:\n  m: x\n"
                    "backends:\n  a: {kind: local, model: m}\n"
                    "  b: {kind: openai, base_url: http://h/v1, model: g}\n"
                    "routes:\n  r: {tiers: [a, b]}\n"
                    "  q: {policy: rules, tiers: [b, a], rules: [{to: a}]}\n";
    struct sl_config c;
    struct sl_err err = {0};
    T_OK(parse(&c, y, &err), &err);
    T_OK(sl_config_validate(&c, &err), &err);
    const struct sl_backend_config *a = sl_config_backend(&c, "a"), *b = sl_config_backend(&c, "b");
    T_EQ_INT(a->remote, 0);
    T_EQ_INT(b->remote, 1);
    T_EQ_INT(b->connect_timeout_ms, 3000);
    T_EQ_INT(b->timeout_ms, 60000);
    T_EQ_INT(b->max_retries, 2);
    T_EQ_INT(b->backoff_ms, 250);
    T_EQ_INT(b->task_api, SL_TASK_API_CHAT);
    T_EQ_INT(b->breaker_window, 20);
    T_EQ_INT(b->breaker_min_calls, 5);
    T_NEAR(b->breaker_failure_rate, 0.5, 0);
    T_EQ_INT(b->breaker_cooldown_ms, 30000);
    T_NEAR(b->input_per_mtok + b->output_per_mtok + b->infra_per_hour, 0, 0);
    T_TRUE(b->api_key_env == NULL && a->base_url == NULL);
    const struct sl_route_config *r = sl_config_route(&c, "r");
    T_EQ_INT(r->policy, SL_ROUTE_CASCADE);
    T_NEAR(r->threshold, 0.8, 0);
    T_EQ_INT(r->n_thresholds, 0);
    T_NEAR(sl_route_threshold(r, "any"), 0.8, 0);
    T_NEAR(r->budget_per_day, -1, 0);
    T_EQ_INT(r->pii, SL_PII_POLICY_REDACT);
    T_TRUE(r->task == NULL && r->default_tier == NULL && r->predict_model == NULL);
    T_NEAR(r->predict_threshold, 0.5, 0);
    T_EQ_INT(r->n_fallback, 0);
    T_EQ_INT(r->n_rules, 0);
    /* a rules route without default: goes to its first tier */
    T_EQ_STR(sl_config_route(&c, "q")->default_tier, "b");
    T_TRUE(c.log.db == NULL);
    T_EQ_INT(c.log.inputs, SL_STORE_INPUT_HASH);
    T_EQ_INT(c.log.busy_timeout_ms, 5000);
    T_TRUE(c.privacy.kinds == NULL);
    T_EQ_INT(sl_config_pii_kinds(&c.privacy), sl_pii_default_params().kinds);
    T_TRUE(c.costs_yaml == NULL);
    sl_config_free(&c);

    /* privacy.h's placeholder labels name kinds too, in any case */
    T_OK(parse(&c, "privacy:\n  kinds: [SSN, de_taxid, Nino_UK]\n", &err), &err);
    T_EQ_INT(sl_config_pii_kinds(&c.privacy),
             (1u << SL_PII_SSN_US) | (1u << SL_PII_TAXID_DE) | (1u << SL_PII_NINO_UK));
    sl_config_free(&c);
    /* kinds: [] is none (patterns only), not all */
    T_OK(parse(&c, "privacy:\n  kinds: []\n", &err), &err);
    T_TRUE(c.privacy.kinds != NULL);
    T_EQ_INT(sl_config_pii_kinds(&c.privacy), 0);
    sl_config_free(&c);
    for (int k = 0; k < SL_PII_CUSTOM; k++)
        T_TRUE(sl_config_pii_kind_name(k) != NULL);
    T_TRUE(sl_config_pii_kind_name(SL_PII_CUSTOM) == NULL);
    T_EQ_STR(sl_config_pii_kind_name(SL_PII_NINO_UK), "nino_uk");
}

static void config_validates_router_configs_built_in_code(void)
{
    struct sl_config c;
    struct sl_err err = {0};
    struct sl_backend_config *b;
    struct sl_route_config *r;
    T_OK(sl_config_init(&c, &err), &err);
    T_OK(sl_config_add_model(&c, "m", "/m.gguf", NULL, &err), &err);
    T_OK(sl_config_add_backend(&c, "small", SL_BACKEND_KIND_LOCAL, &b, &err), &err);
    T_EQ_INT(b->remote, 0);
    T_TRUE((b->model = strdup("m")) != NULL);
    T_OK(sl_config_add_backend(&c, "big", SL_BACKEND_KIND_OPENAI, &b, &err), &err);
    T_EQ_INT(b->remote, 1);
    T_EQ_INT(b->breaker_window, 20);
    T_TRUE((b->base_url = strdup("http://h/v1")) != NULL);
    T_TRUE((b->model = strdup("g")) != NULL);
    T_OK(sl_config_add_route(&c, "rt", &r, &err), &err);
    T_NEAR(r->threshold, 0.8, 0);
    T_EQ_INT(r->pii, SL_PII_POLICY_REDACT);
    r->tiers[r->n_tiers++] = strdup("small");
    r->tiers[r->n_tiers++] = strdup("big");
    T_OK(sl_config_validate(&c, &err), &err);
    r->threshold_tasks[r->n_thresholds] = strdup("nope");
    r->threshold_values[r->n_thresholds++] = 0.5;
    T_EQ_INT(sl_config_validate(&c, &err), SL_EINVAL);
    T_TRUE(strstr(err.msg, "config: routes.rt.thresholds: 'nope' is not a tasks: entry") != NULL);
    sl_config_free(&c);
}

static void config_rejects_bad_backends_with_the_line(void)
{
    const char *m = "models:\n  tiny: m.gguf\nbackends:\n  small: {kind: local, model: tiny}\n";
    char y[2048];
#define BACKEND(body) (snprintf(y, sizeof y, "%s  x:\n%s", m, body), y) /* body from line 6 */
    expect_error(BACKEND("    model: tiny\n"), SL_EINVAL, "line 5", "backends.x has no kind");
    expect_error(BACKEND("    kind: grpc\n"), SL_EINVAL, "line 6", "local|openai");
    expect_error(BACKEND("    kind: local\n"), SL_EINVAL, "backends.x (local) has no model",
                 "models: entry");
    expect_error(BACKEND("    kind: local\n    model: nope\n"), SL_EINVAL, "line 7",
                 "model 'nope' is not a models: entry (known: tiny)");
    expect_error(BACKEND("    kind: local\n    model: tiny\n    base_url: http://h/v1\n"),
                 SL_EINVAL, "line 5", "are for openai backends");
    expect_error(BACKEND("    kind: openai\n    model: g\n"), SL_EINVAL, "line 5",
                 "(openai) has no base_url");
    expect_error(BACKEND("    kind: openai\n    base_url: http://h/v1\n"), SL_EINVAL, "line 5",
                 "(openai) has no model");
    expect_error(BACKEND("    kind: openai\n    base_url: h:80/v1\n    model: g\n"), SL_EINVAL,
                 "base_url 'h:80/v1'", "http:// or https://");
    expect_error(BACKEND("    kind: openai\n    task_api: grpc\n"), SL_EINVAL, "line 7",
                 "chat|sluice");
    expect_error(BACKEND("    kind: openai\n    remote: maybe\n"), SL_EINVAL, "line 7",
                 "'maybe' is not true or false");
    expect_error(BACKEND("    kind: openai\n    timeout_ms: 0\n"), SL_EINVAL, "timeout_ms",
                 "[1, 3600000]");
    expect_error(BACKEND("    kind: openai\n    input_per_mtok: -2\n"), SL_EINVAL, "input_per_mtok",
                 "not a number in [0, 1e+06]");
    expect_error(BACKEND("    kind: local\n    retries: 3\n"), SL_EINVAL, "line 7",
                 "unknown key 'retries' in backends.x (known: kind, model");
    expect_error(BACKEND("    kind: local\n    retries: 3\n"), SL_EINVAL,
                 "infra_per_hour, breaker)", NULL);
    expect_error(BACKEND("    breaker: {windw: 3}\n"), SL_EINVAL, "unknown key 'windw'",
                 "known: window, min_calls, failure_rate, cooldown_ms");
    expect_error(BACKEND("    breaker: {failure_rate: 0}\n"), SL_EINVAL, "failure_rate",
                 "[0.01, 1]");
    expect_error(
        BACKEND("    kind: local\n    model: tiny\n    breaker: {window: 3, min_calls: 9}\n"),
        SL_EINVAL, "line 5", "min_calls (9) is more than window (3)");
    expect_error(BACKEND("    kind: local\n    breaker: 5\n"), SL_EFORMAT,
                 "backends.x.breaker must be a mapping", NULL);
    expect_error("models:\n  tiny: m.gguf\nbackends: [a]\n", SL_EFORMAT,
                 "backends must be a mapping", NULL);
#undef BACKEND
}

static void config_rejects_bad_routes_with_the_line(void)
{
    /* lines 1-7: a model, a task, two backends; the route's body from line 10 */
    const char *m = "models:\n  tiny: m.gguf\n"
                    "tasks:\n  spam: {kind: classify, model: tiny, labels: [a, b]}\n"
                    "backends:\n  small: {kind: local, model: tiny}\n"
                    "  large: {kind: openai, base_url: http://h/v1, model: g}\n";
    char y[2048];
#define ROUTE(body) (snprintf(y, sizeof y, "%sroutes:\n  r:\n%s", m, body), y)
    /* tiers */
    expect_error(ROUTE("    tiers: [small, nope]\n"), SL_EINVAL, "line 10",
                 "routes.r.tiers: 'nope' is not a backend (known: small, large)");
    expect_error(ROUTE("    tiers: []\n"), SL_EINVAL, "line 10", "has 0 tiers; give 1 to 8");
    expect_error(ROUTE("    policy: cascade\n"), SL_EINVAL, "line 9", "has 0 tiers");
    expect_error(ROUTE("    tiers: [small, small]\n"), SL_EINVAL, "line 10",
                 "routes.r.tiers names 'small' twice");
    expect_error(ROUTE("    tiers: [a, b, c, d, e, f, g, h, i]\n"), SL_ERANGE, "line 10",
                 "9 names, at most 8");
    expect_error(ROUTE("    tiers: small\n"), SL_EFORMAT, "routes.r.tiers must be a list", NULL);
    expect_error(ROUTE("    tier: [small]\n"), SL_EINVAL, "unknown key 'tier' in routes.r",
                 "tiers, thresholds, fallback, rules, predict, calibration");
    /* names */
    expect_error(ROUTE("    tiers: [small]\n  r:\n    tiers: [large]\n"), SL_EINVAL, "line 11",
                 "route 'r' defined twice");
    expect_error(ROUTE("    tiers: [small]\n  tiny:\n    tiers: [large]\n"), SL_EINVAL, "line 11",
                 "route 'tiny' has the name of a models: entry");
    /* thresholds */
    expect_error(ROUTE("    tiers: [small, large]\n    threshold: 1.5\n"), SL_EINVAL, "line 11",
                 "threshold: '1.5' is not a number in [0, 1]");
    expect_error(ROUTE("    tiers: [small, large]\n    thresholds: {spam: 2}\n"), SL_EINVAL,
                 "line 11", "routes.r.thresholds.spam: threshold: '2' is not a number in [0, 1]");
    expect_error(ROUTE("    tiers: [small, large]\n    thresholds:\n      hams: 0.5\n"), SL_EINVAL,
                 "line 12", "'hams' is not a tasks: entry (known: spam)");
    expect_error(ROUTE("    tiers: [small, large]\n    thresholds: [0.5]\n"), SL_EFORMAT,
                 "routes.r.thresholds must be a mapping", NULL);
    expect_error(ROUTE("    tiers: [small, large]\n    task: hams\n"), SL_EINVAL, "line 11",
                 "routes.r.task: 'hams' is not a tasks: entry");
    /* fallback */
    expect_error(ROUTE("    tiers: [small]\n    fallback: [large, zz]\n"), SL_EINVAL, "line 11",
                 "routes.r.fallback: 'zz' is not a backend");
    expect_error(ROUTE("    tiers: [small]\n    fallback: [large, large]\n"), SL_EINVAL, "line 11",
                 "fallback names 'large' twice");
    /* enums */
    expect_error(ROUTE("    tiers: [small]\n    pii: never\n"), SL_EINVAL, "line 11",
                 "allow|redact|local-only");
    expect_error(ROUTE("    tiers: [small]\n    policy: random\n"), SL_EINVAL, "line 11",
                 "cascade|rules|predict");
    expect_error(ROUTE("    tiers: [small]\n    budget_per_day: -3\n"), SL_EINVAL, "budget_per_day",
                 "[-1, 1e+09]");
    /* rules */
    expect_error(ROUTE("    policy: rules\n    tiers: [small]\n    rules:\n"
                       "      - {match: {task: spam}, to: large}\n"),
                 SL_EINVAL, "line 13",
                 "routes.r.rules[0].to: 'large' is not one of the route's "
                 "tiers (small)");
    expect_error(ROUTE("    policy: rules\n    tiers: [small]\n    rules: [{to: small}]\n"
                       "    default: large\n"),
                 SL_EINVAL, "line 13", "routes.r.default: 'large' is not one of the route's tiers");
    expect_error(ROUTE("    policy: rules\n    tiers: [small]\n    rules:\n"
                       "      - match: {task: spam}\n"),
                 SL_EINVAL, "line 13", "routes.r.rules[0] has no to:");
    expect_error(ROUTE("    policy: rules\n    tiers: [small]\n"), SL_EINVAL, "line 9",
                 "(rules) has no rules");
    expect_error(ROUTE("    tiers: [small]\n    rules: [{to: small}]\n"), SL_EINVAL, "line 9",
                 "rules and default are for policy: rules (this route is cascade)");
    expect_error(ROUTE("    policy: rules\n    tiers: [small]\n    rules:\n"
                       "      - {match: {task: hams}, to: small}\n"),
                 SL_EINVAL, "line 13", "routes.r.rules[0].match.task: 'hams' is not a tasks:");
    expect_error(ROUTE("    policy: rules\n    tiers: [small]\n    rules:\n"
                       "      - {match: {regex: \"(?i)refund (\"}, to: small}\n"),
                 SL_EINVAL, "line 13", "rules[0].match.regex: bad regular expression");
    expect_error(ROUTE("    policy: rules\n    tiers: [small]\n    rules:\n"
                       "      - {match: {regex: \"a)\"}, to: small}\n"),
                 SL_EINVAL, "unmatched closing parenthesis", "at offset 1");
    expect_error(ROUTE("    policy: rules\n    tiers: [small]\n    rules:\n"
                       "      - {match: {min_chars: 10, max_chars: 5}, to: small}\n"),
                 SL_EINVAL, "line 13", "min_chars (10) is more than max_chars (5)");
    expect_error(ROUTE("    policy: rules\n    tiers: [small]\n    rules:\n"
                       "      - {match: {min_chars: -1}, to: small}\n"),
                 SL_EINVAL, "min_chars", "[0, 1073741824]");
    expect_error(ROUTE("    policy: rules\n    tiers: [small]\n    rules:\n"
                       "      - {match: {metadata: gold}, to: small}\n"),
                 SL_EFORMAT, "line 13", "rules[0].match.metadata must be a mapping");
    expect_error(ROUTE("    policy: rules\n    tiers: [small]\n    rules:\n"
                       "      - {match: {lang: en}, to: small}\n"),
                 SL_EINVAL, "unknown key 'lang' in routes.r.rules[0].match", "api_key, metadata)");
    expect_error(ROUTE("    policy: rules\n    tiers: [small]\n    rules:\n"
                       "      - {when: {}, to: small}\n"),
                 SL_EINVAL, "unknown key 'when'", "(known: to, match)");
    /* predict */
    expect_error(ROUTE("    policy: predict\n    tiers: [small, large]\n"
                       "    predict: {threshold: 0.4}\n"),
                 SL_EINVAL, "line 12", "(predict) has no predict.model");
    expect_error(ROUTE("    tiers: [small, large]\n    predict: {model: r.gguf}\n"), SL_EINVAL,
                 "line 11", "predict is for policy: predict (this route is cascade)");
    expect_error(ROUTE("    policy: predict\n    tiers: [small, large]\n"
                       "    predict: {model: r.gguf, threshold: 2}\n"),
                 SL_EINVAL, "line 12", "[0, 1]");
    expect_error(ROUTE("    policy: predict\n    tiers: [small, large]\n"
                       "    predict: {model: r.gguf, file: x}\n"),
                 SL_EINVAL, "unknown key 'file' in routes.r.predict", "known: model, threshold");
    /* calibration: any shape, ignored */
    struct sl_config c;
    struct sl_err err = {0};
    T_OK(parse(&c, ROUTE("    tiers: [small]\n    calibration: [1, {a: b}]\n"), &err), &err);
    sl_config_free(&c);
    expect_error("models:\n  tiny: m.gguf\nroutes:\n  r: [small]\n", SL_EFORMAT,
                 "routes.r must be a mapping", NULL);
#undef ROUTE
}

static void config_rejects_bad_privacy_log_costs_and_tasks(void)
{
    const char *m = "models:\n  tiny: m.gguf\n"; /* then a section from line 3 */
    char y[2048];
#define SEC(body) (snprintf(y, sizeof y, "%s%s", m, body), y)
    expect_error(SEC("privacy:\n  kinds: [email, passport]\n"), SL_EINVAL, "line 4",
                 "unknown kind 'passport' (known: email, phone, card, iban, ssn_us, nino_uk, "
                 "taxid_de, insee_fr)");
    expect_error(SEC("privacy:\n  kinds: [email, EMAIL]\n"), SL_EINVAL, "line 4",
                 "lists email twice");
    expect_error(SEC("privacy:\n  kinds: email\n"), SL_EFORMAT, "privacy.kinds must be a list",
                 NULL);
    expect_error(SEC("privacy:\n  patterns:\n    - {label: employee-id, regex: x}\n"), SL_EINVAL,
                 "line 5", "label 'employee-id' must be 1 to 31 of A-Z, 0-9 and _");
    expect_error(SEC("privacy:\n  patterns:\n"
                     "    - {label: ABCDEFGHIJKLMNOPQRSTUVWXYZ012345, regex: x}\n"),
                 SL_EINVAL, "line 5", "must be 1 to 31");
    expect_error(SEC("privacy:\n  patterns:\n    - {label: EMP, regex: \"E[\"}\n"), SL_EINVAL,
                 "line 5",
                 "privacy.patterns[0].regex: bad regular expression 'E[': missing "
                 "terminating ] for character class at offset 2");
    expect_error(SEC("privacy:\n  patterns:\n    - {label: EMP}\n"), SL_EINVAL, "line 5",
                 "needs a label and a regex");
    expect_error(SEC("privacy:\n  patterns:\n    - {label: EMP, regex: a}\n"
                     "    - {label: EMP, regex: b}\n"),
                 SL_EINVAL, "line 6", "label 'EMP' twice");
    expect_error(SEC("privacy:\n  patterns:\n    - {label: EMP, re: a}\n"), SL_EINVAL,
                 "unknown key 're'", "known: label, regex");
    expect_error(SEC("privacy:\n  kind: [email]\n"), SL_EINVAL, "line 4",
                 "unknown key 'kind' in privacy (known: kinds, patterns)");
    expect_error(SEC("log:\n  inputs: keep\n"), SL_EINVAL, "line 4", "store|hash|drop");
    expect_error(SEC("log:\n  path: x.db\n"), SL_EINVAL, "unknown key 'path' in log",
                 "known: db, inputs, busy_timeout_ms");
    expect_error(SEC("costs:\n  currenc: EUR\n"), SL_EINVAL, "costs line 4",
                 "unknown key 'currenc'");
    expect_error(SEC("costs:\n  large_input_per_mtok: -1\n"), SL_EINVAL, "costs line 4",
                 "not an amount");
    expect_error(SEC("costs: 5\n"), SL_EFORMAT, "line 3", "costs must be a mapping");
    expect_error(SEC("tasks:\n  g: {kind: generate, model: tiny, prompt: x, head: h.gguf}\n"),
                 SL_EINVAL, "line 4", "tasks.g: head is for classify tasks");
    expect_error("models:\n  tiny: {path: m.gguf, lora_scale: 1000}\n", SL_EINVAL, "line 2",
                 "lora_scale: '1000' is not a number in [-100, 100]");
#undef SEC
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
    T_RUN(config_reads_every_router_field);
    T_RUN(config_router_defaults);
    T_RUN(config_validates_router_configs_built_in_code);
    T_RUN(config_rejects_bad_backends_with_the_line);
    T_RUN(config_rejects_bad_routes_with_the_line);
    T_RUN(config_rejects_bad_privacy_log_costs_and_tasks);
    return t_done();
}
