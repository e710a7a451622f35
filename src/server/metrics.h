/*
 * metrics.h - counters and histograms for GET /metrics in the Prometheus
 * text format (server layer). Thread-safe: every function takes the
 * metrics' own lock.
 */
#ifndef SL_METRICS_H
#define SL_METRICS_H

#include <pthread.h>
#include <stdint.h>

#include "../base/buf.h"

#define SL_METRICS_MAX_SERIES 128
#define SL_METRICS_N_BUCKETS 14

struct sl_metrics_series { /* one (route, status) pair */
    char route[48];
    int status;
    uint64_t count;
};

struct sl_metrics_latency { /* one route's request latency */
    char route[48];
    uint64_t buckets[SL_METRICS_N_BUCKETS]; /* cumulative at render time */
    uint64_t count;
    double sum_s;
};

struct sl_metrics {
    pthread_mutex_t mu;
    struct sl_metrics_series series[SL_METRICS_MAX_SERIES];
    int n_series;
    struct sl_metrics_latency lat[32];
    int n_lat;
    uint64_t rejected_busy; /* 429s */
};

void sl_metrics_init(struct sl_metrics *m);
void sl_metrics_free(struct sl_metrics *m);
/* Count one finished request. */
void sl_metrics_request(struct sl_metrics *m, const char *route, int status, double seconds);
/* Append the request series as Prometheus text. */
int sl_metrics_render(struct sl_metrics *m, struct sl_buf *out);

/* Upper bounds of the latency buckets, seconds (the last is +Inf). */
extern const double sl_metrics_bounds[SL_METRICS_N_BUCKETS];

#endif
