/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Parses JobCompParams, the plugin's comma-separated key=value settings, into a typed struct. */
#include "conf.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "keystone_record.h"

/* One known key: its name, range and where it goes. Every default lives in ks_conf_defaults(). */
struct key_spec {
    const char *name;
    uint32_t min;
    uint32_t max;
    size_t offset;
};

static const struct key_spec _keys[] = {
    {"queue_size", 1000, 10000000, offsetof(ks_conf, queue_size)},
    {"batch_size", 1, 10000, offsetof(ks_conf, batch_size)},
    {"flush_interval_ms", 1, 60000, offsetof(ks_conf, flush_interval_ms)},
    {"drain_timeout_ms", 0, 600000, offsetof(ks_conf, drain_timeout_ms)},
};
#define NKEYS (sizeof(_keys) / sizeof(_keys[0]))

void ks_conf_defaults(ks_conf *c) {
    c->queue_size = KS_CONF_QUEUE_SIZE_DEFAULT;
    c->batch_size = KS_CONF_BATCH_SIZE_DEFAULT;
    c->flush_interval_ms = KS_CONF_FLUSH_INTERVAL_MS_DEFAULT;
    c->drain_timeout_ms = KS_CONF_DRAIN_TIMEOUT_MS_DEFAULT;
}

__attribute__((format(printf, 3, 4))) static int _fail(char *err, size_t errlen, const char *fmt,
                                                       ...) {
    va_list ap;

    if (err != NULL && errlen > 0) {
        int n = snprintf(err, errlen, "JobCompParams: ");
        if (n > 0 && (size_t)n < errlen) {
            va_start(ap, fmt);
            vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return KS_ERROR;
}

static bool _blank(char c) {
    return c == ' ' || c == '\t';
}

/* [s, e) without leading and trailing blanks. */
static void _trim(const char **s, const char **e) {
    while (*s < *e && _blank(**s))
        (*s)++;
    while (*e > *s && _blank((*e)[-1]))
        (*e)--;
}

/* Parses the decimal digits [s, e) into *v; false when empty, not all digits, or > UINT32_MAX. */
static bool _parse_u32(const char *s, const char *e, uint32_t *v) {
    uint64_t acc = 0;

    if (s == e)
        return false;
    for (; s < e; s++) {
        if (*s < '0' || *s > '9')
            return false;
        acc = acc * 10 + (uint64_t)(*s - '0');
        if (acc > UINT32_MAX)
            return false;
    }
    *v = (uint32_t)acc;
    return true;
}

int ks_conf_parse(const char *params, ks_conf *out, char *err, size_t errlen) {
    ks_conf c;
    bool seen[NKEYS] = {false};
    const char *p, *end;

    ks_conf_defaults(&c);
    if (params == NULL)
        goto done;
    end = params + strlen(params);
    {
        const char *s = params, *e = end;
        _trim(&s, &e);
        if (s == e)
            goto done;
    }

    for (p = params;;) {
        const char *item_end = memchr(p, ',', (size_t)(end - p));
        const char *ks, *ke, *vs, *ve, *eq;
        const struct key_spec *spec = NULL;
        size_t idx;
        uint32_t v;

        if (item_end == NULL)
            item_end = end;
        ks = p;
        ve = item_end;
        _trim(&ks, &ve);
        if (ks == ve)
            return _fail(err, errlen, "empty item at offset %zu (stray comma?)",
                         (size_t)(p - params));
        eq = memchr(ks, '=', (size_t)(ve - ks));
        if (eq == NULL)
            return _fail(err, errlen, "%.*s: not key=value", (int)(ve - ks), ks);
        ke = eq;
        vs = eq + 1;
        _trim(&ks, &ke);
        _trim(&vs, &ve);
        for (idx = 0; idx < NKEYS; idx++) {
            if (strlen(_keys[idx].name) == (size_t)(ke - ks) &&
                memcmp(_keys[idx].name, ks, (size_t)(ke - ks)) == 0) {
                spec = &_keys[idx];
                break;
            }
        }
        if (spec == NULL)
            return _fail(err, errlen,
                         "unknown key '%.*s' (known: queue_size, batch_size, flush_interval_ms, "
                         "drain_timeout_ms)",
                         (int)(ke - ks), ks);
        if (seen[idx])
            return _fail(err, errlen, "key '%s' given twice", spec->name);
        seen[idx] = true;
        if (!_parse_u32(vs, ve, &v))
            return _fail(err, errlen, "%s=%.*s: not an unsigned decimal number", spec->name,
                         (int)(ve - vs), vs);
        if (v < spec->min || v > spec->max)
            return _fail(err, errlen, "%s=%u: out of range %u..%u", spec->name, v, spec->min,
                         spec->max);
        *(uint32_t *)((char *)&c + spec->offset) = v;
        if (item_end == end)
            break;
        p = item_end + 1;
    }
    if (c.batch_size > c.queue_size)
        return _fail(err, errlen, "batch_size=%u: larger than queue_size=%u", c.batch_size,
                     c.queue_size);
done:
    *out = c;
    return KS_SUCCESS;
}
