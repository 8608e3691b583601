// SPDX-License-Identifier: GPL-2.0-or-later
// Implementation of keystoned's scheduler (see scheduler.hpp).
#include "scheduler.hpp"

#include "clusters.hpp"
#include "error.hpp"
#include "log.hpp"
#include "migrate.hpp"
#include "runner.hpp"
#include "task_log.hpp"

#include <algorithm>

namespace keystone {

namespace {

// How often a lane tries a watched slot again (see Lane::watch).
constexpr std::chrono::seconds watch_interval(15);
// How long a claim must stay abandoned (no outcome, no lock holder) before this keystoned takes
// it over: longer than a run that lost its connection takes to reconnect (30 s) and record its
// outcome, so a run is not started twice for a claimer that is still alive.
constexpr std::chrono::seconds takeover_grace(60);

} // namespace

struct Scheduler::Lane {
    const TaskDef *task = nullptr;
    std::optional<CronExpr> cron;         // nullopt: the task is switched off
    std::optional<TimePoint> last_slot;   // the slot last dispatched (or the baseline)
    std::unique_ptr<Database> db;
    std::thread thread;
    std::mutex mutex;
    std::condition_variable cv;
    std::optional<TimePoint> pending;     // a slot waiting for the lane
    // A slot dispatched here that is not run everywhere yet: a part of it was busy (its lock held
    // elsewhere) or its claim was abandoned. Tried again every watch_interval until it is, or a
    // newer slot comes due (which folds it in, as for a lane still running).
    std::optional<TimePoint> watch;
    // When this lane first found the watched slot's claim abandoned (taken over after
    // takeover_grace).
    std::optional<std::chrono::steady_clock::time_point> abandoned_since;
    bool busy = false;
    bool quit = false;
    std::atomic<int> phase{0};
};

std::vector<std::optional<CronExpr>> parse_schedules(const Config &config)
{
    std::vector<std::optional<CronExpr>> out;
    for (const auto &task : all_tasks()) {
        auto it = config.schedules.find(task.short_name);
        if (it == config.schedules.end() || it->second.empty()) {
            out.emplace_back();
            continue;
        }
        const std::string name = schedule_setting_name(task.short_name);
        try {
            out.emplace_back(CronExpr::parse(it->second));
        } catch (const CronError &e) {
            const std::string where = config.origin_text(name);
            throw ConfigError(where + ": " + name + ": " + e.what());
        }
    }
    return out;
}

Scheduler::Scheduler(std::shared_ptr<const Config> config, std::atomic<bool> &stop)
    : m_config(std::move(config)), m_stop(stop)
{
}

Scheduler::~Scheduler()
{
    for (auto &lane : m_lanes) {
        {
            std::lock_guard<std::mutex> lock(lane->mutex);
            lane->quit = true;
        }
        lane->cv.notify_all();
        if (lane->thread.joinable())
            lane->thread.join();
    }
}

std::shared_ptr<const Config> Scheduler::snapshot() const
{
    std::lock_guard<std::mutex> lock(m_config_mutex);
    return m_config;
}

bool Scheduler::start()
{
    auto config = snapshot();
    auto crons = parse_schedules(*config);
    Database db(db_conninfo(*config), "scheduler");
    pqxx::connection *conn = nullptr;
    while (!conn) {
        try {
            conn = &db.conn_retry(&m_stop, std::chrono::hours(24 * 365));
        } catch (const DbUnavailable &) {
            if (m_stop.load())
                return false;
        }
    }
    check_schema(*conn);
    const std::string worker = config->worker.empty() ? host_name() : config->worker;
    int closed = recover_abandoned(*conn, worker);
    if (closed > 0)
        log_warning("scheduler: closed %d run(s) left STARTED by a process that died", closed);

    // The per-cluster tasks run here only for the enabled clusters KEYSTONED_CLUSTERS names.
    std::vector<std::string> served;
    {
        pqxx::read_transaction tx(*conn);
        const std::vector<std::string> enabled = enabled_clusters(tx);
        for (const auto &name : unserved_config_clusters(enabled, *config))
            log_warning("scheduler: KEYSTONED_CLUSTERS names Cluster=%s, which is not an enabled "
                        "cluster in allocations_cluster: this keystoned runs nothing for it",
                        name.c_str());
        for (const auto &name : enabled)
            if (config->serves_cluster(name))
                served.push_back(name);
    }

    const TimePoint now = Clock::now();
    const auto &tasks = all_tasks();
    for (size_t i = 0; i < tasks.size(); ++i) {
        auto lane = std::make_unique<Lane>();
        lane->task = &tasks[i];
        lane->cron = crons[i];
        lane->db = std::make_unique<Database>(db_conninfo(*config), tasks[i].short_name);
        if (lane->cron) {
            pqxx::work tx(*conn);
            auto rows = tx.exec_params(std::string("SELECT EXTRACT(EPOCH FROM last_slot)::bigint "
                                                   "FROM ") +
                                           own_schema + ".task_schedule WHERE task_name = $1",
                                       std::string(tasks[i].dotted_name));
            std::time_t now_t = Clock::to_time_t(now);
            if (rows.empty()) {
                // First start: nothing was missed. The baseline is the latest slot before now.
                auto base = lane->cron->last_at_or_before(now_t);
                std::time_t b = base ? *base : now_t;
                lane->last_slot = Clock::from_time_t(b);
                tx.exec_params0(std::string("INSERT INTO ") + own_schema +
                                    ".task_schedule (task_name, last_slot, updated_at) "
                                    "VALUES ($1, to_timestamp($2), now()) "
                                    "ON CONFLICT (task_name) DO NOTHING",
                                std::string(tasks[i].dotted_name), static_cast<long long>(b));
            } else {
                std::time_t last = static_cast<std::time_t>(rows[0][0].as<long long>());
                lane->last_slot = Clock::from_time_t(last);
                // The row is the task's last slot run anywhere. A per-cluster task runs each
                // cluster where it is served, so a cluster whose head node was down has its own
                // last slot: the newest claim of (task, cluster).
                std::vector<std::pair<std::string, std::time_t>> missed;
                std::time_t due = lane->cron->next_after(last);
                if (due <= now_t)
                    missed.emplace_back("", due);
                if (tasks[i].per_cluster) {
                    auto claims = tx.exec_params(
                        std::string("SELECT scope, EXTRACT(EPOCH FROM max(slot))::bigint FROM ") +
                            own_schema + ".slot_claim WHERE task_name = $1 GROUP BY scope",
                        std::string(tasks[i].dotted_name));
                    for (const auto &c : claims) {
                        const std::string scope = c[0].as<std::string>();
                        if (std::find(served.begin(), served.end(), scope) == served.end())
                            continue;
                        const std::time_t d =
                            lane->cron->next_after(static_cast<std::time_t>(c[1].as<long long>()));
                        if (d <= now_t)
                            missed.emplace_back(scope, d);
                    }
                }
                for (const auto &m : missed)
                    log_info("scheduler: %s%s%s: the run due at %s was missed while keystoned "
                             "was down: running it once now",
                             tasks[i].short_name, m.first.empty() ? "" : " Cluster=",
                             m.first.c_str(), iso_utc(m.second).c_str());
                if (!missed.empty()) {
                    // Claimed like any slot: of two keystoned starting together, one runs it.
                    auto slot = lane->cron->last_at_or_before(now_t);
                    lane->pending = Clock::from_time_t(slot ? *slot : now_t);
                    lane->last_slot = lane->pending;
                }
            }
            tx.commit();
            const std::string next_text =
                lane->pending ? std::string("now (catch-up)")
                              : local_time_text(
                                    lane->cron->next_after(Clock::to_time_t(*lane->last_slot)));
            log_info("scheduler: %s: schedule \"%s\" in CONFIG_TIMEZONE=%s, next run %s",
                     tasks[i].short_name, lane->cron->text().c_str(), config->timezone.c_str(),
                     next_text.c_str());
        } else {
            log_info("scheduler: %s: switched off (%s=off)", tasks[i].short_name,
                     schedule_setting_name(tasks[i].short_name).c_str());
        }
        m_lanes.push_back(std::move(lane));
    }
    for (auto &lane : m_lanes) {
        Lane *l = lane.get();
        l->thread = std::thread([this, l] { lane_main(*l); });
    }
    return true;
}

TimePoint Scheduler::tick(TimePoint now)
{
    const std::time_t now_t = Clock::to_time_t(now);
    TimePoint next = now + std::chrono::seconds(60);
    for (auto &lane : m_lanes) {
        std::unique_lock<std::mutex> lock(lane->mutex);
        if (!lane->cron)
            continue;
        std::time_t after = lane->last_slot ? Clock::to_time_t(*lane->last_slot) : now_t;
        std::time_t due = lane->cron->next_after(after);
        if (due <= now_t) {
            auto slot = lane->cron->last_at_or_before(now_t);
            TimePoint s = Clock::from_time_t(slot ? *slot : due);
            lane->last_slot = s;
            if (lane->busy || lane->pending) {
                // Never two runs of one task: the slot waits for the lane, and slots that pass
                // meanwhile fold into this one.
                log_verbose("scheduler: %s: still running at its next slot %s: it runs once "
                            "when the current run ends",
                            lane->task->short_name, iso_utc(Clock::to_time_t(s)).c_str());
            }
            lane->pending = s;
            lock.unlock();
            lane->cv.notify_all();
            lock.lock();
            due = lane->cron->next_after(Clock::to_time_t(s));
        }
        next = std::min(next, Clock::from_time_t(due));
    }
    return next;
}

void Scheduler::lane_main(Lane &lane)
{
    for (;;) {
        TimePoint slot;
        bool takeover = false;
        {
            std::unique_lock<std::mutex> lock(lane.mutex);
            auto ready = [&] { return lane.quit || (lane.pending && !m_stop.load()); };
            if (lane.watch)
                lane.cv.wait_for(lock, watch_interval, ready);
            else
                lane.cv.wait(lock, ready);
            if (lane.quit || m_stop.load())
                return;
            if (lane.pending) {
                slot = *lane.pending;
                lane.pending.reset();
                lane.watch.reset();
                lane.abandoned_since.reset();
            } else if (lane.watch) {
                slot = *lane.watch;
                takeover =
                    lane.abandoned_since &&
                    std::chrono::steady_clock::now() - *lane.abandoned_since >= takeover_grace;
            } else {
                continue;
            }
            lane.busy = true;
        }
        auto config = snapshot();
        lane.db->set_conninfo(db_conninfo(*config));
        RunOptions options;
        options.scheduled = true;
        options.slot = slot;
        options.takeover = takeover;
        RunOutcome out = run_task(*lane.task, *config, *lane.db, options, m_stop,
                                  std::chrono::seconds(60), &lane.phase);
        const std::string slot_text = iso_utc(Clock::to_time_t(slot));
        if (out.status != "SKIPPED" && !out.task_id.empty())
            persist_slot(lane, slot, out.status, out.task_id);
        else if (out.status == "SKIPPED")
            // The usual case with two keystoned: the other one claimed the slot first.
            log_verbose("scheduler: %s: not run for %s: %s", lane.task->short_name,
                        slot_text.c_str(), out.error.c_str());
        std::lock_guard<std::mutex> lock(lane.mutex);
        lane.busy = false;
        if ((out.busy.empty() && out.abandoned.empty()) || lane.pending) {
            lane.watch.reset();
            lane.abandoned_since.reset();
            continue;
        }
        lane.watch = slot;
        if (out.abandoned.empty()) {
            lane.abandoned_since.reset();
        } else if (!lane.abandoned_since) {
            lane.abandoned_since = std::chrono::steady_clock::now();
            std::string scopes;
            for (const auto &a : out.abandoned)
                scopes += a.empty() ? std::string() : " Cluster=" + a;
            log_info("scheduler: %s:%s the slot %s was claimed by a run that recorded no outcome "
                     "and holds no lock: taking it over in %lld s unless it ends or a newer slot "
                     "comes due",
                     lane.task->short_name, scopes.c_str(), slot_text.c_str(),
                     static_cast<long long>(takeover_grace.count()));
        }
    }
}

void Scheduler::persist_slot(Lane &lane, TimePoint slot, const std::string &status,
                             const std::string &task_id)
{
    try {
        pqxx::work tx(lane.db->conn());
        tx.exec_params0(std::string("INSERT INTO ") + own_schema +
                            ".task_schedule (task_name, last_slot, last_status, last_task_id, "
                            "updated_at) VALUES ($1, to_timestamp($2), $3, $4, now()) "
                            "ON CONFLICT (task_name) DO UPDATE SET "
                            "last_slot = GREATEST(task_schedule.last_slot, EXCLUDED.last_slot), "
                            "last_status = EXCLUDED.last_status, "
                            "last_task_id = EXCLUDED.last_task_id, updated_at = now()",
                        std::string(lane.task->dotted_name),
                        static_cast<long long>(Clock::to_time_t(slot)), status, task_id);
        tx.commit();
    } catch (const std::exception &e) {
        // Not fatal: at worst the slot runs once more after a restart.
        log_error_limited(std::string("persist-") + lane.task->short_name, 300,
                          "scheduler: %s: cannot record the slot of the last run: %s",
                          lane.task->short_name, e.what());
        lane.db->reset();
    }
}

void Scheduler::reload(std::shared_ptr<const Config> config)
{
    auto crons = parse_schedules(*config); // validated by the caller already; cannot throw here
    {
        std::lock_guard<std::mutex> lock(m_config_mutex);
        m_config = config;
    }
    const std::time_t now_t = Clock::to_time_t(Clock::now());
    for (size_t i = 0; i < m_lanes.size(); ++i) {
        Lane &lane = *m_lanes[i];
        std::lock_guard<std::mutex> lock(lane.mutex);
        const std::string before = lane.cron ? lane.cron->text() : "off";
        const std::string after = crons[i] ? crons[i]->text() : "off";
        if (before == after)
            continue;
        lane.cron = crons[i];
        if (lane.cron && !lane.last_slot) {
            auto base = lane.cron->last_at_or_before(now_t);
            lane.last_slot = Clock::from_time_t(base ? *base : now_t);
        }
        log_info("scheduler: %s: schedule changed from \"%s\" to \"%s\"", lane.task->short_name,
                 before.c_str(), after.c_str());
    }
}

bool Scheduler::shutdown()
{
    auto config = snapshot();
    for (auto &lane : m_lanes) {
        {
            std::lock_guard<std::mutex> lock(lane->mutex);
            lane->quit = true;
        }
        lane->cv.notify_all();
        // Abandon the statement in flight (its transaction rolls back); the task record is
        // still written, since only the task body is cancelled.
        if (lane->phase.load() == static_cast<int>(RunPhase::body))
            lane->db->cancel();
    }
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(config->stop_timeout);
    bool all = true;
    for (auto &lane : m_lanes) {
        for (;;) {
            bool busy;
            {
                std::lock_guard<std::mutex> lock(lane->mutex);
                busy = lane->busy;
            }
            if (!busy)
                break;
            if (std::chrono::steady_clock::now() >= deadline) {
                log_error("scheduler: %s did not stop within KEYSTONED_STOP_TIMEOUT=%d s",
                          lane->task->short_name, config->stop_timeout);
                all = false;
                break;
            }
            if (lane->phase.load() == static_cast<int>(RunPhase::body))
                lane->db->cancel();
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    }
    if (all) {
        for (auto &lane : m_lanes)
            if (lane->thread.joinable())
                lane->thread.join();
    }
    return all;
}

} // namespace keystone
