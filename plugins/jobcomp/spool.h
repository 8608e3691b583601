/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The on-disk spool: batches of job records as crash-safe JSON files that keystoned ingests. */
#ifndef KS_SPOOL_H
#define KS_SPOOL_H

#include <jansson.h>
#include <stddef.h>

#include "keystone_record.h"

/*
 * The spool folder (JobCompLoc)
 * -----------------------------
 *   <seq>-<pid>-<time>.json   one batch, complete and fsync'd before it gets this name.
 *                             seq: 20 decimal digits, zero-padded; pid: the writer's process id;
 *                             time: seconds since the epoch when written. Sorting the names as
 *                             byte strings gives the write order: seq grows by one per file and a
 *                             new writer starts above every batch file present and above the
 *                             current time in microseconds, so a restarted slurmctld sorts after
 *                             its predecessor even when the folder was emptied in between (unless
 *                             the clock went back). keystoned takes a file only if its whole name
 *                             matches ks_spool_is_batch_name(), ingests, then deletes it.
 *   .tmp.<pid>.<seq>          a batch being written; never complete. Ignore it. ks_spool_open()
 *                             removes those left by a writer that no longer runs.
 *   plugin-stats.json         the worker's counters (worker.h), replaced atomically; not a batch.
 * Files are created with mode 0640 (less the umask) and the folder's group ownership rules.
 *
 * File format (format_version 1): JSON lines, UTF-8, each line ending in "\n":
 *   line 1      header: {"format":"keystone-jobcomp-spool","format_version":1,
 *                        "record_version":1,"writer":"jobcomp/keystone 0.1.0","pid":1234,
 *                        "seq":1732790000123456,"created":1732790000,"count":500}
 *               (all members required, no others; count is the number of record lines)
 *   lines 2..   exactly `count` records, one compact JSON object per line, encoded as described
 *               in common/keystone_record.h. Nothing follows the last record's newline.
 * Why lines: a reader can stream a large file record by record, and name the line of a bad record.
 * A batch file is never appended to or rewritten; the rename publishes it whole.
 *
 * Durability: ks_spool_write() writes the temp file, fsyncs it, renames it to its final name and
 * fsyncs the folder. Once it returns KS_SUCCESS the batch survives a crash of slurmctld or of the
 * machine. If only the folder fsync fails, the complete file stays under its final name and the
 * call still reports the error; the caller's retry then writes the batch again under a new name,
 * which keystoned's idempotent upsert absorbs.
 */

#define KS_SPOOL_FORMAT "keystone-jobcomp-spool"
#define KS_SPOOL_FORMAT_VERSION 1
#define KS_SPOOL_STATS_FILE "plugin-stats.json"
/* ks_spool_read_file() refuses larger files. */
#define KS_SPOOL_MAX_FILE_SIZE (256u * 1024u * 1024u)

typedef struct ks_spool ks_spool;

/*
 * Opens the spool folder `dir` (which must exist) for writing batches. `writer` names the program
 * in each header (valid UTF-8, e.g. "jobcomp/keystone 0.1.0"). Scans the folder once to pick the
 * first sequence number and removes stale temp files of dead writers. Returns KS_SUCCESS and the
 * spool in *out (free with ks_spool_close()), or KS_ERROR with errno set and a message naming
 * the folder in err. A spool is used by one thread at a time (the worker).
 */
int ks_spool_open(ks_spool **out, const char *dir, const char *writer, char *err, size_t errlen);

/* Closes the folder and frees the spool. NULL is a no-op. */
void ks_spool_close(ks_spool *sp);

/*
 * Writes recs[0..n) as one batch file (n == 0: nothing to do, KS_SUCCESS). Returns KS_SUCCESS
 * when the file is durable under its final name (ks_spool_last_file()), or KS_ERROR with errno
 * set and ks_spool_last_error() saying which step failed on which file; the temp file is removed
 * then. Never aborts; the records are only read, so the caller keeps the batch to retry.
 */
int ks_spool_write(ks_spool *sp, const ks_record *recs, size_t n);

/* Name (not path) of the last batch file written; "" before the first. Owned by the spool. */
const char *ks_spool_last_file(const ks_spool *sp);

/* Message of the last failed call ("" when none yet). Owned by the spool. */
const char *ks_spool_last_error(const ks_spool *sp);

/* The folder's path as given to ks_spool_open(). */
const char *ks_spool_dir(const ks_spool *sp);

/*
 * Atomically replaces the small file `name` in the folder with `doc` (compact JSON plus "\n"):
 * temp file, fsync, rename; no folder fsync (used for the stats file, which is advisory).
 * Returns KS_SUCCESS or KS_ERROR with errno set.
 */
int ks_spool_replace_json(ks_spool *sp, const char *name, json_t *doc);

/* Whether `name` is a batch file name: 20 digits '-' digits '-' digits ".json". */
int ks_spool_is_batch_name(const char *name);

/*
 * One record as its JSON object (see keystone_record.h): a new reference the caller owns, or
 * NULL when memory runs out.
 */
json_t *ks_record_to_json(const ks_record *r);

/*
 * Decodes one record object strictly into *r: every required member, the right types and ranges,
 * no unknown members, strings within their maximum, "raw" consistent with the text. Returns
 * KS_SUCCESS, or KS_ERROR with a message naming the member in err.
 */
int ks_record_from_json(json_t *obj, ks_record *r, char *err, size_t errlen);

/*
 * Reads one batch file strictly: header (format, versions, members), exactly `count` record
 * lines, nothing after them. On success returns KS_SUCCESS, *recs (malloc'd array the caller
 * frees with free(); NULL when count is 0) and *n. On failure returns KS_ERROR with errno (EINVAL
 * for a bad file, or the I/O error) and a message naming the file and the header or the record
 * index and line, e.g. "/spool/x.json: record 3 (line 5): member 'uid': expected integer or
 * null". Reading never modifies the file.
 */
int ks_spool_read_file(const char *path, ks_record **recs, size_t *n, char *err, size_t errlen);

/*
 * For tests: the next `count` times ks_spool_write() reaches `step`, it fails there with `err`
 * as if the system call had (count 0 clears). Thread-safe, so a test may arm it while a worker
 * writes. Costs one atomic load per step otherwise.
 */
enum ks_spool_step {
    KS_SPOOL_STEP_OPEN,
    KS_SPOOL_STEP_WRITE,
    KS_SPOOL_STEP_FSYNC,
    KS_SPOOL_STEP_RENAME,
    KS_SPOOL_STEP_DIRSYNC,
    KS_SPOOL_STEP_COUNT
};
void ks_spool_inject_fault(ks_spool *sp, enum ks_spool_step step, int err, unsigned count);

#endif /* KS_SPOOL_H */
