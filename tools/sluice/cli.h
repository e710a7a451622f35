/*
 * cli.h - shared helpers of the sluice command-line front-end (tools layer).
 *
 * Exit codes: 0 success, 1 runtime error (bad file, bad model), 2 usage
 * error (bad flag or value). Errors are one line on stderr, optionally
 * followed by a "hint:" line.
 */
#ifndef SL_CLI_H
#define SL_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"

#define CLI_EXIT_ERR 1
#define CLI_EXIT_USAGE 2

/* Print "sluice: error: ..." and return CLI_EXIT_ERR. */
int cli_fail(const struct sl_err *err, const char *hint);
/* Print "sluice <cmd>: ..." usage error and return CLI_EXIT_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Options as one table per command. Values are written through dst:
 * STR -> const char *, INT -> long long, FLOAT -> double, FLAG -> bool,
 * LIST -> appends to a struct cli_list. Numbers are range-checked. */
enum cli_kind { CLI_STR, CLI_INT, CLI_FLOAT, CLI_FLAG, CLI_LIST };

#define CLI_LIST_MAX 16
struct cli_list {
    const char *v[CLI_LIST_MAX];
    size_t n;
};

struct cli_opt {
    const char *short_name; /* "-m" or NULL */
    const char *long_name;  /* "--model" */
    enum cli_kind kind;
    void *dst;
    double lo, hi;          /* INT/FLOAT range */
};

/* Parse argv[1..argc). Positional args go to pos[0..*n_pos) (at most
 * max_pos). Returns 0, CLI_EXIT_USAGE (message printed) or -1 when
 * --help was asked (usage printed to stdout). */
int cli_parse(const char *cmd, const char *usage, int argc, char **argv, const struct cli_opt *opts,
              size_t n_opts, const char **pos, int max_pos, int *n_pos);

/* Progress bar on stderr when it is a terminal: call with done/total. */
void cli_progress(const char *label, uint64_t done, uint64_t total);

int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_costs(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_extract(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_calibrate_route(int argc, char **argv);
int cmd_train_router(int argc, char **argv);
int cmd_distill(int argc, char **argv);
int cmd_promote(int argc, char **argv);

#endif
