/*
 * test_distill.c - distillation and promotion: the soft-target head loss
 * and its gradient (checked against finite differences), training on a
 * teacher's probabilities, and `sluice distill` / `sluice promote` end to
 * end through the real binary (a teacher that is another local model, the
 * request log as a source, promotion, refusal and rollback).
 */
#include <math.h>
#include <sys/wait.h>
#include <unistd.h>

#include "convert/synth.h"
#include "store/store.h"
#include "train/data.h"
#include "train/head.h"
#include "test.h"

#define TOL_GRAD 2e-2 /* relative: F32 forward, central differences with step 1e-2 */

/* ------------------------------------------------------------------------ */
/* the soft-target loss                                                      */
/* ------------------------------------------------------------------------ */

static void randomize(struct sl_head *h, struct sl_rng *r)
{
    int N = h->n_hidden ? h->n_hidden : h->n_out;
    for (int i = 0; i < N * h->n_in; i++) h->w1[i] = sl_rng_normal(r) * 0.5f;
    for (int i = 0; i < N; i++) h->b1[i] = sl_rng_normal(r) * 0.1f;
    if (h->n_hidden) {
        for (int i = 0; i < h->n_out * h->n_hidden; i++) h->w2[i] = sl_rng_normal(r) * 0.5f;
        for (int i = 0; i < h->n_out; i++) h->b2[i] = sl_rng_normal(r) * 0.1f;
    }
}

/* Compare the analytic gradient of every weight with central differences. */
static void check_grad(float *w, const float *gw, size_t n, struct sl_head *h, const float *x, const float *q,
                       int B, struct sl_head *g, const char *what)
{
    double num2 = 0, diff2 = 0, ana2 = 0;
    for (size_t i = 0; i < n; i++) {
        float keep = w[i];
        const float step = 1e-2f;
        w[i] = keep + step;
        double lp = sl_head_loss_grad(h, x, NULL, q, B, g);
        w[i] = keep - step;
        double lm = sl_head_loss_grad(h, x, NULL, q, B, g);
        w[i] = keep;
        double num = (lp - lm) / (2.0 * step);
        num2 += num * num;
        diff2 += (num - gw[i]) * (num - gw[i]);
        ana2 += (double)gw[i] * gw[i];
    }
    double rel = sqrt(diff2) / (sqrt(num2) + sqrt(ana2) + 1e-12);
    fprintf(stderr, "      %s: relative error %.2e\n", what, rel);
    T_TRUE(rel < TOL_GRAD);
}

static void soft_target_gradient_matches_finite_differences(void)
{
    enum { E = 6, Hd = 5, C = 3, B = 4 };
    static const char *const labels[C] = {"a", "b", "c"};
    struct sl_err err = {0};
    struct sl_rng r;
    float x[B * E], q[B * C];
    sl_rng_seed(&r, 5);
    for (int i = 0; i < B * E; i++) x[i] = sl_rng_normal(&r);
    for (int b = 0; b < B; b++) { /* a distribution per example */
        float s = 0;
        for (int c = 0; c < C; c++) s += (q[b * C + c] = sl_rng_uniform(&r) + 0.05f);
        for (int c = 0; c < C; c++) q[b * C + c] /= s;
    }
    for (int hidden = 0; hidden <= Hd; hidden += Hd) {
        struct sl_head h, g, g0;
        T_OK(sl_head_init(&h, E, hidden, labels, C, &err), &err);
        T_OK(sl_head_init(&g, E, hidden, labels, C, &err), &err);
        T_OK(sl_head_init(&g0, E, hidden, labels, C, &err), &err);
        randomize(&h, &r);
        int N = hidden ? hidden : C;
        double loss = sl_head_loss_grad(&h, x, NULL, q, B, &g0);
        T_TRUE(isfinite(loss) && loss > 0);
        check_grad(h.w1, g0.w1, (size_t)N * E, &h, x, q, B, &g, hidden ? "mlp w1" : "linear w1");
        check_grad(h.b1, g0.b1, (size_t)N, &h, x, q, B, &g, hidden ? "mlp b1" : "linear b1");
        if (hidden) {
            check_grad(h.w2, g0.w2, (size_t)C * Hd, &h, x, q, B, &g, "mlp w2");
            check_grad(h.b2, g0.b2, (size_t)C, &h, x, q, B, &g, "mlp b2");
        }
        /* one-hot soft targets are the hard loss exactly */
        float oh[B * C] = {0};
        int32_t y[B] = {0, 2, 1, 2};
        for (int b = 0; b < B; b++) oh[b * C + y[b]] = 1;
        double ls = sl_head_loss_grad(&h, x, NULL, oh, B, &g);
        double lh = sl_head_loss_grad(&h, x, y, NULL, B, &g0);
        T_NEAR(ls, lh, 1e-12);
        T_TRUE(memcmp(g.w1, g0.w1, (size_t)N * E * sizeof(float)) == 0);
        sl_head_free(&h);
        sl_head_free(&g);
        sl_head_free(&g0);
    }
}

/* A student trained on a teacher's probabilities learns the teacher's
 * decisions, including where they are not the true labels. */
static void head_trained_on_soft_labels_agrees_with_the_teacher(void)
{
    enum { E = 8, C = 3, N = 300 };
    static const char *const labels[C] = {"x", "y", "z"};
    static float x[N * E], q[N * C];
    static int32_t y[N], idx[N];
    struct sl_err err = {0};
    struct sl_rng r;
    sl_rng_seed(&r, 9);
    /* the teacher: softmax of a fixed random linear map */
    float w[C * E];
    for (int i = 0; i < C * E; i++) w[i] = sl_rng_normal(&r);
    for (int n = 0; n < N; n++) {
        float l[C], mx = -1e30f, s = 0;
        for (int i = 0; i < E; i++) x[n * E + i] = sl_rng_normal(&r);
        for (int c = 0; c < C; c++) {
            l[c] = 0;
            for (int i = 0; i < E; i++) l[c] += w[c * E + i] * x[n * E + i];
            mx = l[c] > mx ? l[c] : mx;
        }
        y[n] = 0;
        for (int c = 0; c < C; c++) {
            s += (q[n * C + c] = expf(l[c] - mx));
            if (l[c] > l[y[n]]) y[n] = c;
        }
        for (int c = 0; c < C; c++) q[n * C + c] /= s;
        idx[n] = n;
    }
    struct sl_head h;
    T_OK(sl_head_init(&h, E, 0, labels, C, &err), &err);
    struct sl_head_train_params p = sl_head_train_default_params();
    p.epochs = 60;
    p.lr = 1e-2f;
    struct sl_head_train_result res;
    T_OK(sl_head_train_soft(&h, x, y, q, idx, 240, idx + 240, 60, &p, &res, NULL, NULL, &err), &err);
    fprintf(stderr, "      held-out agreement with the teacher %.3f, soft loss %.3f\n", res.val_acc, res.val_loss);
    T_TRUE(res.val_acc >= 0.9);
    sl_head_free(&h);
}

/* ------------------------------------------------------------------------ */
/* the commands                                                              */
/* ------------------------------------------------------------------------ */

static char dir[256], model_a[320], model_b[320], pool[320], evalf[320], cfg[320], db[320];

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

static const char *const words[2] = {"refund my invoice payment", "my card was lost"};

static void write_config(const char *head_line, const char *inputs)
{
    FILE *f = fopen(cfg, "w");
    fprintf(f,
            "# distillation test config\n"
            "models:\n"
            "  teacher:\n"
            "    path: %s\n"
            "  student:\n"
            "    path: %s   # the small one\n"
            "tasks:\n"
            "  triage:\n"
            "    kind: classify\n"
            "    model: student\n"
            "%s"
            "    labels: [billing, card]\n"
            "log:\n"
            "  db: %s\n"
            "  inputs: %s\n",
            model_a, model_b, head_line, db, inputs);
    fclose(f);
}

static void setup(void)
{
    struct sl_err err = {0};
    struct sl_synth_params sp = sl_synth_default_params();
    snprintf(dir, sizeof dir, "%s", SL_TEST_TMP);
    snprintf(model_a, sizeof model_a, "%s/distill_teacher.gguf", dir);
    snprintf(model_b, sizeof model_b, "%s/distill_student.gguf", dir);
    snprintf(pool, sizeof pool, "%s/distill_pool.jsonl", dir);
    snprintf(evalf, sizeof evalf, "%s/distill_eval.jsonl", dir);
    snprintf(cfg, sizeof cfg, "%s/distill.yaml", dir);
    snprintf(db, sizeof db, "%s/distill_log.db", dir);
    sp.seed = 1;
    T_OK(sl_synth_write(&sp, model_a, NULL, NULL, &err), &err);
    sp.seed = 2;
    T_OK(sl_synth_write(&sp, model_b, NULL, NULL, &err), &err);
    FILE *f = fopen(pool, "w"), *e = fopen(evalf, "w");
    for (int i = 0; i < 40; i++) {
        fprintf(f, "{\"input\": \"%s %d\"}\n", words[i % 2], i);
        if (i < 12) fprintf(e, "{\"input\": \"%s %d\", \"label\": \"%s\"}\n", words[i % 2], 100 + i, i % 2 ? "card" : "billing");
    }
    fclose(f);
    fclose(e);
    write_config("", "store");
}

static void distill_from_a_teacher_model_then_promote_and_roll_back(void)
{
    char out[16384], args[4096], head[320];
    snprintf(head, sizeof head, "%s/distill_head.gguf", dir);
    snprintf(args, sizeof args,
             "distill %s --task triage --teacher-model teacher --pool %s --student-model student --out %s "
             "--eval %s --soft --epochs 20 -t 2",
             cfg, pool, head, evalf);
    int rc = run(args, out, sizeof out);
    T_EQ_INT(rc, 0);
    T_TRUE(strstr(out, "teacher: task triage on teacher, labelling 40 inputs") != NULL);
    T_TRUE(strstr(out, "(soft labels)") != NULL);
    T_TRUE(strstr(out, "before (the task's classifier)") != NULL && strstr(out, "after (the distilled student)"));
    if (rc) fprintf(stderr, "%s\n", out);
    struct sl_head h;
    struct sl_err err = {0};
    T_OK(sl_head_load(&h, head, &err), &err);
    T_EQ_INT(h.n_out, 2);
    T_EQ_STR(h.labels[0], "billing");
    sl_head_free(&h);

    /* promote: a head trained on the true labels is confident (label scoring
     * on a random-weight model is not): escalation at 0.9 falls, promoted */
    char good[320], lab[320];
    snprintf(good, sizeof good, "%s/distill_good_head.gguf", dir);
    snprintf(lab, sizeof lab, "%s/distill_train.jsonl", dir);
    FILE *f = fopen(lab, "w");
    for (int i = 0; i < 40; i++)
        fprintf(f, "{\"input\": \"%s %d\", \"label\": \"%s\"}\n", words[i % 2], i, i % 2 ? "card" : "billing");
    fclose(f);
    snprintf(args, sizeof args, "train head -m %s --data %s -o %s --epochs 60 --lr 0.02 --patience 0 -t 2", model_b, lab,
             good);
    T_EQ_INT(run(args, out, sizeof out), 0);
    snprintf(args, sizeof args, "promote %s --task triage --candidate %s --data %s --threshold 0.9 -t 2", cfg, good,
             evalf);
    rc = run(args, out, sizeof out);
    T_EQ_INT(rc, 0);
    T_TRUE(strstr(out, "current   (label scoring): accuracy") != NULL);
    T_TRUE(strstr(out, "promoted") != NULL);
    if (rc) fprintf(stderr, "%s\n", out);
    char *text = NULL;
    size_t len = 0;
    T_OK(sl_read_file(cfg, &text, &len, &err), &err);
    char want[400];
    snprintf(want, sizeof want, "  triage:\n    head: \"%s\"\n    kind: classify\n", good);
    T_TRUE(text && strstr(text, want) != NULL);
    T_TRUE(text && strstr(text, "# the small one") != NULL); /* comments kept */
    free(text);

    /* the same head again: escalation does not fall, nothing changes */
    T_EQ_INT(run(args, out, sizeof out), 3);
    T_TRUE(strstr(out, "the escalation rate does not fall") != NULL);
    /* the student distilled from a random-weight teacher loses accuracy */
    snprintf(args, sizeof args, "promote %s --task triage --candidate %s --data %s --threshold 0.9 -t 2", cfg, head,
             evalf);
    rc = run(args, out, sizeof out);
    fprintf(stderr, "%s", out);
    T_EQ_INT(rc, 3);
    T_TRUE(strstr(out, "kept the current classifier") != NULL);

    /* rollback restores the config from before the promotion */
    snprintf(args, sizeof args, "promote %s --rollback", cfg);
    T_EQ_INT(run(args, out, sizeof out), 0);
    T_OK(sl_read_file(cfg, &text, &len, &err), &err);
    T_TRUE(text && strstr(text, "head:") == NULL);
    free(text);
    T_EQ_INT(run(args, out, sizeof out), 1); /* nothing left to roll back */

    /* a config that already names a head: the line is replaced in place */
    char line[400];
    snprintf(line, sizeof line, "    head: %s   # the distilled one\n", head);
    write_config(line, "store");
    snprintf(args, sizeof args, "promote %s --task triage --candidate %s --data %s --threshold 0.9 --max-drop 100 -t 2",
             cfg, good, evalf);
    rc = run(args, out, sizeof out);
    T_EQ_INT(rc, 0);
    if (rc) fprintf(stderr, "%s\n", out);
    T_OK(sl_read_file(cfg, &text, &len, &err), &err);
    snprintf(want, sizeof want, "    model: student\n    head: \"%s\"   # the distilled one\n    labels:", good);
    T_TRUE(text && strstr(text, want) != NULL);
    free(text);
    write_config("", "store");
}

static void distill_from_the_log_uses_escalated_requests(void)
{
    char out[16384], args[4096], head[320];
    struct sl_err err = {0};
    struct sl_store s;
    struct sl_store_params p = sl_store_default_params();
    snprintf(head, sizeof head, "%s/distill_log_head.gguf", dir);
    unlink(db);
    p.input = SL_STORE_INPUT_STORE;
    T_OK(sl_store_sqlite_open(&s, db, &p, &err), &err);
    for (int i = 0; i < 30; i++) {
        char id[32], input[64];
        snprintf(id, sizeof id, "r%d", i);
        snprintf(input, sizeof input, "%s %d", words[i % 2], i);
        struct sl_store_request r = {0};
        r.id = id;
        r.ts_ms = 1800000000000LL + i;
        r.route = "triage-route";
        r.decision = i < 24 ? "escalated" : "local";
        r.confidence = 0.9;
        r.input = input;
        r.output = i % 2 ? "card" : "billing";
        r.status = 200;
        T_OK(s.iface->log_request(s.ctx, &r, &err), &err);
    }
    T_OK(s.iface->feedback(s.ctx, "r0", "card", &err), &err);
    s.iface->close(s.ctx);
    snprintf(args, sizeof args,
             "distill %s --task triage --from-log --route triage-route --student-model student --out %s --epochs 5 "
             "--eval %s -t 2",
             cfg, head, evalf);
    int rc = run(args, out, sizeof out);
    T_EQ_INT(rc, 0);
    T_TRUE(strstr(out, "after (the distilled student)") != NULL && strstr(out, "accuracy   agreement") == NULL);
    T_TRUE(strstr(out, "log: 24 escalated requests on route triage-route; 24 with a usable label (1 from feedback)") !=
           NULL);
    if (rc) fprintf(stderr, "%s\n", out);

    /* a log that keeps only hashes cannot teach */
    unlink(db);
    p.input = SL_STORE_INPUT_HASH;
    T_OK(sl_store_sqlite_open(&s, db, &p, &err), &err);
    struct sl_store_request r = {0};
    r.id = "h1";
    r.route = "triage-route";
    r.decision = "escalated";
    r.input = "secret text";
    r.output = "card";
    T_OK(s.iface->log_request(s.ctx, &r, &err), &err);
    s.iface->close(s.ctx);
    rc = run(args, out, sizeof out);
    T_EQ_INT(rc, 1);
    T_TRUE(strstr(out, "inputs were stored hashed") != NULL && strstr(out, "log.inputs: store") != NULL);
}

/* The teacher as a backend of the config, called through the router's
 * backends (no HTTP listener), four calls at a time. */
static void distill_from_a_router_backend(void)
{
    char out[16384], args[4096], head[320], rcfg[320];
    snprintf(head, sizeof head, "%s/distill_backend_head.gguf", dir);
    snprintf(rcfg, sizeof rcfg, "%s/distill_router.yaml", dir);
    FILE *f = fopen(rcfg, "w");
    fprintf(f,
            "models:\n  teacher: {path: %s}\n  student: {path: %s}\n"
            "tasks:\n  triage: {kind: classify, model: student, labels: [billing, card]}\n"
            "backends:\n  big: {kind: local, model: teacher}\n  small: {kind: local, model: student}\n"
            "routes:\n  r: {policy: cascade, tiers: [small, big]}\n",
            model_a, model_b);
    fclose(f);
    snprintf(args, sizeof args,
             "distill %s --task triage --teacher big --concurrency 3 --pool %s --student-model student --out %s "
             "--soft --eval %s --epochs 5 -t 2",
             rcfg, pool, head, evalf);
    int rc = run(args, out, sizeof out);
    T_EQ_INT(rc, 0);
    T_TRUE(strstr(out, "teacher: task triage on backend big, labelling 40 inputs, 3 at a time") != NULL);
    T_TRUE(strstr(out, "after (the distilled student)") != NULL);
    if (rc) fprintf(stderr, "%s\n", out);
    snprintf(args, sizeof args, "distill %s --task triage --teacher nope --pool %s --student-model student --out %s",
             rcfg, pool, head);
    T_EQ_INT(run(args, out, sizeof out), 1);
    T_TRUE(strstr(out, "--teacher 'nope' is not a backend") != NULL);
}

static void distill_reports_bad_usage(void)
{
    char out[8192], args[4096];
    T_EQ_INT(run("distill", out, sizeof out), 2);
    snprintf(args, sizeof args, "distill %s --task triage --student-model student --out x.gguf", cfg);
    T_EQ_INT(run(args, out, sizeof out), 2); /* neither --pool nor --from-log */
    snprintf(args, sizeof args, "distill %s --task nope --pool %s --teacher-model teacher --student-model student --out x.gguf",
             cfg, pool);
    T_EQ_INT(run(args, out, sizeof out), 1);
    T_TRUE(strstr(out, "no classify task 'nope'") != NULL);
    T_EQ_INT(run("promote", out, sizeof out), 2);
}

int main(void)
{
    T_RUN(soft_target_gradient_matches_finite_differences);
    T_RUN(head_trained_on_soft_labels_agrees_with_the_teacher);
    setup();
    T_RUN(distill_from_a_teacher_model_then_promote_and_roll_back);
    T_RUN(distill_from_the_log_uses_escalated_requests);
    T_RUN(distill_from_a_router_backend);
    T_RUN(distill_reports_bad_usage);
    return t_done();
}
