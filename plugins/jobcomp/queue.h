/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A bounded multi-producer, single-consumer queue of job records with preallocated storage. */
#ifndef KS_QUEUE_H
#define KS_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include "keystone_record.h"

/*
 * Producers (slurmctld threads in the jobcomp callback) call ks_queue_push(); one consumer (the
 * worker) calls ks_queue_wait() and ks_queue_pop(). Every other function is safe from any thread.
 *
 * Memory: the queue reserves, at creation and never again, address space for `capacity`
 * records of the largest size (about 4.7 KiB each; mmap, not yet memory). A queued record takes
 * only its used bytes (head plus used string arena: typically 300-500 bytes), and the storage
 * rewinds to its start whenever the queue empties, so resident memory follows the bytes queued
 * at the deepest point, not the capacity. The capacity counts records, whatever their size.
 *
 * Cost of a push: one mutex hold of a record copy (typically a few hundred bytes); no
 * allocation, no system call except when the push fills the queue to the wake threshold while
 * the worker waits (one futex wake), and a page fault when a burst reaches storage never
 * touched before.
 */

typedef struct ks_queue ks_queue;

/* What ks_queue_push() returns. */
#define KS_QUEUE_OK 0
#define KS_QUEUE_FULL 1   /* capacity reached: the record was not queued and is counted as dropped \
                           */
#define KS_QUEUE_CLOSED 2 /* ks_queue_close() was called: not queued, counted as dropped */

/* What ks_queue_wait() returns. */
#define KS_QUEUE_READY 0   /* at least wake_threshold records are queued */
#define KS_QUEUE_TIMEOUT 1 /* the timeout passed first */
#define KS_QUEUE_SHUT 2    /* the queue was closed */

typedef struct ks_queue_stats {
    uint64_t capacity;
    uint64_t depth;         /* records queued now */
    uint64_t high_water;    /* highest depth seen since creation */
    uint64_t pushed;        /* records accepted */
    uint64_t dropped;       /* records refused: full or closed */
    uint64_t waiters;       /* consumers inside ks_queue_wait() now */
    uint64_t bytes_touched; /* highest storage offset used: an upper bound of its resident size */
} ks_queue_stats;

/*
 * Creates a queue for `capacity` records (>= 1) that wakes a waiting consumer when the depth
 * reaches `wake_threshold` (clamped to 1..capacity; the worker passes its batch size). Returns
 * KS_SUCCESS and the queue in *out (owned by the caller, freed with ks_queue_destroy()), or
 * KS_ERROR with errno EINVAL (bad capacity) or the mmap error (ENOMEM).
 */
int ks_queue_create(ks_queue **out, size_t capacity, size_t wake_threshold);

/* Frees the queue and any records still in it. No thread may use it any more. NULL is a no-op. */
void ks_queue_destroy(ks_queue *q);

/*
 * Copies `rec` (its head and used arena) to the tail. Never blocks beyond the short hold of the
 * queue mutex and never allocates. Returns KS_QUEUE_OK, or KS_QUEUE_FULL / KS_QUEUE_CLOSED when the
 * record was not queued (it is then counted in `dropped`; the caller keeps nothing).
 */
int ks_queue_push(ks_queue *q, const ks_record *rec);

/*
 * Consumer only. Moves up to `max` records from the head into out[0..n-1], oldest first, and
 * returns n (0 when empty). Does not wait. The copies are made outside the mutex, so producers
 * are held up only for the bookkeeping.
 */
size_t ks_queue_pop(ks_queue *q, ks_record *out, size_t max);

/*
 * Consumer only. Waits until at least wake_threshold records are queued, the queue is closed, or
 * `timeout_ms` milliseconds pass (CLOCK_MONOTONIC). Returns KS_QUEUE_READY, KS_QUEUE_SHUT or
 * KS_QUEUE_TIMEOUT; returns at once when the condition already holds.
 */
int ks_queue_wait(ks_queue *q, unsigned timeout_ms);

/*
 * Closes the queue: later pushes return KS_QUEUE_CLOSED, a waiting consumer wakes up. Records
 * already queued stay and can still be popped. Idempotent.
 */
void ks_queue_close(ks_queue *q);

/* A consistent snapshot of the counters. */
void ks_queue_get_stats(ks_queue *q, ks_queue_stats *st);

#endif /* KS_QUEUE_H */
