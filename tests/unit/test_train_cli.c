/*
 * test_train_cli.c - `sluice train head|lm|lora` end to end on tiny inputs,
 * and its exit codes on bad usage (tools layer, through the real binary).
 */
#include <sys/wait.h>

#include "convert/synth.h"
#include "train/head.h"
#include "test.h"

static char model[320], csv[320], dir[256];

/* Run the binary with args; exit code, output of both streams in out. */
static int run(const char *args, char *out, size_t cap)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1", SL_TEST_BINARY, args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void setup(void)
{
    struct sl_err err = {0};
    struct sl_synth_params sp = sl_synth_default_params();
    snprintf(dir, sizeof dir, "%s", SL_TEST_TMP);
    snprintf(model, sizeof model, "%s/train_cli_model.gguf", dir);
    snprintf(csv, sizeof csv, "%s/train_cli.csv", dir);
    T_OK(sl_synth_write(&sp, model, NULL, NULL, &err), &err);
    FILE *f = fopen(csv, "w");
    fputs("text,label\n", f);
    static const char *const words[] = {"card", "refund", "transfer"};
    for (int i = 0; i < 30; i++) fprintf(f, "\"%s number %d, please\",%s\n", words[i % 3], i, words[i % 3]);
    fclose(f);
}

static void train_head_writes_a_loadable_head(void)
{
    char out[8192], args[4096], head[320];
    snprintf(head, sizeof head, "%s/train_cli_head.gguf", dir);
    snprintf(args, sizeof args, "train head -m %s --data %s -o %s --epochs 5 --test %s -t 2", model, csv, head, csv);
    int rc = run(args, out, sizeof out);
    T_EQ_INT(rc, 0);
    T_TRUE(strstr(out, "test: 30 examples, accuracy") != NULL);
    struct sl_head h;
    struct sl_err err = {0};
    T_OK(sl_head_load(&h, head, &err), &err);
    T_EQ_INT(h.n_out, 3);
    T_EQ_STR(h.labels[1], "refund");
    sl_head_free(&h);
    if (rc) fprintf(stderr, "%s\n", out);
}

static void train_lm_and_lora_run_end_to_end(void)
{
    char out[8192], args[4096], lm[320], ad[320];
    snprintf(lm, sizeof lm, "%s/train_cli_lm.gguf", dir);
    snprintf(ad, sizeof ad, "%s/train_cli_lora.gguf", dir);
    snprintf(args, sizeof args,
             "train lm --vocab-from %s --data %s -o %s --embd 32 --layers 1 --heads 2 --kv-heads 1 --ff 32 "
             "--steps 4 --seq 48 --batch 2 --eval-every 2 --val-frac 0.2 --type F16 --test %s --test-max 3 -t 2",
             model, csv, lm, csv);
    int rc = run(args, out, sizeof out);
    T_EQ_INT(rc, 0);
    T_TRUE(strstr(out, "test: 3 examples, exact-match accuracy") != NULL);
    if (rc) fprintf(stderr, "%s\n", out);
    snprintf(args, sizeof args,
             "train lora -m %s --data %s -o %s --rank 2 --targets q,v,down --steps 3 --seq 48 --batch 2 "
             "--test %s --test-max 2 -t 2",
             model, csv, ad, csv);
    rc = run(args, out, sizeof out);
    T_EQ_INT(rc, 0);
    T_TRUE(strstr(out, "wrote") != NULL && strstr(out, "LoRA rank 2") != NULL);
    if (rc) fprintf(stderr, "%s\n", out);
}

static void train_reports_bad_usage_and_bad_files(void)
{
    char out[8192], args[4096];
    T_EQ_INT(run("train", out, sizeof out), 2);
    T_EQ_INT(run("train bogus", out, sizeof out), 2);
    T_EQ_INT(run("train lm --data x.csv", out, sizeof out), 2);
    T_EQ_INT(run("train lora --data x.csv -o y.gguf", out, sizeof out), 2);
    snprintf(args, sizeof args, "train lora -m %s --data %s -o /dev/null --targets q,x", model, csv);
    T_EQ_INT(run(args, out, sizeof out), 2);
    snprintf(args, sizeof args, "train head -m %s --data /nonexistent.csv -o /dev/null", model);
    T_EQ_INT(run(args, out, sizeof out), 1);
    T_TRUE(strstr(out, "sluice: error: /nonexistent.csv") != NULL);
    T_EQ_INT(run("train head --help", out, sizeof out), 0);
}

int main(void)
{
    setup();
    T_RUN(train_head_writes_a_loadable_head);
    T_RUN(train_lm_and_lora_run_end_to_end);
    T_RUN(train_reports_bad_usage_and_bad_files);
    return t_done();
}
