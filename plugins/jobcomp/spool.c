/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The on-disk spool: batches of job records as crash-safe JSON files that keystoned ingests. */
#define _GNU_SOURCE
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SEQ_DIGITS 20
#define TMP_PREFIX ".tmp."
#define FILE_MODE 0640

struct buf {
    char *p;
    size_t len;
    size_t cap;
};

struct fault {
    atomic_int err;
    atomic_uint count;
};

struct ks_spool {
    char *dir;
    int dirfd;
    char *writer;
    pid_t pid;
    uint64_t next_seq;
    struct buf out; /* serialised batch, reused across writes */
    char last_file[96];
    char last_error[512];
    struct fault faults[KS_SPOOL_STEP_COUNT];
};

static const char *const _step_names[KS_SPOOL_STEP_COUNT] = {"create", "write", "fsync", "rename",
                                                             "fsync-dir"};

/* ------------------------------------------------------------------------------------------ */
/* Small helpers                                                                                */

__attribute__((format(printf, 3, 4))) static void _msg(char *err, size_t errlen, const char *fmt,
                                                       ...) {
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int _buf_reserve(struct buf *b, size_t more) {
    size_t cap;
    char *p;

    if (b->len + more <= b->cap)
        return KS_SUCCESS;
    cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    p = realloc(b->p, cap);
    if (p == NULL)
        return KS_ERROR;
    b->p = p;
    b->cap = cap;
    return KS_SUCCESS;
}

static int _buf_append(struct buf *b, const char *s, size_t n) {
    if (_buf_reserve(b, n) != KS_SUCCESS)
        return KS_ERROR;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return KS_SUCCESS;
}

/* json_dump_callback() sink. */
static int _dump_cb(const char *buffer, size_t size, void *data) {
    return _buf_append(data, buffer, size) == KS_SUCCESS ? 0 : -1;
}

/* Length of the valid UTF-8 sequence (RFC 3629) at p[0..n), or 0 if p[0] starts none. */
static size_t _utf8_seq(const unsigned char *p, size_t n) {
    unsigned c = p[0];
    unsigned lo = 0x80, hi = 0xBF;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
        return n >= 3 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
        return n >= 4 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80
                   ? 4
                   : 0;
    }
    return 0;
}

static bool _utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;

    while (n > 0) {
        size_t k = _utf8_seq(p, n);
        if (k == 0)
            return false;
        p += k;
        n -= k;
    }
    return true;
}

/* Copies s[0..n) to out with every byte outside a valid sequence replaced by U+FFFD; out must
 * hold 3 * n bytes. Returns the length written. */
static size_t _utf8_replace(const char *s, size_t n, char *out) {
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;

    while (n > 0) {
        size_t k = _utf8_seq(p, n);
        if (k == 0) {
            out[o++] = (char)0xEF;
            out[o++] = (char)0xBF;
            out[o++] = (char)0xBD;
            k = 1;
        } else {
            memcpy(out + o, p, k);
            o += k;
        }
        p += k;
        n -= k;
    }
    return o;
}

static const char _b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard padded base64 of s[0..n) into out (4 * ((n + 2) / 3) bytes); returns the length. */
static size_t _b64_encode(const unsigned char *s, size_t n, char *out) {
    size_t o = 0, i;

    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        out[o++] = _b64[v >> 18];
        out[o++] = _b64[(v >> 12) & 63];
        out[o++] = _b64[(v >> 6) & 63];
        out[o++] = _b64[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
        out[o++] = _b64[v >> 18];
        out[o++] = _b64[(v >> 12) & 63];
        out[o++] = i + 1 < n ? _b64[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    return o;
}

static int _b64_value(char c) {
    const char *p = c ? strchr(_b64, c) : NULL;
    return p ? (int)(p - _b64) : -1;
}

/* Strict decoding of canonical padded base64; out holds 3 * (n / 4) bytes. Returns the decoded
 * length or -1. */
static long _b64_decode(const char *s, size_t n, unsigned char *out) {
    size_t o = 0;

    if (n % 4 != 0)
        return -1;
    for (size_t i = 0; i < n; i += 4) {
        int a = _b64_value(s[i]), b = _b64_value(s[i + 1]);
        int c, d;
        bool last = i + 4 == n;

        if (a < 0 || b < 0)
            return -1;
        if (last && s[i + 2] == '=' && s[i + 3] == '=') {
            if (b & 15)
                return -1; /* non-canonical trailing bits */
            out[o++] = (unsigned char)(a << 2 | b >> 4);
            break;
        }
        c = _b64_value(s[i + 2]);
        if (c < 0)
            return -1;
        if (last && s[i + 3] == '=') {
            if (c & 3)
                return -1;
            out[o++] = (unsigned char)(a << 2 | b >> 4);
            out[o++] = (unsigned char)((b & 15) << 4 | c >> 2);
            break;
        }
        d = _b64_value(s[i + 3]);
        if (d < 0)
            return -1;
        out[o++] = (unsigned char)(a << 2 | b >> 4);
        out[o++] = (unsigned char)((b & 15) << 4 | c >> 2);
        out[o++] = (unsigned char)((c & 3) << 6 | d);
    }
    return (long)o;
}

/* A member name from a file, made safe to print: printable ASCII only, at most 48 bytes. */
static const char *_printable(const char *s, char *out, size_t outlen) {
    size_t o = 0;

    for (; *s && o + 1 < outlen && o < 48; s++)
        out[o++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    out[o] = '\0';
    return out;
}

/* ------------------------------------------------------------------------------------------ */
/* One record <-> JSON                                                                          */

enum member_kind { M_STR, M_U32, M_LIMIT, M_TIME, M_BILLING };

struct member {
    const char *name; /* NULL for strings: ks_str_field_name(arg) */
    enum member_kind kind;
    size_t arg; /* offset in ks_record, or the string field */
};

#define M_S(f)                                                                                     \
    { NULL, M_STR, f }
#define M_N(n, k, f)                                                                               \
    { n, k, offsetof(ks_record, f) }

/* The members in encoding order (keystone_record.h documents the same order). */
static const struct member _members[] = {
    M_S(KS_STR_CLUSTER),
    M_N("job_id", M_U32, job_id),
    M_N("array_job_id", M_U32, array_job_id),
    M_N("array_task_id", M_U32, array_task_id),
    M_N("het_job_id", M_U32, het_job_id),
    M_N("het_job_offset", M_U32, het_job_offset),
    M_S(KS_STR_HET_JOB_INFO),
    M_S(KS_STR_JOB_NAME),
    M_S(KS_STR_USER),
    M_N("uid", M_U32, uid),
    M_S(KS_STR_GROUP),
    M_N("gid", M_U32, gid),
    M_S(KS_STR_ACCOUNT),
    M_S(KS_STR_PARTITION),
    M_S(KS_STR_QOS),
    M_S(KS_STR_STATE),
    M_N("exit_code", M_U32, exit_code),
    M_N("exit_signal", M_U32, exit_signal),
    M_N("derived_exit_code", M_U32, derived_exit_code),
    M_N("derived_signal", M_U32, derived_signal),
    M_N("submit_time", M_TIME, submit_time),
    M_N("eligible_time", M_TIME, eligible_time),
    M_N("start_time", M_TIME, start_time),
    M_N("end_time", M_TIME, end_time),
    M_N("elapsed_sec", M_U32, elapsed_sec),
    M_N("time_limit_min", M_LIMIT, time_limit_min),
    M_N("node_count", M_U32, node_count),
    M_S(KS_STR_NODE_LIST),
    M_N("cpus", M_U32, cpus),
    M_S(KS_STR_TRES_ALLOC),
    M_N("billing", M_BILLING, billing),
    M_N("priority", M_U32, priority),
    M_S(KS_STR_WORK_DIR),
    M_S(KS_STR_RESERVATION),
};
#define NMEMBERS (sizeof(_members) / sizeof(_members[0]))

static const char *_member_name(const struct member *m) {
    return m->name ? m->name : ks_str_field_name((int)m->arg);
}

static int _str_field_by_name(const char *name) {
    for (int f = 0; f < KS_STR_COUNT; f++)
        if (strcmp(ks_str_field_name(f), name) == 0)
            return f;
    return -1;
}

/* A string field's JSON value; for bytes that are not UTF-8 also adds raw[name] = base64. */
static json_t *_str_to_json(const ks_record *r, int field, json_t **raw) {
    const char *s = ks_record_str(r, field);
    size_t len = ks_record_strlen(r, field);
    char *tmp = NULL;
    json_t *v = NULL, *b = NULL;
    size_t n;

    if (_utf8_valid(s, len))
        return json_stringn_nocheck(s, len);
    /* Not UTF-8: readable text with U+FFFD, plus the exact bytes in "raw". Runs on the worker
     * thread only, so the allocations here are fine. */
    tmp = malloc(3 * len > 4 * ((len + 2) / 3) ? 3 * len : 4 * ((len + 2) / 3));
    if (tmp == NULL)
        goto fail;
    n = _utf8_replace(s, len, tmp);
    v = json_stringn_nocheck(tmp, n);
    n = _b64_encode((const unsigned char *)s, len, tmp);
    b = json_stringn_nocheck(tmp, n);
    if (v == NULL || b == NULL)
        goto fail;
    if (*raw == NULL && (*raw = json_object()) == NULL)
        goto fail;
    if (json_object_set_new_nocheck(*raw, ks_str_field_name(field), b) != 0) {
        b = NULL; /* set_new consumed it */
        goto fail;
    }
    free(tmp);
    return v;
fail:
    json_decref(v);
    json_decref(b);
    free(tmp);
    return NULL;
}

json_t *ks_record_to_json(const ks_record *r) {
    json_t *o = json_object(), *raw = NULL, *trunc = NULL;

    if (o == NULL)
        return NULL;
    for (size_t i = 0; i < NMEMBERS; i++) {
        const struct member *m = &_members[i];
        const char *base = (const char *)r + m->arg;
        json_t *v = NULL;

        switch (m->kind) {
        case M_STR:
            v = _str_to_json(r, (int)m->arg, &raw);
            break;
        case M_U32: {
            uint32_t u;
            memcpy(&u, base, sizeof(u));
            /* KS_INFINITE has no meaning outside time_limit_min: it is "not set" as well. */
            v = (u == KS_NO_VAL || u == KS_INFINITE) ? json_null() : json_integer(u);
            break;
        }
        case M_LIMIT: {
            uint32_t u;
            memcpy(&u, base, sizeof(u));
            v = u == KS_NO_VAL     ? json_null()
                : u == KS_INFINITE ? json_integer(-1)
                                   : json_integer(u);
            break;
        }
        case M_TIME: {
            time_t t;
            memcpy(&t, base, sizeof(t));
            v = t == 0 ? json_null() : json_integer((json_int_t)t);
            break;
        }
        case M_BILLING: {
            double d;
            memcpy(&d, base, sizeof(d));
            v = (isfinite(d) && d >= 0) ? json_real(d) : json_null();
            break;
        }
        }
        if (v == NULL || json_object_set_new_nocheck(o, _member_name(m), v) != 0)
            goto fail;
    }
    trunc = json_array();
    if (trunc == NULL)
        goto fail;
    for (int f = 0; f < KS_STR_COUNT; f++)
        if ((r->truncated & (1u << f)) &&
            json_array_append_new(trunc, json_string(ks_str_field_name(f))) != 0)
            goto fail;
    if (json_object_set_new_nocheck(o, "truncated", trunc) != 0) {
        trunc = NULL;
        goto fail;
    }
    trunc = NULL;
    if (raw != NULL) {
        json_t *tmp = raw;
        raw = NULL;
        if (json_object_set_new_nocheck(o, "raw", tmp) != 0)
            goto fail;
    }
    return o;
fail:
    json_decref(trunc);
    json_decref(raw);
    json_decref(o);
    return NULL;
}

/* Decodes string field `field` from `v` (and raw[name] when present) into r. */
static int _str_from_json(json_t *v, json_t *rawv, int field, ks_record *r, char *err,
                          size_t errlen) {
    const char *name = ks_str_field_name(field);
    size_t max = ks_str_field_max(field);
    const char *text;
    size_t len;

    if (!json_is_string(v)) {
        _msg(err, errlen, "member '%s': expected string", name);
        return KS_ERROR;
    }
    text = json_string_value(v);
    len = json_string_length(v);
    if (rawv != NULL) {
        const char *b64 = json_string_value(rawv);
        size_t blen = json_string_length(rawv);
        unsigned char *bytes = malloc(blen / 4 * 3 + 1);
        char *repl = NULL;
        long n;
        int rc = KS_ERROR;

        if (bytes == NULL) {
            _msg(err, errlen, "member 'raw.%s': out of memory", name);
            return KS_ERROR;
        }
        n = _b64_decode(b64, blen, bytes);
        if (n < 0)
            _msg(err, errlen, "member 'raw.%s': not canonical base64", name);
        else if ((size_t)n > max)
            _msg(err, errlen, "member 'raw.%s': %ld bytes, longer than the maximum %zu", name, n,
                 max);
        else if (memchr(bytes, '\0', (size_t)n) != NULL)
            _msg(err, errlen, "member 'raw.%s': contains a NUL byte", name);
        else if (_utf8_valid((const char *)bytes, (size_t)n))
            _msg(err, errlen, "member 'raw.%s': given for valid UTF-8", name);
        else if ((repl = malloc(3 * (size_t)n)) == NULL)
            _msg(err, errlen, "member 'raw.%s': out of memory", name);
        else if (_utf8_replace((const char *)bytes, (size_t)n, repl) != len ||
                 memcmp(repl, text, len) != 0)
            _msg(err, errlen, "member '%s': text does not match raw.%s", name, name);
        else {
            ks_record_set_strn(r, field, (const char *)bytes, (size_t)n);
            rc = KS_SUCCESS;
        }
        free(repl);
        free(bytes);
        return rc;
    }
    if (len > max) {
        _msg(err, errlen, "member '%s': %zu bytes, longer than the maximum %zu", name, len, max);
        return KS_ERROR;
    }
    /* jansson's parser rejects \u0000 (no JSON_ALLOW_NUL) and guarantees UTF-8. */
    ks_record_set_strn(r, field, text, len);
    return KS_SUCCESS;
}

static bool _known_member(const char *key) {
    if (strcmp(key, "truncated") == 0 || strcmp(key, "raw") == 0)
        return true;
    for (size_t i = 0; i < NMEMBERS; i++)
        if (strcmp(_member_name(&_members[i]), key) == 0)
            return true;
    return false;
}

int ks_record_from_json(json_t *obj, ks_record *r, char *err, size_t errlen) {
    const char *key;
    json_t *val, *raw, *trunc;
    char safe[64];
    size_t idx;

    if (!json_is_object(obj)) {
        _msg(err, errlen, "not a JSON object");
        return KS_ERROR;
    }
    raw = json_object_get(obj, "raw");
    /* Unknown members: the object has exactly the required members plus "raw" when present
     * (each is looked up below and a missing one is an error), so a matching size means no
     * unknown member. Only a mismatch pays for the scan that names the culprit. */
    if (json_object_size(obj) != NMEMBERS + 1 + (raw != NULL ? 1 : 0)) {
        json_object_foreach(obj, key, val) {
            if (!_known_member(key)) {
                _msg(err, errlen, "unknown member '%s'", _printable(key, safe, sizeof(safe)));
                return KS_ERROR;
            }
        }
    }
    if (raw != NULL) {
        if (!json_is_object(raw)) {
            _msg(err, errlen, "member 'raw': expected object");
            return KS_ERROR;
        }
        json_object_foreach(raw, key, val) {
            if (_str_field_by_name(key) < 0) {
                _msg(err, errlen, "member 'raw': unknown string field '%s'",
                     _printable(key, safe, sizeof(safe)));
                return KS_ERROR;
            }
            if (!json_is_string(val)) {
                _msg(err, errlen, "member 'raw.%s': expected string", key);
                return KS_ERROR;
            }
        }
    }

    ks_record_init(r);
    for (size_t i = 0; i < NMEMBERS; i++) {
        const struct member *m = &_members[i];
        const char *name = _member_name(m);
        char *base = (char *)r + m->arg;
        json_t *v = json_object_get(obj, name);
        json_int_t iv;

        if (v == NULL) {
            _msg(err, errlen, "missing member '%s'", name);
            return KS_ERROR;
        }
        switch (m->kind) {
        case M_STR:
            if (_str_from_json(v, raw ? json_object_get(raw, name) : NULL, (int)m->arg, r, err,
                               errlen) != KS_SUCCESS)
                return KS_ERROR;
            break;
        case M_U32:
        case M_LIMIT: {
            uint32_t u = KS_NO_VAL;
            if (!json_is_null(v)) {
                if (!json_is_integer(v)) {
                    _msg(err, errlen, "member '%s': expected integer or null", name);
                    return KS_ERROR;
                }
                iv = json_integer_value(v);
                if (m->kind == M_LIMIT && iv == -1)
                    u = KS_INFINITE;
                else if (iv < 0 || iv >= (json_int_t)KS_NO_VAL) {
                    _msg(err, errlen, "member '%s': %lld out of range 0..%u%s", name, (long long)iv,
                         KS_NO_VAL - 1, m->kind == M_LIMIT ? " or -1" : "");
                    return KS_ERROR;
                } else
                    u = (uint32_t)iv;
            }
            memcpy(base, &u, sizeof(u));
            break;
        }
        case M_TIME: {
            time_t t = 0;
            if (!json_is_null(v)) {
                if (!json_is_integer(v)) {
                    _msg(err, errlen, "member '%s': expected integer or null", name);
                    return KS_ERROR;
                }
                iv = json_integer_value(v);
                if (iv <= 0) {
                    _msg(err, errlen, "member '%s': %lld is not a time after the epoch", name,
                         (long long)iv);
                    return KS_ERROR;
                }
                t = (time_t)iv;
            }
            memcpy(base, &t, sizeof(t));
            break;
        }
        case M_BILLING: {
            double d = -1.0;
            if (!json_is_null(v)) {
                if (!json_is_number(v)) {
                    _msg(err, errlen, "member '%s': expected number or null", name);
                    return KS_ERROR;
                }
                d = json_number_value(v);
                if (!(d >= 0) || !isfinite(d)) {
                    _msg(err, errlen, "member '%s': negative", name);
                    return KS_ERROR;
                }
            }
            memcpy(base, &d, sizeof(d));
            break;
        }
        }
    }

    trunc = json_object_get(obj, "truncated");
    if (trunc == NULL) {
        _msg(err, errlen, "missing member 'truncated'");
        return KS_ERROR;
    }
    if (!json_is_array(trunc)) {
        _msg(err, errlen, "member 'truncated': expected array");
        return KS_ERROR;
    }
    r->truncated = 0;
    json_array_foreach(trunc, idx, val) {
        int f = json_is_string(val) ? _str_field_by_name(json_string_value(val)) : -1;
        if (f < 0) {
            _msg(err, errlen, "member 'truncated': element %zu is not a string field name", idx);
            return KS_ERROR;
        }
        if (r->truncated & (1u << f)) {
            _msg(err, errlen, "member 'truncated': '%s' listed twice", ks_str_field_name(f));
            return KS_ERROR;
        }
        r->truncated |= 1u << f;
    }
    return KS_SUCCESS;
}

/* ------------------------------------------------------------------------------------------ */
/* Writing                                                                                      */

static uint64_t _now_usec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int ks_spool_is_batch_name(const char *name) {
    const char *p = name;
    int i;

    for (i = 0; i < SEQ_DIGITS; i++, p++)
        if (*p < '0' || *p > '9')
            return 0;
    for (int part = 0; part < 2; part++) {
        if (*p++ != '-')
            return 0;
        if (*p < '0' || *p > '9')
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return strcmp(p, ".json") == 0;
}

/* Scans the folder: the highest batch sequence number present, and stale temp files removed. */
static uint64_t _scan(ks_spool *sp) {
    uint64_t max = 0;
    int fd = dup(sp->dirfd);
    DIR *d;
    struct dirent *de;

    if (fd < 0)
        return 0;
    d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return 0;
    }
    while ((de = readdir(d)) != NULL) {
        if (ks_spool_is_batch_name(de->d_name)) {
            uint64_t seq = strtoull(de->d_name, NULL, 10);
            /* 20 digits can exceed 64 bits: such a name is not ours, and counting from it
             * would wrap. */
            if (seq > max && seq < UINT64_MAX - (UINT64_C(1) << 32))
                max = seq;
        } else if (strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0) {
            /* .tmp.<pid>.<...>: left by a writer that died mid-write; its batch never counted
             * as written. Only remove it when that process is gone. */
            char *end;
            long pid = strtol(de->d_name + strlen(TMP_PREFIX), &end, 10);
            if (pid > 0 && *end == '.' && pid != (long)sp->pid && kill((pid_t)pid, 0) != 0 &&
                errno == ESRCH)
                unlinkat(sp->dirfd, de->d_name, 0);
        }
    }
    closedir(d);
    return max;
}

int ks_spool_open(ks_spool **out, const char *dir, const char *writer, char *err, size_t errlen) {
    ks_spool *sp;
    uint64_t max, now;
    int e;

    *out = NULL;
    if (dir == NULL || *dir == '\0' || writer == NULL || !_utf8_valid(writer, strlen(writer))) {
        _msg(err, errlen, "spool: no folder given or writer name not UTF-8");
        errno = EINVAL;
        return KS_ERROR;
    }
    sp = calloc(1, sizeof(*sp));
    if (sp == NULL)
        goto fail_mem;
    sp->dirfd = -1;
    sp->dir = strdup(dir);
    sp->writer = strdup(writer);
    if (sp->dir == NULL || sp->writer == NULL)
        goto fail_mem;
    sp->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sp->dirfd < 0) {
        e = errno;
        _msg(err, errlen, "spool: cannot open folder %s: %s", dir, strerror(e));
        ks_spool_close(sp);
        errno = e;
        return KS_ERROR;
    }
    sp->pid = getpid();
    max = _scan(sp);
    now = _now_usec();
    sp->next_seq = max + 1 > now ? max + 1 : now;
    *out = sp;
    return KS_SUCCESS;

fail_mem:
    _msg(err, errlen, "spool: out of memory");
    ks_spool_close(sp);
    errno = ENOMEM;
    return KS_ERROR;
}

void ks_spool_close(ks_spool *sp) {
    if (sp == NULL)
        return;
    if (sp->dirfd >= 0)
        close(sp->dirfd);
    free(sp->out.p);
    free(sp->dir);
    free(sp->writer);
    free(sp);
}

const char *ks_spool_last_file(const ks_spool *sp) {
    return sp->last_file;
}
const char *ks_spool_last_error(const ks_spool *sp) {
    return sp->last_error;
}
const char *ks_spool_dir(const ks_spool *sp) {
    return sp->dir;
}

void ks_spool_inject_fault(ks_spool *sp, enum ks_spool_step step, int err, unsigned count) {
    if ((int)step < 0 || step >= KS_SPOOL_STEP_COUNT)
        return;
    atomic_store(&sp->faults[step].err, err);
    atomic_store(&sp->faults[step].count, count);
}

/* An armed fault for `step`: its errno (consuming one use), else 0. */
static int _fault(ks_spool *sp, enum ks_spool_step step) {
    unsigned c = atomic_load_explicit(&sp->faults[step].count, memory_order_relaxed);

    while (c > 0) {
        if (atomic_compare_exchange_weak(&sp->faults[step].count, &c, c - 1))
            return atomic_load(&sp->faults[step].err);
    }
    return 0;
}

/* Records the failure of `step` on `name` in last_error; keeps errno. */
static void _step_error(ks_spool *sp, enum ks_spool_step step, const char *name, int e) {
    snprintf(sp->last_error, sizeof(sp->last_error), "Step=%s File=%s/%s: %s", _step_names[step],
             sp->dir, name, strerror(e));
    errno = e;
}

static int _write_all(int fd, const char *p, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return KS_ERROR;
        }
        if (n == 0) {
            errno = EIO;
            return KS_ERROR;
        }
        p += n;
        len -= (size_t)n;
    }
    return KS_SUCCESS;
}

/*
 * Writes data to `tmp`, fsyncs, renames to `final`; with `durable` also fsyncs the folder, and
 * armed faults apply. On failure before the rename the temp file is removed. Returns KS_SUCCESS
 * or KS_ERROR (errno and last_error set).
 */
static int _publish(ks_spool *sp, const char *tmp, const char *final, const char *data, size_t len,
                    bool durable) {
    enum ks_spool_step step = KS_SPOOL_STEP_OPEN;
    int fd = -1, e;

    if (durable && (e = _fault(sp, step)) != 0)
        goto fail;
    fd = openat(sp->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, FILE_MODE);
    if (fd < 0) {
        e = errno;
        _step_error(sp, step, tmp, e);
        return KS_ERROR; /* nothing was created */
    }
    step = KS_SPOOL_STEP_WRITE;
    if (durable && (e = _fault(sp, step)) != 0)
        goto fail;
    if (_write_all(fd, data, len) != KS_SUCCESS) {
        e = errno;
        goto fail;
    }
    step = KS_SPOOL_STEP_FSYNC;
    if (durable && (e = _fault(sp, step)) != 0)
        goto fail;
    if (fsync(fd) != 0) {
        e = errno;
        goto fail;
    }
    /* close() can report a deferred write error (NFS): it counts. */
    e = close(fd) != 0 ? errno : 0;
    fd = -1;
    if (e != 0)
        goto fail;
    step = KS_SPOOL_STEP_RENAME;
    if (durable && (e = _fault(sp, step)) != 0)
        goto fail;
    if (renameat(sp->dirfd, tmp, sp->dirfd, final) != 0) {
        e = errno;
        goto fail;
    }
    if (!durable)
        return KS_SUCCESS;
    step = KS_SPOOL_STEP_DIRSYNC;
    if ((e = _fault(sp, step)) == 0 && fsync(sp->dirfd) == 0)
        return KS_SUCCESS;
    if (e == 0)
        e = errno;
    /* The complete file is in place under its final name; only its durability is in doubt. */
    _step_error(sp, step, final, e);
    return KS_ERROR;

fail:
    if (fd >= 0)
        close(fd);
    if (step != KS_SPOOL_STEP_OPEN || fd >= 0)
        unlinkat(sp->dirfd, tmp, 0);
    _step_error(sp, step, tmp, e);
    return KS_ERROR;
}

int ks_spool_write(ks_spool *sp, const ks_record *recs, size_t n) {
    uint64_t seq;
    json_t *hdr;
    char tmp[64], final[96];
    int rc;

    if (n == 0)
        return KS_SUCCESS;
    seq = sp->next_seq++;
    sp->out.len = 0;
    hdr = json_pack("{s:s, s:i, s:i, s:s, s:I, s:I, s:I, s:I}", "format", KS_SPOOL_FORMAT,
                    "format_version", KS_SPOOL_FORMAT_VERSION, "record_version", KS_RECORD_VERSION,
                    "writer", sp->writer, "pid", (json_int_t)sp->pid, "seq", (json_int_t)seq,
                    "created", (json_int_t)time(NULL), "count", (json_int_t)n);
    if (hdr == NULL)
        goto fail_mem;
    rc = json_dump_callback(hdr, _dump_cb, &sp->out, JSON_COMPACT);
    json_decref(hdr);
    if (rc != 0 || _buf_append(&sp->out, "\n", 1) != KS_SUCCESS)
        goto fail_mem;
    for (size_t i = 0; i < n; i++) {
        json_t *o = ks_record_to_json(&recs[i]);
        if (o == NULL)
            goto fail_mem;
        rc = json_dump_callback(o, _dump_cb, &sp->out, JSON_COMPACT);
        json_decref(o);
        if (rc != 0 || _buf_append(&sp->out, "\n", 1) != KS_SUCCESS)
            goto fail_mem;
    }

    snprintf(tmp, sizeof(tmp), TMP_PREFIX "%ld.%" PRIu64, (long)sp->pid, seq);
    snprintf(final, sizeof(final), "%0*" PRIu64 "-%ld-%lld.json", SEQ_DIGITS, seq, (long)sp->pid,
             (long long)time(NULL));
    if (_publish(sp, tmp, final, sp->out.p, sp->out.len, true) != KS_SUCCESS)
        return KS_ERROR;
    snprintf(sp->last_file, sizeof(sp->last_file), "%s", final);
    return KS_SUCCESS;

fail_mem:
    snprintf(sp->last_error, sizeof(sp->last_error), "Step=encode Records=%zu: out of memory", n);
    errno = ENOMEM;
    return KS_ERROR;
}

int ks_spool_replace_json(ks_spool *sp, const char *name, json_t *doc) {
    char tmp[300];

    sp->out.len = 0;
    if (json_dump_callback(doc, _dump_cb, &sp->out, JSON_COMPACT) != 0 ||
        _buf_append(&sp->out, "\n", 1) != KS_SUCCESS) {
        snprintf(sp->last_error, sizeof(sp->last_error), "Step=encode File=%s: out of memory",
                 name);
        errno = ENOMEM;
        return KS_ERROR;
    }
    snprintf(tmp, sizeof(tmp), TMP_PREFIX "%ld.%s", (long)sp->pid, name);
    return _publish(sp, tmp, name, sp->out.p, sp->out.len, false);
}

/* ------------------------------------------------------------------------------------------ */
/* Reading                                                                                      */

/* Reads the whole file into a NUL-terminated malloc'd buffer. */
static int _slurp(const char *path, char **data, size_t *len, char *err, size_t errlen) {
    struct stat st;
    size_t got = 0;
    char *p = NULL;
    int fd, e;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        e = errno;
        _msg(err, errlen, "%s: cannot open: %s", path, strerror(e));
        errno = e;
        return KS_ERROR;
    }
    if (fstat(fd, &st) != 0) {
        e = errno;
        _msg(err, errlen, "%s: cannot stat: %s", path, strerror(e));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        e = EINVAL;
        _msg(err, errlen, "%s: not a regular file", path);
        goto fail;
    }
    if ((uintmax_t)st.st_size > KS_SPOOL_MAX_FILE_SIZE) {
        e = EFBIG;
        _msg(err, errlen, "%s: %jd bytes, larger than %u", path, (intmax_t)st.st_size,
             KS_SPOOL_MAX_FILE_SIZE);
        goto fail;
    }
    p = malloc((size_t)st.st_size + 1);
    if (p == NULL) {
        e = ENOMEM;
        _msg(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, p + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            e = errno;
            _msg(err, errlen, "%s: read failed: %s", path, strerror(e));
            goto fail;
        }
        if (n == 0)
            break; /* shrank meanwhile: parse what is there, the checks catch a cut */
        got += (size_t)n;
    }
    close(fd);
    p[got] = '\0';
    *data = p;
    *len = got;
    return KS_SUCCESS;
fail:
    free(p);
    close(fd);
    errno = e;
    return KS_ERROR;
}

/* Parses one line as a JSON value; on error a message "invalid JSON at column N: ...". */
static json_t *_parse_line(const char *s, size_t len, char *err, size_t errlen) {
    json_error_t je;
    json_t *v;
    const char *nul = memchr(s, '\0', len);

    if (nul != NULL) {
        _msg(err, errlen, "NUL byte at column %zu", (size_t)(nul - s) + 1);
        return NULL;
    }
    /* No JSON_DISABLE_EOF_CHECK: anything after the value on the line is an error. */
    v = json_loadb(s, len, JSON_REJECT_DUPLICATES, &je);
    if (v == NULL)
        _msg(err, errlen, "invalid JSON at column %d: %s", je.column, je.text);
    return v;
}

static const char *const _header_members[] = {
    "format", "format_version", "record_version", "writer", "pid", "seq", "created", "count"};

/* Checks the header object; on success stores the record count. */
static int _check_header(json_t *h, size_t *count, char *err, size_t errlen) {
    const char *key;
    json_t *v;
    char safe[64];
    json_int_t c;

    if (!json_is_object(h)) {
        _msg(err, errlen, "not a JSON object");
        return KS_ERROR;
    }
    json_object_foreach(h, key, v) {
        bool known = false;
        for (size_t i = 0; i < sizeof(_header_members) / sizeof(_header_members[0]); i++)
            known = known || strcmp(key, _header_members[i]) == 0;
        if (!known) {
            _msg(err, errlen, "unknown member '%s'", _printable(key, safe, sizeof(safe)));
            return KS_ERROR;
        }
    }
    for (size_t i = 0; i < sizeof(_header_members) / sizeof(_header_members[0]); i++) {
        const char *name = _header_members[i];
        v = json_object_get(h, name);
        if (v == NULL) {
            _msg(err, errlen, "missing member '%s'", name);
            return KS_ERROR;
        }
        if (strcmp(name, "format") == 0 || strcmp(name, "writer") == 0) {
            if (!json_is_string(v)) {
                _msg(err, errlen, "member '%s': expected string", name);
                return KS_ERROR;
            }
        } else if (!json_is_integer(v) || json_integer_value(v) < 0) {
            _msg(err, errlen, "member '%s': expected non-negative integer", name);
            return KS_ERROR;
        }
    }
    if (strcmp(json_string_value(json_object_get(h, "format")), KS_SPOOL_FORMAT) != 0) {
        _msg(err, errlen, "member 'format': not \"%s\"", KS_SPOOL_FORMAT);
        return KS_ERROR;
    }
    if (json_integer_value(json_object_get(h, "format_version")) != KS_SPOOL_FORMAT_VERSION) {
        _msg(err, errlen, "unsupported format_version %lld (this reader knows %d)",
             (long long)json_integer_value(json_object_get(h, "format_version")),
             KS_SPOOL_FORMAT_VERSION);
        return KS_ERROR;
    }
    if (json_integer_value(json_object_get(h, "record_version")) != KS_RECORD_VERSION) {
        _msg(err, errlen, "unsupported record_version %lld (this reader knows %d)",
             (long long)json_integer_value(json_object_get(h, "record_version")),
             KS_RECORD_VERSION);
        return KS_ERROR;
    }
    c = json_integer_value(json_object_get(h, "count"));
    if ((uintmax_t)c > KS_SPOOL_MAX_FILE_SIZE) {
        _msg(err, errlen, "member 'count': %lld is impossible", (long long)c);
        return KS_ERROR;
    }
    *count = (size_t)c;
    return KS_SUCCESS;
}

int ks_spool_read_file(const char *path, ks_record **recs, size_t *n, char *err, size_t errlen) {
    char *data = NULL, *p, *end, *nl;
    char why[384];
    ks_record *out = NULL;
    size_t len, count, lines = 0, i;
    json_t *v;

    *recs = NULL;
    *n = 0;
    if (_slurp(path, &data, &len, err, errlen) != KS_SUCCESS)
        return KS_ERROR;
    end = data + len;
    if (len == 0) {
        _msg(err, errlen, "%s: empty file", path);
        goto fail;
    }
    nl = memchr(data, '\n', len);
    if (nl == NULL) {
        _msg(err, errlen, "%s: header (line 1): no newline (truncated file)", path);
        goto fail;
    }
    v = _parse_line(data, (size_t)(nl - data), why, sizeof(why));
    if (v == NULL || _check_header(v, &count, why, sizeof(why)) != KS_SUCCESS) {
        json_decref(v);
        _msg(err, errlen, "%s: header (line 1): %s", path, why);
        goto fail;
    }
    json_decref(v);

    /* Allocate no more than the file can hold: a lying count fails below, not in malloc. */
    for (p = nl + 1; p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
        lines++;
    if (count > 0) {
        out = malloc((count <= lines ? count : lines + 1) * sizeof(*out));
        if (out == NULL) {
            _msg(err, errlen, "%s: out of memory for %zu records", path, count);
            free(data);
            errno = ENOMEM;
            return KS_ERROR;
        }
    }
    p = nl + 1;
    for (i = 0; i < count; i++) {
        if (p == end) {
            _msg(err, errlen, "%s: truncated: header says %zu records, file ends after %zu", path,
                 count, i);
            goto fail;
        }
        nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) {
            _msg(err, errlen, "%s: record %zu (line %zu): no newline at end of file (truncated)",
                 path, i, i + 2);
            goto fail;
        }
        v = _parse_line(p, (size_t)(nl - p), why, sizeof(why));
        if (v == NULL || ks_record_from_json(v, &out[i], why, sizeof(why)) != KS_SUCCESS) {
            json_decref(v);
            _msg(err, errlen, "%s: record %zu (line %zu): %s", path, i, i + 2, why);
            goto fail;
        }
        json_decref(v);
        p = nl + 1;
    }
    if (p != end) {
        _msg(err, errlen, "%s: line %zu: data after the %zu records the header announces", path,
             count + 2, count);
        goto fail;
    }
    free(data);
    *recs = out;
    *n = count;
    return KS_SUCCESS;
fail:
    free(out);
    free(data);
    errno = EINVAL;
    return KS_ERROR;
}
