/*
 * test_train_router.c - `sluice train-router` end to end on a synthetic
 * evaluation where the small tier fails exactly on long inputs: the saved
 * router must send long inputs (with words it never saw) to the large
 * tier and keep short ones; plus the replay form and clear errors.
 */
#include <stdbool.h>
#include <sys/wait.h>

#include "router/predict.h"
#include "test.h"

static int run(const char *args, const char *out_path, const char *err_path)
{
    char cmd[36000];
    snprintf(cmd, sizeof cmd, "%s train-router %s >%s 2>%s", SL_TEST_BINARY, args, out_path, err_path);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char path_buf[8][4096];

static const char *tmp(int k, const char *name)
{
    snprintf(path_buf[k], sizeof path_buf[k], "%s", t_tmp_path(name));
    return path_buf[k];
}

/* A made-up word from a seed, so long inputs share no vocabulary. */
static void word(char *w, unsigned s)
{
    static const char *syl[] = {"ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "qu", "sa", "do"};
    int n = 2 + (int)(s % 3);
    w[0] = 0;
    for (int i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        strcat(w, syl[(s >> 16) % 12]);
    }
}

static void text_of(char *t, size_t cap, int i, bool is_long, unsigned salt)
{
    char w[16];
    int n_words = is_long ? 40 + i % 30 : 2 + i % 3;
    t[0] = 0;
    for (int k = 0; k < n_words && strlen(t) + 20 < cap; k++) {
        word(w, (unsigned)(i * 131 + k * 7) ^ salt);
        strcat(t, k ? " " : "");
        strcat(t, w);
    }
}

static const char *cfg_text =
    "# a predict route's evaluation\n"
    "models:\n"
    "  small: {path: small.gguf}\n"
    "backends:\n"
    "  small: {kind: local, model: small}\n"
    "  large: {kind: openai, base_url: \"http://127.0.0.1:9/v1\", model: big}\n"
    "routes:\n"
    "  triage:\n"
    "    tiers: [small, large]\n";

static void write_inputs(void)
{
    FILE *c = fopen(tmp(0, "tr_cfg.yaml"), "w"), *r = fopen(tmp(1, "tr_results.jsonl"), "w"),
         *d = fopen(tmp(2, "tr_data.jsonl"), "w");
    T_TRUE(c && r && d);
    if (!c || !r || !d) return;
    fputs(cfg_text, c);
    char t[4096];
    for (int i = 0; i < 300; i++) {
        bool is_long = i % 3 == 0;
        text_of(t, sizeof t, i, is_long, 0);
        fprintf(d, "{\"id\":\"q%d\",\"input\":\"%s\",\"label\":\"x\"}\n", i, t);
        fprintf(r, "{\"id\":\"q%d\",\"target\":\"small\",\"correct\":%s,\"confidence\":0.9,\"cost\":0.01}\n", i,
                is_long ? "false" : "true");
        fprintf(r, "{\"id\":\"q%d\",\"target\":\"large\",\"correct\":true,\"cost\":1}\n", i);
        fprintf(r, "{\"id\":\"q%d\",\"target\":\"route\",\"correct\":true,\"cost\":1}\n", i);
    }
    fclose(c);
    fclose(r);
    fclose(d);
}

static void train_router_sends_long_inputs_up(void)
{
    write_inputs();
    const char *out = tmp(3, "tr_router.gguf"), *so = tmp(4, "tr.out"), *se = tmp(5, "tr.err");
    char args[34000];
    snprintf(args, sizeof args, "%s --route triage --results %s --data %s --out %s --hash-dim 256 --seed 3",
             path_buf[0], path_buf[1], path_buf[2], out);
    int rc = run(args, so, se);
    T_EQ_INT(rc, 0);
    char *o = t_read_file(so, NULL);
    T_TRUE(o && strstr(o, "AUC") && strstr(o, "APGR") && strstr(o, "wrote"));
    if (o && rc == 0) fprintf(stderr, "%s", o);
    if (rc) {
        char *e = t_read_file(se, NULL);
        fprintf(stderr, "%s", e ? e : "");
        free(e);
    }
    free(o);
    struct sl_predictor *p = NULL;
    struct sl_err err = {0};
    T_OK(sl_predictor_load(&p, out, &err), &err);
    if (!p) return;
    T_EQ_INT(sl_predictor_embd_dim(p), 0);
    int long_up = 0, short_kept = 0;
    char t[4096];
    for (int i = 0; i < 40; i++) {
        text_of(t, sizeof t, i, true, 0x5a5a5a5u); /* words never seen in training */
        long_up += sl_predictor_score(p, t, strlen(t), NULL) > 0.5;
        text_of(t, sizeof t, i, false, 0x5a5a5a5u);
        short_kept += sl_predictor_score(p, t, strlen(t), NULL) < 0.5;
    }
    T_EQ_INT(long_up, 40);
    T_EQ_INT(short_kept, 40);
    sl_predictor_free(p);
}

static void train_router_reads_recorded_answers(void)
{
    const char *csv = tmp(6, "tr_replay.csv");
    FILE *f = fopen(csv, "w");
    T_TRUE(f != NULL);
    if (!f) return;
    fprintf(f, "prompt,small,large\n");
    char t[4096];
    for (int i = 0; i < 200; i++) {
        bool is_long = i % 2 == 0;
        text_of(t, sizeof t, i, is_long, 77);
        fprintf(f, "\"%s\",%s,True\n", t, is_long ? "False" : "True");
    }
    fclose(f);
    char args[34000];
    snprintf(args, sizeof args, "--replay %s --out %s --hash-dim 64", csv, tmp(3, "tr_replay.gguf"));
    T_EQ_INT(run(args, tmp(4, "tr2.out"), tmp(5, "tr2.err")), 0);
    char *o = t_read_file(path_buf[4], NULL);
    /* length tells the classes apart: AUC near 1, APGR well over random's 0.5 */
    const char *a = o ? strstr(o, "held-out): ") : NULL;
    T_TRUE(a && strtod(a + 11, NULL) > 0.95);
    const char *r = o ? strstr(o, "\nrouter ") : NULL;
    T_TRUE(r && strtod(r + 8, NULL) > 0.65);
    free(o);
}

static void train_router_errors_are_one_line(void)
{
    write_inputs();
    char args[34000];
    const char *so = tmp(4, "tr3.out"), *se = tmp(5, "tr3.err");
    snprintf(args, sizeof args, "%s --route triage --results %s --data %s", path_buf[0], path_buf[1], path_buf[2]);
    T_EQ_INT(run(args, so, se), 2); /* no --out */
    snprintf(args, sizeof args, "%s --route nope --results %s --data %s --out %s", path_buf[0], path_buf[1],
             path_buf[2], tmp(3, "x.gguf"));
    T_EQ_INT(run(args, so, se), 1);
    char *e = t_read_file(se, NULL);
    T_TRUE(e && strstr(e, "no route 'nope'"));
    free(e);
    /* ids that do not match the results */
    FILE *d = fopen(tmp(6, "tr_bad_data.jsonl"), "w");
    if (d) {
        fputs("{\"id\":\"zz\",\"input\":\"hello\"}\n", d);
        fclose(d);
    }
    snprintf(args, sizeof args, "%s --route triage --results %s --data %s --out %s", path_buf[0], path_buf[1],
             path_buf[6], path_buf[3]);
    T_EQ_INT(run(args, so, se), 1);
    e = t_read_file(se, NULL);
    T_TRUE(e && strstr(e, "usable examples") && strstr(e, "hint:"));
    free(e);
    /* --embd needs the first tier's local model file */
    snprintf(args, sizeof args, "%s --route triage --results %s --data %s --out %s --embd", path_buf[0],
             path_buf[1], path_buf[2], path_buf[3]);
    T_EQ_INT(run(args, so, se), 1);
}

int main(void)
{
    T_RUN(train_router_sends_long_inputs_up);
    T_RUN(train_router_reads_recorded_answers);
    T_RUN(train_router_errors_are_one_line);
    return t_done();
}
