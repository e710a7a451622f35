/*
 * calibrate.c - temperature scaling and expected calibration error (tasks
 * layer). See calibrate.h.
 */
#include "calibrate.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int check(const int32_t *truth, size_t n, size_t k, struct sl_err *err)
{
    if (n == 0 || k == 0) return sl_err_set(err, SL_EINVAL, "calibrate: no examples or no labels");
    for (size_t i = 0; i < n; i++)
        if (truth[i] < 0 || (size_t)truth[i] >= k)
            return sl_err_set(err, SL_EINVAL, "calibrate: example %zu has label index %d, not in [0, %zu)",
                              i, (int)truth[i], k);
    return 0;
}

/* Mean NLL at log-temperature u, and its first two derivatives in u. */
static double nll_at(const float *s, const int32_t *truth, size_t n, size_t k, double u,
                     double *d1, double *d2)
{
    double inv = exp(-u), total = 0, g = 0, h = 0;
    for (size_t i = 0; i < n; i++) {
        const float *row = s + i * k;
        double mx = -INFINITY;
        for (size_t j = 0; j < k; j++)
            if (row[j] * inv > mx) mx = row[j] * inv;
        /* z_j = s_j / T; dz_j/du = -z_j; d2z_j/du2 = z_j */
        double sum = 0, ez = 0, ez2 = 0;
        for (size_t j = 0; j < k; j++) {
            double z = row[j] * inv, e = exp(z - mx);
            sum += e;
            ez += e * z;
            ez2 += e * z * z;
        }
        double mz = ez / sum, vz = ez2 / sum - mz * mz, zt = row[truth[i]] * inv;
        total += -(zt - mx - log(sum));
        /* nll = -z_t + lse(z); d/du = z_t - E[z]; d2/du2 = -z_t + E[z] + Var[z] */
        g += zt - mz;
        h += -zt + mz + vz;
    }
    if (d1) *d1 = g / (double)n;
    if (d2) *d2 = h / (double)n;
    return total / (double)n;
}

int sl_calib_fit_temperature(const float *scores, const int32_t *truth, size_t n, size_t k,
                             float *t_out, struct sl_err *err)
{
    int rc = check(truth, n, k, err);
    if (rc) return rc;
    const double gr = (sqrt(5.0) - 1) / 2;
    double a = log(SL_CALIB_T_MIN), b = log(SL_CALIB_T_MAX);
    double x1 = b - gr * (b - a), x2 = a + gr * (b - a);
    double f1 = nll_at(scores, truth, n, k, x1, NULL, NULL);
    double f2 = nll_at(scores, truth, n, k, x2, NULL, NULL);
    for (int it = 0; it < 60 && b - a > 1e-6; it++) {
        if (f1 <= f2) {
            b = x2;
            x2 = x1;
            f2 = f1;
            x1 = b - gr * (b - a);
            f1 = nll_at(scores, truth, n, k, x1, NULL, NULL);
        } else {
            a = x1;
            x1 = x2;
            f1 = f2;
            x2 = a + gr * (b - a);
            f2 = nll_at(scores, truth, n, k, x2, NULL, NULL);
        }
    }
    double u = (a + b) / 2, fu = nll_at(scores, truth, n, k, u, NULL, NULL);
    for (int it = 0; it < 5; it++) {
        double g, h;
        nll_at(scores, truth, n, k, u, &g, &h);
        if (!(h > 0)) break;
        double un = u - g / h;
        if (un < log(SL_CALIB_T_MIN) || un > log(SL_CALIB_T_MAX)) break;
        double fn = nll_at(scores, truth, n, k, un, NULL, NULL);
        if (!(fn <= fu)) break;
        u = un;
        fu = fn;
    }
    *t_out = (float)exp(u);
    return 0;
}

int sl_calib_report(const float *scores, const int32_t *truth, size_t n, size_t k, float t,
                    struct sl_calib_report *out, struct sl_err *err)
{
    int rc = check(truth, n, k, err);
    if (rc) return rc;
    if (!(t > 0) || !isfinite(t))
        return sl_err_set(err, SL_EINVAL, "calibrate: temperature must be > 0 (got %g)", (double)t);
    memset(out, 0, sizeof *out);
    double conf_sum[SL_CALIB_BINS] = {0}, right[SL_CALIB_BINS] = {0}, nll = 0, acc = 0;
    for (int b = 0; b < SL_CALIB_BINS; b++) {
        out->bins[b].lo = (double)b / SL_CALIB_BINS;
        out->bins[b].hi = (double)(b + 1) / SL_CALIB_BINS;
    }
    for (size_t i = 0; i < n; i++) {
        const float *row = scores + i * k;
        double mx = -INFINITY, sum = 0;
        size_t best = 0;
        for (size_t j = 0; j < k; j++) {
            if (row[j] / t > mx) mx = row[j] / t;
            if (row[j] > row[best]) best = j;
        }
        for (size_t j = 0; j < k; j++) sum += exp(row[j] / t - mx);
        double conf = exp(row[best] / t - mx) / sum;
        nll += -(row[truth[i]] / t - mx - log(sum));
        int b = (int)(conf * SL_CALIB_BINS);
        if (b >= SL_CALIB_BINS) b = SL_CALIB_BINS - 1;
        if (b < 0) b = 0;
        out->bins[b].n++;
        conf_sum[b] += conf;
        right[b] += best == (size_t)truth[i];
        acc += best == (size_t)truth[i];
    }
    for (int b = 0; b < SL_CALIB_BINS; b++) {
        struct sl_calib_bin *bin = &out->bins[b];
        if (bin->n == 0) continue;
        bin->confidence = conf_sum[b] / (double)bin->n;
        bin->accuracy = right[b] / (double)bin->n;
        out->ece += (double)bin->n / (double)n * fabs(bin->accuracy - bin->confidence);
    }
    out->nll = nll / (double)n;
    out->accuracy = acc / (double)n;
    return 0;
}

const char *sl_calib_table(const struct sl_calib_report *r, char *buf, size_t cap)
{
    size_t len = 0;
    int w;
    if (cap == 0) return buf;
    buf[0] = 0;
    w = snprintf(buf, cap, "| confidence | n | mean confidence | accuracy |\n|---|---|---|---|\n");
    if (w < 0 || (size_t)w >= cap) return buf;
    len = (size_t)w;
    for (int b = 0; b < SL_CALIB_BINS; b++) {
        const struct sl_calib_bin *bin = &r->bins[b];
        if (bin->n == 0) continue;
        w = snprintf(buf + len, cap - len, "| %.2f-%.2f | %lld | %.3f | %.3f |\n", bin->lo, bin->hi,
                     (long long)bin->n, bin->confidence, bin->accuracy);
        if (w < 0 || (size_t)w >= cap - len) break;
        len += (size_t)w;
    }
    return buf;
}
