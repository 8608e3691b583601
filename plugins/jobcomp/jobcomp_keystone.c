/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * jobcomp/keystone: slurmctld's entry points. The only file that includes Slurm's internal
 * headers. At job completion it copies the job's fields into a plain record on the stack and
 * pushes it on a bounded queue (no I/O, no JSON, no allocation); the worker thread (worker.c)
 * writes batches to crash-safe spool files in JobCompLoc for keystoned to ingest.
 *
 * slurm.conf:  JobCompType=jobcomp/keystone
 *              JobCompLoc=/var/spool/keystone/jobs        (a folder SlurmUser can write)
 *              JobCompParams=queue_size=100000,batch_size=500,flush_interval_ms=200
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Order matters: run_in_daemon.h uses bool without including stdbool.h itself. */
#include "src/common/slurm_jobcomp.h"
#include "src/common/slurm_protocol_defs.h"
#include "src/common/uid.h"
#include "src/slurmctld/slurmctld.h"
#include "src/common/run_in_daemon.h"

#include "conf.h"
#include "keystone_record.h"
#include "queue.h"
#include "spool.h"
#include "worker.h"

const char plugin_name[] = "Job completion records for keystone-slurm (crash-safe spool)";
const char plugin_type[] = "jobcomp/keystone";
const uint32_t plugin_version = SLURM_VERSION_NUMBER;

/* The Slurm release this plugin was built for, in the form slurmctld reports its own version
 * ("22.05.8"), for the stats file. The installed slurm_version.h has only the number:
 * SLURM_VERSION_STRING is in the source tree's generated config.h, which this build lacks. */
static char _slurm_version[32];

/* The plugin's state: set up in set_location (slurmctld only), torn down in fini. */
static pthread_mutex_t _state_lock = PTHREAD_MUTEX_INITIALIZER;
static ks_conf _conf;
static ks_queue *_queue = NULL;
static ks_spool *_spool = NULL;
static ks_worker *_worker = NULL;
static bool _active = false;   /* running in slurmctld with a working spool */
static time_t _last_drop_log = 0;

static void _log(void *arg, ks_log_level level, const char *msg)
{
    (void) arg;
    switch (level) {
    case KS_LOG_ERROR:
        error("%s: %s", plugin_type, msg);
        break;
    case KS_LOG_WARNING:
        info("%s: warning: %s", plugin_type, msg);
        break;
    case KS_LOG_INFO:
        info("%s: %s", plugin_type, msg);
        break;
    default:
        debug("%s: %s", plugin_type, msg);
        break;
    }
}

static void _stop(void)
{
    if (_worker) {
        if (ks_worker_stop(_worker) != KS_SUCCESS)
            error("%s: records still queued were lost at shutdown (drain_timeout_ms=%u)",
                  plugin_type, _conf.drain_timeout_ms);
        _worker = NULL;
    }
    if (_spool) {
        ks_spool_close(_spool);
        _spool = NULL;
    }
    if (_queue) {
        ks_queue_destroy(_queue);
        _queue = NULL;
    }
    _active = false;
}

extern int init(void)
{
    char err[256];

    /* sacct -c and other clients load jobcomp plugins too: only slurmctld writes a spool. */
    if (!running_in_slurmctld())
        return SLURM_SUCCESS;
    if (ks_conf_parse(slurm_conf.job_comp_params, &_conf, err, sizeof(err)) != KS_SUCCESS) {
        error("%s: JobCompParams=%s: %s", plugin_type,
              slurm_conf.job_comp_params ? slurm_conf.job_comp_params : "", err);
        return SLURM_ERROR;
    }
    verbose("%s: loaded (queue_size=%u batch_size=%u flush_interval_ms=%u)", plugin_type,
            _conf.queue_size, _conf.batch_size, _conf.flush_interval_ms);
    return SLURM_SUCCESS;
}

extern int fini(void)
{
    slurm_mutex_lock(&_state_lock);
    _stop();
    slurm_mutex_unlock(&_state_lock);
    return SLURM_SUCCESS;
}

/* JobCompLoc: the spool folder. Called at start-up and on every reconfigure. */
extern int jobcomp_p_set_location(char *location)
{
    char err[256];
    ks_worker_params params;
    int rc = SLURM_SUCCESS;

    if (!running_in_slurmctld())
        return SLURM_SUCCESS;
    if (!location || !location[0]) {
        error("%s: JobCompLoc is not set: it must name the spool folder", plugin_type);
        return SLURM_ERROR;
    }

    slurm_mutex_lock(&_state_lock);
    if (_active && !strcmp(ks_spool_dir(_spool), location))
        goto done; /* reconfigure with the same folder: keep running */
    _stop();
    if (ks_queue_create(&_queue, _conf.queue_size, _conf.batch_size) != KS_SUCCESS) {
        error("%s: cannot allocate a queue of %u records: %m", plugin_type, _conf.queue_size);
        goto fail;
    }
    if (ks_spool_open(&_spool, location, "slurmctld", err, sizeof(err)) != KS_SUCCESS) {
        error("%s: JobCompLoc=%s: %s", plugin_type, location, err);
        goto fail;
    }
    ks_worker_params_init(&params, &_conf);
    params.log = _log;
    params.plugin_version = PACKAGE_VERSION;
    snprintf(_slurm_version, sizeof(_slurm_version), "%d.%02d.%d",
             (int) SLURM_VERSION_MAJOR(SLURM_VERSION_NUMBER),
             (int) SLURM_VERSION_MINOR(SLURM_VERSION_NUMBER),
             (int) SLURM_VERSION_MICRO(SLURM_VERSION_NUMBER));
    params.slurm_version = _slurm_version;
    if (ks_worker_start(&_worker, _queue, _spool, &params, err, sizeof(err)) != KS_SUCCESS) {
        error("%s: cannot start the spool writer: %s", plugin_type, err);
        goto fail;
    }
    _active = true;
    info("%s: started: spool %s, queue_size=%u batch_size=%u flush_interval_ms=%u (keystone-slurm %s)",
         plugin_type, location, _conf.queue_size, _conf.batch_size, _conf.flush_interval_ms,
         PACKAGE_VERSION);
    goto done;
fail:
    _stop();
    rc = SLURM_ERROR;
done:
    slurm_mutex_unlock(&_state_lock);
    return rc;
}

static uint64_t _now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static void _set(ks_record *r, int field, const char *s)
{
    if (s && s[0])
        (void) ks_record_set_str(r, field, s);
}

/*
 * Runs on slurmctld's thread with the job write lock held: copy, push, return. The record lives
 * on the stack; strings are copied into its inline arena (cut and flagged when too long).
 */
extern int jobcomp_p_log_record(job_record_t *job_ptr)
{
    ks_record rec;
    uint64_t started;
    int rc;

    if (!_active || !job_ptr)
        return SLURM_SUCCESS;
    started = _now_ns();
    ks_record_init(&rec);

    _set(&rec, KS_STR_CLUSTER, slurm_conf.cluster_name);
    rec.job_id = job_ptr->job_id;
    rec.array_job_id = job_ptr->array_job_id ? job_ptr->array_job_id : KS_NO_VAL;
    rec.array_task_id = job_ptr->array_task_id == NO_VAL ? KS_NO_VAL : job_ptr->array_task_id;
    rec.het_job_id = job_ptr->het_job_id ? job_ptr->het_job_id : KS_NO_VAL;
    rec.het_job_offset = job_ptr->het_job_id ? job_ptr->het_job_offset : KS_NO_VAL;
    _set(&rec, KS_STR_HET_JOB_INFO, job_ptr->het_job_id_set);
    _set(&rec, KS_STR_JOB_NAME, job_ptr->name);
    rec.uid = job_ptr->user_id;
    rec.gid = job_ptr->group_id;
    /* Cached in slurmctld: no lookup per job after the first. The group name is resolved by
     * keystoned from gid (no cached lookup exists here). */
    _set(&rec, KS_STR_USER, uid_to_string_cached((uid_t) job_ptr->user_id));
    _set(&rec, KS_STR_ACCOUNT, job_ptr->account);
    _set(&rec, KS_STR_PARTITION, job_ptr->partition);
    if (job_ptr->qos_ptr)
        _set(&rec, KS_STR_QOS, job_ptr->qos_ptr->name);
    /* The state still carries flags (COMPLETING) at this point: keep the base state. */
    _set(&rec, KS_STR_STATE, job_state_string(job_ptr->job_state & JOB_STATE_BASE));
    ks_decode_wait_status(job_ptr->exit_code, &rec.exit_code, &rec.exit_signal);
    ks_decode_wait_status(job_ptr->derived_ec, &rec.derived_exit_code, &rec.derived_signal);
    if (job_ptr->details) {
        rec.submit_time = job_ptr->details->submit_time;
        rec.eligible_time = job_ptr->details->begin_time;
        _set(&rec, KS_STR_WORK_DIR, job_ptr->details->work_dir);
    }
    rec.start_time = job_ptr->start_time;
    rec.end_time = job_ptr->end_time;
    if (job_ptr->start_time && job_ptr->end_time > job_ptr->start_time) {
        time_t run = job_ptr->end_time - job_ptr->start_time - job_ptr->tot_sus_time;
        rec.elapsed_sec = run > 0 ? (uint32_t) run : 0;
    }
    if (job_ptr->time_limit == INFINITE)
        rec.time_limit_min = KS_INFINITE;
    else if (job_ptr->time_limit == NO_VAL)
        rec.time_limit_min = KS_NO_VAL;
    else
        rec.time_limit_min = job_ptr->time_limit;
    rec.node_count = job_ptr->node_cnt;
    /* As sacct's AllocCPUS: the allocated CPUs, or for a job that never got an allocation
     * (cancelled while pending) the CPUs it requested. */
    if ((!job_ptr->tres_alloc_str || !job_ptr->tres_alloc_str[0]) && job_ptr->tres_req_cnt &&
        job_ptr->tres_req_cnt[TRES_ARRAY_CPU] <= UINT32_MAX - 2)
        rec.cpus = (uint32_t) job_ptr->tres_req_cnt[TRES_ARRAY_CPU];
    else
        rec.cpus = job_ptr->total_cpus;
    rec.priority = job_ptr->priority;
    rec.billing = (job_ptr->billable_tres == (double) NO_VAL) ? -1.0 : job_ptr->billable_tres;
    _set(&rec, KS_STR_NODE_LIST, job_ptr->nodes);
    _set(&rec, KS_STR_TRES_ALLOC, job_ptr->tres_fmt_alloc_str);
    _set(&rec, KS_STR_RESERVATION, job_ptr->resv_name);

    rc = ks_queue_push(_queue, &rec);
    if (rc != KS_QUEUE_OK) {
        /* Never block slurmctld: the job is counted as dropped and keystoned's reconciliation
         * brings it in from slurmdbd later. Logged at most once a minute. */
        time_t now = time(NULL);
        if (now - _last_drop_log >= 60) {
            ks_queue_stats st;
            ks_queue_get_stats(_queue, &st);
            error("%s: queue full (queue_size=%u): JobId=%u not spooled; %" PRIu64
                  " records dropped so far (keystoned's reconciliation recovers them)",
                  plugin_type, _conf.queue_size, job_ptr->job_id, st.dropped);
            _last_drop_log = now;
        }
    }
    ks_worker_observe_callback(_worker, _now_ns() - started);
    return SLURM_SUCCESS;
}

/* Reading records back (sacct -c) is not supported: keystoned holds them in PostgreSQL. */
extern List jobcomp_p_get_jobs(slurmdb_job_cond_t *job_cond)
{
    (void) job_cond;
    error("%s: job records are in keystone-slurm's PostgreSQL tables, not readable by sacct -c; "
          "use keystonectl jobs check or sacct",
          plugin_type);
    return NULL;
}
