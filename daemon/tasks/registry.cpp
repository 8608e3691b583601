// SPDX-License-Identifier: GPL-2.0-or-later
// The table of tasks this build can run, and the run context they share.
#include "tasks/task.hpp"

#include "error.hpp"

namespace keystone {

RunContext::RunContext(const Config &config_, pqxx::connection &conn_, const RunOptions &options_,
                       const std::atomic<bool> &stop, TimePoint now_)
    : config(config_), conn(conn_), options(options_), now(now_), m_stop(stop),
      m_summary(json_object())
{
}

void RunContext::check_stop() const
{
    if (m_stop.load())
        throw Interrupted("interrupted: keystoned is stopping");
}

void RunContext::add_error(const std::string &message)
{
    m_errors.push_back(message);
}

const std::vector<TaskDef> &all_tasks()
{
    static const std::vector<TaskDef> tasks = {
        {"ldap_update_users", "apps.users.tasks.ldap_update_users",
         "create, update and deactivate users from the LDAP directory", false,
         run_ldap_update_users},
        {"clear_log_records", "apps.logging.tasks.clear_log_records",
         "delete request, audit and task log records older than their retention", false,
         run_clear_log_records},
        {"update_limits", "apps.allocations.tasks.limits.update_limits",
         "set Slurm GrpTRESMins billing limits and settle expired allocations, for each "
         "enabled cluster",
         true, run_update_limits},
        {"slurm_update_job_stats", "apps.allocations.tasks.jobstats.slurm_update_job_stats",
         "reconcile keystone_slurm.job with slurmdbd, for each enabled cluster",
         true, run_slurm_update_job_stats},
        {"notify_upcoming_expirations",
         "apps.notifications.tasks.upcoming_expirations.notify_upcoming_expirations",
         "e-mail team members whose allocation request expires within their thresholds", false,
         run_notify_upcoming_expirations},
        {"notify_past_expirations",
         "apps.notifications.tasks.past_expirations.notify_past_expirations",
         "e-mail team members whose allocation request expired in the last three days", false,
         run_notify_past_expirations},
    };
    return tasks;
}

const TaskDef *find_task(const std::string &name)
{
    for (const auto &t : all_tasks())
        if (name == t.short_name || name == t.dotted_name)
            return &t;
    return nullptr;
}

bool task_takes_since(const TaskDef &task)
{
    return std::string(task.short_name) == "slurm_update_job_stats";
}

} // namespace keystone
