/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests for the jobcomp plugin core: conf, record, queue, spool writer and reader, worker. */
#define _GNU_SOURCE
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "keystone_record.h"
#include "queue.h"
#include "spool.h"
#include "worker.h"

/* ck_assert_msg() records a mark point even when it passes; loops use this, which only acts on
 * failure. */
#define REQUIRE(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ck_abort_msg(__VA_ARGS__);                                                             \
    } while (0)

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------------------------------ */
/* Helpers                                                                                      */

static void _mkdtemp(char *buf, size_t len) {
    snprintf(buf, len, "/tmp/ks-plugin-test.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(buf));
}

/* Removes every entry of a flat folder, then the folder. */
static void _rmrf(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[PATH_MAX];

    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
    chmod(dir, 0700);
    rmdir(dir);
}

static int _cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in `dir` starting with `prefix` ("" for all but . and ..), sorted; caller frees. */
static size_t _list(const char *dir, const char *prefix, char ***out) {
    DIR *d = opendir(dir);
    struct dirent *de;
    char **names = NULL;
    size_t n = 0;

    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (strncmp(de->d_name, prefix, strlen(prefix)) != 0)
            continue;
        names = realloc(names, (n + 1) * sizeof(*names));
        names[n++] = strdup(de->d_name);
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof(*names), _cmp_str);
    *out = names;
    return n;
}

static void _free_list(char **names, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Batch files in `dir`, in name order. */
static size_t _batches(const char *dir, char ***out) {
    char **all;
    size_t n = _list(dir, "", &all), k = 0;

    for (size_t i = 0; i < n; i++) {
        if (ks_spool_is_batch_name(all[i]))
            all[k++] = all[i];
        else
            free(all[i]);
    }
    *out = all;
    return k;
}

static char *_read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *p;
    long n;

    ck_assert_msg(f != NULL, "open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    p = malloc((size_t)n + 1);
    ck_assert_uint_eq(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    p[n] = '\0';
    *len = (size_t)n;
    return p;
}

static void _write_text(const char *path, const char *data, size_t len) {
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* A record with every field set to something typical. */
static void _fill(ks_record *r, uint32_t id) {
    char name[32];

    ks_record_init(r);
    r->job_id = id;
    r->array_job_id = 7;
    r->array_task_id = 3;
    r->het_job_id = KS_NO_VAL;
    r->het_job_offset = KS_NO_VAL;
    r->uid = 1000;
    r->gid = 1000;
    ks_decode_wait_status(2 << 8, &r->exit_code, &r->exit_signal);
    ks_decode_wait_status(0, &r->derived_exit_code, &r->derived_signal);
    r->elapsed_sec = 61;
    r->time_limit_min = 60;
    r->node_count = 2;
    r->cpus = 8;
    r->priority = 4294;
    r->billing = 8.0;
    r->submit_time = 1732790000;
    r->eligible_time = 1732790001;
    r->start_time = 1732790005;
    r->end_time = 1732790066;
    snprintf(name, sizeof(name), "job-%u", id);
    ks_record_set_str(r, KS_STR_CLUSTER, "smp");
    ks_record_set_str(r, KS_STR_JOB_NAME, name);
    ks_record_set_str(r, KS_STR_USER, "alice");
    ks_record_set_str(r, KS_STR_GROUP, "lab");
    ks_record_set_str(r, KS_STR_ACCOUNT, "smith-lab");
    ks_record_set_str(r, KS_STR_PARTITION, "debug");
    ks_record_set_str(r, KS_STR_QOS, "normal");
    ks_record_set_str(r, KS_STR_STATE, "COMPLETED");
    ks_record_set_str(r, KS_STR_NODE_LIST, "n[01-02]");
    ks_record_set_str(r, KS_STR_TRES_ALLOC, "cpu=8,mem=16G,node=2,billing=8");
    ks_record_set_str(r, KS_STR_WORK_DIR, "/home/alice/run");
    ks_record_set_str(r, KS_STR_RESERVATION, NULL);
}

/* Whether two records hold the same values; on a difference names it in why. */
static bool _rec_equal(const ks_record *a, const ks_record *b, char *why, size_t len) {
#define SAME(f)                                                                                    \
    if (a->f != b->f) {                                                                            \
        snprintf(why, len, #f " differs");                                                         \
        return false;                                                                              \
    }
    SAME(version)
    SAME(truncated)
    SAME(job_id)
    SAME(array_job_id)
    SAME(array_task_id)
    SAME(het_job_id)
    SAME(het_job_offset)
    SAME(uid)
    SAME(gid)
    SAME(exit_code)
    SAME(exit_signal)
    SAME(derived_exit_code)
    SAME(derived_signal)
    SAME(elapsed_sec)
    SAME(time_limit_min)
    SAME(node_count)
    SAME(cpus)
    SAME(priority)
    SAME(billing)
    SAME(submit_time)
    SAME(eligible_time)
    SAME(start_time)
    SAME(end_time)
#undef SAME
    for (int f = 0; f < KS_STR_COUNT; f++) {
        if (ks_record_strlen(a, f) != ks_record_strlen(b, f) ||
            memcmp(ks_record_str(a, f), ks_record_str(b, f), ks_record_strlen(a, f)) != 0) {
            snprintf(why, len, "string %s differs", ks_str_field_name(f));
            return false;
        }
    }
    return true;
}

static ks_spool *_open_spool(const char *dir) {
    ks_spool *sp;
    char err[256];

    ck_assert_msg(ks_spool_open(&sp, dir, "plugin_test", err, sizeof(err)) == KS_SUCCESS, "%s",
                  err);
    return sp;
}

/* Reads every batch in `dir` in name order and checks the job ids are first, first+1, ... */
static size_t _check_disk_ids(const char *dir, uint32_t first) {
    char **names, path[PATH_MAX], err[512];
    size_t n = _batches(dir, &names), total = 0;

    for (size_t i = 0; i < n; i++) {
        ks_record *recs;
        size_t nrec;

        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        REQUIRE(ks_spool_read_file(path, &recs, &nrec, err, sizeof(err)) == KS_SUCCESS, "%s", err);
        for (size_t k = 0; k < nrec; k++, total++)
            REQUIRE(recs[k].job_id == first + total, "file %s record %zu: job_id %u, want %zu",
                    names[i], k, recs[k].job_id, first + total);
        free(recs);
    }
    _free_list(names, n);
    return total;
}

/* Polls `done` every millisecond for up to 20 s (valgrind is slow); false on time-out. */
static bool _wait_until(bool (*done)(void *), void *arg) {
    for (int i = 0; i < 20000; i++) {
        struct timespec ts = {0, 1000000};
        if (done(arg))
            return true;
        nanosleep(&ts, NULL);
    }
    return done(arg);
}

/* Log capture for the worker. */
struct logcap {
    pthread_mutex_t mu;
    char text[16384];
};

static void _log_capture(void *arg, ks_log_level level, const char *msg) {
    struct logcap *lc = arg;
    size_t used;

    (void)level;
    pthread_mutex_lock(&lc->mu);
    used = strlen(lc->text);
    snprintf(lc->text + used, sizeof(lc->text) - used, "%s\n", msg);
    pthread_mutex_unlock(&lc->mu);
}

/* ------------------------------------------------------------------------------------------ */
/* conf                                                                                         */

static const struct {
    const char *in;
    ks_conf want;
} _conf_good[] = {
    {NULL, {100000, 500, 200, 5000}},
    {"", {100000, 500, 200, 5000}},
    {"  \t ", {100000, 500, 200, 5000}},
    {"queue_size=1000", {1000, 500, 200, 5000}},
    {"queue_size=10000000", {10000000, 500, 200, 5000}},
    {"batch_size=1,flush_interval_ms=1,drain_timeout_ms=0", {100000, 1, 1, 0}},
    {" queue_size = 2000 , batch_size=20 ", {2000, 20, 200, 5000}},
    {"drain_timeout_ms=600000,flush_interval_ms=60000,batch_size=10000,queue_size=10000",
     {10000, 10000, 60000, 600000}},
    {"queue_size=0001000", {1000, 500, 200, 5000}},
};

START_TEST(test_conf_good) {
    ks_conf c;
    char err[256] = "";

    ck_assert_msg(ks_conf_parse(_conf_good[_i].in, &c, err, sizeof(err)) == KS_SUCCESS, "'%s': %s",
                  _conf_good[_i].in ? _conf_good[_i].in : "(null)", err);
    ck_assert_uint_eq(c.queue_size, _conf_good[_i].want.queue_size);
    ck_assert_uint_eq(c.batch_size, _conf_good[_i].want.batch_size);
    ck_assert_uint_eq(c.flush_interval_ms, _conf_good[_i].want.flush_interval_ms);
    ck_assert_uint_eq(c.drain_timeout_ms, _conf_good[_i].want.drain_timeout_ms);
}
END_TEST

static const struct {
    const char *in;
    const char *msg;
} _conf_bad[] = {
    {"foo=1", "unknown key 'foo'"},
    {"Queue_Size=1000", "unknown key 'Queue_Size'"},
    {"=5", "unknown key ''"},
    {"queue_size=999", "queue_size=999: out of range 1000..10000000"},
    {"queue_size=10000001", "queue_size=10000001: out of range"},
    {"queue_size=1000,queue_size=2000", "key 'queue_size' given twice"},
    {"batch_size=abc", "batch_size=abc: not an unsigned decimal number"},
    {"batch_size=-1", "batch_size=-1: not an unsigned"},
    {"batch_size=+5", "batch_size=+5: not an unsigned"},
    {"batch_size=1e3", "batch_size=1e3: not an unsigned"},
    {"batch_size=", "batch_size=: not an unsigned"},
    {"batch_size=99999999999999999999", "batch_size=99999999999999999999: not an unsigned"},
    {"batch_size=0", "batch_size=0: out of range 1..10000"},
    {"flush_interval_ms=0", "flush_interval_ms=0: out of range"},
    {"drain_timeout_ms=600001", "drain_timeout_ms=600001: out of range"},
    {"queue_size", "queue_size: not key=value"},
    {"queue_size=1000,", "empty item"},
    {",queue_size=1000", "empty item"},
    {"queue_size=1000,,batch_size=1", "empty item"},
    {"queue_size=1000,batch_size=2000", "batch_size=2000: larger than queue_size=1000"},
    {"queue_size=1000;batch_size=2", "queue_size=1000;batch_size=2: not an unsigned"},
};

START_TEST(test_conf_bad) {
    ks_conf c = {1, 2, 3, 4};
    char err[256] = "";

    ck_assert_int_eq(ks_conf_parse(_conf_bad[_i].in, &c, err, sizeof(err)), KS_ERROR);
    ck_assert_msg(strstr(err, _conf_bad[_i].msg) != NULL, "'%s': got '%s', want '%s'",
                  _conf_bad[_i].in, err, _conf_bad[_i].msg);
    ck_assert_msg(strncmp(err, "JobCompParams: ", 15) == 0, "%s", err);
    /* The output is untouched on error. */
    ck_assert_uint_eq(c.queue_size, 1);
    ck_assert_uint_eq(c.drain_timeout_ms, 4);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* record                                                                                       */

START_TEST(test_record_init) {
    ks_record r;

    memset(&r, 0x5a, sizeof(r));
    ks_record_init(&r);
    ck_assert_uint_eq(r.version, KS_RECORD_VERSION);
    ck_assert_uint_eq(r.job_id, KS_NO_VAL);
    ck_assert_uint_eq(r.array_task_id, KS_NO_VAL);
    ck_assert_uint_eq(r.time_limit_min, KS_NO_VAL);
    ck_assert_int_eq(r.submit_time, 0);
    ck_assert(r.billing < 0);
    ck_assert_uint_eq(r.truncated, 0);
    for (int f = 0; f < KS_STR_COUNT; f++) {
        ck_assert_str_eq(ks_record_str(&r, f), "");
        ck_assert_ptr_nonnull(ks_str_field_name(f));
        ck_assert_uint_gt(ks_str_field_max(f), 0);
    }
    ck_assert_ptr_null(ks_str_field_name(KS_STR_COUNT));
    ck_assert_int_eq(ks_record_set_str(&r, KS_STR_COUNT, "x"), KS_ERROR);
    ck_assert_int_eq(ks_record_set_str(&r, -1, "x"), KS_ERROR);
}
END_TEST

START_TEST(test_record_strings) {
    static ks_record r;
    char big[5000];
    char utf[KS_JOB_NAME_MAX + 8];
    size_t n;

    /* Fits: stored whole, no allocation, NUL-terminated. */
    ks_record_init(&r);
    ck_assert_int_eq(ks_record_set_str(&r, KS_STR_USER, "alice"), KS_SUCCESS);
    ck_assert_str_eq(ks_record_str(&r, KS_STR_USER), "alice");
    ck_assert_int_eq(ks_record_set_str(&r, KS_STR_ACCOUNT, NULL), KS_SUCCESS);
    ck_assert_str_eq(ks_record_str(&r, KS_STR_ACCOUNT), "");
    ck_assert_int_eq(ks_record_set_strn(&r, KS_STR_QOS, "ab\0cd", 5), KS_SUCCESS);
    ck_assert_str_eq(ks_record_str(&r, KS_STR_QOS), "ab");

    /* Exactly the maximum fits; one more is cut and flagged. */
    memset(big, 'x', sizeof(big));
    big[KS_JOB_NAME_MAX] = '\0';
    ck_assert_int_eq(ks_record_set_str(&r, KS_STR_JOB_NAME, big), KS_SUCCESS);
    ck_assert_uint_eq(r.truncated, 0);
    ks_record_init(&r);
    big[KS_JOB_NAME_MAX] = 'x';
    big[sizeof(big) - 1] = '\0';
    ck_assert_int_eq(ks_record_set_str(&r, KS_STR_JOB_NAME, big), KS_TRUNCATED);
    ck_assert_uint_eq(ks_record_strlen(&r, KS_STR_JOB_NAME), KS_JOB_NAME_MAX);
    ck_assert_uint_eq(r.truncated, 1u << KS_STR_JOB_NAME);

    /* Every field at its maximum at once fits the arena: only over-long ones are cut. */
    ks_record_init(&r);
    for (int f = 0; f < KS_STR_COUNT; f++)
        ck_assert_int_eq(ks_record_set_strn(&r, f, big, ks_str_field_max(f)), KS_SUCCESS);
    ck_assert_uint_eq(r.truncated, 0);
    ck_assert_uint_eq(r.arena_used, KS_RECORD_ARENA_SIZE);

    /* A cut never splits a UTF-8 sequence: "é" is two bytes, the maximum is even + 1. */
    ks_record_init(&r);
    for (n = 0; n + 2 <= sizeof(utf) - 1; n += 2)
        memcpy(utf + n, "\xc3\xa9", 2);
    utf[n] = '\0';
    ck_assert_int_eq(ks_record_set_str(&r, KS_STR_CLUSTER, utf), KS_TRUNCATED);
    ck_assert_uint_eq(ks_record_strlen(&r, KS_STR_CLUSTER), KS_CLUSTER_MAX); /* 64 is even */
    ck_assert_int_eq(ks_record_set_strn(&r, KS_STR_STATE, utf + 1, 40), KS_TRUNCATED);
    /* utf + 1 starts with a continuation byte; 32 bytes from there end before a lead byte. */
    ck_assert_uint_eq(ks_record_strlen(&r, KS_STR_STATE), KS_STATE_MAX - 1);

    /* ks_record_copy moves the strings along. */
    {
        static ks_record c;
        ks_record_copy(&c, &r);
        ck_assert_mem_eq(ks_record_str(&c, KS_STR_CLUSTER), utf, KS_CLUSTER_MAX);
        ck_assert_uint_eq(c.truncated, r.truncated);
    }
}
END_TEST

static const struct {
    uint32_t status;
    uint32_t code;
    uint32_t sig;
} _wait_cases[] = {
    {0, 0, 0},                     /* exit(0) */
    {3 << 8, 3, 0},                /* exit(3) */
    {255 << 8, 255, 0}, {9, 0, 9}, /* SIGKILL */
    {11 | 0x80, 0, 11},            /* SIGSEGV with core dump */
    {15, 0, 15},        {KS_NO_VAL, KS_NO_VAL, KS_NO_VAL},
};

START_TEST(test_decode_wait_status) {
    uint32_t code, sig;

    ks_decode_wait_status(_wait_cases[_i].status, &code, &sig);
    ck_assert_uint_eq(code, _wait_cases[_i].code);
    ck_assert_uint_eq(sig, _wait_cases[_i].sig);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* queue                                                                                        */

START_TEST(test_queue_full_drops_and_keeps_order) {
    ks_queue *q;
    ks_queue_stats st;
    static ks_record r, out[300];
    size_t got = 0, n;

    ck_assert_int_eq(ks_queue_create(&q, 1000, 100), KS_SUCCESS);
    for (uint32_t i = 0; i < 1005; i++) {
        _fill(&r, i);
        REQUIRE(ks_queue_push(q, &r) == (i < 1000 ? KS_QUEUE_OK : KS_QUEUE_FULL), "push %u", i);
    }
    ks_queue_get_stats(q, &st);
    ck_assert_uint_eq(st.capacity, 1000);
    ck_assert_uint_eq(st.depth, 1000);
    ck_assert_uint_eq(st.high_water, 1000);
    ck_assert_uint_eq(st.pushed, 1000);
    ck_assert_uint_eq(st.dropped, 5);
    while ((n = ks_queue_pop(q, out, N_ELEMS(out))) > 0) {
        for (size_t k = 0; k < n; k++) {
            REQUIRE(out[k].job_id == got + k, "pop order: %u at %zu", out[k].job_id, got + k);
            REQUIRE(strcmp(ks_record_str(&out[k], KS_STR_USER), "alice") == 0, "strings copied");
        }
        got += n;
    }
    ck_assert_uint_eq(got, 1000);
    /* Slots are free again. */
    _fill(&r, 5000);
    ck_assert_int_eq(ks_queue_push(q, &r), KS_QUEUE_OK);
    ck_assert_uint_eq(ks_queue_pop(q, out, 10), 1);
    ck_assert_uint_eq(out[0].job_id, 5000);
    ks_queue_get_stats(q, &st);
    ck_assert_uint_eq(st.depth, 0);
    ck_assert_uint_eq(st.high_water, 1000);
    ks_queue_destroy(q);
}
END_TEST

/* A record of a size chosen by `seed` (up to every field at its maximum), with a job name whose
 * bytes follow from `id`. */
static void _sized(ks_record *r, uint32_t id, uint32_t seed) {
    char s[KS_JOB_NAME_MAX];
    size_t len = seed % 7 == 0 ? KS_JOB_NAME_MAX : seed % KS_JOB_NAME_MAX;

    ks_record_init(r);
    r->job_id = id;
    for (size_t k = 0; k < len; k++)
        s[k] = (char)('a' + (id + k) % 26);
    ks_record_set_strn(r, KS_STR_JOB_NAME, s, len);
    if (seed % 3 == 0) /* now and then every field at its maximum */
        for (int f = 0; f < KS_STR_COUNT; f++)
            if (f != KS_STR_JOB_NAME)
                ks_record_set_strn(r, f, s, ks_str_field_max(f) < len ? ks_str_field_max(f) : len);
}

START_TEST(test_queue_ring_wraps_with_mixed_sizes) {
    enum { CAP = 3 };
    ks_queue *q;
    ks_queue_stats st;
    static ks_record r, want, out[CAP];
    uint32_t seed = 12345, next_in = 0, next_out = 0;
    char why[128];

    /* Storage is a byte ring: records of every size, pushed and popped in uneven steps, make it
     * wrap at every kind of offset. The capacity must stay the only limit. */
    ck_assert_int_eq(ks_queue_create(&q, CAP, 1), KS_SUCCESS);
    for (int round = 0; round < 3000; round++) {
        size_t n;
        ks_queue_get_stats(q, &st);
        while (st.depth < CAP) {
            seed = seed * 1103515245u + 12345u;
            _sized(&r, next_in++, seed >> 8);
            REQUIRE(ks_queue_push(q, &r) == KS_QUEUE_OK, "round %d: push %u refused", round,
                    next_in - 1);
            st.depth++;
        }
        _sized(&r, 999999, 1);
        REQUIRE(ks_queue_push(q, &r) == KS_QUEUE_FULL, "round %d: over capacity", round);
        seed = seed * 1103515245u + 12345u;
        n = ks_queue_pop(q, out, 1 + (seed >> 16) % CAP);
        for (size_t k = 0; k < n; k++) {
            /* The job name's bytes follow from the id: check them all. */
            const char *name = ks_record_str(&out[k], KS_STR_JOB_NAME);
            size_t len = ks_record_strlen(&out[k], KS_STR_JOB_NAME);
            REQUIRE(out[k].job_id == next_out, "round %d: got %u, want %u", round, out[k].job_id,
                    next_out);
            for (size_t c = 0; c < len; c++)
                REQUIRE(name[c] == (char)('a' + (next_out + c) % 26), "round %d: id %u byte %zu",
                        round, next_out, c);
            REQUIRE(name[len] == '\0', "unterminated");
            next_out++;
        }
    }
    /* And a full record comes back whole. */
    while (ks_queue_pop(q, out, CAP) > 0)
        ;
    _sized(&want, 7, 21); /* every field at its maximum */
    ck_assert_int_eq(ks_queue_push(q, &want), KS_QUEUE_OK);
    ck_assert_uint_eq(ks_queue_pop(q, out, CAP), 1);
    ck_assert_msg(_rec_equal(&want, &out[0], why, sizeof(why)), "%s", why);
    ks_queue_destroy(q);
}
END_TEST

START_TEST(test_queue_rewinds_when_empty) {
    ks_queue *q;
    ks_queue_stats st;
    static ks_record r, out[10];

    /* In steady state the worker empties the queue each flush: storage use must not creep. */
    ck_assert_int_eq(ks_queue_create(&q, 100000, 500), KS_SUCCESS);
    _fill(&r, 1);
    for (int round = 0; round < 2000; round++) {
        for (int k = 0; k < 10; k++)
            ks_queue_push(q, &r);
        REQUIRE(ks_queue_pop(q, out, 10) == 10, "round %d", round);
    }
    ks_queue_get_stats(q, &st);
    ck_assert_uint_le(st.bytes_touched, 10 * (8 + KS_RECORD_HEAD_SIZE + r.arena_used + 8));
    ck_assert_uint_eq(st.high_water, 10);
    ks_queue_destroy(q);
}
END_TEST

START_TEST(test_queue_close_and_wait) {
    ks_queue *q;
    ks_queue_stats st;
    static ks_record r, out[8];

    ck_assert_int_eq(ks_queue_create(&q, 8, 3), KS_SUCCESS);
    ck_assert_int_eq(ks_queue_wait(q, 0), KS_QUEUE_TIMEOUT);
    _fill(&r, 1);
    ks_queue_push(q, &r);
    ks_queue_push(q, &r);
    ck_assert_int_eq(ks_queue_wait(q, 1), KS_QUEUE_TIMEOUT);
    ks_queue_push(q, &r);
    ck_assert_int_eq(ks_queue_wait(q, 60000), KS_QUEUE_READY); /* returns at once */
    ks_queue_close(q);
    ks_queue_close(q);
    ck_assert_int_eq(ks_queue_push(q, &r), KS_QUEUE_CLOSED);
    ck_assert_int_eq(ks_queue_wait(q, 60000), KS_QUEUE_SHUT);
    ck_assert_uint_eq(ks_queue_pop(q, out, 8), 3); /* queued records survive the close */
    ks_queue_get_stats(q, &st);
    ck_assert_uint_eq(st.dropped, 1);
    ck_assert_uint_eq(st.pushed, 3);
    ks_queue_destroy(q);

    errno = 0;
    ck_assert_int_eq(ks_queue_create(&q, 0, 1), KS_ERROR);
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_ptr_null(q);
}
END_TEST

struct waiter {
    ks_queue *q;
    int rc;
};

static void *_waiter_main(void *arg) {
    struct waiter *w = arg;
    w->rc = ks_queue_wait(w->q, 60000);
    return NULL;
}

static bool _queue_has_waiter(void *arg) {
    ks_queue_stats st;
    ks_queue_get_stats(arg, &st);
    return st.waiters > 0;
}

START_TEST(test_queue_wakes_consumer) {
    ks_queue *q;
    struct waiter w;
    pthread_t t;
    static ks_record r;

    ck_assert_int_eq(ks_queue_create(&q, 100, 10), KS_SUCCESS);
    w.q = q;
    w.rc = -1;
    ck_assert_int_eq(pthread_create(&t, NULL, _waiter_main, &w), 0);
    ck_assert(_wait_until(_queue_has_waiter, q));
    _fill(&r, 1);
    for (int i = 0; i < 10; i++)
        ks_queue_push(q, &r);
    /* Without the wake the waiter would sit out its 60 s and the test would time out. */
    pthread_join(t, NULL);
    ck_assert_int_eq(w.rc, KS_QUEUE_READY);
    ks_queue_destroy(q);
}
END_TEST

#define PRODUCERS 4

struct producer {
    ks_queue *q;
    uint32_t id;
    uint32_t count;
    bool retry; /* on FULL: yield and push again */
    uint64_t full;
};

static void *_producer_main(void *arg) {
    struct producer *p = arg;
    ks_record *r = malloc(sizeof(*r));

    for (uint32_t i = 0; i < p->count; i++) {
        int rc;
        _fill(r, p->id << 24 | i);
        while ((rc = ks_queue_push(p->q, r)) == KS_QUEUE_FULL && p->retry) {
            p->full++;
            sched_yield();
        }
        if (rc != KS_QUEUE_OK)
            p->full++;
    }
    free(r);
    return NULL;
}

/* Checks that records arrive complete and, per producer, in order. */
static void _check_per_producer(const ks_record *recs, size_t n, uint32_t per) {
    uint32_t next[PRODUCERS] = {0};

    for (size_t k = 0; k < n; k++) {
        uint32_t p = recs[k].job_id >> 24, i = recs[k].job_id & 0xffffff;
        REQUIRE(p < PRODUCERS, "bad producer %u", p);
        REQUIRE(i == next[p], "producer %u: got %u, want %u", p, i, next[p]);
        next[p]++;
    }
    for (int p = 0; p < PRODUCERS; p++)
        REQUIRE(next[p] == per, "producer %d: %u records, want %u", p, next[p], per);
}

START_TEST(test_queue_concurrent_producers) {
    enum { PER = 2000 };
    ks_queue *q;
    ks_queue_stats st;
    struct producer prod[PRODUCERS];
    pthread_t t[PRODUCERS];
    ks_record *out = malloc(PRODUCERS * PER * sizeof(*out));

    ck_assert_int_eq(ks_queue_create(&q, PRODUCERS * PER + 1, 1), KS_SUCCESS);
    for (int i = 0; i < PRODUCERS; i++) {
        prod[i] = (struct producer){q, (uint32_t)i, PER, false, 0};
        ck_assert_int_eq(pthread_create(&t[i], NULL, _producer_main, &prod[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        pthread_join(t[i], NULL);
        ck_assert_uint_eq(prod[i].full, 0);
    }
    ks_queue_get_stats(q, &st);
    ck_assert_uint_eq(st.pushed, PRODUCERS * PER);
    ck_assert_uint_eq(st.dropped, 0);
    ck_assert_uint_eq(ks_queue_pop(q, out, PRODUCERS * PER), PRODUCERS * PER);
    _check_per_producer(out, PRODUCERS * PER, PER);
    free(out);
    ks_queue_destroy(q);
}
END_TEST

START_TEST(test_queue_concurrent_with_consumer) {
    enum { PER = 5000 };
    ks_queue *q;
    ks_queue_stats st;
    struct producer prod[PRODUCERS];
    pthread_t t[PRODUCERS];
    ks_record *out = malloc(PRODUCERS * PER * sizeof(*out));
    size_t got = 0;
    uint64_t full = 0;

    /* Small queue, so producers hit FULL while the consumer pops: nothing may get lost or
     * reordered, and every refusal is counted. */
    ck_assert_int_eq(ks_queue_create(&q, 256, 64), KS_SUCCESS);
    for (int i = 0; i < PRODUCERS; i++) {
        prod[i] = (struct producer){q, (uint32_t)i, PER, true, 0};
        ck_assert_int_eq(pthread_create(&t[i], NULL, _producer_main, &prod[i]), 0);
    }
    while (got < PRODUCERS * PER) {
        ks_queue_wait(q, 1);
        got += ks_queue_pop(q, out + got, 100);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        pthread_join(t[i], NULL);
        full += prod[i].full;
    }
    ks_queue_get_stats(q, &st);
    ck_assert_uint_eq(st.pushed, PRODUCERS * PER);
    ck_assert_uint_eq(st.dropped, full);
    ck_assert_uint_le(st.high_water, 256);
    _check_per_producer(out, got, PER);
    free(out);
    ks_queue_destroy(q);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* spool: round trips                                                                           */

struct bytes {
    const char *s;
    size_t len;
    bool utf8; /* valid UTF-8: written as is, no "raw" */
};

#define B(lit, utf8)                                                                               \
    { lit, sizeof(lit) - 1, utf8 }

/* Strings slurmctld may hand over: users choose job names, work dirs and more. */
static const struct bytes _hostile[] = {
    B("he said \"hi\"", true),
    B("back\\slash\\\\ and \\u0000 as text", true),
    B("line1\nline2\r\nline3", true),
    B("tab\there\fform\bback", true),
    B("\x01\x02\x03\x04\x05\x06\x07\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c"
      "\x1d\x1e\x1f\x7f",
      true),
    B("invalid \xff byte", false),
    B("\xc3", false),             /* lone lead byte */
    B("\xc3\x28", false),         /* lead byte then ASCII */
    B("\xc0\xaf", false),         /* overlong '/' */
    B("\xed\xa0\x80", false),     /* UTF-16 surrogate */
    B("\xf4\x90\x80\x80", false), /* above U+10FFFF */
    B("cut \xf0\x9f\x98", false), /* truncated 4-byte sequence */
    B("\x80\x80\x80 continuation", false),
    B("gr\xc3\xbc\xc3\x9f"
      "e \xf0\x9f\x98\x80 \xe6\x97\xa5\xe6\x9c\xac",
      true),
    B("\xef\xbf\xbd literal U+FFFD", true),
    B("a\"\\\n\xff\x01\xc3\xa9", false),
    B("{\"job_id\":1}\n{\"x\":2}", true),
    B("</script><!--", true),
    B("", true),
};

START_TEST(test_spool_round_trip_hostile) {
    static const int fields[] = {KS_STR_JOB_NAME, KS_STR_WORK_DIR,  KS_STR_USER,
                                 KS_STR_ACCOUNT,  KS_STR_NODE_LIST, KS_STR_CLUSTER};
    char dir[64], path[PATH_MAX], err[512], why[128];
    ks_spool *sp;
    static ks_record r[2];
    ks_record *back;
    size_t n, len, nl = 0;
    char *text;

    _mkdtemp(dir, sizeof(dir));
    sp = _open_spool(dir);
    /* The hostile string in several fields of one record, a plain record beside it. */
    ks_record_init(&r[0]);
    r[0].job_id = 1;
    for (size_t f = 0; f < N_ELEMS(fields); f++)
        ck_assert_int_eq(ks_record_set_strn(&r[0], fields[f], _hostile[_i].s, _hostile[_i].len),
                         KS_SUCCESS);
    _fill(&r[1], 2);
    ck_assert_msg(ks_spool_write(sp, r, 2) == KS_SUCCESS, "%s", ks_spool_last_error(sp));
    snprintf(path, sizeof(path), "%s/%s", dir, ks_spool_last_file(sp));

    ck_assert_msg(ks_spool_read_file(path, &back, &n, err, sizeof(err)) == KS_SUCCESS, "%s", err);
    ck_assert_uint_eq(n, 2);
    for (int k = 0; k < 2; k++)
        ck_assert_msg(_rec_equal(&r[k], &back[k], why, sizeof(why)), "record %d: %s", k, why);
    free(back);

    /* One line per record: no raw control byte but the line ends. */
    text = _read_text(path, &len);
    for (size_t k = 0; k < len; k++) {
        REQUIRE((unsigned char)text[k] >= 0x20 || text[k] == '\n', "raw byte 0x%02x at %zu",
                (unsigned char)text[k], k);
        nl += text[k] == '\n';
    }
    ck_assert_uint_eq(nl, 3);
    /* Invalid UTF-8 goes to "raw"; valid text does not. */
    if (_hostile[_i].utf8)
        ck_assert_ptr_null(strstr(text, "\"raw\""));
    else
        ck_assert_ptr_nonnull(strstr(text, "\"raw\":{\"cluster\":"));
    free(text);
    ks_spool_close(sp);
    _rmrf(dir);
}
END_TEST

START_TEST(test_spool_invalid_utf8_encoding) {
    static ks_record r, back;
    char err[256], why[128], *line;
    json_t *o;

    ks_record_init(&r);
    ks_record_set_str(&r, KS_STR_JOB_NAME, "bad\xff\xfe!");
    ks_record_set_str(&r, KS_STR_USER, "ok");
    o = ks_record_to_json(&r);
    ck_assert_ptr_nonnull(o);
    line = json_dumps(o, JSON_COMPACT);
    /* Each bad byte becomes U+FFFD in the text; the bytes are kept in base64. */
    ck_assert_ptr_nonnull(strstr(line, "\"job_name\":\"bad\xef\xbf\xbd\xef\xbf\xbd!\""));
    ck_assert_ptr_nonnull(strstr(line, "\"raw\":{\"job_name\":\"YmFk//4h\"}"));
    ck_assert_ptr_nonnull(strstr(line, "\"user\":\"ok\""));
    ck_assert_ptr_nonnull(strstr(line, "\"truncated\":[]"));
    ck_assert_msg(ks_record_from_json(o, &back, err, sizeof(err)) == KS_SUCCESS, "%s", err);
    ck_assert_msg(_rec_equal(&r, &back, why, sizeof(why)), "%s", why);
    free(line);
    json_decref(o);
}
END_TEST

START_TEST(test_spool_long_strings_truncated) {
    char dir[64], path[PATH_MAX], err[512], why[128], *text;
    static char big[20000];
    static ks_record r[2];
    ks_record *back;
    ks_spool *sp;
    size_t n, len;

    memset(big, 'n', sizeof(big) - 1);
    ks_record_init(&r[0]);
    r[0].job_id = 1;
    ck_assert_int_eq(ks_record_set_str(&r[0], KS_STR_JOB_NAME, big), KS_TRUNCATED);
    ks_record_init(&r[1]);
    for (int f = 0; f < KS_STR_COUNT; f++)
        ck_assert_int_eq(ks_record_set_str(&r[1], f, big), KS_TRUNCATED);
    ck_assert_uint_eq(r[1].truncated, (1u << KS_STR_COUNT) - 1);

    _mkdtemp(dir, sizeof(dir));
    sp = _open_spool(dir);
    ck_assert_int_eq(ks_spool_write(sp, r, 2), KS_SUCCESS);
    snprintf(path, sizeof(path), "%s/%s", dir, ks_spool_last_file(sp));
    text = _read_text(path, &len);
    ck_assert_ptr_nonnull(strstr(text, "\"truncated\":[\"job_name\"]"));
    ck_assert_ptr_nonnull(strstr(text, "\"truncated\":[\"cluster\",\"het_job_info\",\"job_name\""));
    free(text);
    ck_assert_msg(ks_spool_read_file(path, &back, &n, err, sizeof(err)) == KS_SUCCESS, "%s", err);
    ck_assert_uint_eq(n, 2);
    for (int k = 0; k < 2; k++)
        ck_assert_msg(_rec_equal(&r[k], &back[k], why, sizeof(why)), "record %d: %s", k, why);
    ck_assert_uint_eq(ks_record_strlen(&back[0], KS_STR_JOB_NAME), KS_JOB_NAME_MAX);
    free(back);
    ks_spool_close(sp);
    _rmrf(dir);
}
END_TEST

START_TEST(test_spool_sentinels_round_trip) {
    static ks_record r[3], back;
    char err[256], why[128], *line;
    json_t *o;

    ks_record_init(&r[0]); /* everything unset */
    _fill(&r[1], 9);
    r[1].time_limit_min = KS_INFINITE;
    r[1].billing = 0.1 + 0.2; /* needs all 17 digits */
    r[1].exit_code = 0;
    r[1].array_task_id = 0;
    _fill(&r[2], KS_NO_VAL - 1); /* largest real value */
    r[2].time_limit_min = KS_NO_VAL - 1;
    r[2].submit_time = (time_t)4102444800; /* 2100 */

    for (int k = 0; k < 3; k++) {
        o = ks_record_to_json(&r[k]);
        ck_assert_ptr_nonnull(o);
        ck_assert_msg(ks_record_from_json(o, &back, err, sizeof(err)) == KS_SUCCESS, "%s", err);
        ck_assert_msg(_rec_equal(&r[k], &back, why, sizeof(why)), "record %d: %s", k, why);
        line = json_dumps(o, JSON_COMPACT);
        if (k == 0) {
            ck_assert_ptr_nonnull(strstr(line, "\"job_id\":null"));
            ck_assert_ptr_nonnull(strstr(line, "\"submit_time\":null"));
            ck_assert_ptr_nonnull(strstr(line, "\"time_limit_min\":null"));
            ck_assert_ptr_nonnull(strstr(line, "\"billing\":null"));
            ck_assert_ptr_nonnull(strstr(line, "\"cluster\":\"\""));
        } else if (k == 1) {
            ck_assert_ptr_nonnull(strstr(line, "\"time_limit_min\":-1"));
            ck_assert_ptr_nonnull(strstr(line, "\"exit_code\":0,\"exit_signal\":0"));
        }
        free(line);
        json_decref(o);
    }
    /* KS_INFINITE outside time_limit_min means nothing: written as null, read as KS_NO_VAL. */
    r[1].priority = KS_INFINITE;
    o = ks_record_to_json(&r[1]);
    ck_assert_int_eq(ks_record_from_json(o, &back, err, sizeof(err)), KS_SUCCESS);
    ck_assert_uint_eq(back.priority, KS_NO_VAL);
    json_decref(o);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* spool: names, failures                                                                       */

START_TEST(test_spool_names_sort_in_write_order) {
    char dir[64], path[PATH_MAX], **names;
    static ks_record r;
    ks_spool *sp;
    size_t n;
    uint32_t id = 0;

    _mkdtemp(dir, sizeof(dir));
    sp = _open_spool(dir);
    for (; id < 40; id++) {
        _fill(&r, id);
        ck_assert_int_eq(ks_spool_write(sp, &r, 1), KS_SUCCESS);
        ck_assert(ks_spool_is_batch_name(ks_spool_last_file(sp)));
    }
    ks_spool_close(sp);
    /* A restarted writer continues above what is there. */
    sp = _open_spool(dir);
    for (; id < 50; id++) {
        _fill(&r, id);
        ck_assert_int_eq(ks_spool_write(sp, &r, 1), KS_SUCCESS);
    }
    ks_spool_close(sp);
    /* Even above a sequence number far ahead of the clock. */
    snprintf(path, sizeof(path), "%s/10000000000000000000-1-1.json", dir);
    _write_text(path, "", 0);
    sp = _open_spool(dir);
    _fill(&r, 1000);
    ck_assert_int_eq(ks_spool_write(sp, &r, 1), KS_SUCCESS);
    ck_assert_int_eq(strncmp(ks_spool_last_file(sp), "10000000000000000001-", 21), 0);
    ks_spool_close(sp);
    unlink(path);

    n = _batches(dir, &names);
    ck_assert_uint_eq(n, 51);
    _free_list(names, n);
    /* Drop the last (id 1000) and check the rest read back in write order. */
    {
        char **all;
        size_t k = _batches(dir, &all);
        snprintf(path, sizeof(path), "%s/%s", dir, all[k - 1]);
        unlink(path);
        _free_list(all, k);
    }
    ck_assert_uint_eq(_check_disk_ids(dir, 0), 50);
    _rmrf(dir);
}
END_TEST

static const struct {
    const char *name;
    int ok;
} _batch_names[] = {
    {"00000000000000000001-123-1732790000.json", 1},
    {"00000000000000000001-1-1.json", 1},
    {"0000000000000000001-123-1732790000.json", 0}, /* 19 digits */
    {"00000000000000000001-123-1732790000.json.x", 0},
    {"00000000000000000001-123.json", 0},
    {"00000000000000000001--1.json", 0},
    {".tmp.123.1", 0},
    {"plugin-stats.json", 0},
    {"", 0},
};

START_TEST(test_spool_batch_names) {
    ck_assert_int_eq(ks_spool_is_batch_name(_batch_names[_i].name), _batch_names[_i].ok);
}
END_TEST

/* Runs as an unprivileged user when the test runs as root (root ignores folder permissions). */
static int _unwritable_write(const char *dir) {
    static ks_record r[3], copy[3];
    ks_spool *sp;
    char err[256], **names;
    size_t n;

    for (int k = 0; k < 3; k++)
        _fill(&r[k], (uint32_t)k);
    memcpy(copy, r, sizeof(r));
    if (ks_spool_open(&sp, dir, "plugin_test", err, sizeof(err)) != KS_SUCCESS)
        return 10;
    errno = 0;
    if (ks_spool_write(sp, r, 3) != KS_ERROR)
        return 11;
    if (errno != EACCES)
        return 12;
    if (strstr(ks_spool_last_error(sp), "Step=create") == NULL)
        return 13;
    if (memcmp(r, copy, sizeof(r)) != 0)
        return 14; /* the batch is the caller's, untouched, ready to retry */
    ks_spool_close(sp);
    n = _list(dir, "", &names);
    _free_list(names, n);
    return n == 0 ? 0 : 15;
}

START_TEST(test_spool_unwritable_folder) {
    char dir[64];
    int status = 0;

    _mkdtemp(dir, sizeof(dir));
    ck_assert_int_eq(chmod(dir, 0555), 0);
    if (geteuid() == 0) {
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
                _exit(20);
            _exit(_unwritable_write(dir));
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed: %d",
                      WEXITSTATUS(status));
    } else {
        ck_assert_int_eq(_unwritable_write(dir), 0);
    }
    _rmrf(dir);
}
END_TEST

static const struct {
    enum ks_spool_step step;
    int err;
    const char *msg;
    int published; /* the file is complete under its final name despite the error */
} _faults[] = {
    {KS_SPOOL_STEP_OPEN, EMFILE, "Step=create", 0},
    {KS_SPOOL_STEP_WRITE, ENOSPC, "Step=write", 0},
    {KS_SPOOL_STEP_FSYNC, EIO, "Step=fsync", 0},
    {KS_SPOOL_STEP_RENAME, EXDEV, "Step=rename", 0},
    {KS_SPOOL_STEP_DIRSYNC, EIO, "Step=fsync-dir", 1},
};

START_TEST(test_spool_write_failure_steps) {
    char dir[64], **names, why[512];
    static ks_record r[2];
    ks_spool *sp;
    size_t n;

    _mkdtemp(dir, sizeof(dir));
    sp = _open_spool(dir);
    _fill(&r[0], 0);
    _fill(&r[1], 1);
    ks_spool_inject_fault(sp, _faults[_i].step, _faults[_i].err, 1);
    errno = 0;
    ck_assert_int_eq(ks_spool_write(sp, r, 2), KS_ERROR);
    ck_assert_int_eq(errno, _faults[_i].err);
    snprintf(why, sizeof(why), "%s", ks_spool_last_error(sp));
    ck_assert_msg(strstr(why, _faults[_i].msg) != NULL, "%s", why);
    ck_assert_msg(strstr(why, strerror(_faults[_i].err)) != NULL, "%s", why);
    /* No temp file is left behind. */
    n = _list(dir, ".tmp.", &names);
    ck_assert_uint_eq(n, 0);
    _free_list(names, n);
    n = _batches(dir, &names);
    ck_assert_uint_eq(n, (size_t)_faults[_i].published);
    _free_list(names, n);
    /* The fault was for one call: the retry of the same batch succeeds. */
    ck_assert_int_eq(ks_spool_write(sp, r, 2), KS_SUCCESS);
    if (_faults[_i].published) {
        /* The batch is there twice (0 1 0 1): keystoned's idempotent upsert absorbs that. */
        n = _batches(dir, &names);
        ck_assert_uint_eq(n, 2);
        _free_list(names, n);
    } else {
        ck_assert_uint_eq(_check_disk_ids(dir, 0), 2);
    }
    ks_spool_close(sp);
    _rmrf(dir);
}
END_TEST

START_TEST(test_spool_open_errors_and_stale_temp) {
    char dir[64], path[PATH_MAX], err[256], **names;
    ks_spool *sp;
    pid_t dead;
    size_t n;

    errno = 0;
    ck_assert_int_eq(ks_spool_open(&sp, "/nonexistent/ks-spool", "t", err, sizeof(err)), KS_ERROR);
    ck_assert_int_eq(errno, ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/ks-spool"));
    ck_assert_int_eq(ks_spool_open(&sp, "/tmp", "bad\xff", err, sizeof(err)), KS_ERROR);

    _mkdtemp(dir, sizeof(dir));
    dead = fork();
    if (dead == 0)
        _exit(0);
    waitpid(dead, NULL, 0);
    snprintf(path, sizeof(path), "%s/.tmp.%ld.17", dir, (long)dead);
    _write_text(path, "x", 1);
    snprintf(path, sizeof(path), "%s/.tmp.1.18", dir); /* pid 1 is alive */
    _write_text(path, "x", 1);
    sp = _open_spool(dir);
    ks_spool_close(sp);
    n = _list(dir, ".tmp.", &names);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(names[0], ".tmp.1.18");
    _free_list(names, n);
    _rmrf(dir);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* spool: the reader refuses bad files                                                          */

/* Writes one batch of `n` typical records into dir and returns its path in `path`. */
static void _good_file(const char *dir, int n, char *path, size_t len) {
    static ks_record r[3];
    ks_spool *sp = _open_spool(dir);

    for (int k = 0; k < n; k++)
        _fill(&r[k], (uint32_t)(42 + k));
    /* Not UTF-8, so the file has a "raw" member to corrupt (a second set replaces the name). */
    ks_record_set_str(&r[0], KS_STR_JOB_NAME, "bad\xff");
    ck_assert_int_eq(ks_spool_write(sp, r, (size_t)n), KS_SUCCESS);
    snprintf(path, len, "%s/%s", dir, ks_spool_last_file(sp));
    ks_spool_close(sp);
}

START_TEST(test_reader_rejects_truncated) {
    char dir[64], path[PATH_MAX], cut[PATH_MAX], err[512];
    char *text;
    size_t len, n, hdr;
    ks_record *recs;

    _mkdtemp(dir, sizeof(dir));
    _good_file(dir, 3, path, sizeof(path));
    text = _read_text(path, &len);
    hdr = (size_t)(strchr(text, '\n') - text) + 1;
    snprintf(cut, sizeof(cut), "%s/cut.json", dir);
    /* Every proper prefix of a good file is refused, with the file's name in the message. */
    for (size_t k = 0; k < len; k++) {
        _write_text(cut, text, k);
        err[0] = '\0';
        REQUIRE(ks_spool_read_file(cut, &recs, &n, err, sizeof(err)) == KS_ERROR,
                "prefix %zu of %zu accepted", k, len);
        REQUIRE(errno == EINVAL, "prefix %zu: errno %d", k, errno);
        REQUIRE(strncmp(err, cut, strlen(cut)) == 0, "prefix %zu: '%s'", k, err);
        REQUIRE(recs == NULL && n == 0, "prefix %zu: output set", k);
        if (k == 0)
            REQUIRE(strstr(err, "empty file") != NULL, "%s", err);
        else if (k < hdr)
            REQUIRE(strstr(err, "header (line 1)") != NULL, "%s", err);
        else if (k == hdr)
            REQUIRE(strstr(err, "truncated: header says 3 records, file ends after 0") != NULL,
                    "%s", err);
        else if (k == len - 1)
            REQUIRE(strstr(err, "record 2 (line 4): no newline at end of file") != NULL, "%s", err);
        else
            REQUIRE(strstr(err, "record ") != NULL || strstr(err, "truncated") != NULL, "%s", err);
    }
    /* And the whole file is fine. */
    _write_text(cut, text, len);
    ck_assert_msg(ks_spool_read_file(cut, &recs, &n, err, sizeof(err)) == KS_SUCCESS, "%s", err);
    ck_assert_uint_eq(n, 3);
    free(recs);
    free(text);
    ck_assert_int_eq(ks_spool_read_file(dir, &recs, &n, err, sizeof(err)), KS_ERROR);
    ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
    ck_assert_int_eq(ks_spool_read_file("/nonexistent.json", &recs, &n, err, sizeof(err)),
                     KS_ERROR);
    ck_assert_int_eq(errno, ENOENT);
    _rmrf(dir);
}
END_TEST

#define S(lit) lit, sizeof(lit) - 1

/* One corruption of a good one-record file: replace the first `from` by `to` (NULL from:
 * append `to`), then expect a message containing `msg`. */
static const struct {
    const char *from;
    size_t from_len;
    const char *to;
    size_t to_len;
    const char *msg;
} _corrupt[] = {
    {S("\"format\":\"keystone-jobcomp-spool\""), S("\"format\":\"other\""),
     "header (line 1): member 'format': not"},
    {S("\"format_version\":1"), S("\"format_version\":2"), "unsupported format_version 2"},
    {S("\"record_version\":1"), S("\"record_version\":2"), "unsupported record_version 2"},
    {S(",\"count\":1}"), S("}"), "header (line 1): missing member 'count'"},
    {S("\"count\":1"), S("\"count\":1,\"x\":1"), "header (line 1): unknown member 'x'"},
    {S("\"pid\":"), S("\"pid\":-"), "member 'pid': expected non-negative integer"},
    {S("\"count\":1"), S("\"count\":2"), "truncated: header says 2 records, file ends after 1"},
    {S("\"count\":1"), S("\"count\":0"), "line 2: data after the 0 records"},
    {NULL, 0, S("x"), "line 3: data after the 1 records"},
    {NULL, 0, S("\n"), "line 3: data after the 1 records"},
    {S("\"uid\":1000,"), S(""), "record 0 (line 2): missing member 'uid'"},
    {S("\"job_id\":42"), S("\"job_id\":\"42\""),
     "record 0 (line 2): member 'job_id': expected "
     "integer or null"},
    {S("\"job_id\":42"), S("\"job_id\":42,\"color\":\"red\""), "unknown member 'color'"},
    {S("\"job_id\":42"), S("\"job_id\":42,\"job_id\":43"), "record 0 (line 2): invalid JSON"},
    {S("\"uid\":1000"), S("\"uid\":4294967294"), "member 'uid': 4294967294 out of range"},
    {S("\"uid\":1000"), S("\"uid\":-5"), "member 'uid': -5 out of range"},
    {S("\"uid\":1000"), S("\"uid\":1000.0"), "member 'uid': expected integer or null"},
    {S("\"time_limit_min\":60"), S("\"time_limit_min\":-2"), "member 'time_limit_min': -2 out"},
    {S("\"cluster\":\"smp\""),
     S("\"cluster\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\""),
     "member 'cluster': 65 bytes, longer than the maximum 64"},
    {S("\"submit_time\":1732790000"), S("\"submit_time\":0"),
     "member 'submit_time': 0 is not a time"},
    {S("\"billing\":8.0"), S("\"billing\":-1.0"), "member 'billing': negative"},
    {S("\"billing\":8.0"), S("\"billing\":\"8\""), "member 'billing': expected number or null"},
    {S("\"state\":\"COMPLETED\""), S("\"state\":null"), "member 'state': expected string"},
    {S("\"truncated\":[]"), S("\"truncated\":[\"colour\"]"),
     "member 'truncated': element 0 is not a string field name"},
    {S("\"truncated\":[]"), S("\"truncated\":[\"qos\",\"qos\"]"), "'qos' listed twice"},
    {S("\"truncated\":[]"), S("\"truncated\":{}"), "member 'truncated': expected array"},
    {S("\"truncated\":[],"), S(""), "missing member 'truncated'"},
    {S("\"YmFk/w==\""), S("\"YmFk/w=\""), "member 'raw.job_name': not canonical base64"},
    {S("\"YmFk/w==\""), S("\"YmFk/x==\""), "member 'raw.job_name': not canonical base64"},
    {S("\"YmFk/w==\""), S("\"YmFk\""), "member 'raw.job_name': given for valid UTF-8"},
    {S("\"raw\":{\"job_name\""), S("\"raw\":{\"color\""), "member 'raw': unknown string field"},
    {S("bad\xef\xbf\xbd"), S("bax\xef\xbf\xbd"), "member 'job_name': text does not match raw"},
    {S("\"cluster\":\"smp\""), S("\"cluster\":\"sm\xff\""), "record 0 (line 2): invalid JSON"},
    {S("\"cluster\":\"smp\""), S("\"cluster\":\"s\\u0000p\""), "record 0 (line 2): invalid JSON"},
    {S("\"cluster\":\"smp\""), S("\"cluster\":\"s\0p\""), "record 0 (line 2): NUL byte"},
    {S("\"YmFk/w==\"}}"), S("\"YmFk/w==\"}} 1"), "record 0 (line 2): invalid JSON"},
    {S("{\"cluster\""), S("[{\"cluster\""), "record 0 (line 2): invalid JSON"},
    {S("{\"format\""), S("{\"format\"\n"), "header (line 1): invalid JSON"},
};

START_TEST(test_reader_rejects_corrupt) {
    char dir[64], path[PATH_MAX], bad[PATH_MAX], err[512];
    char *text, *out, *at;
    size_t len, n, olen;
    ks_record *recs;

    _mkdtemp(dir, sizeof(dir));
    _good_file(dir, 1, path, sizeof(path));
    text = _read_text(path, &len);
    ck_assert_int_eq(ks_spool_read_file(path, &recs, &n, err, sizeof(err)), KS_SUCCESS);
    free(recs);

    out = malloc(len + _corrupt[_i].to_len + 1);
    if (_corrupt[_i].from == NULL) {
        memcpy(out, text, len);
        memcpy(out + len, _corrupt[_i].to, _corrupt[_i].to_len);
        olen = len + _corrupt[_i].to_len;
    } else {
        at = memmem(text, len, _corrupt[_i].from, _corrupt[_i].from_len);
        ck_assert_msg(at != NULL, "case %d: '%s' not in the good file:\n%s", _i, _corrupt[_i].from,
                      text);
        olen = (size_t)(at - text);
        memcpy(out, text, olen);
        memcpy(out + olen, _corrupt[_i].to, _corrupt[_i].to_len);
        olen += _corrupt[_i].to_len;
        memcpy(out + olen, at + _corrupt[_i].from_len,
               len - (size_t)(at - text) - _corrupt[_i].from_len);
        olen += len - (size_t)(at - text) - _corrupt[_i].from_len;
    }
    snprintf(bad, sizeof(bad), "%s/bad.json", dir);
    _write_text(bad, out, olen);
    err[0] = '\0';
    ck_assert_int_eq(ks_spool_read_file(bad, &recs, &n, err, sizeof(err)), KS_ERROR);
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_msg(strncmp(err, bad, strlen(bad)) == 0, "message does not name the file: %s", err);
    ck_assert_msg(strstr(err, _corrupt[_i].msg) != NULL, "case %d: got '%s', want '%s'", _i, err,
                  _corrupt[_i].msg);
    free(out);
    free(text);
    _rmrf(dir);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* worker                                                                                       */

struct wfix {
    char dir[64];
    ks_queue *q;
    ks_spool *sp;
    ks_worker *w;
    ks_worker_params p;
    struct logcap log;
};

static void _wfix_init(struct wfix *f, size_t capacity, uint32_t batch) {
    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->log.mu, NULL);
    _mkdtemp(f->dir, sizeof(f->dir));
    ck_assert_int_eq(ks_queue_create(&f->q, capacity, batch), KS_SUCCESS);
    f->sp = _open_spool(f->dir);
    ks_worker_params_init(&f->p, NULL);
    f->p.batch_size = batch;
    f->p.flush_interval_ms = 2;
    f->p.backoff_min_ms = 1;
    f->p.backoff_max_ms = 4;
    f->p.stats_interval_ms = 5;
    f->p.log = _log_capture;
    f->p.log_arg = &f->log;
}

static void _wfix_start(struct wfix *f) {
    char err[256];
    ck_assert_msg(ks_worker_start(&f->w, f->q, f->sp, &f->p, err, sizeof(err)) == KS_SUCCESS, "%s",
                  err);
}

static void _wfix_fini(struct wfix *f) {
    ks_spool_close(f->sp);
    ks_queue_destroy(f->q);
    _rmrf(f->dir);
    pthread_mutex_destroy(&f->log.mu);
}

static void _push_ids(ks_queue *q, uint32_t from, uint32_t to, int want) {
    static ks_record r;
    for (uint32_t i = from; i < to; i++) {
        _fill(&r, i);
        REQUIRE(ks_queue_push(q, &r) == want, "push %u", i);
    }
}

static json_t *_read_stats(const char *dir) {
    char path[PATH_MAX];
    json_error_t je;
    json_t *doc;

    snprintf(path, sizeof(path), "%s/%s", dir, KS_SPOOL_STATS_FILE);
    doc = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    ck_assert_msg(doc != NULL, "%s: %s", path, je.text);
    return doc;
}

static json_int_t _stat_int(json_t *doc, const char *obj, const char *key) {
    json_t *v = json_object_get(json_object_get(doc, obj), key);
    ck_assert_msg(json_is_integer(v), "%s.%s missing", obj, key);
    return json_integer_value(v);
}

START_TEST(test_worker_stop_drains_queue) {
    struct wfix f;

    _wfix_init(&f, 5000, 500);
    f.p.flush_interval_ms = 60000; /* only the stop makes it write the partial batch */
    _push_ids(f.q, 0, 2750, KS_QUEUE_OK);
    _wfix_start(&f);
    ck_assert_int_eq(ks_worker_stop(f.w), KS_SUCCESS);
    ck_assert_uint_eq(_check_disk_ids(f.dir, 0), 2750);
    {
        json_t *st = _read_stats(f.dir);
        ck_assert_str_eq(json_string_value(json_object_get(st, "format")),
                         "keystone-jobcomp-stats");
        ck_assert_int_eq(_stat_int(st, "queue", "pushed"), 2750);
        ck_assert_int_eq(_stat_int(st, "queue", "depth"), 0);
        ck_assert_int_eq(_stat_int(st, "queue", "high_water"), 2750);
        ck_assert_int_eq(_stat_int(st, "spool", "records_written"), 2750);
        ck_assert_int_eq(_stat_int(st, "spool", "files_written"), 6);
        ck_assert_int_eq(_stat_int(st, "spool", "lost_at_stop"), 0);
        json_decref(st);
    }
    /* After the stop the queue refuses records (counted). */
    _push_ids(f.q, 0, 1, KS_QUEUE_CLOSED);
    _wfix_fini(&f);
}
END_TEST

struct written_arg {
    ks_worker *w;
    uint64_t want;
};

static bool _written(void *arg) {
    struct written_arg *a = arg;
    ks_worker_stats st;
    ks_worker_get_stats(a->w, &st);
    return st.records_written >= a->want;
}

static bool _write_failed(void *arg) {
    struct written_arg *a = arg;
    ks_worker_stats st;
    ks_worker_get_stats(a->w, &st);
    return st.write_errors >= a->want;
}

START_TEST(test_worker_flushes_partial_batch) {
    struct wfix f;
    struct written_arg a;

    _wfix_init(&f, 1000, 500);
    _wfix_start(&f);
    _push_ids(f.q, 0, 3, KS_QUEUE_OK);
    a = (struct written_arg){f.w, 3};
    ck_assert_msg(_wait_until(_written, &a), "3 records not written within the flush interval");
    ck_assert_uint_eq(_check_disk_ids(f.dir, 0), 3);
    ck_assert_int_eq(ks_worker_stop(f.w), KS_SUCCESS);
    _wfix_fini(&f);
}
END_TEST

START_TEST(test_worker_retries_and_keeps_batch) {
    struct wfix f;

    _wfix_init(&f, 1000, 4);
    ks_spool_inject_fault(f.sp, KS_SPOOL_STEP_FSYNC, EIO, 3);
    _push_ids(f.q, 0, 10, KS_QUEUE_OK);
    _wfix_start(&f);
    {
        struct written_arg a = {f.w, 10};
        ks_worker_stats st;
        ck_assert(_wait_until(_written, &a));
        ks_worker_get_stats(f.w, &st);
        ck_assert_uint_eq(st.write_errors, 3);
        ck_assert_uint_eq(st.retry_pending, 0);
        ck_assert_int_eq(st.last_errno, EIO);
    }
    ck_assert_int_eq(ks_worker_stop(f.w), KS_SUCCESS);
    ck_assert_uint_eq(_check_disk_ids(f.dir, 0), 10);
    ck_assert_ptr_nonnull(strstr(f.log.text, "keystone: spool write failed: Step=fsync"));
    ck_assert_ptr_nonnull(strstr(f.log.text, "keeping Records=4"));
    ck_assert_ptr_nonnull(strstr(f.log.text, "keystone: spool writes recovered"));
    _wfix_fini(&f);
}
END_TEST

START_TEST(test_worker_full_queue_while_failing) {
    struct wfix f;
    struct written_arg a;
    ks_worker_stats st;

    _wfix_init(&f, 1000, 100);
    _push_ids(f.q, 0, 1000, KS_QUEUE_OK);
    ks_spool_inject_fault(f.sp, KS_SPOOL_STEP_WRITE, ENOSPC, UINT_MAX);
    _wfix_start(&f);
    a = (struct written_arg){f.w, 2};
    ck_assert(_wait_until(_write_failed, &a));
    /* The worker holds ids 0..99 and pops nothing more: 900 queued, room for 100. */
    _push_ids(f.q, 1000, 1100, KS_QUEUE_OK);
    _push_ids(f.q, 1100, 1150, KS_QUEUE_FULL);
    ks_worker_get_stats(f.w, &st);
    ck_assert_uint_eq(st.queue.dropped, 50);
    ck_assert_uint_eq(st.retry_pending, 100);
    ck_assert_uint_eq(st.records_written, 0);
    ck_assert_int_eq(st.last_errno, ENOSPC);
    /* The disk recovers: everything accepted reaches it, in order. */
    ks_spool_inject_fault(f.sp, KS_SPOOL_STEP_WRITE, 0, 0);
    a = (struct written_arg){f.w, 1100};
    ck_assert(_wait_until(_written, &a));
    ck_assert_int_eq(ks_worker_stop(f.w), KS_SUCCESS);
    ck_assert_uint_eq(_check_disk_ids(f.dir, 0), 1100);
    /* Drops are reported as they happen, rate-limited; the last report has the total. */
    ck_assert_ptr_nonnull(strstr(f.log.text, "keystone: queue full: "));
    ck_assert_ptr_nonnull(strstr(f.log.text, "(Dropped=50 Capacity=1000)"));
    {
        json_t *s = _read_stats(f.dir);
        ck_assert_int_eq(_stat_int(s, "queue", "dropped"), 50);
        ck_assert_int_ge(_stat_int(s, "spool", "write_errors"), 2);
        json_decref(s);
    }
    _wfix_fini(&f);
}
END_TEST

START_TEST(test_worker_drain_timeout_counts_loss) {
    struct wfix f;

    _wfix_init(&f, 1000, 100);
    f.p.drain_timeout_ms = 20;
    ks_spool_inject_fault(f.sp, KS_SPOOL_STEP_RENAME, EIO, UINT_MAX);
    _push_ids(f.q, 0, 250, KS_QUEUE_OK);
    _wfix_start(&f);
    ck_assert_int_eq(ks_worker_stop(f.w), KS_ERROR);
    {
        json_t *s = _read_stats(f.dir);
        ck_assert_int_eq(_stat_int(s, "spool", "lost_at_stop"), 250);
        ck_assert_int_eq(_stat_int(s, "spool", "records_written"), 0);
        ck_assert_ptr_nonnull(
            strstr(json_string_value(json_object_get(json_object_get(s, "spool"), "last_error")),
                   "Step=rename"));
        json_decref(s);
    }
    ck_assert_ptr_nonnull(strstr(f.log.text, "keystone: stop: 250 job records not written"));
    ck_assert_uint_eq(_check_disk_ids(f.dir, 0), 0);
    _wfix_fini(&f);
}
END_TEST

START_TEST(test_worker_histogram_and_stats_file) {
    static const uint64_t ns[] = {0,    124,  125,       249,       250,           999,
                                  1000, 1001, 262143999, 262144000, UINT64_MAX / 4};
    static const int bucket[] = {0, 0, 1, 1, 2, 3, 4, 4, 21, 22, 25};
    struct wfix f;
    ks_worker_stats st;
    json_t *s, *b;
    uint64_t sum = 0;

    _wfix_init(&f, 1000, 100);
    f.p.plugin_version = "9.8.7";
    _wfix_start(&f);
    for (size_t k = 0; k < N_ELEMS(ns); k++) {
        ks_worker_observe_callback(f.w, ns[k]);
        sum += ns[k];
    }
    ks_worker_get_stats(f.w, &st);
    ck_assert_uint_eq(st.callback_count, N_ELEMS(ns));
    ck_assert_uint_eq(st.callback_max_ns, UINT64_MAX / 4);
    ck_assert_uint_eq(st.callback_sum_ns, sum);
    for (int i = 0; i < KS_HIST_BUCKETS; i++) {
        uint64_t want = 0;
        for (size_t k = 0; k < N_ELEMS(ns); k++)
            want += bucket[k] == i;
        ck_assert_msg(st.callback_hist[i] == want, "bucket %d: %llu, want %llu", i,
                      (unsigned long long)st.callback_hist[i], (unsigned long long)want);
    }
    for (size_t k = 0; k < N_ELEMS(ns); k++) {
        ck_assert(ns[k] < ks_worker_bucket_bound_ns(bucket[k]));
        ck_assert(ns[k] >= ks_worker_bucket_bound_ns(bucket[k] - 1) || bucket[k] == 0);
    }
    ck_assert_int_eq(ks_worker_stop(f.w), KS_SUCCESS);

    s = _read_stats(f.dir);
    ck_assert_int_eq(_stat_int(s, "callback", "count"), (json_int_t)N_ELEMS(ns));
    /* The versions keystonectl doctor compares: set, or null when not given. */
    ck_assert_str_eq(json_string_value(json_object_get(s, "plugin_version")), "9.8.7");
    ck_assert(json_is_null(json_object_get(s, "slurm_version")));
    ck_assert_int_eq(json_integer_value(json_object_get(s, "stats_interval_ms")), 5);
    ck_assert(json_integer_value(json_object_get(s, "time")) > 0);
    b = json_object_get(json_object_get(s, "callback"), "buckets");
    ck_assert_uint_eq(json_array_size(b), KS_HIST_BUCKETS);
    ck_assert(json_real_value(json_object_get(json_array_get(b, 0), "lt_usec")) == 0.125);
    ck_assert(json_real_value(json_object_get(json_array_get(b, 4), "lt_usec")) == 2.0);
    ck_assert(json_is_null(json_object_get(json_array_get(b, KS_HIST_BUCKETS - 1), "lt_usec")));
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(b, 1), "count")), 2);
    json_decref(s);
    _wfix_fini(&f);
}
END_TEST

START_TEST(test_worker_bad_params) {
    struct wfix f;
    char err[256] = "";

    _wfix_init(&f, 1000, 100);
    f.p.batch_size = 0;
    ck_assert_int_eq(ks_worker_start(&f.w, f.q, f.sp, &f.p, err, sizeof(err)), KS_ERROR);
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "invalid parameters"));
    ck_assert_int_eq(ks_worker_stop(NULL), KS_SUCCESS);
    _wfix_fini(&f);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */

static Suite *_suite(void) {
    Suite *s = suite_create("jobcomp plugin core");
    TCase *tc;

    tc = tcase_create("conf");
    tcase_add_loop_test(tc, test_conf_good, 0, N_ELEMS(_conf_good));
    tcase_add_loop_test(tc, test_conf_bad, 0, N_ELEMS(_conf_bad));
    suite_add_tcase(s, tc);

    tc = tcase_create("record");
    tcase_add_test(tc, test_record_init);
    tcase_add_test(tc, test_record_strings);
    tcase_add_loop_test(tc, test_decode_wait_status, 0, N_ELEMS(_wait_cases));
    suite_add_tcase(s, tc);

    tc = tcase_create("queue");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_queue_full_drops_and_keeps_order);
    tcase_add_test(tc, test_queue_ring_wraps_with_mixed_sizes);
    tcase_add_test(tc, test_queue_rewinds_when_empty);
    tcase_add_test(tc, test_queue_close_and_wait);
    tcase_add_test(tc, test_queue_wakes_consumer);
    tcase_add_test(tc, test_queue_concurrent_producers);
    tcase_add_test(tc, test_queue_concurrent_with_consumer);
    suite_add_tcase(s, tc);

    tc = tcase_create("spool");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_spool_round_trip_hostile, 0, N_ELEMS(_hostile));
    tcase_add_test(tc, test_spool_invalid_utf8_encoding);
    tcase_add_test(tc, test_spool_long_strings_truncated);
    tcase_add_test(tc, test_spool_sentinels_round_trip);
    tcase_add_test(tc, test_spool_names_sort_in_write_order);
    tcase_add_loop_test(tc, test_spool_batch_names, 0, N_ELEMS(_batch_names));
    tcase_add_test(tc, test_spool_unwritable_folder);
    tcase_add_loop_test(tc, test_spool_write_failure_steps, 0, N_ELEMS(_faults));
    tcase_add_test(tc, test_spool_open_errors_and_stale_temp);
    suite_add_tcase(s, tc);

    tc = tcase_create("reader");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_reader_rejects_truncated);
    tcase_add_loop_test(tc, test_reader_rejects_corrupt, 0, N_ELEMS(_corrupt));
    suite_add_tcase(s, tc);

    tc = tcase_create("worker");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_worker_stop_drains_queue);
    tcase_add_test(tc, test_worker_flushes_partial_batch);
    tcase_add_test(tc, test_worker_retries_and_keeps_batch);
    tcase_add_test(tc, test_worker_full_queue_while_failing);
    tcase_add_test(tc, test_worker_drain_timeout_counts_loss);
    tcase_add_test(tc, test_worker_histogram_and_stats_file);
    tcase_add_test(tc, test_worker_bad_params);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    SRunner *sr = srunner_create(_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
