/*
 * test_breaker.c - the circuit breaker (src/router/breaker.c) with an
 * injected clock: every transition, the window, the rate threshold.
 */
#include "router/breaker.h"
#include "test.h"

struct clk {
    int64_t now;
};

static int64_t clk_now(void *c)
{
    return ((struct clk *)c)->now;
}

static struct sl_breaker_params params(struct clk *c)
{
    struct sl_breaker_params p = sl_breaker_default_params();
    p.window = 10;
    p.window_ms = 10000;
    p.min_calls = 4;
    p.failure_rate = 0.5;
    p.cooldown_ms = 1000;
    p.half_open_max = 1;
    p.now_ms = clk_now;
    p.clock_ctx = c;
    return p;
}

static void call(struct sl_breaker *b, bool ok)
{
    T_TRUE(sl_breaker_allow(b));
    sl_breaker_record(b, ok);
}

static void breaker_stays_closed_below_min_calls(void)
{
    struct clk c = {0};
    struct sl_breaker_params p = params(&c);
    struct sl_breaker b;
    sl_breaker_init(&b, &p);
    for (int k = 0; k < 3; k++)
        call(&b, false);
    T_EQ_INT(sl_breaker_state(&b), SL_BREAKER_CLOSED);
    call(&b, false);
    T_EQ_INT(sl_breaker_state(&b), SL_BREAKER_OPEN);
    T_EQ_INT(b.n_opened, 1);
    sl_breaker_free(&b);
}

static void breaker_opens_at_the_failure_rate_not_below(void)
{
    struct clk c = {0};
    struct sl_breaker_params p = params(&c);
    struct sl_breaker b;
    sl_breaker_init(&b, &p);
    /* 6 ok, 5 bad in a window of 10 -> at the 10th: 5/10 bad = 0.5 -> open */
    for (int k = 0; k < 6; k++)
        call(&b, true);
    for (int k = 0; k < 3; k++)
        call(&b, false);
    T_EQ_INT(sl_breaker_state(&b), SL_BREAKER_CLOSED); /* 3/9 */
    call(&b, false);                                   /* 4/10 */
    T_EQ_INT(sl_breaker_state(&b), SL_BREAKER_CLOSED);
    call(&b, false); /* window drops the oldest ok: 5/10 */
    T_EQ_INT(sl_breaker_state(&b), SL_BREAKER_OPEN);
    sl_breaker_free(&b);
}

static void breaker_refuses_while_open_then_allows_one_trial(void)
{
    struct clk c = {0};
    struct sl_breaker_params p = params(&c);
    struct sl_breaker b;
    sl_breaker_init(&b, &p);
    for (int k = 0; k < 4; k++)
        call(&b, false);
    T_TRUE(!sl_breaker_allow(&b));
    c.now += 999;
    T_TRUE(!sl_breaker_allow(&b));
    c.now += 1;
    T_EQ_INT(sl_breaker_state(&b), SL_BREAKER_HALF_OPEN);
    T_TRUE(sl_breaker_allow(&b));  /* the trial */
    T_TRUE(!sl_breaker_allow(&b)); /* only one at once */
    sl_breaker_record(&b, true);
    T_EQ_INT(sl_breaker_state(&b), SL_BREAKER_CLOSED);
    T_TRUE(sl_breaker_allow(&b));
    sl_breaker_record(&b, true);
    sl_breaker_free(&b);
}

static void breaker_failed_trial_reopens_for_a_full_cooldown(void)
{
    struct clk c = {0};
    struct sl_breaker_params p = params(&c);
    struct sl_breaker b;
    sl_breaker_init(&b, &p);
    for (int k = 0; k < 4; k++)
        call(&b, false);
    c.now += 1000;
    T_TRUE(sl_breaker_allow(&b));
    sl_breaker_record(&b, false);
    T_EQ_INT(sl_breaker_state(&b), SL_BREAKER_OPEN);
    T_EQ_INT(b.n_opened, 2);
    c.now += 500;
    T_TRUE(!sl_breaker_allow(&b));
    c.now += 500;
    T_TRUE(sl_breaker_allow(&b));
    sl_breaker_record(&b, true);
    T_EQ_INT(sl_breaker_state(&b), SL_BREAKER_CLOSED);
    sl_breaker_free(&b);
}

static void breaker_forgets_failures_older_than_the_window(void)
{
    struct clk c = {0};
    struct sl_breaker_params p = params(&c);
    struct sl_breaker b;
    sl_breaker_init(&b, &p);
    for (int k = 0; k < 3; k++)
        call(&b, false);
    c.now += 20000; /* those three are now too old */
    call(&b, false);
    T_EQ_INT(sl_breaker_state(&b), SL_BREAKER_CLOSED);
    for (int k = 0; k < 3; k++)
        call(&b, false);
    T_EQ_INT(sl_breaker_state(&b), SL_BREAKER_OPEN);
    sl_breaker_free(&b);
}

static void breaker_closing_clears_the_window(void)
{
    struct clk c = {0};
    struct sl_breaker_params p = params(&c);
    struct sl_breaker b;
    sl_breaker_init(&b, &p);
    for (int k = 0; k < 4; k++)
        call(&b, false);
    c.now += 1000;
    call(&b, true); /* trial closes it */
    /* one more failure must not reopen it: the old failures are gone */
    call(&b, false);
    T_EQ_INT(sl_breaker_state(&b), SL_BREAKER_CLOSED);
    sl_breaker_free(&b);
}

static void breaker_params_are_clamped(void)
{
    struct sl_breaker_params p = sl_breaker_default_params();
    p.window = 100000;
    p.min_calls = 0;
    p.failure_rate = 7;
    p.half_open_max = 0;
    struct sl_breaker b;
    sl_breaker_init(&b, &p);
    T_EQ_INT(b.p.window, SL_BREAKER_MAX_WINDOW);
    T_EQ_INT(b.p.min_calls, 1);
    T_NEAR(b.p.failure_rate, 1.0, 0);
    T_EQ_INT(b.p.half_open_max, 1);
    T_EQ_STR(sl_breaker_state_name(SL_BREAKER_HALF_OPEN), "half-open");
    sl_breaker_free(&b);
}

int main(void)
{
    T_RUN(breaker_stays_closed_below_min_calls);
    T_RUN(breaker_opens_at_the_failure_rate_not_below);
    T_RUN(breaker_refuses_while_open_then_allows_one_trial);
    T_RUN(breaker_failed_trial_reopens_for_a_full_cooldown);
    T_RUN(breaker_forgets_failures_older_than_the_window);
    T_RUN(breaker_closing_clears_the_window);
    T_RUN(breaker_params_are_clamped);
    return t_done();
}
