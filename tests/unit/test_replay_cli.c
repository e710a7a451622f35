/*
 * test_replay_cli.c - `sluice replay` as a user meets it: exit codes
 * (0 ok, 1 bad data or a --fail-under gate, 2 bad flags), one-line errors,
 * and the JSON it writes, on a small self-made CSV.
 */
#include <sys/wait.h>

#include "test.h"

/* Runs the sluice binary with args (a shell fragment); returns the exit
 * code and leaves stderr in err_path. */
static int run(const char *args, const char *err_path)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s replay %s >/dev/null 2>%s", SL_TEST_BINARY, args, err_path);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A data set where long prompts are the ones the small tier gets wrong. */
static const char *write_data(void)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s", t_tmp_path("replay_cli.csv"));
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fprintf(f, "prompt,small,large\n");
    for (int i = 0; i < 400; i++) {
        int hard = i % 3 == 0;
        fprintf(f, "\"%s question %d\nA. x\nB. \"\"y\"\"\",%s,%s\n",
                hard ? "a long and winding multi-step algebra" : "capital", i,
                hard ? "False" : "True", (i % 7) ? "True" : "False");
    }
    fclose(f);
    return path;
}

static void replay_writes_json_and_passes_its_gate(void)
{
    const char *data = write_data();
    char args[8192];
    const char *json = t_tmp_path("replay_cli.json");
    char jpath[4096];
    snprintf(jpath, sizeof jpath, "%s", json);
    snprintf(args, sizeof args, "--data %s --json %s --iters 50 --fail-under apgr=0.6", data, jpath);
    T_EQ_INT(run(args, t_tmp_path("replay_cli.err")), 0);
    char *j = t_read_file(jpath, NULL);
    T_TRUE(j && strstr(j, "\"apgr\"") && strstr(j, "\"name\": \"random\""));
    free(j);
}

static void replay_fails_under_a_gate_it_misses(void)
{
    const char *data = write_data();
    char args[8192], errp[4096];
    snprintf(errp, sizeof errp, "%s", t_tmp_path("replay_gate.err"));
    snprintf(args, sizeof args, "--data %s --router random --fail-under apgr=0.9", data);
    T_EQ_INT(run(args, errp), 1);
    char *e = t_read_file(errp, NULL);
    T_TRUE(e && strstr(e, "apgr = 0.5 is under 0.9"));
    free(e);
    snprintf(args, sizeof args, "--data %s --fail-under nosuch=1", data);
    T_EQ_INT(run(args, errp), 2);
}

static void replay_rejects_bad_flags_and_bad_data(void)
{
    char errp[4096];
    snprintf(errp, sizeof errp, "%s", t_tmp_path("replay_bad.err"));
    T_EQ_INT(run("", errp), 2);                                 /* --data missing */
    T_EQ_INT(run("--data x.csv --router magic", errp), 2);      /* unknown router */
    T_EQ_INT(run("--data x.csv --fail-under apgr", errp), 2);   /* no value */
    T_EQ_INT(run("--data /nonexistent.csv", errp), 1);
    const char *bad = t_tmp_path("replay_bad.csv");
    FILE *f = fopen(bad, "w");
    if (f) {
        fputs("prompt,a,b\n\"unterminated,True,False\n", f);
        fclose(f);
    }
    char args[8192];
    snprintf(args, sizeof args, "--data %s", bad);
    T_EQ_INT(run(args, errp), 1);
    char *e = t_read_file(errp, NULL);
    T_TRUE(e && strstr(e, "replay_bad.csv") && strstr(e, "never closed"));
    free(e);
}

int main(void)
{
    T_RUN(replay_writes_json_and_passes_its_gate);
    T_RUN(replay_fails_under_a_gate_it_misses);
    T_RUN(replay_rejects_bad_flags_and_bad_data);
    return t_done();
}
