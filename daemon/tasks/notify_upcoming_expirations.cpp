// SPDX-License-Identifier: GPL-2.0-or-later
// Task apps.notifications.tasks.upcoming_expirations.notify_upcoming_expirations: e-mails the
// active members of active teams whose approved allocation request expires within one of their
// thresholds (spec §6.2). The rules are in notify.hpp, the sending and retries in notify_run.hpp.
#include "tasks/task.hpp"

#include "notify_run.hpp"

namespace keystone {

void run_notify_upcoming_expirations(RunContext &ctx) {
    run_notices(ctx, NoticeKind::upcoming);
}

} // namespace keystone
