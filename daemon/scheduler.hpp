// SPDX-License-Identifier: GPL-2.0-or-later
// keystoned's scheduler: one lane (thread + connection) per task, runs on cron schedules, never
// two runs of one task at once, one catch-up run for slots missed while the daemon was down, and
// with other keystoned on the same database each slot run once (slot claims, see runner.hpp).
#pragma once

#include "config.hpp"
#include "cron.hpp"
#include "db.hpp"
#include "tasks/task.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace keystone {

// Parses every KEYSTONED_SCHEDULE_* of `config` for the tasks this build has. A disabled task
// ("off") maps to nullopt. Throws ConfigError naming the setting's origin (file:line) when an
// expression is invalid.
std::vector<std::optional<CronExpr>> parse_schedules(const Config &config);

class Scheduler {
public:
    // `stop` is shared with the caller (set on SIGTERM).
    Scheduler(std::shared_ptr<const Config> config, std::atomic<bool> &stop);
    ~Scheduler();
    Scheduler(const Scheduler &) = delete;
    Scheduler &operator=(const Scheduler &) = delete;

    // Connects (retrying while PostgreSQL is down, until stop), checks the schema (throws
    // SchemaError: the caller exits), closes runs abandoned by a dead process on this host, loads
    // each task's last slot and starts the lanes. A task whose slot came due while the daemon was
    // down is run once now (for a per-cluster task: also when only a served cluster's newest slot
    // claim is behind), claimed like any slot. Warns about KEYSTONED_CLUSTERS names that are not
    // enabled clusters. Returns false if stopped before it could connect.
    bool start();

    // Dispatches every task whose next slot is at or before `now`; a lane whose slot was busy or
    // abandoned elsewhere tries it again every 15 s and takes an abandoned claim over after 60 s,
    // until a newer slot comes due. Returns the time of the next
    // slot of any task (at most 60 s ahead, so clock changes are noticed).
    TimePoint tick(TimePoint now);

    // Swaps in a validated configuration (schedules, retention, DB settings); running runs keep
    // the configuration they started with.
    void reload(std::shared_ptr<const Config> config);

    // Cancels the statements of running tasks and waits up to KEYSTONED_STOP_TIMEOUT for them
    // to record their outcome. Returns false if a lane did not stop in time.
    bool shutdown();

private:
    struct Lane;
    void lane_main(Lane &lane);
    void persist_slot(Lane &lane, TimePoint slot, const std::string &status,
                      const std::string &task_id);

    std::shared_ptr<const Config> snapshot() const;

    mutable std::mutex m_config_mutex;
    std::shared_ptr<const Config> m_config;
    std::atomic<bool> &m_stop;
    std::vector<std::unique_ptr<Lane>> m_lanes;
};

} // namespace keystone
