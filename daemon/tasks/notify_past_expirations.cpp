// SPDX-License-Identifier: GPL-2.0-or-later
// Task apps.notifications.tasks.past_expirations.notify_past_expirations: e-mails the active
// members of active teams whose approved allocation request expired in the last three days, with
// the service units it used (spec §6.3).
//
// The usage shown must be final. update_limits writes it (the allocations' `final`) for the
// requests expiring today, and in Keystone both tasks start at midnight, so the mail often said
// "used 0" (spec §6.3, the midnight race). Here the run first waits until a run of update_limits
// that started at or after local midnight today has ended, up to KEYSTONED_NOTIFY_SETTLE_WAIT
// seconds; when update_limits is not part of this build or is switched off there is nothing to
// wait for. After the wait has timed out, notices of requests that still have an unsettled
// allocation are held back: they stay due (the three-day window) and go out with a later run.
#include "tasks/task.hpp"

#include "log.hpp"
#include "notify_run.hpp"

#include <chrono>
#include <thread>

namespace keystone {

namespace {

constexpr const char *limits_task = "update_limits";
constexpr const char *task = "notify_past_expirations";

} // namespace

void run_notify_past_expirations(RunContext &ctx) {
    json_t *summary = ctx.summary();
    const TaskDef *limits = find_task(limits_task);
    bool scheduled = false;
    if (limits) {
        auto it = ctx.config.schedules.find(limits_task);
        scheduled = it != ctx.config.schedules.end() && !it->second.empty();
    }
    const Day today = local_day(Clock::to_time_t(ctx.now));
    const std::time_t midnight = local_midnight(today);
    std::string ended_at;
    auto finished = [&] {
        return limits && scheduled &&
               task_finished_since(ctx.conn, limits->dotted_name, midnight, &ended_at);
    };
    Settlement state = settlement_state(limits != nullptr, scheduled, finished());
    NoticeRunOptions options;
    std::string note;
    switch (state) {
    case Settlement::absent:
        note = "update_limits is not part of this build: nothing to wait for";
        break;
    case Settlement::off:
        note = "update_limits is switched off (KEYSTONED_SCHEDULE_UPDATE_LIMITS=off): nothing "
               "to wait for";
        break;
    case Settlement::done:
        note = "update_limits settled today's expirations (run ended " + ended_at + ")";
        break;
    case Settlement::pending:
        if (ctx.options.dry_run) {
            note = "update_limits has not finished a run since midnight: a real run would wait "
                   "for it";
            break;
        }
        if (ctx.options.force) {
            note = "update_limits has not finished a run since midnight: not waited for (--force)";
            break;
        }
        {
            const int limit = ctx.config.notify_settle_wait;
            // At midnight this is the expected order of things; a run by hand that waits
            // should say so, and how not to.
            if (ctx.options.scheduled)
                log_info("%s: waiting up to %d s for update_limits to settle today's expirations",
                         task, limit);
            else
                log_warning("%s: waiting up to %d s for update_limits to settle today's "
                            "expirations (KEYSTONED_NOTIFY_SETTLE_WAIT; --force does not wait)",
                            task, limit);
            const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(limit);
            while (state == Settlement::pending && std::chrono::steady_clock::now() < deadline) {
                for (int i = 0; i < 20 && std::chrono::steady_clock::now() < deadline; ++i) {
                    ctx.check_stop();
                    std::this_thread::sleep_for(std::chrono::milliseconds(100));
                }
                if (finished())
                    state = Settlement::done;
            }
        }
        if (state == Settlement::done) {
            note = "waited for update_limits to settle today's expirations (run ended " + ended_at +
                   ")";
        } else {
            note = "update_limits did not finish a run since midnight within "
                   "KEYSTONED_NOTIFY_SETTLE_WAIT=" +
                   std::to_string(ctx.config.notify_settle_wait) + " s";
            options.hold_unsettled = true;
            options.hold_reason = note;
            log_warning("%s: %s: notices of requests with unsettled allocations are held back",
                        task, note.c_str());
        }
        break;
    }
    log_verbose("%s: %s", task, note.c_str());
    json_object_set_new(summary, "settlement", json_string(settlement_name(state)));
    json_object_set_new(summary, "settlement_note", json_string(note.c_str()));
    run_notices(ctx, NoticeKind::past, options);
}

} // namespace keystone
