// SPDX-License-Identifier: GPL-2.0-or-later
// A deadline for one libslurm call that waits on slurmdbd: past it, the process's connections to
// slurmdbd are shut down for reading so that libslurm's wait ends. Used by slurmdb.cpp and
// slurm_assoc.cpp only.
//
// Why: libslurm's accounting_storage/slurmdbd plugin waits up to 900 s (SLURMDBD_TIMEOUT) for
// each answer on an open connection, MessageTimeout+35 s on a new one, and reconnects after a
// failure, so a slurmdbd that accepts connections but does not answer (stopped, stuck) blocks a
// call for as long as it hangs, with the process-wide libslurm mutex held. libslurm offers no
// per-call timeout and no way to interrupt a call, but it gives up on a connection whose read
// returns end-of-file: shutdown(fd, SHUT_RD) on its socket does that from another thread.
//
// Only SHUT_RD: after SHUT_RDWR, poll() reports POLLIN|POLLHUP, which libslurm 22.05's
// _conn_readable() does not expect and answers with fatal_abort() (the whole process aborts);
// SHUT_RD reports POLLIN alone, the read returns 0, and libslurm closes the socket itself. The
// watchdog never closes a descriptor: libslurm owns them.
#pragma once

#include "slurmdb.hpp"

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace keystone::slurm_internal {

// Sets TCP_NODELAY and TCP_QUICKACK on the process's sockets connected to `port` (slurmdbd's):
// each slurmdbd request otherwise waits twice for a delayed ACK. Called before every guarded
// call (TCP_QUICKACK does not stay set). Never fails: a socket that cannot be tuned is left.
void tune_slurmdbd_sockets(std::uint16_t port) noexcept;

// A call abandoned at its deadline. Callers outside see a SlurmError like the others; inside,
// wrappers that add context to a SlurmError let this one through as it is.
class SlurmdbdTimeout : public SlurmError {
public:
    using SlurmError::SlurmError;
};

// Bounds one libslurm call that waits on slurmdbd (slurmdb_connection_get, slurmdb_jobs_get,
// slurmdb_associations_get/modify, slurmdb_connection_commit, slurmdb_get_info_cluster, ...).
// Construct it right before the call, with slurm_mutex() held (it reads slurmdbd's address from
// libslurm's slurm_conf), and call finish() or done() right after the call returns, before the
// mutex is released (not at the end of the scope: handling a large answer may take a while). While
// armed, a thread of its own waits `timeout_seconds`; if the call has not returned by then it shuts
// down for reading every TCP socket of the process whose peer is slurmdbd (AccountingStorageHost or
// AccountingStorageBackupHost, resolved, at AccountingStoragePort), and again every second until
// finish(), since libslurm reconnects and may wait again. The call then fails with a libslurm
// error; use message() for the error.
//
// That includes the idle connections of other SlurmdbConnection objects: libslurm reopens them
// on their next request (slurmdbd hung for them too). The watchdog thread never calls libslurm
// and never takes slurm_mutex(). Throws std::system_error when the thread cannot be started.
class SlurmdbdDeadline {
public:
    // `what`: what the call does, for message() ("reading the jobs"); `cluster`: the cluster it
    // is for, "" when none. timeout_seconds <= 0: no deadline (no thread).
    SlurmdbdDeadline(int timeout_seconds, std::string what, std::string cluster);
    // finish()
    ~SlurmdbdDeadline();
    SlurmdbdDeadline(const SlurmdbdDeadline &) = delete;
    SlurmdbdDeadline &operator=(const SlurmdbdDeadline &) = delete;

    // Disarms the watchdog and waits for its thread: once it returns, no descriptor is touched
    // any more. Returns whether the deadline passed (connections were shut down), in which case
    // the call's failure is the timeout and message() says so. Idempotent.
    bool finish() noexcept;

    // For right after the call: finish(), then, when the call failed (`failed`) and the
    // deadline had passed, throws SlurmdbdTimeout(message()). A call that succeeded although the
    // deadline passed (the answer came just then) is not an error.
    void done(bool failed);

    // "slurmdbd (AccountingStorageHost=H Port=P) did not answer within
    // KEYSTONED_SLURMDB_TIMEOUT=N s while WHAT for Cluster=C".
    std::string message() const;

private:
    void run() noexcept; // the watchdog thread

    const int m_timeout;
    const std::string m_what, m_cluster;
    // Copied from slurm_conf at construction (the mutex is held then, not in the thread).
    std::string m_host, m_backup_host;
    std::uint16_t m_port = 0;

    std::mutex m_mutex; // guards m_done and m_expired; held while descriptors are shut down
    std::condition_variable m_cv;
    bool m_done = false;
    bool m_expired = false;
    std::thread m_thread;
};

} // namespace keystone::slurm_internal
