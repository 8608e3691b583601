// SPDX-License-Identifier: GPL-2.0-or-later
// The pure limits computation: Keystone's update_limit_for_account (spec §4.3-4.5) as a plan of
// what to write, and the circuit breaker over one cluster's plans.
#include "limits.hpp"

#include <algorithm>
#include <cstdio>

namespace keystone {

namespace {

using std::to_string;

// "33000 SU", or "unset" for a GrpTRESMins that is not set. Minutes are floored to SUs, as every
// read from Slurm is.
std::string su_text(std::optional<std::uint64_t> minutes) {
    if (!minutes)
        return "unset";
    return to_string(*minutes / 60) + " SU";
}

std::string alloc_text(const LimitAllocation &a) {
    return "Allocation=" + to_string(a.id) + " (Request=" + to_string(a.request_id) + ")";
}

// spec §4.3 active(T,C): started (a NULL start date never starts) and not yet expired (a NULL
// expire date never expires).
bool is_active(const LimitAllocation &a, Day today) {
    return a.active && *a.active <= today && (!a.expire || *a.expire > today);
}

// spec §4.3 expiring(T,C): expired on or before today with no final yet. A NULL expire date is
// not <= today in SQL, so such an allocation never expires.
bool is_expiring(const LimitAllocation &a, Day today) {
    return !a.final_ && a.expire && *a.expire <= today;
}

// Fills new_minutes, limit_changes, lowered and action from new_limit and the settlements.
void finish(AccountPlan &p) {
    p.new_minutes = static_cast<std::uint64_t>(p.new_limit) * 60;
    p.limit_changes = !p.old_minutes || *p.old_minutes != p.new_minutes;
    p.lowered = p.old_minutes && p.new_minutes < *p.old_minutes;
    p.action = p.limit_changes || !p.settlements.empty() ? LimitAction::update : LimitAction::keep;
}

} // namespace

AccountPlan plan_account(const LimitAccount &account, Day today) {
    AccountPlan p;
    p.account = account.account;
    p.team_id = account.team_id;
    p.team_active = account.team_active;
    p.old_minutes = account.limit_minutes;

    // Keystone skips the literal "root" before it looks for a team, silently.
    if (account.account == "root") {
        p.action = LimitAction::skip;
        p.reason = "root account: never managed";
        return p;
    }
    if (!account.team_id) {
        p.action = LimitAction::skip;
        p.reason = "no team has the slug " + account.account;
        p.warnings.push_back("No existing team for Account=" + account.account +
                             ": its limit is left as it is");
        return p;
    }
    const std::string who = "Account=" + account.account;

    // Classify the allocations (spec §4.3). The expiring ones settle in expire order; Keystone's
    // ORDER BY request.expire leaves ties undefined, we break them by allocation id so a run is
    // reproducible.
    std::vector<const LimitAllocation *> expiring;
    for (const auto &a : account.allocations) {
        if (is_active(a, today)) {
            if (a.awarded) {
                p.active_sus += *a.awarded;
            } else {
                // SUM() skips NULL (Keystone: `or 0`): the allocation adds nothing to the limit.
                p.warnings.push_back(alloc_text(a) + " of " + who +
                                     " is active with no awarded SUs: it adds 0 SU to the limit");
            }
        }
        if (is_expiring(a, today)) {
            expiring.push_back(&a);
            p.expiring_sus += a.awarded.value_or(0);
        }
    }
    std::sort(expiring.begin(), expiring.end(),
              [](const LimitAllocation *x, const LimitAllocation *y) {
                  return *x->expire != *y->expire ? *x->expire < *y->expire : x->id < y->id;
              });

    // spec §4.4 step C, 2-5. Slurm's minutes are floored to SUs.
    p.current_limit = static_cast<std::int64_t>(account.limit_minutes.value_or(0) / 60);
    p.total_usage = static_cast<std::int64_t>(account.usage_minutes / 60);
    p.usage_minutes = account.usage_minutes;
    const std::int64_t historical = p.current_limit - p.active_sus - p.expiring_sus;
    p.historical = historical;
    if (historical < 0) {
        p.historical = 0;
        p.warnings.push_back(who + ": negative historical usage " + to_string(historical) +
                             " SU (limit " + to_string(p.current_limit) + " SU - active " +
                             to_string(p.active_sus) + " SU - expiring " +
                             to_string(p.expiring_sus) + " SU): taken as 0");
    }
    const std::int64_t current = p.total_usage - p.historical;
    p.current_usage = current;
    if (current < 0) {
        // Keystone's fallback, kept on purpose (spec §11): a usage below the historical part of
        // the limit makes current usage the historical value, not 0. It decides how much the
        // expiring allocations are charged and, for an inactive team, the lock value.
        p.current_usage = p.historical;
        p.warnings.push_back(who + ": negative current usage " + to_string(current) +
                             " SU (usage " + to_string(p.total_usage) + " SU - historical " +
                             to_string(p.historical) + " SU): taken as the historical usage " +
                             to_string(p.historical) + " SU, as Keystone does");
    }

    // Σ final over approved allocations expired on or before today, before any settlement.
    for (const auto &a : account.allocations)
        if (a.final_ && a.expire && *a.expire <= today)
            p.historical_usage_db += *a.final_;

    // Step 6: an inactive team is locked at its current usage. Keystone returns before the
    // settlement, so no final is written, and an expiring allocation with a NULL award does not
    // fail it.
    if (!account.team_active) {
        p.locked = true;
        p.remaining_usage = p.current_usage;
        p.new_limit = p.current_usage;
        p.reason = "inactive team: locked at current usage " + to_string(p.new_limit) + " SU";
        finish(p);
        return p;
    }

    // Step 7: Keystone computes min(current_usage, None) and raises TypeError before its bulk
    // update, so nothing at all is written for the account until an admin sets the award.
    std::string missing;
    int n_missing = 0;
    for (const auto *a : expiring)
        if (!a->awarded)
            missing += (n_missing++ ? ", " : "") + alloc_text(*a);
    if (n_missing) {
        p.action = LimitAction::error;
        p.reason = "expiring allocations cannot be settled";
        p.error = who + ": expiring " + missing + (n_missing == 1 ? " has" : " have") +
                  " no awarded SUs, so no final can be settled; nothing is written for the "
                  "account until an admin sets the award";
        return p;
    }

    // First expired absorbs first; what is left is charged to the active allocations implicitly.
    std::int64_t usage = p.current_usage;
    for (const auto *a : expiring) {
        Settlement s;
        s.allocation_id = a->id;
        s.request_id = a->request_id;
        s.awarded = *a->awarded;
        s.final_ = std::min(usage, s.awarded);
        s.expire = *a->expire;
        usage -= s.final_;
        p.historical_usage_db += s.final_;
        p.settlements.push_back(s);
    }
    p.remaining_usage = usage;

    // Step 8.
    if (usage > p.active_sus)
        p.warnings.push_back(who + ": usage exceeds the awards: " + to_string(usage) +
                             " SU left after settling expired allocations, active awards " +
                             to_string(p.active_sus) + " SU");

    // Step 9: the invariant limit, from the database values only.
    p.new_limit = p.historical_usage_db + p.active_sus;
    p.reason = "Σfinal " + to_string(p.historical_usage_db) + " (expired) + Σawarded " +
               to_string(p.active_sus) + " (active) = " + to_string(p.new_limit) + " SU";
    if (p.new_limit < 0) {
        // Only negative awards or finals can get here. Keystone would write a negative
        // GrpTRESMins, and -1 means "no limit" to Slurm: refuse rather than unlock the account.
        p.action = LimitAction::error;
        p.settlements.clear();
        p.error = who + ": the limit would be negative (" + p.reason +
                  "): check the awarded and final values of its allocations";
        return p;
    }
    finish(p);
    return p;
}

BreakerVerdict check_breaker(const std::vector<AccountPlan> &plans, const BreakerSettings &s) {
    BreakerVerdict v;
    for (const auto &p : plans) {
        if (p.action != LimitAction::skip)
            ++v.managed;
        if (p.action == LimitAction::update && p.lowered)
            ++v.lowered;
    }
    const bool share = v.lowered >= s.min_lowered &&
                       static_cast<double>(v.lowered) > s.max_lower_share * v.managed;

    for (const auto &p : plans) {
        if (p.action != LimitAction::update)
            continue;
        // An active team set to 0 cannot run anything: Keystone's formula gives 0 when a team
        // has no allocation left, but a sudden 0 more often means a wrong read (an empty
        // database, a cluster mix-up). A limit already at 0 is not a change and never trips.
        const bool zero = p.team_active && p.limit_changes && p.new_minutes == 0;
        if (!zero && !(share && p.lowered))
            continue;
        v.reasons.push_back("Account=" + p.account + ": limit " + su_text(p.old_minutes) + " -> " +
                            su_text(p.new_minutes) +
                            (zero ? " (an active team set to 0)" : " (lowered)"));
        v.tripped = true;
    }
    if (share) {
        char pct[32];
        std::snprintf(pct, sizeof pct, "%g%%", s.max_lower_share * 100);
        v.reasons.push_back(to_string(v.lowered) + " of " + to_string(v.managed) +
                            " managed accounts would have their limit lowered (more than " + pct +
                            " and at least " + to_string(s.min_lowered) + ")");
        v.tripped = true;
    }
    return v;
}

} // namespace keystone
