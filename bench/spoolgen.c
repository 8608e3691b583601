/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Writes jobcomp/keystone spool files of made-up finished jobs, through the plugin's own spool
 * writer, for the ingest tests and benchmark. */
#define _GNU_SOURCE
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "keystone_record.h"
#include "spool.h"

/*
 * Usage: spoolgen -d DIR [-n RECORDS] [-b PER_FILE] [-c CLUSTER] [-j FIRST_JOB_ID]
 *                 [-t FIRST_SUBMIT] [-s SEED] [-H] [-q]
 *   -d  the spool folder (must exist)
 *   -n  records in all (default 1000)
 *   -b  records per file (default 500, the plugin's default batch)
 *   -c  cluster name (default "smp")
 *   -j  job id of the first record (default 1); record i has job id FIRST + i
 *   -t  submit time of the first record, seconds since the epoch (default 1790000000); record i
 *       was submitted at FIRST + i
 *   -s  seed of the other values (default 1): the same options write the same records
 *   -H  hostile strings: record i's job name is hostile_names[i % 8] below (quotes, newline,
 *       backslashes, COPY's \N, invalid UTF-8, 1024 bytes, SQL, multibyte), its user "o'brien"
 *       and its work dir has invalid UTF-8, a tab and a quote
 *   -q  quiet: no summary line
 * Record i (0-based) is a plain job, except: i % 10 == 9 is task 9 of array job FIRST + i - 9,
 * and i % 50 == 25 is component 1 of het job FIRST + i - 1. User k (0..499) is "userK" with uid
 * 10000 + k, account "team-(k % 100)" and gid 20000 + k % 50 (no group name: the plugin records
 * none). The summary line on stdout: "wrote N records in F files to DIR".
 */

static const char *const _hostile_names[8] = {
    "it's a \"quoted\" name",
    "line one\nline two\r\nline three",
    "back\\slash \\N tab\there \\\\ end\\",
    "\\N",
    "bad \xff\xfe bytes \xc3\x28 and \xed\xa0\x80 surrogate",
    NULL, /* 1024 bytes, built at run time */
    "'; DROP TABLE keystone_slurm.job; --",
    "J\xc3\xb6"
    "b \xe2\x98\x83 \xf0\x9f\x9a\x80",
};

static const char *const _states[] = {"COMPLETED", "COMPLETED", "COMPLETED", "COMPLETED",
                                      "FAILED",    "CANCELLED", "TIMEOUT",   "OUT_OF_MEMORY"};

/* xorshift64*: reproducible values from the seed. */
static uint64_t _rng;
static uint32_t _rand(uint32_t n) {
    _rng ^= _rng >> 12;
    _rng ^= _rng << 25;
    _rng ^= _rng >> 27;
    return (uint32_t)((_rng * UINT64_C(2685821657736338717)) >> 33) % n;
}

static void _fill(ks_record *r, uint64_t i, const char *cluster, uint32_t first_job,
                  time_t first_submit, int hostile, const char *long_name) {
    char buf[256];
    uint32_t k = _rand(500), nodes = 1 + _rand(4), cpus = nodes * (1 + _rand(32));
    uint32_t elapsed = _rand(86400);
    const char *state = _states[_rand(sizeof(_states) / sizeof(_states[0]))];

    ks_record_init(r);
    ks_record_set_str(r, KS_STR_CLUSTER, cluster);
    r->job_id = first_job + (uint32_t)i;
    if (i % 10 == 9) {
        r->array_job_id = first_job + (uint32_t)(i - 9);
        r->array_task_id = (uint32_t)(i % 10);
    } else if (i % 50 == 25) {
        r->het_job_id = first_job + (uint32_t)(i - 1);
        r->het_job_offset = 1;
        snprintf(buf, sizeof(buf), "%" PRIu32 "-%" PRIu32, r->het_job_id, r->job_id);
        ks_record_set_str(r, KS_STR_HET_JOB_INFO, buf);
    }
    if (hostile) {
        const char *name = _hostile_names[i % 8] ? _hostile_names[i % 8] : long_name;
        ks_record_set_str(r, KS_STR_JOB_NAME, name);
        ks_record_set_str(r, KS_STR_USER, "o'brien");
        ks_record_set_str(r, KS_STR_WORK_DIR, "/home/o'brien/\xff dir\twith \"tab\"");
    } else {
        snprintf(buf, sizeof(buf), "job-%" PRIu64 "-analysis", i);
        ks_record_set_str(r, KS_STR_JOB_NAME, buf);
        snprintf(buf, sizeof(buf), "user%" PRIu32, k);
        ks_record_set_str(r, KS_STR_USER, buf);
        snprintf(buf, sizeof(buf), "/home/user%" PRIu32 "/project-%" PRIu32, k, _rand(20));
        ks_record_set_str(r, KS_STR_WORK_DIR, buf);
    }
    r->uid = 10000 + k;
    r->gid = 20000 + k % 50;
    snprintf(buf, sizeof(buf), "team-%" PRIu32, k % 100);
    ks_record_set_str(r, KS_STR_ACCOUNT, buf);
    ks_record_set_str(r, KS_STR_PARTITION, _rand(5) == 0 ? "gpu" : "standard");
    ks_record_set_str(r, KS_STR_QOS, "normal");
    ks_record_set_str(r, KS_STR_STATE, state);
    if (strcmp(state, "COMPLETED") == 0) {
        r->exit_code = 0;
        r->exit_signal = 0;
    } else if (strcmp(state, "CANCELLED") == 0) {
        r->exit_code = 0;
        r->exit_signal = 15;
    } else {
        r->exit_code = 1 + _rand(3);
        r->exit_signal = 0;
    }
    r->derived_exit_code = r->exit_code;
    r->derived_signal = r->exit_signal;
    r->submit_time = first_submit + (time_t)i;
    r->eligible_time = r->submit_time + 1;
    r->start_time = r->eligible_time + (time_t)_rand(600);
    r->end_time = r->start_time + (time_t)elapsed;
    r->elapsed_sec = elapsed;
    r->time_limit_min = _rand(10) == 0 ? KS_INFINITE : 60 * (1 + _rand(48));
    r->node_count = nodes;
    if (nodes == 1)
        snprintf(buf, sizeof(buf), "node%03" PRIu32, 1 + _rand(128));
    else
        snprintf(buf, sizeof(buf), "node[%03" PRIu32 "-%03" PRIu32 "]", 1 + (k % 100),
                 (k % 100) + nodes);
    ks_record_set_str(r, KS_STR_NODE_LIST, buf);
    r->cpus = cpus;
    snprintf(buf, sizeof(buf), "cpu=%" PRIu32 ",mem=%" PRIu32 "G,node=%" PRIu32 ",billing=%" PRIu32,
             cpus, cpus * 4, nodes, cpus);
    ks_record_set_str(r, KS_STR_TRES_ALLOC, buf);
    r->billing = (double)cpus + (_rand(4) == 0 ? 0.5 : 0.0);
    r->priority = 1000 + _rand(100000);
    if (_rand(20) == 0)
        ks_record_set_str(r, KS_STR_RESERVATION, "maint");
}

static int _number(const char *s, uint64_t max, uint64_t *out) {
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || *s == '\0' || *end != '\0' || *s == '-' || v > max)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *cluster = "smp";
    uint64_t total = 1000, per_file = 500, first_job = 1, first_submit = 1790000000, seed = 1;
    uint64_t written = 0, files = 0;
    int hostile = 0, quiet = 0, opt, rc = 1;
    char err[512], long_name[KS_JOB_NAME_MAX + 1];
    ks_spool *sp = NULL;
    ks_record *recs = NULL;

    while ((opt = getopt(argc, argv, "d:n:b:c:j:t:s:Hq")) != -1) {
        int bad = 0;
        switch (opt) {
        case 'd':
            dir = optarg;
            break;
        case 'n':
            bad = _number(optarg, UINT32_MAX, &total);
            break;
        case 'b':
            bad = _number(optarg, 1000000, &per_file) || per_file == 0;
            break;
        case 'c':
            cluster = optarg;
            break;
        case 'j':
            bad = _number(optarg, KS_NO_VAL - 1, &first_job);
            break;
        case 't':
            bad = _number(optarg, INT64_MAX, &first_submit) || first_submit == 0;
            break;
        case 's':
            bad = _number(optarg, UINT64_MAX, &seed);
            break;
        case 'H':
            hostile = 1;
            break;
        case 'q':
            quiet = 1;
            break;
        default:
            bad = 1;
        }
        if (bad)
            goto usage;
    }
    if (dir == NULL || optind != argc)
        goto usage;
    if (first_job + total > KS_NO_VAL) {
        fprintf(stderr, "spoolgen: job ids %" PRIu64 "..%" PRIu64 " do not fit 32 bits\n",
                first_job, first_job + total - 1);
        return 2;
    }
    memset(long_name, 'L', KS_JOB_NAME_MAX);
    memcpy(long_name, "long:", 5);
    long_name[KS_JOB_NAME_MAX - 1] = 'Z';
    long_name[KS_JOB_NAME_MAX] = '\0';
    _rng = seed * UINT64_C(0x9E3779B97F4A7C15) + 1;

    if (ks_spool_open(&sp, dir, "spoolgen " PACKAGE_VERSION, err, sizeof(err)) != KS_SUCCESS) {
        fprintf(stderr, "spoolgen: %s\n", err);
        return 1;
    }
    recs = malloc((size_t)per_file * sizeof(*recs));
    if (recs == NULL) {
        fprintf(stderr, "spoolgen: out of memory for %" PRIu64 " records\n", per_file);
        goto fail;
    }
    while (written < total) {
        size_t n = (size_t)(total - written < per_file ? total - written : per_file);
        for (size_t j = 0; j < n; j++)
            _fill(&recs[j], written + j, cluster, (uint32_t)first_job, (time_t)first_submit,
                  hostile, long_name);
        if (ks_spool_write(sp, recs, n) != KS_SUCCESS) {
            fprintf(stderr, "spoolgen: %s\n", ks_spool_last_error(sp));
            goto fail;
        }
        written += n;
        files++;
    }
    if (!quiet)
        printf("wrote %" PRIu64 " records in %" PRIu64 " files to %s\n", written, files, dir);
    rc = 0;
fail:
    free(recs);
    ks_spool_close(sp);
    return rc;

usage:
    fprintf(stderr,
            "usage: %s -d DIR [-n RECORDS] [-b PER_FILE] [-c CLUSTER] [-j FIRST_JOB_ID]\n"
            "       [-t FIRST_SUBMIT] [-s SEED] [-H] [-q]\n",
            argv[0]);
    return 2;
}
