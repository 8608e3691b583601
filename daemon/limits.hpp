// SPDX-License-Identifier: GPL-2.0-or-later
// The limits computation of apps.allocations.tasks.limits.update_limits (spec §4), pure: no
// database, no Slurm. The task (tasks/update_limits.cpp) reads the inputs, calls plan_account()
// for every account, checks the plans against the circuit breaker, and applies them.
//
// Units: a service unit (SU) is one billing-TRES hour. Keystone's numbers (awarded, final,
// usage, limits) are whole SUs; Slurm holds GrpTRESMins and usage in billing minutes. Reading
// from Slurm floors minutes to hours (minutes / 60); writing multiplies SUs by 60.
#pragma once

#include "notify.hpp" // Day

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace keystone {

// One approved allocation (allocations_resourceallocation whose request has status 'AP') of the
// team, on the cluster being planned. Allocations of other requests are not passed in.
struct LimitAllocation {
    std::int64_t id = 0;                 // allocations_resourceallocation.id
    std::int64_t request_id = 0;         // allocations_allocationrequest.id
    std::optional<std::int64_t> awarded; // NULL allowed
    std::optional<std::int64_t> final_;  // NULL: not settled yet
    std::optional<Day> active, expire;   // the request's dates; NULL allowed
};

// One Slurm account (a direct child of root on the cluster) and what Keystone and Slurm hold
// for it.
struct LimitAccount {
    std::string account;                        // Slurm account name (matched on users_team.slug)
    std::optional<std::int64_t> team_id;        // nullopt: no team has this slug
    std::string team_name;                      // for messages; "" without a team
    bool team_active = true;                    // users_team.is_active
    std::optional<std::uint64_t> limit_minutes; // GrpTRESMins billing; nullopt when not set
    std::uint64_t usage_minutes = 0;            // billing usage (GrpTRESRaw), whole minutes
    std::vector<LimitAllocation> allocations;
};

struct Settlement {
    std::int64_t allocation_id = 0;
    std::int64_t request_id = 0;
    std::int64_t awarded = 0;
    std::int64_t final_ = 0; // min(remaining usage, awarded)
    Day expire = 0;
};

enum class LimitAction {
    skip,   // no team: left as it is (warning); or root
    error,  // cannot be computed (see AccountPlan::error): nothing is written for it
    keep,   // computed; the limit in Slurm is already right and nothing to settle
    update, // the limit changes and/or finals are settled
};

struct AccountPlan {
    std::string account;
    std::optional<std::int64_t> team_id;
    bool team_active = true;
    LimitAction action = LimitAction::skip;

    // Keystone's intermediate values, in SUs (spec §4.4 step C).
    std::int64_t current_limit = 0; // limit_minutes / 60 (0 when unset)
    std::int64_t total_usage = 0;   // usage_minutes / 60
    std::int64_t active_sus = 0;
    std::int64_t expiring_sus = 0;
    std::int64_t historical = 0;          // after the clamp at 0
    std::int64_t current_usage = 0;       // after the fallback, before settlement
    std::int64_t remaining_usage = 0;     // after settlement (charged to the active allocations)
    std::int64_t historical_usage_db = 0; // Σ final over expired approved, after settlement
    std::int64_t new_limit = 0; // SUs: historical_usage_db + active_sus, or the lock value

    std::optional<std::uint64_t> old_minutes; // as read (nullopt: not set)
    std::uint64_t usage_minutes = 0;          // billing usage as read, in minutes
    std::uint64_t new_minutes = 0;            // new_limit * 60
    bool limit_changes = false;               // new_minutes differs from old_minutes
    bool lowered = false;                     // set before and new_minutes < old_minutes
    bool locked = false;                      // inactive team: limit set to current usage

    std::vector<Settlement> settlements; // expiring allocations settled now, in expire order
    std::vector<std::string> warnings;   // Keystone's WARNING cases, worded for an admin
    std::string reason;                  // one line: how new_limit was derived
    std::string error;                   // action == error: why
};

// Plans one account as Keystone's update_limit_for_account(team, cluster) would, on `today`
// (the local date, CONFIG_TIMEZONE):
// - root, or no team: action skip (no team: a warning naming the account);
// - inactive team: the limit becomes current_usage (locked), no finals (Keystone returned before
//   settling, so a NULL award does not matter there);
// - an expiring allocation (approved, final NULL, expire <= today) whose awarded is NULL: action
//   error naming the allocation (Keystone raised TypeError before saving anything); so is a
//   new limit below 0 (only possible with negative values in the table);
// - otherwise finals settled in expire order (ties by allocation id), the limit
//   Σ final (expired) + Σ awarded (active).
// action is keep when nothing would be written (limit already right, no settlement).
AccountPlan plan_account(const LimitAccount &account, Day today);

// The circuit breaker of one cluster's plans.
struct BreakerSettings {
    double max_lower_share = 0.2; // KEYSTONED_LIMITS_MAX_LOWER_SHARE
    int min_lowered = 5; // KEYSTONED_LIMITS_MIN_LOWERED: fewer lowered never trips on share
};

struct BreakerVerdict {
    bool tripped = false;
    int managed = 0;                  // accounts with a team (plans whose action is not skip)
    int lowered = 0;                  // plans that lower a limit that was set
    std::vector<std::string> reasons; // one line per account that trips it, then the share line
};

// Trips when lowered > max_lower_share × managed and lowered >= min_lowered, or when any active
// team's limit would be set to 0 (a change to 0; a limit already 0 is not a change). Each
// reason names the account, its old and new limit in SUs.
BreakerVerdict check_breaker(const std::vector<AccountPlan> &plans, const BreakerSettings &s);

} // namespace keystone
