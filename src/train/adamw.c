/*
 * adamw.c - AdamW, learning-rate schedules, gradient clipping, early stopping
 * (train layer). See adamw.h.
 */
#include "adamw.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct sl_adamw_params sl_adamw_default_params(void)
{
    return (struct sl_adamw_params){.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                                    .weight_decay = 0.0f, .clip_norm = 1.0f};
}

void sl_adamw_init(struct sl_adamw *o, const struct sl_adamw_params *p)
{
    memset(o, 0, sizeof *o);
    o->params = p ? *p : sl_adamw_default_params();
}

int sl_adamw_add(struct sl_adamw *o, float *p, const float *g, size_t n, bool decay,
                 struct sl_err *err)
{
    if (o->n_groups >= SL_ADAMW_MAX_GROUPS)
        return sl_err_set(err, SL_ERANGE, "adamw: more than %d parameter groups", SL_ADAMW_MAX_GROUPS);
    struct sl_adamw_group *gr = &o->groups[o->n_groups];
    gr->m = calloc(n ? n : 1, sizeof(float));
    gr->v = calloc(n ? n : 1, sizeof(float));
    if (!gr->m || !gr->v) {
        free(gr->m);
        free(gr->v);
        gr->m = gr->v = NULL;
        return sl_err_set(err, SL_ENOMEM, "adamw: out of memory for %zu moments", n);
    }
    gr->p = p;
    gr->g = g;
    gr->n = n;
    gr->decay = decay;
    o->n_groups++;
    return 0;
}

void sl_adamw_free(struct sl_adamw *o)
{
    for (int i = 0; i < o->n_groups; i++) {
        free(o->groups[i].m);
        free(o->groups[i].v);
    }
    o->n_groups = 0;
}

double sl_adamw_grad_norm(const struct sl_adamw *o)
{
    double ss = 0;
    for (int i = 0; i < o->n_groups; i++) {
        const struct sl_adamw_group *gr = &o->groups[i];
        for (size_t k = 0; k < gr->n; k++) ss += (double)gr->g[k] * gr->g[k];
    }
    return sqrt(ss);
}

double sl_adamw_step(struct sl_adamw *o, float lr)
{
    const struct sl_adamw_params *pr = &o->params;
    double norm = sl_adamw_grad_norm(o);
    float gscale = 1.0f;
    if (pr->clip_norm > 0 && norm > pr->clip_norm) gscale = (float)(pr->clip_norm / norm);
    o->step++;
    /* bias corrections in double: 1 - b^t loses float precision for small t */
    float bc1 = (float)(1.0 - pow(pr->beta1, (double)o->step));
    float bc2 = (float)(1.0 - pow(pr->beta2, (double)o->step));
    for (int i = 0; i < o->n_groups; i++) {
        struct sl_adamw_group *gr = &o->groups[i];
        float wd = gr->decay ? pr->weight_decay : 0.0f;
        for (size_t k = 0; k < gr->n; k++) {
            float g = gr->g[k] * gscale;
            float m = pr->beta1 * gr->m[k] + (1.0f - pr->beta1) * g;
            float v = pr->beta2 * gr->v[k] + (1.0f - pr->beta2) * g * g;
            gr->m[k] = m;
            gr->v[k] = v;
            float mh = m / bc1, vh = v / bc2;
            gr->p[k] -= lr * (mh / (sqrtf(vh) + pr->eps) + wd * gr->p[k]);
        }
    }
    return norm;
}

/* ------------------------------------------------------------------------ */
/* schedules                                                                 */
/* ------------------------------------------------------------------------ */

float sl_lr_at(const struct sl_lr_sched *s, int64_t step)
{
    if (s->warmup > 0 && step < s->warmup) return s->lr * (float)(step + 1) / (float)s->warmup;
    if (s->kind == SL_LR_CONSTANT || s->total <= s->warmup) return s->lr;
    double frac = (double)(step - s->warmup) / (double)(s->total - s->warmup);
    if (frac > 1) frac = 1;
    double k = s->kind == SL_LR_LINEAR ? 1.0 - frac : 0.5 * (1.0 + cos(3.141592653589793 * frac));
    return (float)(s->min_lr + k * (s->lr - s->min_lr));
}

int sl_lr_schedule_parse(const char *name, enum sl_lr_schedule *out)
{
    if (!strcmp(name, "constant")) *out = SL_LR_CONSTANT;
    else if (!strcmp(name, "linear")) *out = SL_LR_LINEAR;
    else if (!strcmp(name, "cosine")) *out = SL_LR_COSINE;
    else return SL_EINVAL;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* early stopping                                                            */
/* ------------------------------------------------------------------------ */

void sl_early_stop_init(struct sl_early_stop *e, int patience, double min_delta)
{
    e->patience = patience;
    e->min_delta = min_delta;
    e->best = INFINITY;
    e->best_at = -1;
    e->bad = 0;
}

bool sl_early_stop_update(struct sl_early_stop *e, double loss, int64_t step, bool *stop)
{
    *stop = false;
    if (loss < e->best - e->min_delta) {
        e->best = loss;
        e->best_at = step;
        e->bad = 0;
        return true;
    }
    e->bad++;
    if (e->patience > 0 && e->bad >= e->patience) *stop = true;
    return false;
}
