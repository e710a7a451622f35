/*
 * test_request.c - OpenAI request JSON -> struct sl_req: defaults, every
 * accepted shape, and errors that name the parameter.
 */
#include "server/request.h"

#include <string.h>

#include "test.h"

static const struct sl_req_limits lim = {.max_n = 16, .max_inputs = 64};

static int parse(struct sl_req *r, enum sl_req_kind k, const char *body, struct sl_err *err)
{
    return sl_req_parse(r, k, body, strlen(body), &lim, err);
}

static void request_chat_gets_openai_defaults(void)
{
    struct sl_req r;
    struct sl_err err = {0};
    T_OK(parse(&r, SL_REQ_CHAT,
               "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"x\":1}",
               &err),
         &err);
    T_EQ_STR(r.model, "m");
    T_EQ_INT(r.n_msgs, 1);
    T_EQ_STR(r.msgs[0].role, "user");
    T_EQ_STR(r.msgs[0].content, "hi");
    T_EQ_INT(r.max_tokens, -1);
    T_NEAR(r.temperature, 1.0, 0);
    T_NEAR(r.top_p, 1.0, 0);
    T_EQ_INT(r.n, 1);
    T_TRUE(!r.stream && !r.logprobs && !r.has_seed);
    sl_req_free(&r);
}

static void request_chat_reads_every_sampling_field(void)
{
    struct sl_req r;
    struct sl_err err = {0};
    const char *b =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":[{\"type\":\"text\","
        "\"text\":\"a\"},"
        "{\"type\":\"text\",\"text\":\"b\"}]},{\"role\":\"assistant\",\"content\":null}],"
        "\"max_completion_tokens\":7,\"temperature\":0,\"top_p\":0.5,\"seed\":3,\"n\":2,"
        "\"stop\":[\"x\",\"y\"],\"stream\":true,\"stream_options\":{\"include_usage\":true},"
        "\"logprobs\":true,\"top_logprobs\":5,\"ignore_eos\":true}";
    T_OK(parse(&r, SL_REQ_CHAT, b, &err), &err);
    T_EQ_STR(r.msgs[0].role, "system");
    T_EQ_STR(r.msgs[0].content, "ab");
    T_EQ_STR(r.msgs[1].content, "");
    T_EQ_INT(r.max_tokens, 7);
    T_NEAR(r.temperature, 0, 0);
    T_NEAR(r.top_p, 0.5, 0);
    T_TRUE(r.has_seed);
    T_EQ_INT(r.seed, 3);
    T_EQ_INT(r.n, 2);
    T_EQ_INT(r.n_stop, 2);
    T_EQ_STR(r.stop[1], "y");
    T_TRUE(r.stream && r.include_usage && r.logprobs);
    T_EQ_INT(r.top_logprobs, 5);
    T_TRUE(r.ignore_eos);
    sl_req_free(&r);
}

/* Parse body, expect an error whose param is `param`. */
static void expect_bad(enum sl_req_kind k, const char *body, int rc, const char *param)
{
    struct sl_req r;
    struct sl_err err = {0};
    int got = parse(&r, k, body, &err);
    T_EQ_INT(got, rc);
    if (param) T_EQ_STR(r.param, param);
    T_TRUE(err.msg[0] != 0);
    sl_req_free(&r);
}

static void request_errors_name_the_parameter(void)
{
    expect_bad(SL_REQ_CHAT, "{bad", SL_EFORMAT, "");
    expect_bad(SL_REQ_CHAT, "[1,2]", SL_EFORMAT, "");
    expect_bad(SL_REQ_CHAT, "{\"messages\":[]}", SL_EINVAL, "model");
    expect_bad(SL_REQ_CHAT, "{\"model\":5,\"messages\":[]}", SL_EINVAL, "model");
    expect_bad(SL_REQ_CHAT, "{\"model\":\"m\"}", SL_EINVAL, "messages");
    expect_bad(SL_REQ_CHAT, "{\"model\":\"m\",\"messages\":[]}", SL_EINVAL, "messages");
    expect_bad(SL_REQ_CHAT,
               "{\"model\":\"m\",\"messages\":[{\"role\":\"king\",\"content\":\"x\"}]}", SL_EINVAL,
               "messages[0].role");
    expect_bad(SL_REQ_CHAT, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":7}]}",
               SL_EINVAL, "messages[0].content");
    expect_bad(SL_REQ_CHAT,
               "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_"
               "url\"}]}]}",
               SL_EINVAL, "messages[0].content");
    /* jansson refuses \u0000 unless asked: the body is not accepted JSON */
    expect_bad(SL_REQ_CHAT,
               "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}",
               SL_EFORMAT, "");
    const char *msgs = "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]";
    char b[512];
    snprintf(b, sizeof b, "{\"model\":\"m\",%s,\"temperature\":\"hot\"}", msgs);
    expect_bad(SL_REQ_CHAT, b, SL_EINVAL, "temperature");
    snprintf(b, sizeof b, "{\"model\":\"m\",%s,\"temperature\":3}", msgs);
    expect_bad(SL_REQ_CHAT, b, SL_EINVAL, "temperature");
    snprintf(b, sizeof b, "{\"model\":\"m\",%s,\"max_tokens\":-1}", msgs);
    expect_bad(SL_REQ_CHAT, b, SL_EINVAL, "max_tokens");
    snprintf(b, sizeof b, "{\"model\":\"m\",%s,\"max_tokens\":1.5}", msgs);
    expect_bad(SL_REQ_CHAT, b, SL_EINVAL, "max_tokens");
    snprintf(b, sizeof b, "{\"model\":\"m\",%s,\"n\":17}", msgs);
    expect_bad(SL_REQ_CHAT, b, SL_ERANGE, "n");
    snprintf(b, sizeof b, "{\"model\":\"m\",%s,\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", msgs);
    expect_bad(SL_REQ_CHAT, b, SL_EINVAL, "stop");
    snprintf(b, sizeof b, "{\"model\":\"m\",%s,\"stop\":[1]}", msgs);
    expect_bad(SL_REQ_CHAT, b, SL_EINVAL, "stop");
    snprintf(b, sizeof b, "{\"model\":\"m\",%s,\"top_logprobs\":3}", msgs);
    expect_bad(SL_REQ_CHAT, b, SL_EINVAL, "top_logprobs");
    snprintf(b, sizeof b, "{\"model\":\"m\",%s,\"stream\":\"yes\"}", msgs);
    expect_bad(SL_REQ_CHAT, b, SL_EINVAL, "stream");
    snprintf(b, sizeof b, "{\"model\":\"m\",%s,\"model\":\"n\"}", msgs);
    expect_bad(SL_REQ_CHAT, b, SL_EFORMAT, ""); /* duplicate keys */
}

static void request_completions_take_text_ids_and_batches(void)
{
    struct sl_req r;
    struct sl_err err = {0};
    T_OK(parse(&r, SL_REQ_COMPLETION,
               "{\"model\":\"m\",\"prompt\":\"abc\",\"echo\":true,\"logprobs\":2,\"max_tokens\":0}",
               &err),
         &err);
    T_EQ_INT(r.n_prompts, 1);
    T_EQ_STR(r.prompts[0].text, "abc");
    T_TRUE(r.echo && r.logprobs);
    T_EQ_INT(r.top_logprobs, 2);
    T_EQ_INT(r.max_tokens, 0);
    sl_req_free(&r);
    T_OK(parse(&r, SL_REQ_COMPLETION, "{\"model\":\"m\",\"prompt\":[1,2,3]}", &err), &err);
    T_EQ_INT(r.n_prompts, 1);
    T_EQ_INT(r.prompts[0].n_ids, 3);
    T_EQ_INT(r.prompts[0].ids[2], 3);
    sl_req_free(&r);
    T_OK(parse(&r, SL_REQ_COMPLETION, "{\"model\":\"m\",\"prompt\":[\"a\",[5,6]],\"n\":2}", &err),
         &err);
    T_EQ_INT(r.n_prompts, 2);
    T_EQ_STR(r.prompts[0].text, "a");
    T_EQ_INT(r.prompts[1].ids[1], 6);
    sl_req_free(&r);
    expect_bad(SL_REQ_COMPLETION, "{\"model\":\"m\",\"prompt\":\"a\",\"max_tokens\":0}", SL_EINVAL,
               "max_tokens");
    expect_bad(SL_REQ_COMPLETION, "{\"model\":\"m\",\"prompt\":[1,-2]}", SL_EINVAL, "prompt");
    expect_bad(SL_REQ_COMPLETION, "{\"model\":\"m\",\"prompt\":[]}", SL_EINVAL, "prompt");
    expect_bad(SL_REQ_COMPLETION, "{\"model\":\"m\",\"prompt\":{}}", SL_EINVAL, "prompt");
    expect_bad(SL_REQ_COMPLETION,
               "{\"model\":\"m\",\"prompt\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]"
               ",\"n\":2}",
               SL_ERANGE, "n");
    expect_bad(SL_REQ_COMPLETION, "{\"model\":\"m\",\"prompt\":\"a\",\"logprobs\":true}", SL_EINVAL,
               "logprobs");
}

static void request_embeddings_read_input_and_format(void)
{
    struct sl_req r;
    struct sl_err err = {0};
    T_OK(parse(&r, SL_REQ_EMBEDDING,
               "{\"model\":\"m\",\"input\":[\"a\",\"b\"],\"encoding_format\":\"base64\"}", &err),
         &err);
    T_EQ_INT(r.n_prompts, 2);
    T_TRUE(r.base64);
    sl_req_free(&r);
    expect_bad(SL_REQ_EMBEDDING, "{\"model\":\"m\",\"input\":\"a\",\"encoding_format\":\"hex\"}",
               SL_EINVAL, "encoding_format");
    expect_bad(SL_REQ_EMBEDDING, "{\"model\":\"m\"}", SL_EINVAL, "input");
}

static void request_classify_reads_labels_and_inputs(void)
{
    struct sl_req r;
    struct sl_err err = {0};
    T_OK(parse(&r, SL_REQ_CLASSIFY,
               "{\"model\":\"m\",\"input\":[\"a\",\"b\"],\"labels\":[\"x\",{\"name\":\"y\","
               "\"description\":\"why\"}],\"instruction\":\"pick\",\"prompt_mode\":\"raw\"}",
               &err),
         &err);
    T_EQ_STR(r.model, "m");
    T_EQ_INT(r.n_prompts, 2);
    T_EQ_STR(r.prompts[1].text, "b");
    T_EQ_INT(r.n_labels, 2);
    T_EQ_STR(r.labels[1], "y");
    T_TRUE(r.label_descs[0] == NULL);
    T_EQ_STR(r.label_descs[1], "why");
    T_EQ_STR(r.instruction, "pick");
    T_EQ_INT(r.prompt_mode, SL_REQ_MODE_RAW);
    T_TRUE(r.task == NULL);
    sl_req_free(&r);

    /* a configured task: no model needed, one string input */
    T_OK(parse(&r, SL_REQ_CLASSIFY, "{\"task\":\"triage\",\"input\":\"hello\"}", &err), &err);
    T_EQ_STR(r.task, "triage");
    T_TRUE(r.model == NULL);
    T_EQ_INT(r.n_prompts, 1);
    T_EQ_STR(r.prompts[0].text, "hello");
    sl_req_free(&r);
}

static void request_extract_reads_schema(void)
{
    struct sl_req r;
    struct sl_err err = {0};
    T_OK(
        parse(&r, SL_REQ_EXTRACT,
              "{\"model\":\"m\",\"input\":\"x\",\"schema\":{\"type\":\"object\"},\"max_tokens\":9}",
              &err),
        &err);
    T_TRUE(json_is_object(r.schema));
    T_EQ_INT(r.max_tokens, 9);
    sl_req_free(&r);
}

static void request_task_errors_name_the_parameter(void)
{
    const enum sl_req_kind C = SL_REQ_CLASSIFY, X = SL_REQ_EXTRACT;
    expect_bad(C, "{\"input\":\"x\",\"labels\":[\"a\"]}", SL_EINVAL, "model");
    expect_bad(C, "{\"model\":\"m\",\"labels\":[\"a\"]}", SL_EINVAL, "input");
    expect_bad(C, "{\"model\":\"m\",\"input\":[],\"labels\":[\"a\"]}", SL_EINVAL, "input");
    expect_bad(C, "{\"model\":\"m\",\"input\":[1],\"labels\":[\"a\"]}", SL_EINVAL, "input");
    expect_bad(C, "{\"model\":\"m\",\"input\":\"x\"}", SL_EINVAL, "labels");
    expect_bad(C, "{\"model\":\"m\",\"input\":\"x\",\"labels\":[]}", SL_EINVAL, "labels");
    expect_bad(C, "{\"model\":\"m\",\"input\":\"x\",\"labels\":[\"a\",\"a\"]}", SL_EINVAL,
               "labels");
    expect_bad(C, "{\"model\":\"m\",\"input\":\"x\",\"labels\":[\"\"]}", SL_EINVAL, "labels");
    expect_bad(C, "{\"model\":\"m\",\"input\":\"x\",\"labels\":[{\"description\":\"d\"}]}",
               SL_EINVAL, "labels");
    expect_bad(C, "{\"model\":\"m\",\"input\":\"x\",\"labels\":\"a\"}", SL_EINVAL, "labels");
    expect_bad(C, "{\"model\":\"m\",\"input\":\"x\",\"labels\":[\"a\"],\"prompt_mode\":\"odd\"}",
               SL_EINVAL, "prompt_mode");
    expect_bad(C, "{\"task\":\"t\",\"input\":\"x\",\"labels\":[\"a\"]}", SL_EINVAL, "labels");
    expect_bad(C, "{\"task\":7,\"input\":\"x\"}", SL_EINVAL, "task");
    expect_bad(X, "{\"model\":\"m\",\"input\":\"x\"}", SL_EINVAL, "schema");
    expect_bad(X, "{\"model\":\"m\",\"input\":\"x\",\"schema\":3}", SL_EINVAL, "schema");
    expect_bad(X, "{\"model\":\"m\",\"input\":\"x\",\"schema\":{},\"max_tokens\":0}", SL_EINVAL,
               "max_tokens");
    char big[4096];
    size_t n = (size_t)snprintf(big, sizeof big, "{\"model\":\"m\",\"labels\":[\"a\"],\"input\":[");
    for (int i = 0; i < 65; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "%s\"x\"", i ? "," : "");
    snprintf(big + n, sizeof big - n, "]}");
    expect_bad(C, big, SL_ERANGE, "input"); /* lim.max_inputs is 64 */
}

static void request_completions_take_a_generate_task(void)
{
    struct sl_req r;
    struct sl_err err = {0};
    T_OK(parse(&r, SL_REQ_COMPLETION, "{\"task\":\"greet\",\"prompt\":\"Bob\"}", &err), &err);
    T_EQ_STR(r.task, "greet");
    T_TRUE(r.model == NULL);
    T_EQ_INT(r.n_prompts, 1);
    sl_req_free(&r);
    expect_bad(SL_REQ_COMPLETION, "{\"task\":1,\"prompt\":\"x\"}", SL_EINVAL, "task");
    expect_bad(SL_REQ_COMPLETION, "{\"prompt\":\"x\"}", SL_EINVAL, "model");
    /* chat does not read "task" */
    expect_bad(SL_REQ_CHAT, "{\"task\":\"t\",\"messages\":[]}", SL_EINVAL, "model");
}

static void request_chat_reads_response_format(void)
{
    struct sl_req r;
    struct sl_err err = {0};
    const char *m = "\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
    char b[512];
    snprintf(b, sizeof b,
             "{%s,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"p\","
             "\"schema\":{\"type\":\"object\"}}}}",
             m);
    T_OK(parse(&r, SL_REQ_CHAT, b, &err), &err);
    T_TRUE(json_is_object(r.response_schema) && !r.json_object);
    sl_req_free(&r);
    snprintf(b, sizeof b, "{%s,\"response_format\":{\"type\":\"json_object\"}}", m);
    T_OK(parse(&r, SL_REQ_CHAT, b, &err), &err);
    T_TRUE(r.json_object && !r.response_schema);
    sl_req_free(&r);
    snprintf(b, sizeof b, "{%s,\"response_format\":{\"type\":\"text\"}}", m);
    T_OK(parse(&r, SL_REQ_CHAT, b, &err), &err);
    T_TRUE(!r.json_object && !r.response_schema);
    sl_req_free(&r);
    snprintf(b, sizeof b, "{%s,\"response_format\":{\"type\":\"yaml\"}}", m);
    expect_bad(SL_REQ_CHAT, b, SL_EINVAL, "response_format.type");
    snprintf(b, sizeof b, "{%s,\"response_format\":{\"type\":\"json_schema\"}}", m);
    expect_bad(SL_REQ_CHAT, b, SL_EINVAL, "response_format.json_schema");
    snprintf(b, sizeof b,
             "{%s,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":1}}}",
             m);
    expect_bad(SL_REQ_CHAT, b, SL_EINVAL, "response_format.json_schema.schema");
}

int main(void)
{
    T_RUN(request_chat_gets_openai_defaults);
    T_RUN(request_chat_reads_every_sampling_field);
    T_RUN(request_errors_name_the_parameter);
    T_RUN(request_completions_take_text_ids_and_batches);
    T_RUN(request_embeddings_read_input_and_format);
    T_RUN(request_classify_reads_labels_and_inputs);
    T_RUN(request_extract_reads_schema);
    T_RUN(request_task_errors_name_the_parameter);
    T_RUN(request_chat_reads_response_format);
    T_RUN(request_completions_take_a_generate_task);
    return t_done();
}
