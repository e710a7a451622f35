/*
 * metrics.c - request counters and latency histograms, Prometheus text
 * format 0.0.4 (server layer). Per-model engine gauges (queue depth, batch
 * sizes, tokens) are appended by the routes from struct sl_sched_stats.
 */
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const double sl_metrics_bounds[SL_METRICS_N_BUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, INFINITY};

void sl_metrics_init(struct sl_metrics *m)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

void sl_metrics_free(struct sl_metrics *m)
{
    pthread_mutex_destroy(&m->mu);
}

void sl_metrics_request(struct sl_metrics *m, const char *route, int status, double seconds)
{
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < m->n_series && (m->series[i].status != status || strcmp(m->series[i].route, route)))
        i++;
    if (i == m->n_series && m->n_series < SL_METRICS_MAX_SERIES) {
        snprintf(m->series[i].route, sizeof m->series[i].route, "%s", route);
        m->series[i].status = status;
        m->n_series++;
    }
    if (i < m->n_series) m->series[i].count++;
    int k = 0;
    while (k < m->n_lat && strcmp(m->lat[k].route, route))
        k++;
    if (k == m->n_lat && m->n_lat < (int)(sizeof m->lat / sizeof *m->lat)) {
        snprintf(m->lat[k].route, sizeof m->lat[k].route, "%s", route);
        m->n_lat++;
    }
    if (k < m->n_lat) {
        int b = 0;
        while (b < SL_METRICS_N_BUCKETS - 1 && seconds > sl_metrics_bounds[b])
            b++;
        m->lat[k].buckets[b]++;
        m->lat[k].count++;
        m->lat[k].sum_s += seconds;
    }
    pthread_mutex_unlock(&m->mu);
}

int sl_metrics_render(struct sl_metrics *m, struct sl_buf *o)
{
    int rc = 0;
    pthread_mutex_lock(&m->mu);
    rc |= sl_buf_appendf(o, "# HELP sluice_http_requests_total HTTP requests by route and status.\n"
                            "# TYPE sluice_http_requests_total counter\n");
    for (int i = 0; i < m->n_series; i++)
        rc |= sl_buf_appendf(o, "sluice_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                             m->series[i].route, m->series[i].status,
                             (unsigned long long)m->series[i].count);
    rc |= sl_buf_appendf(
        o, "# HELP sluice_http_request_duration_seconds Time from request to last byte "
           "queued.\n# TYPE sluice_http_request_duration_seconds histogram\n");
    for (int k = 0; k < m->n_lat; k++) {
        uint64_t cum = 0;
        for (int b = 0; b < SL_METRICS_N_BUCKETS; b++) {
            cum += m->lat[k].buckets[b];
            char le[32];
            if (isinf(sl_metrics_bounds[b]))
                snprintf(le, sizeof le, "+Inf");
            else
                snprintf(le, sizeof le, "%g", sl_metrics_bounds[b]);
            rc |= sl_buf_appendf(
                o, "sluice_http_request_duration_seconds_bucket{route=\"%s\",le=\"%s\"} %llu\n",
                m->lat[k].route, le, (unsigned long long)cum);
        }
        rc |= sl_buf_appendf(o, "sluice_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n",
                             m->lat[k].route, m->lat[k].sum_s);
        rc |= sl_buf_appendf(o, "sluice_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
                             m->lat[k].route, (unsigned long long)m->lat[k].count);
    }
    pthread_mutex_unlock(&m->mu);
    return rc ? -1 : 0;
}
