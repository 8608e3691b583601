// SPDX-License-Identifier: GPL-2.0-or-later
// One run of an expiration-notice task: finds the notices due, sends each over one SMTP session,
// records it in Keystone's notifications_notification only after the server accepted it, keeps
// retry state with backoff (keystone_slurm.notice_retry) for those that failed, and retries
// transient failures within the run for up to KEYSTONED_NOTIFY_RETRY_WINDOW seconds.
#pragma once

#include "notify.hpp"
#include "tasks/task.hpp"

#include <chrono>
#include <ctime>
#include <optional>
#include <string>

namespace keystone {

// How long a notice waits after its `attempts`-th failed attempt before the next one: 15 s,
// doubling, at most 6 hours.
std::chrono::seconds notice_retry_delay(int attempts);

// Whether a notice with retry state must wait: scheduled runs (and every later pass of a run)
// honour next_attempt_at; the first pass of a run started by hand (keystonectl run) tries every
// due notice at once, since an administrator asked for it.
bool notice_in_backoff(std::time_t next_attempt_at, std::time_t now, bool honour_backoff);

struct NoticeRunOptions {
    // Past notices: hold back the notices of requests with an allocation that has no final usage
    // yet (update_limits has not settled today's expirations in time); `hold_reason` says why.
    bool hold_unsettled = false;
    std::string hold_reason;
};

// Where the limits settlement of the day stands, for notify_past_expirations (which must show
// final usage): update_limits is not part of this build (absent), switched off (off), has
// finished a run that started at or after local midnight today (done), or not yet (pending).
enum class Settlement { absent, off, done, pending };
Settlement settlement_state(bool registered, bool scheduled, bool finished_today);
const char *settlement_name(Settlement s);

// Whether a run of the per-cluster task `dotted_name` that started at or after `since` has ended
// (SUCCESS or FAILURE) for every enabled cluster, according to its task records: each cluster's
// sub-run (`<dotted_name>_for_cluster`, args [cluster]), which may have run on another keystoned
// (a head node per cluster), or a whole run when no cluster is enabled. `ended_at` gets the
// latest of those first end times (ISO UTC).
bool task_finished_since(pqxx::connection &conn, const std::string &dotted_name, std::time_t since,
                         std::string *ended_at = nullptr);

// The body of notify_upcoming_expirations / notify_past_expirations. Fills the run's summary
// (see keystoned(8)); a notice that could not be sent, and every template error, is a run error
// (the run ends FAILURE) but never stops the other notices. Users without an e-mail address are
// skipped with a warning. A dry run sends and writes nothing and lists every notice it would send.
void run_notices(RunContext &ctx, NoticeKind kind, const NoticeRunOptions &options = {});

} // namespace keystone
