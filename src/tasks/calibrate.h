/*
 * calibrate.h - temperature scaling and calibration error (tasks layer).
 *
 * A classifier's raw scores (mean token log-probabilities, one per label)
 * give probabilities softmax(score / T). Temperature scaling fits the one
 * number T on labelled examples by minimising the negative log-likelihood
 * of the true labels; it never changes which label wins, only how sure the
 * classifier says it is. Expected calibration error (ECE) measures the gap
 * between stated confidence and accuracy over 15 equal-width bins of the
 * confidence (the max probability), as in Guo et al. 2017.
 *
 * Everything here is deterministic and pure: thread-safe.
 */
#ifndef SL_CALIBRATE_H
#define SL_CALIBRATE_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

#define SL_CALIB_BINS 15
#define SL_CALIB_T_MIN 0.01f
#define SL_CALIB_T_MAX 100.0f

struct sl_calib_bin {
    double lo, hi;      /* confidence range [lo, hi) (the last bin includes 1) */
    int64_t n;          /* examples whose confidence falls here */
    double confidence;  /* their mean confidence */
    double accuracy;    /* the fraction of them that were right */
};

struct sl_calib_report {
    double ece;     /* sum over bins of n/N * |accuracy - confidence| */
    double nll;     /* mean negative log-likelihood of the true labels */
    double accuracy;
    struct sl_calib_bin bins[SL_CALIB_BINS];
};

/*
 * scores: (n, k) row-major raw label scores; truth: (n) index of the true
 * label in [0, k). Computes the report at temperature t.
 * Errors: SL_EINVAL (n or k is 0, a truth index out of range, t <= 0).
 */
int sl_calib_report(const float *scores, const int32_t *truth, size_t n, size_t k, float t,
                    struct sl_calib_report *out, struct sl_err *err);

/*
 * Fit T in [SL_CALIB_T_MIN, SL_CALIB_T_MAX] minimising the NLL: golden-section
 * search on log T (the NLL is unimodal in it for these models), then a few
 * Newton steps on log T to polish. Deterministic. *t_out gets T.
 */
int sl_calib_fit_temperature(const float *scores, const int32_t *truth, size_t n, size_t k,
                             float *t_out, struct sl_err *err);

/* The reliability table of r as a markdown table (non-empty bins), into
 * buf (at most cap bytes, NUL-terminated, truncated if short); returns buf. */
const char *sl_calib_table(const struct sl_calib_report *r, char *buf, size_t cap);

#endif
