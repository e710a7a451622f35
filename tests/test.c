/*
 * test.c - the small runtime behind test.h.
 */
#include "test.h"

#include <sys/stat.h>
#include <unistd.h>

int t_failures, t_checks, t_skipped, t_ran;
const char *t_current = "";

const char *t_assets(void)
{
    static char dir[4096];
    const char *env = getenv("SLUICE_ASSETS");
    struct stat st;
    snprintf(dir, sizeof dir, "%s", env && *env ? env : SL_TEST_ASSETS);
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return NULL;
    return dir;
}

const char *t_asset(const char *rel)
{
    static char path[4096];
    const char *dir = t_assets();
    if (!dir) return NULL;
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    return path;
}

void t_skip(const char *why)
{
    fprintf(stderr, "SKIP %s: %s\n", t_current, why);
    t_skipped++;
}

char *t_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) goto out;
    buf = malloc((size_t)n + 1);
    if (!buf) goto out;
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
        goto out;
    }
    buf[n] = 0;
    if (len) *len = (size_t)n;
out:
    fclose(f);
    return buf;
}

const char *t_tmp_path(const char *name)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/tmp-%d-%s", SL_TEST_TMP, (int)getpid(), name);
    return path;
}

int t_done(void)
{
    int passed = t_ran - t_skipped;
    fprintf(stderr, "%d checks, %d tests, %d failures, %d skipped\n", t_checks, t_ran, t_failures,
            t_skipped);
    if (t_failures) return 1;
    if (t_ran > 0 && passed <= 0) return 77;
    return 0;
}
