/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Parses JobCompParams, the plugin's comma-separated key=value settings, into a typed struct. */
#ifndef KS_CONF_H
#define KS_CONF_H

#include <stddef.h>
#include <stdint.h>

/*
 * JobCompParams=queue_size=200000,batch_size=1000,flush_interval_ms=100,drain_timeout_ms=10000
 *
 *   key                default   range            meaning
 *   queue_size         100000    1000..10000000   records the queue holds; when full, records
 *                                                 are dropped (counted) and the daemon's
 *                                                 reconciliation fills them in later
 *   batch_size         500       1..10000         most records per spool file; also the queue
 *                                                 depth that wakes the worker early
 *   flush_interval_ms  200       1..60000         longest wait before queued records are written
 *   drain_timeout_ms   5000      0..600000        how long fini may spend writing what is queued
 *
 * Rules: items are separated by commas; spaces and tabs around keys and values are ignored;
 * values are unsigned decimal integers (no sign, no suffix). Unknown keys, a key given twice,
 * an item without '=', an empty item, a value that is not a number or out of range, and a
 * batch_size larger than queue_size are errors. NULL, "" or only blanks mean all defaults.
 */

typedef struct ks_conf {
    uint32_t queue_size;
    uint32_t batch_size;
    uint32_t flush_interval_ms;
    uint32_t drain_timeout_ms;
} ks_conf;

#define KS_CONF_QUEUE_SIZE_DEFAULT 100000u
#define KS_CONF_BATCH_SIZE_DEFAULT 500u
#define KS_CONF_FLUSH_INTERVAL_MS_DEFAULT 200u
#define KS_CONF_DRAIN_TIMEOUT_MS_DEFAULT 5000u

/* Fills `c` with the defaults above. */
void ks_conf_defaults(ks_conf *c);

/*
 * Parses `params` (JobCompParams; may be NULL). On success fills *out and returns KS_SUCCESS. On
 * error returns KS_ERROR, leaves *out untouched, and writes one line naming the key (or the item)
 * and the reason into err[0..errlen) (e.g. "JobCompParams: queue_size=5: out of range
 * 1000..10000000"). `err` may be NULL when errlen is 0.
 */
int ks_conf_parse(const char *params, ks_conf *out, char *err, size_t errlen);

#endif /* KS_CONF_H */
