/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Benchmark: cost per job on slurmctld's thread of jobcomp/keystone's fill+push, beside a
 * synchronous write+fsync of one line per job (what a plugin writing in the callback pays). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "keystone_record.h"
#include "queue.h"
#include "spool.h"
#include "worker.h"

/*
 * Usage: callback_cost [-n RECORDS] [-d PARENT] [-p JOBCOMPPARAMS]
 *   -n  records per run (default 100000)
 *   -d  folder in which the two temporary folders are made (default /tmp)
 *   -p  JobCompParams for the keystone run (default: the plugin's defaults)
 * Both runs use the same machine, folder and record count in one process. Timings come from
 * CLOCK_MONOTONIC around each call, so each includes one clock read (printed as "timer").
 */

static uint64_t _now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int _cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

struct summary {
    double median, p99, p999, max, mean; /* microseconds */
};

static struct summary _summarise(uint64_t *ns, size_t n) {
    struct summary s;
    double sum = 0;

    qsort(ns, n, sizeof(*ns), _cmp_u64);
    for (size_t i = 0; i < n; i++)
        sum += (double)ns[i];
    s.median = (double)ns[n / 2] / 1000.0;
    s.p99 = (double)ns[(size_t)((double)n * 0.99)] / 1000.0;
    s.p999 = (double)ns[(size_t)((double)n * 0.999)] / 1000.0;
    s.max = (double)ns[n - 1] / 1000.0;
    s.mean = sum / (double)n / 1000.0;
    return s;
}

static void _row(const char *label, struct summary s) {
    printf("%-42s %9.3f %9.3f %9.3f %10.1f %9.3f\n", label, s.median, s.p99, s.p999, s.max, s.mean);
}

/* What the plugin's callback does with a finished job: copy its fields into a record. */
static void _fill(ks_record *r, uint32_t i, char *name, size_t namelen) {
    ks_record_init(r);
    r->job_id = 100000 + i;
    r->uid = 1000 + i % 50;
    r->gid = 1000;
    ks_decode_wait_status(i % 7 == 0 ? 1 << 8 : 0, &r->exit_code, &r->exit_signal);
    ks_decode_wait_status(0, &r->derived_exit_code, &r->derived_signal);
    r->submit_time = 1732790000 + i;
    r->eligible_time = r->submit_time + 1;
    r->start_time = r->submit_time + 3;
    r->end_time = r->submit_time + 63;
    r->elapsed_sec = 60;
    r->time_limit_min = 120;
    r->node_count = 1;
    r->cpus = 4;
    r->billing = 4;
    r->priority = 4294901;
    snprintf(name, namelen, "bench-job-%u", i);
    ks_record_set_str(r, KS_STR_CLUSTER, "smp");
    ks_record_set_str(r, KS_STR_JOB_NAME, name);
    ks_record_set_str(r, KS_STR_USER, "alice");
    ks_record_set_str(r, KS_STR_GROUP, "smith-lab");
    ks_record_set_str(r, KS_STR_ACCOUNT, "smith-lab");
    ks_record_set_str(r, KS_STR_PARTITION, "batch");
    ks_record_set_str(r, KS_STR_QOS, "normal");
    ks_record_set_str(r, KS_STR_STATE, i % 7 == 0 ? "FAILED" : "COMPLETED");
    ks_record_set_str(r, KS_STR_NODE_LIST, "node[017-018]");
    ks_record_set_str(r, KS_STR_TRES_ALLOC, "cpu=4,mem=16G,node=1,billing=4");
    ks_record_set_str(r, KS_STR_WORK_DIR, "/home/alice/projects/simulation/run-0042");
    ks_record_set_str(r, KS_STR_RESERVATION, NULL);
    ks_record_set_str(r, KS_STR_HET_JOB_INFO, NULL);
}

static void _rm_folder(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[PATH_MAX];

    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            unlink(path);
        }
    }
    closedir(d);
    rmdir(dir);
}

static const char *_fs_name(const char *dir) {
    struct statfs sf;

    if (statfs(dir, &sf) != 0)
        return "?";
    switch ((unsigned long)sf.f_type) {
    case 0xEF53:
        return "ext4";
    case 0x01021994:
        return "tmpfs";
    case 0x58465342:
        return "xfs";
    case 0x9123683E:
        return "btrfs";
    case 0x794c7630:
        return "overlayfs";
    default:
        return "other";
    }
}

static void _log_stderr(void *arg, ks_log_level level, const char *msg) {
    (void)arg;
    (void)level;
    fprintf(stderr, "%s\n", msg);
}

int main(int argc, char **argv) {
    size_t n = 100000;
    const char *parent = "/tmp", *params = NULL;
    char kdir[PATH_MAX], sdir[PATH_MAX], err[512], name[64], line[1024], path[2 * PATH_MAX];
    uint64_t *cb_ns, *push_ns, *warm_cb_ns, *warm_push_ns, *sync_ns, timer_ns[1001], t0, t1, t2;
    uint64_t stop_ns, high_water_1 = 0;
    ks_conf conf;
    ks_queue *q;
    ks_spool *sp;
    ks_worker *w;
    ks_worker_params wp;
    ks_worker_stats st;
    ks_record *r;
    int opt, fd;

    while ((opt = getopt(argc, argv, "n:d:p:")) != -1) {
        switch (opt) {
        case 'n':
            n = strtoul(optarg, NULL, 10);
            break;
        case 'd':
            parent = optarg;
            break;
        case 'p':
            params = optarg;
            break;
        default:
            fprintf(stderr, "usage: %s [-n RECORDS] [-d PARENT] [-p JOBCOMPPARAMS]\n", argv[0]);
            return 2;
        }
    }
    if (n < 1000) {
        fprintf(stderr, "callback_cost: -n must be at least 1000\n");
        return 2;
    }
    if (ks_conf_parse(params, &conf, err, sizeof(err)) != KS_SUCCESS) {
        fprintf(stderr, "callback_cost: %s\n", err);
        return 2;
    }
    cb_ns = malloc(n * sizeof(*cb_ns));
    push_ns = malloc(n * sizeof(*push_ns));
    warm_cb_ns = malloc(n * sizeof(*warm_cb_ns));
    warm_push_ns = malloc(n * sizeof(*warm_push_ns));
    sync_ns = malloc(n * sizeof(*sync_ns));
    r = malloc(sizeof(*r));
    if (!cb_ns || !push_ns || !warm_cb_ns || !warm_push_ns || !sync_ns || !r) {
        fprintf(stderr, "callback_cost: out of memory\n");
        return 1;
    }
    snprintf(kdir, sizeof(kdir), "%s/ks-bench-spool.XXXXXX", parent);
    snprintf(sdir, sizeof(sdir), "%s/ks-bench-sync.XXXXXX", parent);
    if (mkdtemp(kdir) == NULL || mkdtemp(sdir) == NULL) {
        fprintf(stderr, "callback_cost: mkdtemp in %s: %s\n", parent, strerror(errno));
        return 1;
    }

    /* The clock read itself, for scale. */
    for (int i = 0; i < 1001; i++) {
        t0 = _now_ns();
        timer_ns[i] = _now_ns() - t0;
    }
    qsort(timer_ns, 1001, sizeof(timer_ns[0]), _cmp_u64);

    /* --- jobcomp/keystone: fill a record, push it; the worker writes the spool meanwhile --- */
    if (ks_queue_create(&q, conf.queue_size, conf.batch_size) != KS_SUCCESS ||
        ks_spool_open(&sp, kdir, "callback_cost", err, sizeof(err)) != KS_SUCCESS) {
        fprintf(stderr, "callback_cost: setup: %s\n", err);
        return 1;
    }
    ks_worker_params_init(&wp, &conf);
    wp.log = _log_stderr;
    if (ks_worker_start(&w, q, sp, &wp, err, sizeof(err)) != KS_SUCCESS) {
        fprintf(stderr, "callback_cost: %s\n", err);
        return 1;
    }
    /* Pass 1: the burst meets queue storage never touched before (page faults), as after a
     * restart. Pass 2: the same burst once the worker has drained pass 1, on storage touched
     * before; a queue that is emptied each flush interval always runs like this. */
    for (int pass = 0; pass < 2; pass++) {
        uint64_t *cb = pass == 0 ? cb_ns : warm_cb_ns, *push = pass == 0 ? push_ns : warm_push_ns;

        for (size_t i = 0; i < n; i++) {
            t0 = _now_ns();
            _fill(r, (uint32_t)(pass * n + i), name, sizeof(name));
            t1 = _now_ns();
            ks_queue_push(q, r);
            t2 = _now_ns();
            ks_worker_observe_callback(w, t2 - t0);
            cb[i] = t2 - t0;
            push[i] = t2 - t1;
        }
        ks_worker_get_stats(w, &st);
        if (pass == 0) {
            high_water_1 = st.queue.high_water;
            while (st.records_written + st.queue.dropped < n) {
                struct timespec ts = {0, 10000000};
                nanosleep(&ts, NULL);
                ks_worker_get_stats(w, &st);
            }
        }
    }
    t0 = _now_ns();
    if (ks_worker_stop(w) != KS_SUCCESS)
        fprintf(stderr, "callback_cost: worker stop reported lost records\n");
    stop_ns = _now_ns() - t0;

    /* Read back what reached the disk. */
    {
        DIR *d = opendir(kdir);
        struct dirent *de;
        size_t files = 0, recs = 0;

        while (d && (de = readdir(d)) != NULL) {
            ks_record *back;
            size_t k;
            if (!ks_spool_is_batch_name(de->d_name))
                continue;
            snprintf(path, sizeof(path), "%s/%s", kdir, de->d_name);
            if (ks_spool_read_file(path, &back, &k, err, sizeof(err)) != KS_SUCCESS) {
                fprintf(stderr, "callback_cost: %s\n", err);
                return 1;
            }
            free(back);
            files++;
            recs += k;
        }
        if (d)
            closedir(d);
        printf("callback cost per job: %zu records pushed back to back (twice), spool and sync "
               "file on %s (%s), %ld CPUs\n",
               n, parent, _fs_name(kdir), sysconf(_SC_NPROCESSORS_ONLN));
        printf("keystone: queue_size=%u batch_size=%u flush_interval_ms=%u; on disk: %zu of %zu "
               "records in %zu files (dropped %llu); queue high water %llu (pass 1), storage "
               "touched %.1f MiB; stop drained in %.1f ms\n",
               conf.queue_size, conf.batch_size, conf.flush_interval_ms, recs, 2 * n, files,
               (unsigned long long)st.queue.dropped, (unsigned long long)high_water_1,
               (double)st.queue.bytes_touched / 1048576.0, (double)stop_ns / 1e6);
    }
    ks_spool_close(sp);
    ks_queue_destroy(q);

    /* --- anchor: the same jobs, each formatted and written with write + fsync --- */
    snprintf(path, sizeof(path), "%s/jobcomp.log", sdir);
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        fprintf(stderr, "callback_cost: %s: %s\n", path, strerror(errno));
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        int len;
        t0 = _now_ns();
        _fill(r, (uint32_t)i, name, sizeof(name));
        len = snprintf(line, sizeof(line),
                       "JobId=%u UserId=%s(%u) GroupId=%s(%u) Name=%s JobState=%s Partition=%s "
                       "TimeLimit=%u StartTime=%lld EndTime=%lld NodeList=%s NodeCnt=%u "
                       "ProcCnt=%u WorkDir=%s ExitCode=%u:%u Account=%s QOS=%s Tres=%s\n",
                       r->job_id, ks_record_str(r, KS_STR_USER), r->uid,
                       ks_record_str(r, KS_STR_GROUP), r->gid, ks_record_str(r, KS_STR_JOB_NAME),
                       ks_record_str(r, KS_STR_STATE), ks_record_str(r, KS_STR_PARTITION),
                       r->time_limit_min, (long long)r->start_time, (long long)r->end_time,
                       ks_record_str(r, KS_STR_NODE_LIST), r->node_count, r->cpus,
                       ks_record_str(r, KS_STR_WORK_DIR), r->exit_code, r->exit_signal,
                       ks_record_str(r, KS_STR_ACCOUNT), ks_record_str(r, KS_STR_QOS),
                       ks_record_str(r, KS_STR_TRES_ALLOC));
        if (write(fd, line, (size_t)len) != len || fsync(fd) != 0) {
            fprintf(stderr, "callback_cost: write/fsync: %s\n", strerror(errno));
            return 1;
        }
        sync_ns[i] = _now_ns() - t0;
    }
    close(fd);

    {
        struct summary cb = _summarise(cb_ns, n), push = _summarise(push_ns, n);
        struct summary wcb = _summarise(warm_cb_ns, n), wpush = _summarise(warm_push_ns, n);
        struct summary sync = _summarise(sync_ns, n);

        printf("\n%-42s %9s %9s %9s %10s %9s   (microseconds)\n", "", "median", "p99", "p99.9",
               "max", "mean");
        _row("keystone callback (fill + push), pass 1", cb);
        _row("  of which queue push", push);
        _row("keystone callback, pass 2 (warm storage)", wcb);
        _row("  of which queue push", wpush);
        _row("synchronous write + fsync per job", sync);
        printf("timer (clock_gettime) median %.3f us\n", (double)timer_ns[500] / 1000.0);
        printf(
            "\npass 1 median: keystone %.3f us vs synchronous %.1f us (%.0fx); p99.9: %.3f us vs "
            "%.1f us (%.0fx); goal: keystone median < 5 us: %s\n",
            cb.median, sync.median, sync.median / cb.median, cb.p999, sync.p999,
            sync.p999 / cb.p999, cb.median < 5.0 ? "met" : "NOT met");
    }
    _rm_folder(kdir);
    _rm_folder(sdir);
    free(cb_ns);
    free(push_ns);
    free(warm_cb_ns);
    free(warm_push_ns);
    free(sync_ns);
    free(r);
    return 0;
}
