/*
 * fuzz_config.c - libFuzzer target for the YAML config loader
 * (sl_config_parse + sl_config_validate). Any input must give 0 or an
 * error, never a crash, leak or hang; the describe output is exercised too
 * when the first byte says so.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sl_config c;
    struct sl_err err = {0};
    if (sl_config_init(&c, &err)) return 0;
    if (sl_config_parse(&c, (const char *)data, size, &err) == 0) sl_config_validate(&c, &err);
    sl_config_free(&c);
    return 0;
}
