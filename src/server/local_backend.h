/*
 * local_backend.h - a model served by this process as a router backend
 * (server layer): the `local` kind of docs/router.md.
 *
 * complete and stream run one scheduler job (queued with the HTTP
 * requests, batched with them); embed runs embedding jobs (the model's
 * pooling, as /v1/embeddings); task runs classify/extract through the same
 * task job as /v1/classify and /v1/extract (task_job.h). Every call
 * reports machine_ms, the time its job held the engine (the infra cost),
 * and a confidence: the calibrated label probability (classify), the
 * least token probability (extract), exp(mean token log-probability) of
 * the answer (chat, when logprobs were asked for).
 *
 * Threads: every call is thread-safe (the scheduler serialises the engine).
 */
#ifndef SL_LOCAL_BACKEND_H
#define SL_LOCAL_BACKEND_H

#include "../backend/backend.h"

struct sl_server;
struct sl_served_model;

/* A backend over m, named name (copied). s and m are borrowed and must
 * outlive the backend. */
int sl_local_backend_new(struct sl_backend *out, struct sl_server *s, struct sl_served_model *m,
                         const char *name, struct sl_err *err);

#endif
