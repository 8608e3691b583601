/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A bounded multi-producer, single-consumer queue of job records with preallocated storage. */
#include "queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

/* Records the consumer moves per mutex hold in ks_queue_pop(). */
#define POP_CHUNK 256

/* Entry header: payload length and kind, 8 bytes so payloads stay 8-byte aligned. */
struct entry {
    uint32_t len;  /* payload bytes: record head plus used arena */
    uint32_t kind; /* ENTRY_RECORD, or ENTRY_WRAP: the rest of the buffer is unused */
};
#define ENTRY_RECORD 1u
#define ENTRY_WRAP 2u
#define ALIGN8(n) (((n) + 7u) & ~(size_t)7u)
#define MAX_ENTRY (sizeof(struct entry) + ALIGN8(sizeof(ks_record)))

/*
 * Storage is one byte ring reserved at creation. An entry is a header and the record's head plus
 * the used part of its arena (a few hundred bytes, not the 4.7 KiB of a full ks_record), so a
 * burst touches few new pages (on a VM a first touch costs ~10 us, as much as the rest of the
 * push ten times over). Entries never straddle the end: a producer that does not fit there
 * writes a WRAP marker (when 8 bytes are left) and starts again at offset 0.
 *
 * Byte ranges, in ring order: [head, rd) entries the consumer took and is copying out,
 * [rd, tail) queued entries, the rest is free. When nothing is queued or held, all three go back
 * to 0: in steady state the queue drains every flush interval, so pushes keep reusing the same
 * few warm pages and the resident memory stays small.
 *
 * The ring holds (capacity + 2) entries of the largest size, so the record count, not the bytes,
 * is what fills up: with at most capacity - 1 entries held, either end of the free space offers
 * room for the largest entry (see _place()).
 */
struct ks_queue {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    size_t capacity; /* records */
    size_t wake_threshold;
    char *buf;
    size_t size;  /* bytes */
    size_t head;  /* oldest byte still in use */
    size_t rd;    /* oldest queued entry */
    size_t tail;  /* where the next entry goes */
    size_t count; /* queued records */
    size_t held;  /* records taken by the consumer, not yet released */
    bool closed;
    int waiting; /* consumers inside pthread_cond_timedwait */
    uint64_t high_water;
    uint64_t bytes_touched;
    uint64_t pushed;
    uint64_t dropped;
};

int ks_queue_create(ks_queue **out, size_t capacity, size_t wake_threshold) {
    ks_queue *q = NULL;
    pthread_condattr_t ca;
    bool ca_init = false, mu_init = false;
    int err = 0;

    *out = NULL;
    if (capacity == 0 || capacity > UINT32_MAX) {
        errno = EINVAL;
        return KS_ERROR;
    }
    q = calloc(1, sizeof(*q));
    if (q == NULL)
        goto fail_errno;
    q->capacity = capacity;
    q->wake_threshold = wake_threshold < 1          ? 1
                        : wake_threshold > capacity ? capacity
                                                    : wake_threshold;
    q->size = (capacity + 2) * MAX_ENTRY;
    /* Address space only: pages cost memory once touched, and the ring rewinds to its start
     * whenever it empties. MAP_NORESERVE keeps a large queue_size from being refused by the
     * kernel's overcommit heuristic for memory it will most likely never use (strict overcommit
     * accounting, vm.overcommit_memory=2, still counts it and may refuse: init then fails). */
    q->buf = mmap(NULL, q->size, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (q->buf == MAP_FAILED) {
        q->buf = NULL;
        goto fail_errno;
    }
    if ((err = pthread_mutex_init(&q->mu, NULL)) != 0)
        goto fail;
    mu_init = true;
    if ((err = pthread_condattr_init(&ca)) != 0)
        goto fail;
    ca_init = true;
    /* Timeouts must not jump with the wall clock. */
    if ((err = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC)) != 0)
        goto fail;
    if ((err = pthread_cond_init(&q->cond, &ca)) != 0)
        goto fail;
    pthread_condattr_destroy(&ca);
    *out = q;
    return KS_SUCCESS;

fail_errno:
    err = errno ? errno : ENOMEM;
fail:
    if (ca_init)
        pthread_condattr_destroy(&ca);
    if (mu_init)
        pthread_mutex_destroy(&q->mu);
    if (q != NULL) {
        if (q->buf != NULL)
            munmap(q->buf, q->size);
        free(q);
    }
    errno = err;
    return KS_ERROR;
}

void ks_queue_destroy(ks_queue *q) {
    if (q == NULL)
        return;
    pthread_cond_destroy(&q->cond);
    pthread_mutex_destroy(&q->mu);
    munmap(q->buf, q->size);
    free(q);
}

static struct entry *_entry_at(ks_queue *q, size_t off) {
    return (struct entry *)(q->buf + off);
}

/* Offset for an entry of `need` bytes, updating tail and writing a WRAP marker if it wraps;
 * SIZE_MAX when there is no room (cannot happen while count + held < capacity). */
static size_t _place(ks_queue *q, size_t need) {
    size_t off;

    if (q->count + q->held == 0)
        q->head = q->rd = q->tail = 0; /* empty: start over on the warm pages */
    if (q->tail >= q->head) {
        /* Not wrapped: free space is [tail, size) and [0, head). */
        if (q->size - q->tail >= need) {
            off = q->tail;
            q->tail += need;
            return off;
        }
        /* Keep tail < head once wrapped, so tail == head only ever means empty. */
        if (q->head <= need)
            return SIZE_MAX;
        if (q->size - q->tail >= sizeof(struct entry))
            _entry_at(q, q->tail)->kind = ENTRY_WRAP;
        q->tail = need;
        return 0;
    }
    /* Wrapped: free space is [tail, head). */
    if (q->head - q->tail <= need)
        return SIZE_MAX;
    off = q->tail;
    q->tail += need;
    return off;
}

int ks_queue_push(ks_queue *q, const ks_record *rec) {
    size_t used = rec->arena_used <= KS_RECORD_ARENA_SIZE ? rec->arena_used : KS_RECORD_ARENA_SIZE;
    size_t len = KS_RECORD_HEAD_SIZE + used;
    size_t need = sizeof(struct entry) + ALIGN8(len);
    size_t off;
    struct entry *e;
    bool wake;

    pthread_mutex_lock(&q->mu);
    if (q->closed || q->count + q->held >= q->capacity || (off = _place(q, need)) == SIZE_MAX) {
        int rc = q->closed ? KS_QUEUE_CLOSED : KS_QUEUE_FULL;
        q->dropped++;
        pthread_mutex_unlock(&q->mu);
        return rc;
    }
    e = _entry_at(q, off);
    e->len = (uint32_t)len;
    e->kind = ENTRY_RECORD;
    /* Copying under the mutex keeps ring order equal to arrival order; it is a few hundred
     * bytes, cheaper than a second lock round trip to publish the entry. */
    memcpy(e + 1, rec, len);
    if (((ks_record *)(void *)(e + 1))->arena_used != used)
        ((ks_record *)(void *)(e + 1))->arena_used = (uint16_t)used;
    q->count++;
    q->pushed++;
    if (q->count > q->high_water)
        q->high_water = q->count;
    if (q->tail > q->bytes_touched)
        q->bytes_touched = q->tail;
    /* Wake only on reaching the threshold: a wake per record would put a futex call on
     * slurmctld's thread for every job; below it the worker's flush interval picks records up. */
    wake = q->waiting > 0 && q->count == q->wake_threshold;
    pthread_mutex_unlock(&q->mu);
    if (wake)
        pthread_cond_signal(&q->cond);
    return KS_QUEUE_OK;
}

size_t ks_queue_pop(ks_queue *q, ks_record *out, size_t max) {
    size_t taken[POP_CHUNK];
    size_t total = 0;

    for (;;) {
        size_t n;

        pthread_mutex_lock(&q->mu);
        /* Release what the previous round copied out. */
        q->head = q->rd;
        q->held = 0;
        if (q->count == 0)
            q->head = q->rd = q->tail = 0;
        n = max - total;
        if (n > POP_CHUNK)
            n = POP_CHUNK;
        if (n > q->count)
            n = q->count;
        for (size_t i = 0; i < n; i++) {
            struct entry *e;
            if (q->size - q->rd < sizeof(struct entry) || _entry_at(q, q->rd)->kind == ENTRY_WRAP)
                q->rd = 0;
            e = _entry_at(q, q->rd);
            taken[i] = q->rd;
            q->rd += sizeof(struct entry) + ALIGN8(e->len);
        }
        q->count -= n;
        q->held = n;
        pthread_mutex_unlock(&q->mu);

        if (n == 0)
            return total;
        /* Held entries are neither queued nor free: nobody else touches them meanwhile. */
        for (size_t i = 0; i < n; i++) {
            struct entry *e = _entry_at(q, taken[i]);
            memcpy(&out[total + i], e + 1, e->len);
        }
        total += n;
    }
}

int ks_queue_wait(ks_queue *q, unsigned timeout_ms) {
    struct timespec deadline;
    int rc = KS_QUEUE_READY;

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }

    pthread_mutex_lock(&q->mu);
    while (!q->closed && q->count < q->wake_threshold) {
        int err;

        q->waiting++;
        err = pthread_cond_timedwait(&q->cond, &q->mu, &deadline);
        q->waiting--;
        if (err == ETIMEDOUT) {
            rc = KS_QUEUE_TIMEOUT;
            break;
        }
    }
    if (q->closed)
        rc = KS_QUEUE_SHUT;
    else if (q->count >= q->wake_threshold)
        rc = KS_QUEUE_READY;
    pthread_mutex_unlock(&q->mu);
    return rc;
}

void ks_queue_close(ks_queue *q) {
    pthread_mutex_lock(&q->mu);
    q->closed = true;
    pthread_mutex_unlock(&q->mu);
    pthread_cond_broadcast(&q->cond);
}

void ks_queue_get_stats(ks_queue *q, ks_queue_stats *st) {
    pthread_mutex_lock(&q->mu);
    st->capacity = q->capacity;
    st->depth = q->count;
    st->high_water = q->high_water;
    st->pushed = q->pushed;
    st->dropped = q->dropped;
    st->waiters = (uint64_t)q->waiting;
    st->bytes_touched = q->bytes_touched;
    pthread_mutex_unlock(&q->mu);
}
