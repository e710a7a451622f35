/*
 * main.c - the sluice command: dispatch to subcommands (tools layer).
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define SLUICE_VERSION "0.1.0"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"run", cmd_run, "generate text from a prompt (or a chat message with --chat)"},
    {"classify", cmd_classify, "classify JSONL/CSV rows by scoring labels; calibrated probabilities"},
    {"extract", cmd_extract, "JSON Schema-constrained extraction from JSONL/CSV rows, with confidence"},
    {"calibrate", cmd_calibrate, "fit a classification temperature on labelled rows; ECE before/after"},
    {"serve", cmd_serve, "serve models over an OpenAI-compatible HTTP API (docs/server.md)"},
    {"info", cmd_info, "describe a GGUF model: architecture, sizes, types, tokenizer, template"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"logits", cmd_logits, "write raw float32 logits of a token sequence to a file"},
    {"convert", cmd_convert, "llama2.c checkpoints and Hugging Face tokenizers to GGUF"},
    {"quantize", cmd_quantize, "re-write a model with its weights in another type (Q4_K_M, Q8_0, ...)"},
    {"bench", cmd_bench, "prompt and generation speed, and the memory-bandwidth limit"},
    {"costs", cmd_costs, "cost by route, model or day from a request log, and savings"},
    {"eval", cmd_eval, "measure a route and each of its tiers on labelled examples, live (docs/eval.md)"},
    {"compare", cmd_compare, "two routes or configs on the same examples, side by side"},
    {"replay", cmd_replay, "evaluate routers on recorded answers (RouteLLM data): APGR, CPT, cost saving"},
    {"train-router", cmd_train_router, "train a predict route's router from eval results: AUC, APGR, CPT"},
    {"train", cmd_train, "train a classification head, a small llama model, or a LoRA adapter"},
    {"distill", cmd_distill, "train a student head from a teacher's labels (a model, or the request log)"},
    {"promote", cmd_promote, "replace a task's head if quality holds and escalation falls; --rollback"},
    {"synth", cmd_synth, "write a model of a given shape with random weights (benchmarks, tests)"},
};

static void usage(FILE *f)
{
    fprintf(f, "sluice %s - small models in production, large ones when needed\n\n"
               "usage: sluice <command> [options]   (sluice <command> --help)\n\ncommands:\n",
            SLUICE_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("sluice %s\n", SLUICE_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "sluice: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return CLI_EXIT_USAGE;
}
