/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The plugin's background thread: moves queued records into spool files and publishes counters. */
#define _GNU_SOURCE
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* How much longer than drain_timeout_ms ks_worker_stop() waits for the thread. */
#define JOIN_GRACE_MS 2000

struct ks_worker {
    ks_queue *q;
    ks_spool *sp;
    ks_worker_params p;
    pthread_t thread;

    /* Stop request and the backoff sleep. */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stop;

    /* Worker thread only. */
    ks_record *batch;
    size_t pending;
    char last_error[512];
    uint64_t failures_unlogged;
    uint64_t last_fail_log_ms;
    uint64_t drops_logged;
    uint64_t last_drop_log_ms;

    /* Read by other threads. */
    atomic_uint_fast64_t files_written;
    atomic_uint_fast64_t records_written;
    atomic_uint_fast64_t write_errors;
    atomic_uint_fast64_t stats_errors;
    atomic_uint_fast64_t retry_pending;
    atomic_uint_fast64_t lost_at_stop;
    atomic_int last_errno;

    /* Fed from slurmctld's threads. */
    atomic_uint_fast64_t cb_count;
    atomic_uint_fast64_t cb_sum_ns;
    atomic_uint_fast64_t cb_max_ns;
    atomic_uint_fast64_t cb_hist[KS_HIST_BUCKETS];
};

static uint64_t _now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

__attribute__((format(printf, 3, 4))) static void _log(ks_worker *w, ks_log_level level,
                                                       const char *fmt, ...) {
    char msg[768];
    va_list ap;

    if (w->p.log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    w->p.log(w->p.log_arg, level, msg);
}

void ks_worker_params_init(ks_worker_params *p, const ks_conf *c) {
    ks_conf d;

    if (c == NULL) {
        ks_conf_defaults(&d);
        c = &d;
    }
    memset(p, 0, sizeof(*p));
    p->batch_size = c->batch_size;
    p->flush_interval_ms = c->flush_interval_ms;
    p->drain_timeout_ms = c->drain_timeout_ms;
    p->stats_interval_ms = 5000;
    p->backoff_min_ms = 100;
    p->backoff_max_ms = 30000;
    p->log_interval_ms = 60000;
}

uint64_t ks_worker_bucket_bound_ns(int i) {
    if (i < 0)
        return 0;
    if (i >= KS_HIST_BUCKETS - 1)
        return UINT64_MAX;
    return (uint64_t)125 << i;
}

void ks_worker_observe_callback(ks_worker *w, uint64_t nsec) {
    uint64_t q = nsec / 125;
    int b = q == 0 ? 0 : 64 - __builtin_clzll(q);
    uint_fast64_t max;

    if (b > KS_HIST_BUCKETS - 1)
        b = KS_HIST_BUCKETS - 1;
    atomic_fetch_add_explicit(&w->cb_hist[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->cb_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->cb_sum_ns, nsec, memory_order_relaxed);
    max = atomic_load_explicit(&w->cb_max_ns, memory_order_relaxed);
    while (nsec > max && !atomic_compare_exchange_weak_explicit(
                             &w->cb_max_ns, &max, nsec, memory_order_relaxed, memory_order_relaxed))
        ;
}

void ks_worker_get_stats(ks_worker *w, ks_worker_stats *st) {
    memset(st, 0, sizeof(*st));
    ks_queue_get_stats(w->q, &st->queue);
    st->files_written = atomic_load(&w->files_written);
    st->records_written = atomic_load(&w->records_written);
    st->write_errors = atomic_load(&w->write_errors);
    st->stats_errors = atomic_load(&w->stats_errors);
    st->retry_pending = atomic_load(&w->retry_pending);
    st->lost_at_stop = atomic_load(&w->lost_at_stop);
    st->last_errno = atomic_load(&w->last_errno);
    st->callback_count = atomic_load_explicit(&w->cb_count, memory_order_relaxed);
    st->callback_sum_ns = atomic_load_explicit(&w->cb_sum_ns, memory_order_relaxed);
    st->callback_max_ns = atomic_load_explicit(&w->cb_max_ns, memory_order_relaxed);
    for (int i = 0; i < KS_HIST_BUCKETS; i++)
        st->callback_hist[i] = atomic_load_explicit(&w->cb_hist[i], memory_order_relaxed);
}

/* ------------------------------------------------------------------------------------------ */
/* Worker thread                                                                                */

static bool _stop_requested(ks_worker *w) {
    bool stop;

    pthread_mutex_lock(&w->mu);
    stop = w->stop;
    pthread_mutex_unlock(&w->mu);
    return stop;
}

/* Sleeps `ms`; returns early on a stop request when `wake_on_stop`. */
static void _sleep_ms(ks_worker *w, uint64_t ms, bool wake_on_stop) {
    struct timespec dl;

    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += (time_t)(ms / 1000);
    dl.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    while (!(wake_on_stop && w->stop))
        if (pthread_cond_timedwait(&w->cond, &w->mu, &dl) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&w->mu);
}

static json_t *_stats_json(ks_worker *w) {
    ks_worker_stats st;
    json_t *buckets = json_array(), *doc;

    ks_worker_get_stats(w, &st);
    if (buckets == NULL)
        return NULL;
    for (int i = 0; i < KS_HIST_BUCKETS; i++) {
        json_t *bound = i < KS_HIST_BUCKETS - 1
                            ? json_real((double)ks_worker_bucket_bound_ns(i) / 1000.0)
                            : json_null();
        if (json_array_append_new(buckets, json_pack("{s:o?, s:I}", "lt_usec", bound, "count",
                                                     (json_int_t)st.callback_hist[i])) != 0) {
            json_decref(buckets);
            return NULL;
        }
    }
    doc = json_pack("{s:s, s:i, s:I, s:I, s:s?, s:s?, s:I,"
                    " s:{s:I, s:I, s:I, s:I, s:I},"
                    " s:{s:I, s:I, s:I, s:I, s:I, s:s},"
                    " s:{s:I, s:I, s:I, s:o}}",
                    "format", "keystone-jobcomp-stats", "format_version", 1, "pid",
                    (json_int_t)getpid(), "time", (json_int_t)time(NULL), "plugin_version",
                    w->p.plugin_version, "slurm_version", w->p.slurm_version,
                    "stats_interval_ms", (json_int_t)w->p.stats_interval_ms, "queue", "capacity",
                    (json_int_t)st.queue.capacity, "depth", (json_int_t)st.queue.depth,
                    "high_water", (json_int_t)st.queue.high_water, "pushed",
                    (json_int_t)st.queue.pushed, "dropped", (json_int_t)st.queue.dropped, "spool",
                    "files_written", (json_int_t)st.files_written, "records_written",
                    (json_int_t)st.records_written, "write_errors", (json_int_t)st.write_errors,
                    "retry_pending", (json_int_t)st.retry_pending, "lost_at_stop",
                    (json_int_t)st.lost_at_stop, "last_error", w->last_error, "callback", "count",
                    (json_int_t)st.callback_count, "sum_ns", (json_int_t)st.callback_sum_ns,
                    "max_ns", (json_int_t)st.callback_max_ns, "buckets", buckets);
    return doc; /* "o" stole buckets, also on failure */
}

static void _write_stats(ks_worker *w) {
    json_t *doc = _stats_json(w);

    if (doc == NULL || ks_spool_replace_json(w->sp, KS_SPOOL_STATS_FILE, doc) != KS_SUCCESS)
        atomic_fetch_add(&w->stats_errors, 1);
    json_decref(doc);
}

/* Reports new drops at most once per log interval (the first ones at once). */
static void _log_drops(ks_worker *w, uint64_t now) {
    ks_queue_stats qs;

    ks_queue_get_stats(w->q, &qs);
    if (qs.dropped <= w->drops_logged)
        return;
    if (w->drops_logged != 0 && now - w->last_drop_log_ms < w->p.log_interval_ms)
        return;
    _log(w, KS_LOG_WARNING,
         "keystone: queue full: %llu job records dropped since the last report "
         "(Dropped=%llu Capacity=%llu); keystoned's reconciliation fills them in",
         (unsigned long long)(qs.dropped - w->drops_logged), (unsigned long long)qs.dropped,
         (unsigned long long)qs.capacity);
    w->drops_logged = qs.dropped;
    w->last_drop_log_ms = now;
}

/* Writes the pending batch; on failure counts, logs (rate-limited) and keeps it. */
static int _write_pending(ks_worker *w, uint64_t now, uint64_t backoff_ms) {
    uint64_t errors;

    if (ks_spool_write(w->sp, w->batch, w->pending) == KS_SUCCESS) {
        atomic_fetch_add(&w->files_written, 1);
        atomic_fetch_add(&w->records_written, w->pending);
        atomic_store(&w->retry_pending, 0);
        if (w->last_fail_log_ms != 0) {
            _log(w, KS_LOG_INFO, "keystone: spool writes recovered: File=%s Records=%zu",
                 ks_spool_last_file(w->sp), w->pending);
            w->last_fail_log_ms = 0;
            w->failures_unlogged = 0;
        }
        w->pending = 0;
        return KS_SUCCESS;
    }
    atomic_store(&w->last_errno, errno);
    errors = atomic_fetch_add(&w->write_errors, 1) + 1;
    atomic_store(&w->retry_pending, w->pending);
    snprintf(w->last_error, sizeof(w->last_error), "%s", ks_spool_last_error(w->sp));
    if (w->last_fail_log_ms == 0 || now - w->last_fail_log_ms >= w->p.log_interval_ms) {
        _log(w, KS_LOG_ERROR,
             "keystone: spool write failed: %s: keeping Records=%zu, retrying in %llu ms "
             "(Failures=%llu, %llu not logged)",
             w->last_error, w->pending, (unsigned long long)backoff_ms, (unsigned long long)errors,
             (unsigned long long)w->failures_unlogged);
        w->last_fail_log_ms = now ? now : 1;
        w->failures_unlogged = 0;
    } else {
        w->failures_unlogged++;
    }
    return KS_ERROR;
}

static void *_main(void *arg) {
    ks_worker *w = arg;
    uint64_t backoff = w->p.backoff_min_ms;
    uint64_t next_stats = _now_ms() + w->p.stats_interval_ms;
    uint64_t deadline = 0, lost;
    bool draining = false;
    ks_queue_stats qs;

    for (;;) {
        uint64_t now = _now_ms();

        if (!draining && _stop_requested(w)) {
            draining = true;
            deadline = now + w->p.drain_timeout_ms;
        }
        if (draining && now >= deadline)
            break;
        if (w->pending == 0) {
            if (!draining) {
                uint64_t wait = w->p.flush_interval_ms;
                if (next_stats > now && next_stats - now < wait)
                    wait = next_stats - now;
                /* Returns early when a full batch is queued or the queue is closed. */
                ks_queue_wait(w->q, (unsigned)wait);
            }
            w->pending = ks_queue_pop(w->q, w->batch, w->p.batch_size);
        }
        now = _now_ms();
        if (w->pending > 0) {
            if (_write_pending(w, now, backoff) == KS_SUCCESS) {
                backoff = w->p.backoff_min_ms;
            } else {
                uint64_t sleep = backoff;
                if (draining)
                    sleep = deadline > now ? (deadline - now < sleep ? deadline - now : sleep) : 0;
                /* Pop nothing meanwhile: the batch stays in order, new records wait in the
                 * queue (and are dropped, counted, if it fills up). */
                _sleep_ms(w, sleep, !draining);
                backoff = backoff * 2 > w->p.backoff_max_ms ? w->p.backoff_max_ms : backoff * 2;
            }
        } else if (draining) {
            break; /* closed and empty */
        }
        now = _now_ms();
        _log_drops(w, now);
        if (now >= next_stats) {
            _write_stats(w);
            next_stats = now + w->p.stats_interval_ms;
        }
    }

    /* The queue is closed: nothing more can arrive. */
    ks_queue_get_stats(w->q, &qs);
    lost = w->pending + qs.depth;
    atomic_store(&w->lost_at_stop, lost);
    _log_drops(w, _now_ms() + w->p.log_interval_ms);
    if (lost > 0)
        _log(w, KS_LOG_ERROR,
             "keystone: stop: %llu job records not written within DrainTimeout=%u ms (%s); "
             "keystoned's reconciliation fills them in",
             (unsigned long long)lost, w->p.drain_timeout_ms,
             w->last_error[0] ? w->last_error : "time ran out");
    _write_stats(w);
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Start and stop                                                                               */

int ks_worker_start(ks_worker **out, ks_queue *q, ks_spool *sp, const ks_worker_params *p,
                    char *err, size_t errlen) {
    ks_worker *w = NULL;
    pthread_condattr_t ca;
    sigset_t all, old;
    int e;

    *out = NULL;
    if (p->batch_size < 1 || p->flush_interval_ms < 1 || p->stats_interval_ms < 1 ||
        p->backoff_min_ms < 1 || p->backoff_max_ms < p->backoff_min_ms) {
        snprintf(err, errlen, "keystone: worker: invalid parameters");
        errno = EINVAL;
        return KS_ERROR;
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        goto fail_mem;
    w->q = q;
    w->sp = sp;
    w->p = *p;
    w->batch = malloc((size_t)p->batch_size * sizeof(*w->batch));
    if (w->batch == NULL)
        goto fail_mem;
    if ((e = pthread_mutex_init(&w->mu, NULL)) != 0) {
        free(w->batch);
        free(w);
        snprintf(err, errlen, "keystone: worker: mutex: %s", strerror(e));
        errno = e;
        return KS_ERROR;
    }
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    e = pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (e != 0) {
        pthread_mutex_destroy(&w->mu);
        free(w->batch);
        free(w);
        snprintf(err, errlen, "keystone: worker: condition variable: %s", strerror(e));
        errno = e;
        return KS_ERROR;
    }

    /* The thread inherits this mask: signals stay with slurmctld's own handling. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    e = pthread_create(&w->thread, NULL, _main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->mu);
        free(w->batch);
        free(w);
        snprintf(err, errlen, "keystone: worker: cannot start thread: %s", strerror(e));
        errno = e;
        return KS_ERROR;
    }
    pthread_setname_np(w->thread, "ks_jobcomp");
    *out = w;
    return KS_SUCCESS;

fail_mem:
    if (w != NULL)
        free(w->batch);
    free(w);
    snprintf(err, errlen, "keystone: worker: out of memory for a batch of %u records",
             p->batch_size);
    errno = ENOMEM;
    return KS_ERROR;
}

int ks_worker_stop(ks_worker *w) {
    struct timespec dl;
    uint64_t ms;
    int e;

    if (w == NULL)
        return KS_SUCCESS;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_mutex_unlock(&w->mu);
    pthread_cond_broadcast(&w->cond);
    ks_queue_close(w->q);

    /* pthread_timedjoin_np measures against CLOCK_REALTIME. */
    ms = (uint64_t)w->p.drain_timeout_ms + JOIN_GRACE_MS;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += (time_t)(ms / 1000);
    dl.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    e = pthread_timedjoin_np(w->thread, NULL, &dl);
    if (e != 0) {
        /* Freeing now would pull memory from under a thread stuck in the kernel. */
        _log(w, KS_LOG_ERROR,
             "keystone: stop: worker thread still busy after %llu ms (%s); leaving it running",
             (unsigned long long)ms, strerror(e));
        return KS_ERROR;
    }
    e = atomic_load(&w->lost_at_stop) == 0 ? KS_SUCCESS : KS_ERROR;
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mu);
    free(w->batch);
    free(w);
    return e;
}
