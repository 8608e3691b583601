/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The plugin's background thread: moves queued records into spool files and publishes counters. */
#ifndef KS_WORKER_H
#define KS_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "queue.h"
#include "spool.h"

/*
 * The worker pops up to batch_size records, writes them as one spool file, and repeats; when
 * fewer than batch_size are queued it waits until the queue reaches batch_size or
 * flush_interval_ms passes, whichever is first. A failed write keeps its batch and is retried
 * with exponential backoff (backoff_min_ms doubling up to backoff_max_ms); meanwhile it pops
 * nothing more, so new records wait in the queue and, once it is full, are dropped and counted.
 * Nothing is lost once ks_spool_write() has succeeded.
 *
 * ks_worker_stop() closes the queue and lets the worker drain it: it keeps writing (and retrying)
 * until the queue is empty or drain_timeout_ms has passed; what is left then is counted in
 * lost_at_stop and logged.
 *
 * Every stats_interval_ms, and once when it stops, the worker replaces KS_SPOOL_STATS_FILE in
 * the spool folder (atomically) with:
 *   {"format":"keystone-jobcomp-stats","format_version":1,"pid":1234,"time":1732790000,
 *    "plugin_version":"0.1.0","slurm_version":"22.05.8","stats_interval_ms":5000,
 *    "queue":{"capacity":100000,"depth":0,"high_water":812,"pushed":51234,"dropped":0},
 *    "spool":{"files_written":409,"records_written":51234,"write_errors":0,
 *             "retry_pending":0,"lost_at_stop":0,"last_error":""},
 *    "callback":{"count":51234,"sum_ns":10246800,"max_ns":48211,
 *                "buckets":[{"lt_usec":0.125,"count":3},{"lt_usec":0.25,"count":40100},...,
 *                           {"lt_usec":null,"count":0}]}}
 * Bucket i counts callbacks that took less than 0.125 * 2^i microseconds and at least the
 * previous bound (counts are per bucket, not cumulative); the last bucket (lt_usec null) holds
 * everything slower than 2^21 microseconds. plugin_version and slurm_version are the params' strings
 * (null when not set): keystonectl doctor compares them with its own version and slurmctld's, and
 * uses time and stats_interval_ms to tell a live plugin from a file left behind.
 *
 * Logging goes through the `log` callback (the plugin passes one that calls Slurm's logger); it
 * is called only from the worker thread and from ks_worker_start()/ks_worker_stop(). Repeated
 * write errors and drops are reported at most once per log_interval_ms, with counts.
 */

typedef enum ks_log_level {
    KS_LOG_ERROR,
    KS_LOG_WARNING,
    KS_LOG_INFO,
    KS_LOG_VERBOSE,
    KS_LOG_DEBUG
} ks_log_level;

/* Receives one formatted message ("keystone: what happened: detail"); must not block for long. */
typedef void (*ks_log_fn)(void *arg, ks_log_level level, const char *msg);

#define KS_HIST_BUCKETS 26

typedef struct ks_worker_params {
    uint32_t batch_size;        /* records per file at most (>= 1) */
    uint32_t flush_interval_ms; /* >= 1 */
    uint32_t drain_timeout_ms;
    uint32_t stats_interval_ms; /* default 5000; >= 1 */
    uint32_t backoff_min_ms;    /* default 100; >= 1 */
    uint32_t backoff_max_ms;    /* default 30000; >= backoff_min_ms */
    uint32_t log_interval_ms;   /* default 60000 */
    ks_log_fn log;              /* NULL: no logging */
    void *log_arg;
    /* Written into the stats file; NULL: null there. Must outlive the worker (string literals). */
    const char *plugin_version; /* keystone-slurm's PACKAGE_VERSION */
    const char *slurm_version;  /* the Slurm release the plugin was built for: "22.05.8" */
} ks_worker_params;

typedef struct ks_worker_stats {
    ks_queue_stats queue;
    uint64_t files_written;
    uint64_t records_written;
    uint64_t write_errors;  /* failed ks_spool_write() calls */
    uint64_t stats_errors;  /* failed stats-file writes (not counted in write_errors) */
    uint64_t retry_pending; /* records in the batch being retried; 0 when writes succeed */
    uint64_t lost_at_stop;  /* records still queued or pending when the drain time ran out */
    int last_errno;         /* errno of the last failed batch write, 0 if none */
    uint64_t callback_count;
    uint64_t callback_sum_ns;
    uint64_t callback_max_ns;
    uint64_t callback_hist[KS_HIST_BUCKETS];
} ks_worker_stats;

typedef struct ks_worker ks_worker;

/* Fills `p` from `c` (NULL: the JobCompParams defaults) and the defaults above; no logger. */
void ks_worker_params_init(ks_worker_params *p, const ks_conf *c);

/*
 * Starts the worker thread on queue `q` and spool `sp`, which the caller keeps owning and must
 * not free before ks_worker_stop() returned. The thread blocks all signals (slurmctld handles
 * them elsewhere). Returns KS_SUCCESS and the worker in *out, or KS_ERROR with errno set and a
 * message in err (bad parameters, no memory for the batch buffer, thread creation failed).
 */
int ks_worker_start(ks_worker **out, ks_queue *q, ks_spool *sp, const ks_worker_params *p,
                    char *err, size_t errlen);

/*
 * Stops the worker: closes the queue, drains it within drain_timeout_ms, writes the stats file
 * a last time, joins the thread and frees the worker. Returns KS_SUCCESS when every queued record
 * reached the spool, KS_ERROR otherwise (the count is logged). If the thread does not finish
 * within drain_timeout_ms + 2 s (a write hanging in the kernel), it logs an error and returns
 * KS_ERROR without freeing the worker, the queue or the spool, which the thread still uses:
 * the caller must then leave them allocated as well. NULL is a no-op.
 */
int ks_worker_stop(ks_worker *w);

/*
 * Records that one jobcomp callback took `nsec` nanoseconds. Lock-free (a few relaxed atomic
 * additions), safe from any thread, meant to be called on slurmctld's thread.
 */
void ks_worker_observe_callback(ks_worker *w, uint64_t nsec);

/* The upper bound of histogram bucket i in nanoseconds (125 << i); UINT64_MAX for the last. */
uint64_t ks_worker_bucket_bound_ns(int i);

/* A snapshot of the counters (each counter read atomically). Safe from any thread. */
void ks_worker_get_stats(ks_worker *w, ks_worker_stats *st);

#endif /* KS_WORKER_H */
