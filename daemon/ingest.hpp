// SPDX-License-Identifier: GPL-2.0-or-later
// The spool ingest: jobcomp/keystone's batch files (plugins/jobcomp/spool.h) into
// keystone_slurm.job, one transaction per group of whole files, files deleted only after the
// commit; files that cannot be read go to the quarantine folder.
#pragma once

#include "config.hpp"
#include "db.hpp"
#include "jobs.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

// common/keystone_record.h; only the tests and ingest.cpp need its definition.
struct ks_record;

namespace keystone {

// User and group names by id (getpwuid_r / getgrgid_r), each id looked up once per cache.
// Not thread-safe: one cache per thread. Ids are never resolved across a cache's lifetime
// again, so keep one only as long as names may be considered current (one ingest pass).
class IdNames {
public:
    // The user or group name, "" when the id has none (or the lookup fails).
    const std::string &user(std::uint32_t uid);
    const std::string &group(std::uint32_t gid);

private:
    std::unordered_map<std::uint32_t, std::string> m_users, m_groups;
};

// `n` bytes of `s` as UTF-8 text: valid sequences (RFC 3629) kept, every other byte replaced by
// U+FFFD, the same text the spool's JSON carries for a field that is not UTF-8.
std::string utf8_text(const char *s, std::size_t n);

// Why `r` cannot be stored in keystone_slurm.job: no cluster, job id, submit time or state, a
// time PostgreSQL cannot hold, a count too large for its integer column. "" when it can.
// The text names the JSON member: "member 'cpus': 3000000000 does not fit an integer column".
[[nodiscard]] std::string record_problem(const ks_record &r);

// One spool record as a JobRow (what `sacct -P` shows, typed): sentinels become nullopt or "",
// the user name comes from the uid when the record has none and the group name from the gid
// (the plugin records none), exit codes as "code:signal", elapsed 0 when not set, time limit -1
// when unlimited, AllocTRES items sorted as sacct prints them, strings as UTF-8 text
// (utf8_text). Call record_problem() first: a record
// with a problem converts, but its row is not one the table accepts.
JobRow job_row_from_record(const ks_record &r, IdNames &names);
// As above with a cache of its own (for single records; a batch should share one IdNames).
JobRow job_row_from_record(const ks_record &r);

// What one pass (or the process so far) did.
struct IngestTotals {
    std::int64_t files = 0;        // batch files ingested and deleted
    std::int64_t records = 0;      // records in them
    std::int64_t transactions = 0; // commits
    std::int64_t quarantined = 0;  // files moved to the quarantine folder
    UpsertCounts rows;             // what the upserts did
};

// Ingests a spool folder on the calling thread and up to KEYSTONED_INGEST_CONNECTIONS - 1
// threads of its own, one database connection each. One object per IngestService thread; it
// remembers, for its lifetime, the files it must leave alone (a quarantine move or a delete
// after the commit failed) and the quarantine rows not yet committed.
class Ingester {
public:
    // The most connections one Ingester loads through (KEYSTONED_INGEST_CONNECTIONS's maximum).
    static constexpr std::size_t max_connections = 16;

    // `dbs[i]` is connection i's Database, used only by the thread loading through it; dbs[0]
    // is the calling thread's, and the only one that quarantine rows go through. The pass uses
    // at most dbs.size() of them. `quit` ends a pass early (the open transactions roll back;
    // no file is lost).
    Ingester(std::vector<Database *> dbs, const std::atomic<bool> &quit);
    ~Ingester();
    Ingester(const Ingester &) = delete;
    Ingester &operator=(const Ingester &) = delete;

    // Ingests every batch file in config.spool_dir present when it starts (names for which
    // ks_spool_is_batch_name() holds, regular files only), in name order. Files are parsed on
    // a reader thread while the database loads earlier ones, and each file's records are divided
    // among the pass's connections by job id (blocks of 1024 ids, see share_of in ingest.cpp):
    // every record of a job goes through the same connection, in spool order. Each connection
    // loads its shares of whole files, up to KEYSTONED_INGEST_MAX_RECORDS records per
    // transaction (a larger share alone), with the worker's keystone_slurm.ingest_state row
    // updated in the same transaction. Files are deleted (and the folder fsync'd) in name order,
    // each once every share of it and of every file before it is committed, so a file loaded
    // again after a failure or a crash never brings back records older than a later file's. An
    // unreadable or invalid file is moved to the quarantine folder with NAME.reason beside it and
    // a spool_quarantine row, and the files after it go on. Database errors keep the files and
    // are retried with backoff until they succeed or `quit` is set. Throws std::system_error
    // when the spool folder cannot be opened (ENOENT: it does not exist); other errors are
    // logged, not thrown.
    IngestTotals run_pass(const Config &config);

private:
    struct Part;
    struct Batch;
    struct Pending;
    struct Connection;
    struct PartQueue;
    struct Pass;
    // Loads the parts that connection `c` of the pass is handed, in transactions of up to
    // KEYSTONED_INGEST_MAX_RECORDS records. False when `quit` stopped it.
    bool load(Pass &pass, Connection &c, PartQueue &queue, IngestTotals &totals);
    // Loads `batch` (and, on connection 0, the pending quarantine rows) in one transaction,
    // retrying database errors, with ingest_state counting its records and the files it is
    // the first connection of; then marks its parts committed and deletes the files that may
    // go.
    // False when `quit` ended it first.
    [[nodiscard]] bool commit(Pass &pass, Connection &c, Batch &batch, IngestTotals &totals);
    // Deletes, in name order, the leading files of the pass that are done (see run_pass).
    void release(Pass &pass);
    // Moves an invalid file aside (see run_pass); on failure leaves it alone from then on.
    void quarantine(const Config &config, int spool_fd, const std::string &name,
                    const std::string &reason);
    void leave_alone(const std::string &name);
    // Sleeps, waking early for `quit`; false when quitting.
    [[nodiscard]] bool pause(int seconds) const;

    std::vector<std::unique_ptr<Connection>> m_connections;
    const std::atomic<bool> &m_quit;
    std::mutex m_mutex;                   // guards m_leave_alone across the loading threads
    std::set<std::string> m_leave_alone;  // names skipped for the rest of the process
    std::vector<Pending> m_pending;       // quarantine rows waiting for connection 0's commit
};

// The ingest thread of keystoned: runs an Ingester whenever the spool folder changes (inotify:
// a file renamed into it or closed after writing) or every KEYSTONED_INGEST_INTERVAL seconds,
// whichever comes first, on a database connection of its own.
class IngestService {
public:
    // `stop` is keystoned's stop flag (SIGTERM); it also ends the thread's waits.
    IngestService(std::shared_ptr<const Config> config, const std::atomic<bool> &stop);
    ~IngestService();
    IngestService(const IngestService &) = delete;
    IngestService &operator=(const IngestService &) = delete;

    // Starts the thread, unless KEYSTONED_SPOOL_DIR is empty. A spool folder that does not
    // exist is logged once (at error) and checked again every interval.
    void start();

    // Swaps in a validated configuration: spool and quarantine folders, interval, transaction
    // size, worker name and database settings take effect at the next pass. Starts the thread
    // when the spool folder was empty before; an emptied one makes the thread idle.
    void reload(std::shared_ptr<const Config> config);

    // Stops the thread: the statement in flight is cancelled (its transaction rolls back, its
    // files stay in the spool). Waits up to KEYSTONED_STOP_TIMEOUT; returns false if the thread
    // did not end in time (it is then left running and the caller should exit).
    bool shutdown();

private:
    void thread_main();
    void wake() const;
    std::shared_ptr<const Config> snapshot() const;

    mutable std::mutex m_mutex;
    std::shared_ptr<const Config> m_config;
    const std::atomic<bool> &m_stop;
    std::atomic<bool> m_quit{false};
    std::atomic<bool> m_done{false};
    int m_wake_fd = -1; // eventfd: reload and shutdown wake the thread (-1: poll only)
    std::vector<std::unique_ptr<Database>> m_dbs; // Ingester::max_connections, connected on use
    std::thread m_thread;
};

} // namespace keystone
