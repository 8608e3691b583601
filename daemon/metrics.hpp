// SPDX-License-Identifier: GPL-2.0-or-later
// keystoned's Prometheus metrics: the process-wide counters that runs and the ingest feed, and
// the HTTP endpoint (libmicrohttpd, its own thread) that serves them as text format 0.0.4.
#pragma once

#include "config.hpp"
#include "runner.hpp"

#include <jansson.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

struct MHD_Daemon;

namespace keystone {

// --- Recording --------------------------------------------------------------------------------
// Like the logger, the counters are process-wide (the one exception to "no global mutable
// state"): runs and the ingest report with one call, without a handle passed through every
// layer. Every call is cheap (a short mutex hold or an atomic add), never throws and never does
// I/O, so the scheduler and the ingest can call it at any point. In processes that serve no
// endpoint (keystonectl) the values are simply never read.

// The outcome of one run of task `task` (short name), at each return of run_task: its status
// (SUCCESS, FAILURE; SKIPPED counts in runs_total only), duration, and the items changed taken
// from its summary JSON (metrics_items_changed). PostgreSQL counts as reachable when the record
// was written or the lock was found taken elsewhere, unreachable otherwise.
void metrics_record_run(const std::string &task, const RunOutcome &outcome) noexcept;

// The outcome of one per-cluster sub-run (RunContext::run_for_cluster) that began at `started`.
// `summary` is the sub-run's JSON; for slurm_update_job_stats its "filled_in" feeds the
// reconciliation counter.
void metrics_record_cluster_run(const std::string &task, const std::string &cluster, bool success,
                                std::chrono::steady_clock::time_point started,
                                const json_t *summary) noexcept;

// The ingest committed a transaction of `records` records.
void metrics_record_ingest_commit(std::int64_t records) noexcept;
// The ingest deleted `files` batch files, every record of them committed.
void metrics_record_ingest_files(std::int64_t files) noexcept;
// The ingest moved one file to the quarantine folder.
void metrics_record_quarantine() noexcept;
// Whether the last statement of the ingest or a run reached PostgreSQL.
void metrics_record_database(bool reachable) noexcept;

// The items a run changed, from its summary JSON, per task: clear_log_records: the sum of
// "deleted"; ldap_update_users: created + updated + reactivated + deactivated + deleted;
// update_limits: limits_written + finals_written; slurm_update_job_stats: filled_in + updated;
// notify_*: sent. 0 for anything else or a summary that is not JSON.
double metrics_items_changed(const std::string &task, const json_t *summary) noexcept;

// Sets keystoned_process_start_time_seconds, on the first call only (metrics_render calls it
// too). keystoned calls it at start-up.
void metrics_mark_start() noexcept;

// The whole exposition text as served at `/metrics`, for the spool folder and quarantine
// folder of `config` (read at most once a second; older results are served in between) and its
// plugin-stats.json. Used by the endpoint; callable from any thread.
std::string metrics_render(const Config &config);

// Escapes a label value for the text format: backslash, double quote and newline.
std::string metrics_escape_label(const std::string &value);

// --- The endpoint -----------------------------------------------------------------------------

// The HTTP endpoint: GET (or HEAD) /metrics on KEYSTONED_METRICS_ADDRESS; 404 for other paths,
// 405 for other methods. One internal polling thread (libmicrohttpd), at most 8 connections
// (2 per client address), 5 s idle timeout, so a slow or hostile client cannot hold it.
class MetricsServer {
public:
    MetricsServer();
    ~MetricsServer(); // stops the endpoint
    MetricsServer(const MetricsServer &) = delete;
    MetricsServer &operator=(const MetricsServer &) = delete;

    // Resolves the address (once) and listens on it. Empty or "off": nothing is served.
    // A failure (address in use, name that does not resolve) is logged at error naming
    // KEYSTONED_METRICS_ADDRESS and the address; keystoned runs on without metrics (false).
    // Never throws.
    bool start(std::shared_ptr<const Config> config);

    // Takes a validated new configuration: the folders read at scrape time change at once; a
    // changed address closes the old endpoint and opens the new one (a failure is logged and
    // leaves no endpoint until the next reload). Never throws.
    void reload(std::shared_ptr<const Config> config);

    // Closes the endpoint and joins its thread; a scrape in progress finishes first. Idempotent.
    void stop() noexcept;

    // The configuration the endpoint serves (for the request handler).
    std::shared_ptr<const Config> config() const;

private:
    bool listen(const std::string &address);

    mutable std::mutex m_mutex;
    std::shared_ptr<const Config> m_config;
    std::string m_address; // what m_daemon listens on; "" when none
    MHD_Daemon *m_daemon = nullptr;
};

} // namespace keystone
