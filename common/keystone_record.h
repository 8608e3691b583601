/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The finished-job record that jobcomp/keystone hands to keystoned: one plain C struct, versioned.
 */
#ifndef KEYSTONE_RECORD_H
#define KEYSTONE_RECORD_H

/*
 * Who uses this header
 * --------------------
 * - plugins/jobcomp/jobcomp_keystone.c fills one `ks_record` per finished job on slurmctld's thread
 *   (ks_record_init, plain assignments, ks_record_set_str) and pushes it on the queue. Filling a
 *   record never allocates: strings are copied into an arena inside the record.
 * - plugins/jobcomp/spool.c turns records into JSON (the encoding below) and back.
 * - keystoned (C++) mirrors the JSON encoding; it may include this header for the constants.
 *
 * Everything here is C that also compiles as C++17 (static inline helpers, no C-only syntax).
 *
 * Sentinels
 * ---------
 * Scalar fields hold Slurm's values, with these sentinels (equal to Slurm's own, so the plugin
 * copies most fields unchanged):
 *   KS_NO_VAL (0xfffffffe)   "not set / not applicable" for every uint32_t field;
 *                            array_job_id, array_task_id, het_job_id and het_job_offset are
 *                            KS_NO_VAL when the job is not an array / het job (the plugin maps
 *                            Slurm's 0 for array_job_id and het_job_id to KS_NO_VAL).
 *   KS_INFINITE (0xffffffff) only in time_limit_min: no time limit (Slurm's INFINITE).
 *   time_t 0                 time not set (a job cancelled while pending has no eligible time).
 *   billing < 0              billing not known (Slurm's billable_tres == NO_VAL).
 * A string that Slurm leaves NULL is stored as the empty string.
 *
 * Strings
 * -------
 * Thirteen string fields live in `arena`: each set stores its bytes plus a terminating NUL and
 * `str[field]` records offset and length. Each field has its own maximum (KS_*_MAX, bytes, without
 * the NUL) and the arena holds every field at its maximum at once, so whether a field is cut
 * depends only on its own length, not on the order fields are set. A longer value is cut at the
 * maximum (moved back to the start of a UTF-8 sequence when the cut would split one) and the bit
 * (1u << field) is set in `truncated`. Bytes are stored as given: they need not be UTF-8.
 *
 * JSON encoding of one record (format version 1; spool.h describes the file around it)
 * -------------------------------------------------------------------------------------
 * One object, members in this order, all required except "raw":
 *
 *   "cluster": str            "job_id": int|null        "array_job_id": int|null
 *   "array_task_id": int|null "het_job_id": int|null    "het_job_offset": int|null
 *   "het_job_info": str       "job_name": str           "user": str        "uid": int|null
 *   "group": str              "gid": int|null           "account": str     "partition": str
 *   "qos": str                "state": str              "exit_code": int|null
 *   "exit_signal": int|null   "derived_exit_code": int|null                "derived_signal":
 * int|null "submit_time": int|null   "eligible_time": int|null "start_time": int|null "end_time":
 * int|null      "elapsed_sec": int|null   "time_limit_min": int|null "node_count": int|null
 * "node_list": str          "cpus": int|null   "tres_alloc": str "billing": number|null "priority":
 * int|null      "work_dir": str    "reservation": str "truncated": [str, ...]   "raw": {str: str,
 * ...}   (optional)
 *
 * - Integers are JSON integers; null stands for KS_NO_VAL (uint32 fields) and for time 0.
 *   time_limit_min is -1 for KS_INFINITE (no limit); in any other uint32 field KS_INFINITE has
 *   no meaning and is written as null too (it reads back as KS_NO_VAL). A reader rejects a uint32
 *   field whose integer equals a sentinel (the writer never emits one), a time of 0 or less, and
 *   any value out of range.
 * - Times are seconds since the epoch (UTC). billing is a JSON number (real), null when < 0.
 * - "truncated" lists the names of the string fields that were cut (names as above), in field
 *   order; [] when none was.
 * - Strings: a field whose bytes are valid UTF-8 (RFC 3629: no overlong forms, no surrogates,
 *   nothing above U+10FFFF) is a JSON string of exactly those bytes; quotes, backslashes and
 *   control characters are escaped by the JSON encoder, so one record never spans two lines.
 *   A field that is NOT valid UTF-8 is written twice: its JSON string has every byte that is not
 *   part of a valid sequence replaced by U+FFFD (what a UTF-8 database can store and a person can
 *   read), and "raw" maps the field's name to the standard base64 (RFC 4648, padded) of the
 *   original bytes, so the exact bytes survive. A reader that wants the bytes takes "raw" when
 *   present; "raw" is omitted when every string is valid UTF-8. The readers in spool.c check that
 *   the JSON string equals the replacement of the raw bytes.
 */

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#define KS_RECORD_VERSION 1

/* Return codes shared by the plugin's modules (compare with the names, never with !rc). */
#define KS_SUCCESS 0
#define KS_ERROR (-1)
/* ks_record_set_str(): the value was stored but cut (the field's truncated bit is set). */
#define KS_TRUNCATED 1

#define KS_NO_VAL ((uint32_t)0xfffffffeu)
#define KS_INFINITE ((uint32_t)0xffffffffu)

/* The string fields, in JSON member order among themselves. Also bit numbers in `truncated`. */
enum ks_str_field {
    KS_STR_CLUSTER = 0,
    KS_STR_HET_JOB_INFO,
    KS_STR_JOB_NAME,
    KS_STR_USER,
    KS_STR_GROUP,
    KS_STR_ACCOUNT,
    KS_STR_PARTITION,
    KS_STR_QOS,
    KS_STR_STATE,
    KS_STR_NODE_LIST,
    KS_STR_TRES_ALLOC,
    KS_STR_WORK_DIR,
    KS_STR_RESERVATION,
    KS_STR_COUNT
};

/* Maximum stored length of each string field in bytes, without the NUL. */
#define KS_CLUSTER_MAX 64
#define KS_HET_JOB_INFO_MAX 128
#define KS_JOB_NAME_MAX 1024
#define KS_USER_MAX 64
#define KS_GROUP_MAX 64
#define KS_ACCOUNT_MAX 128
#define KS_PARTITION_MAX 256
#define KS_QOS_MAX 128
#define KS_STATE_MAX 32
#define KS_NODE_LIST_MAX 1024
#define KS_TRES_ALLOC_MAX 512
#define KS_WORK_DIR_MAX 1024
#define KS_RESERVATION_MAX 128

/* Every field at its maximum plus one NUL each. */
#define KS_RECORD_ARENA_SIZE                                                                       \
    (KS_CLUSTER_MAX + KS_HET_JOB_INFO_MAX + KS_JOB_NAME_MAX + KS_USER_MAX + KS_GROUP_MAX +         \
     KS_ACCOUNT_MAX + KS_PARTITION_MAX + KS_QOS_MAX + KS_STATE_MAX + KS_NODE_LIST_MAX +            \
     KS_TRES_ALLOC_MAX + KS_WORK_DIR_MAX + KS_RESERVATION_MAX + KS_STR_COUNT)

/* Where one string field sits in the arena. len == 0 means empty (off is then meaningless). */
struct ks_str_ref {
    uint16_t off;
    uint16_t len;
};

typedef struct ks_record {
    uint32_t version;   /* KS_RECORD_VERSION, set by ks_record_init() */
    uint32_t truncated; /* bit (1u << ks_str_field) set when that string was cut */

    uint32_t job_id;
    uint32_t array_job_id;   /* KS_NO_VAL: not an array job */
    uint32_t array_task_id;  /* KS_NO_VAL: not an array task */
    uint32_t het_job_id;     /* KS_NO_VAL: not a het job */
    uint32_t het_job_offset; /* KS_NO_VAL: not a het job component */
    uint32_t uid;
    uint32_t gid;

    /* Decoded from wait statuses with ks_decode_wait_status(), as sacct shows "code:signal". */
    uint32_t exit_code;         /* WEXITSTATUS of the job's exit status */
    uint32_t exit_signal;       /* WTERMSIG when it was signalled, else 0 */
    uint32_t derived_exit_code; /* the same for the derived exit code (highest of the steps) */
    uint32_t derived_signal;

    uint32_t elapsed_sec;    /* run time in seconds, suspended time excluded */
    uint32_t time_limit_min; /* minutes; KS_INFINITE: no limit; KS_NO_VAL: not set */
    uint32_t node_count;
    uint32_t cpus;
    uint32_t priority;
    double billing; /* billable TRES; < 0: not known */

    time_t submit_time; /* seconds since the epoch, UTC; 0: not set */
    time_t eligible_time;
    time_t start_time;
    time_t end_time;

    struct ks_str_ref str[KS_STR_COUNT];
    uint16_t arena_used; /* bytes of arena in use */
    char arena[KS_RECORD_ARENA_SIZE];
} ks_record;

/* The part of a record that a copy must move: everything up to the arena, plus the used arena. */
#define KS_RECORD_HEAD_SIZE offsetof(ks_record, arena)

#if defined(__cplusplus)
static_assert(KS_RECORD_ARENA_SIZE <= 65535, "arena offsets are 16-bit");
#else
_Static_assert(KS_RECORD_ARENA_SIZE <= 65535, "arena offsets are 16-bit");
#endif

/* The string setters stay out of line: inlined into callers that pass short constant strings,
 * GCC's bounds warnings follow paths (cuts of long values) that such strings never take. */
#if defined(__GNUC__)
#define KS_NOINLINE __attribute__((noinline, unused))
#else
#define KS_NOINLINE
#endif

/* The JSON member name of a string field, or NULL for an invalid field. */
static inline const char *ks_str_field_name(int field) {
    switch (field) {
    case KS_STR_CLUSTER:
        return "cluster";
    case KS_STR_HET_JOB_INFO:
        return "het_job_info";
    case KS_STR_JOB_NAME:
        return "job_name";
    case KS_STR_USER:
        return "user";
    case KS_STR_GROUP:
        return "group";
    case KS_STR_ACCOUNT:
        return "account";
    case KS_STR_PARTITION:
        return "partition";
    case KS_STR_QOS:
        return "qos";
    case KS_STR_STATE:
        return "state";
    case KS_STR_NODE_LIST:
        return "node_list";
    case KS_STR_TRES_ALLOC:
        return "tres_alloc";
    case KS_STR_WORK_DIR:
        return "work_dir";
    case KS_STR_RESERVATION:
        return "reservation";
    default:
        return NULL;
    }
}

/* The maximum stored length of a string field (bytes, without the NUL); 0 for an invalid field. */
static inline size_t ks_str_field_max(int field) {
    switch (field) {
    case KS_STR_CLUSTER:
        return KS_CLUSTER_MAX;
    case KS_STR_HET_JOB_INFO:
        return KS_HET_JOB_INFO_MAX;
    case KS_STR_JOB_NAME:
        return KS_JOB_NAME_MAX;
    case KS_STR_USER:
        return KS_USER_MAX;
    case KS_STR_GROUP:
        return KS_GROUP_MAX;
    case KS_STR_ACCOUNT:
        return KS_ACCOUNT_MAX;
    case KS_STR_PARTITION:
        return KS_PARTITION_MAX;
    case KS_STR_QOS:
        return KS_QOS_MAX;
    case KS_STR_STATE:
        return KS_STATE_MAX;
    case KS_STR_NODE_LIST:
        return KS_NODE_LIST_MAX;
    case KS_STR_TRES_ALLOC:
        return KS_TRES_ALLOC_MAX;
    case KS_STR_WORK_DIR:
        return KS_WORK_DIR_MAX;
    case KS_STR_RESERVATION:
        return KS_RESERVATION_MAX;
    default:
        return 0;
    }
}

/*
 * Resets `r` to an empty record of the current version: every uint32_t field KS_NO_VAL, times 0,
 * billing -1, strings empty, nothing truncated. Touches only the head, not the arena (cheap).
 */
static inline void ks_record_init(ks_record *r) {
    memset(r, 0, KS_RECORD_HEAD_SIZE);
    r->version = KS_RECORD_VERSION;
    r->job_id = KS_NO_VAL;
    r->array_job_id = KS_NO_VAL;
    r->array_task_id = KS_NO_VAL;
    r->het_job_id = KS_NO_VAL;
    r->het_job_offset = KS_NO_VAL;
    r->uid = KS_NO_VAL;
    r->gid = KS_NO_VAL;
    r->exit_code = KS_NO_VAL;
    r->exit_signal = KS_NO_VAL;
    r->derived_exit_code = KS_NO_VAL;
    r->derived_signal = KS_NO_VAL;
    r->elapsed_sec = KS_NO_VAL;
    r->time_limit_min = KS_NO_VAL;
    r->node_count = KS_NO_VAL;
    r->cpus = KS_NO_VAL;
    r->priority = KS_NO_VAL;
    r->billing = -1.0;
}

/*
 * Stores `len` bytes of `s` as string field `field` (s may be NULL when len is 0). Stops at a NUL
 * byte inside `s` (C strings cannot carry one). Returns KS_SUCCESS when stored whole, KS_TRUNCATED
 * when cut (the field's bit in `truncated` is then set), KS_ERROR for an invalid field. Set each
 * field once: setting it again stores a new copy and the old bytes stay in the arena until
 * ks_record_init(); when the arena runs out the value is cut to what is left.
 * Never allocates; reads at most the field's maximum + 4 bytes of `s`.
 */
static KS_NOINLINE int ks_record_set_strn(ks_record *r, int field, const char *s, size_t len) {
    size_t max = ks_str_field_max(field);
    size_t room, n;
    int rc = KS_SUCCESS;

    if (max == 0)
        return KS_ERROR;
    if (s == NULL)
        len = 0;
    room = (size_t)KS_RECORD_ARENA_SIZE - r->arena_used;
    if (room == 0) {
        r->str[field].len = 0;
        r->truncated |= 1u << field;
        return KS_TRUNCATED;
    }
    if (max > room - 1)
        max = room - 1;
    /* Look one byte past the maximum (and a few more for the UTF-8 check) but never further. */
    {
        const char *nul = len ? (const char *)memchr(s, '\0', len < max + 4 ? len : max + 4) : NULL;
        if (nul != NULL)
            len = (size_t)(nul - s);
    }
    n = len;
    if (n > max) {
        n = max;
        /* Do not split a UTF-8 sequence: back off over continuation bytes (at most 3) when the
         * first byte left out is one. Invalid UTF-8 is cut where it falls. */
        {
            size_t back = 0;
            while (back < 3 && n > back && ((unsigned char)s[n - back] & 0xC0) == 0x80)
                back++;
            if (back > 0 && n > back && ((unsigned char)s[n - back] & 0xC0) == 0xC0)
                n -= back;
        }
        r->truncated |= 1u << field;
        rc = KS_TRUNCATED;
    }
    r->str[field].off = r->arena_used;
    r->str[field].len = (uint16_t)n;
    if (n > 0)
        memcpy(r->arena + r->arena_used, s, n);
    r->arena[r->arena_used + n] = '\0';
    r->arena_used = (uint16_t)(r->arena_used + n + 1);
    return rc;
}

/* As ks_record_set_strn() for a C string; NULL stores the empty string. */
static KS_NOINLINE int ks_record_set_str(ks_record *r, int field, const char *s) {
    size_t max = ks_str_field_max(field);
    /* strnlen bounds the scan of very long values to what set_strn may look at. */
    return ks_record_set_strn(r, field, s, s ? strnlen(s, max + 4) : 0);
}

/* String field `field` as a NUL-terminated string inside `r` ("" when unset or invalid). */
static inline const char *ks_record_str(const ks_record *r, int field) {
    if (field < 0 || field >= KS_STR_COUNT || r->str[field].len == 0)
        return "";
    return r->arena + r->str[field].off;
}

/* Length in bytes of string field `field`. */
static inline size_t ks_record_strlen(const ks_record *r, int field) {
    if (field < 0 || field >= KS_STR_COUNT)
        return 0;
    return r->str[field].len;
}

/* Copies `src` to `dst`, moving only the head and the used part of the arena. */
static inline void ks_record_copy(ks_record *dst, const ks_record *src) {
    memcpy(dst, src, KS_RECORD_HEAD_SIZE + src->arena_used);
}

/*
 * Decodes a wait status (Slurm's job exit_code and derived_ec are raw wait statuses) the way sacct
 * shows ExitCode "code:signal": code = WEXITSTATUS, signal = WTERMSIG when signalled, else 0.
 * KS_NO_VAL in gives KS_NO_VAL for both.
 */
static inline void ks_decode_wait_status(uint32_t status, uint32_t *code, uint32_t *sig) {
    if (status == KS_NO_VAL) {
        *code = KS_NO_VAL;
        *sig = KS_NO_VAL;
        return;
    }
    *code = (uint32_t)WEXITSTATUS((int)status);
    *sig = WIFSIGNALED((int)status) ? (uint32_t)WTERMSIG((int)status) : 0;
}

#endif /* KEYSTONE_RECORD_H */
