/*
 * backend.c - helpers every backend shares (backend layer): request
 * defaults, freeing a response, status names. See backend.h.
 */
#include "backend/backend.h"

#include <stdlib.h>
#include <string.h>

const char *sl_backend_status_name(enum sl_backend_status s)
{
    switch (s) {
    case SL_BACKEND_OK:
        return "ok";
    case SL_BACKEND_CONNECT:
        return "connection failed";
    case SL_BACKEND_TIMEOUT:
        return "timeout";
    case SL_BACKEND_HTTP:
        return "http error";
    case SL_BACKEND_MALFORMED:
        return "malformed response";
    case SL_BACKEND_BREAKER_OPEN:
        return "circuit breaker open";
    case SL_BACKEND_ABORTED:
        return "aborted";
    case SL_BACKEND_STREAM_CUT:
        return "stream cut";
    }
    return "?";
}

void sl_backend_req_init(struct sl_backend_req *req)
{
    memset(req, 0, sizeof *req);
    req->max_tokens = -1;
    req->temperature = -1;
    req->top_p = -1;
    req->seed = -1;
}

void sl_backend_resp_free(struct sl_backend_resp *r)
{
    free(r->id);
    free(r->model);
    free(r->content);
    free(r->finish_reason);
    for (size_t k = 0; k < r->n_logprobs; k++) {
        free(r->logprobs[k].token);
        for (int q = 0; q < r->logprobs[k].n_top; q++)
            free(r->logprobs[k].top[q].token);
    }
    free(r->logprobs);
    memset(r, 0, sizeof *r);
}

void sl_backend_task_resp_free(struct sl_backend_task_resp *r)
{
    free(r->probs);
    free(r->json);
    free(r->content);
    free(r->model);
    memset(r, 0, sizeof *r);
}
