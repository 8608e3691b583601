// SPDX-License-Identifier: GPL-2.0-or-later
// Unit tests for the limits computation: Keystone's update_limit_for_account on the spec's worked
// example and its variants, the NULL and date edge cases, and the circuit breaker.
#include "limits.hpp"
#include "notify.hpp"

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <utility>
#include <string>
#include <vector>

// Last: check.h defines a macro `fail` that breaks standard headers included after it.
#include <check.h>

using namespace keystone;

// ck_assert_str_eq keeps the pointer it is given: compare a std::string that outlives it.
#define CK_STREQ(expr, want)                                                                       \
    do {                                                                                           \
        const std::string got_ = (expr);                                                           \
        const std::string want_ = (want);                                                          \
        ck_assert_msg(got_ == want_, "%s: got \"%s\", want \"%s\"", #expr, got_.c_str(),          \
                      want_.c_str());                                                              \
    } while (0)

namespace {

using I = std::optional<std::int64_t>;
using D = std::optional<Day>;
const I null_i;
const D null_d;

const Day today = civil_day(2026, 7, 1);

Day day(int y, unsigned m, unsigned d) { return civil_day(y, m, d); }

// One approved allocation; its request id is the allocation id + 100.
LimitAllocation alloc(std::int64_t id, I awarded, I final_, D active, D expire)
{
    LimitAllocation a;
    a.id = id;
    a.request_id = id + 100;
    a.awarded = awarded;
    a.final_ = final_;
    a.active = active;
    a.expire = expire;
    return a;
}

// Shorthands for the usual date pairs around `today`.
const D last_year = day(2025, 7, 1), long_ago = day(2024, 7, 1), next_year = day(2027, 7, 1);
LimitAllocation expired(std::int64_t id, I awarded, I final_, D expire = last_year)
{
    return alloc(id, awarded, final_, long_ago, expire);
}
LimitAllocation running(std::int64_t id, I awarded)
{
    return alloc(id, awarded, null_i, last_year, next_year);
}

const char *action_text(LimitAction a)
{
    switch (a) {
    case LimitAction::skip: return "skip";
    case LimitAction::error: return "error";
    case LimitAction::keep: return "keep";
    case LimitAction::update: return "update";
    }
    return "?";
}

// "2:4600,3:50": the settlements as allocation id:final, in order.
std::string finals(const AccountPlan &p)
{
    std::string out;
    for (const auto &s : p.settlements)
        out += (out.empty() ? "" : ",") + std::to_string(s.allocation_id) + ":" +
               std::to_string(s.final_);
    return out;
}

struct Case {
    const char *name = "";
    LimitAccount in;
    // What is always checked.
    LimitAction action = LimitAction::update;
    std::string finals;                // finals(plan)
    std::vector<std::string> warnings; // one substring per expected warning, in order
    // What is checked when set.
    I new_limit, historical, current_usage, remaining, historical_db, active_sus, expiring_sus;
    std::optional<std::uint64_t> new_minutes;
    std::optional<bool> limit_changes, lowered, locked;
    std::optional<std::string> reason; // exact
    std::string error;                 // substring of plan.error ("": error must be empty)
};

Case make_case(const char *name, LimitAccount in)
{
    Case c;
    c.name = name;
    c.in = std::move(in);
    return c;
}

// The spec §4.5 setup: Smith Lab on smp, today 2026-07-01, limit 33000 SU, usage 12600 SU.
LimitAccount smith_lab()
{
    LimitAccount in;
    in.account = "smith-lab";
    in.team_id = 7;
    in.team_name = "Smith Lab";
    in.limit_minutes = 1980000;
    in.usage_minutes = 756030;
    in.allocations = {
        alloc(1, 10000, 8000, day(2024, 7, 1), day(2025, 7, 1)),       // expired, settled
        alloc(2, 5000, null_i, day(2025, 7, 1), day(2026, 7, 1)),      // expiring today
        alloc(3, 20000, null_i, day(2026, 6, 15), day(2027, 6, 15)),   // active
        alloc(4, 7000, null_i, day(2026, 9, 1), day(2027, 9, 1)),      // future, ignored
    };
    return in;
}

// A team account with limit and usage given in SUs.
LimitAccount team(std::optional<std::uint64_t> limit_su, std::uint64_t usage_su,
                  std::vector<LimitAllocation> allocations)
{
    LimitAccount in;
    in.account = "lab";
    in.team_id = 1;
    in.team_name = "Lab";
    if (limit_su)
        in.limit_minutes = *limit_su * 60;
    in.usage_minutes = usage_su * 60;
    in.allocations = std::move(allocations);
    return in;
}

std::vector<Case> plan_cases()
{
    std::vector<Case> cases;
    {
        Case c = make_case("spec 4.5 worked example", smith_lab());
        c.finals = "2:4600";
        c.active_sus = 20000;
        c.expiring_sus = 5000;
        c.historical = 8000;
        c.current_usage = 4600;
        c.remaining = 0;
        c.historical_db = 12600;
        c.new_limit = 32600;
        c.new_minutes = 1956000;
        c.limit_changes = true;
        c.lowered = true;
        c.locked = false;
        c.reason = "Σfinal 12600 (expired) + Σawarded 20000 (active) = 32600 SU";
        cases.push_back(c);
    }
    {
        // total_usage 15000: 2000 SU left over, charged to A3 implicitly (no warning: 2000 is
        // within A3's 20000). The limit in Slurm is already 33000 SU; the settlement alone makes
        // it an update.
        Case c = make_case("spec 4.5 overuse", smith_lab());
        c.in.usage_minutes = 15000 * 60;
        c.finals = "2:5000";
        c.current_usage = 7000;
        c.remaining = 2000;
        c.new_limit = 33000;
        c.new_minutes = 1980000;
        c.limit_changes = false;
        c.lowered = false;
        cases.push_back(c);
    }
    {
        Case c = make_case("spec 4.5 inactive team", smith_lab());
        c.in.team_active = false;
        c.current_usage = 4600;
        c.new_limit = 4600;
        c.new_minutes = 276000;
        c.locked = true;
        c.lowered = true;
        c.reason = "inactive team: locked at current usage 4600 SU";
        cases.push_back(c);
    }
    {
        // Limit already at the lock value: nothing to write.
        Case c = make_case("inactive team already locked", smith_lab());
        c.in.team_active = false;
        c.in.limit_minutes = 276000;
        c.in.usage_minutes = 276000 + 59; // floored: 4600 SU
        c.action = LimitAction::keep;
        c.warnings = {"negative historical usage -20400 SU"};
        c.historical = 0;
        c.current_usage = 4600;
        c.new_limit = 4600;
        c.limit_changes = false;
        c.locked = true;
        cases.push_back(c);
    }
    {
        Case c = make_case("unit test: no allocations, 0/0", team(0, 0, {}));
        c.action = LimitAction::keep;
        c.new_limit = 0;
        c.new_minutes = 0;
        c.limit_changes = false;
        cases.push_back(c);
    }
    {
        // historical = 50 - 300 - 0 = -250, clamped; current usage 200 <= 300 active.
        Case c = make_case("unit test: clamp -250", team(50, 200, {expired(1, 200, 50), running(2, 300)}));
        c.warnings = {"Account=lab: negative historical usage -250 SU (limit 50 SU - active 300 "
                      "SU - expiring 0 SU): taken as 0"};
        c.historical = 0;
        c.current_usage = 200;
        c.remaining = 200;
        c.new_limit = 350;
        c.lowered = false;
        cases.push_back(c);
    }
    {
        // active 100, expiring 300: historical = 500 - 100 - 300 = 100; current = 250 - 100 =
        // 150; finals 100, 50, 0; Σfinal = 100 + 100 + 50 + 0 = 250; limit 250 + 100 = 350.
        Case c = make_case("unit test: four expired",
               team(500, 250,
                    {expired(1, 200, 100, day(2025, 1, 1)), expired(2, 100, null_i, day(2025, 2, 1)),
                     expired(3, 100, null_i, day(2025, 3, 1)),
                     expired(4, 100, null_i, day(2025, 4, 1)), running(5, 100)}));
        c.finals = "2:100,3:50,4:0";
        c.active_sus = 100;
        c.expiring_sus = 300;
        c.historical = 100;
        c.current_usage = 150;
        c.remaining = 0;
        c.historical_db = 250;
        c.new_limit = 350;
        c.lowered = true;
        cases.push_back(c);
    }
    {
        Case c = make_case("NULL awarded on an active allocation counts 0",
               team(100, 10, {running(1, null_i), running(2, 100)}));
        c.action = LimitAction::keep;
        c.warnings = {"Allocation=1 (Request=101) of Account=lab is active with no awarded SUs"};
        c.active_sus = 100;
        c.new_limit = 100;
        cases.push_back(c);
    }
    {
        // Keystone's min(current_usage, None) raises before the bulk update: no finals, no limit.
        Case c = make_case("NULL awarded on an expiring allocation",
               team(300, 50,
                    {expired(1, 100, null_i, day(2025, 1, 1)),
                     expired(2, null_i, null_i, day(2025, 2, 1)), running(3, 200)}));
        c.action = LimitAction::error;
        c.error = "Account=lab: expiring Allocation=2 (Request=102) has no awarded SUs";
        c.expiring_sus = 100;
        cases.push_back(c);
    }
    {
        // Keystone returns before the settlement for an inactive team: the lock still applies.
        Case c = make_case("NULL awarded on an expiring allocation, inactive team",
               team(300, 50, {expired(2, null_i, null_i), running(3, 200)}));
        c.in.team_active = false;
        c.warnings = {"negative current usage -50 SU"};
        c.historical = 100;
        c.current_usage = 100; // Keystone's fallback: the historical value
        c.new_limit = 100;
        c.locked = true;
        cases.push_back(c);
    }
    {
        // A4 of the worked example alone: it starts after today.
        Case c = make_case("allocation starting in the future is ignored",
               team(std::nullopt, 0, {alloc(1, 7000, null_i, day(2026, 7, 2), next_year)}));
        c.active_sus = 0;
        c.new_limit = 0;
        c.new_minutes = 0;
        c.limit_changes = true;
        c.lowered = false;
        cases.push_back(c);
    }
    {
        Case c = make_case("NULL active date is not active",
               team(50, 0, {alloc(1, 100, null_i, null_d, next_year), running(2, 50)}));
        c.action = LimitAction::keep;
        c.active_sus = 50;
        c.new_limit = 50;
        cases.push_back(c);
    }
    {
        Case c = make_case("NULL expire date is active forever, never expiring",
               team(100, 500, {alloc(1, 100, null_i, long_ago, null_d)}));
        c.action = LimitAction::keep;
        c.warnings = {"usage exceeds the awards: 500 SU left"};
        c.active_sus = 100;
        c.expiring_sus = 0;
        c.new_limit = 100;
        cases.push_back(c);
    }
    {
        // Expiring on its expire date, and no longer active on it.
        Case c = make_case("expire == today settles", team(100, 30, {alloc(1, 100, null_i, long_ago, today)}));
        c.finals = "1:30";
        c.active_sus = 0;
        c.expiring_sus = 100;
        c.new_limit = 30;
        c.lowered = true;
        cases.push_back(c);
    }
    {
        Case c = make_case("limit unchanged: keep", team(300, 120, {expired(1, 100, 80), running(2, 200)}));
        c.in.limit_minutes = 280 * 60;
        c.action = LimitAction::keep;
        c.new_limit = 280;
        c.limit_changes = false;
        c.reason = "Σfinal 80 (expired) + Σawarded 200 (active) = 280 SU";
        cases.push_back(c);
    }
    {
        // current_limit 0 when unset; any computed limit (even one equal to 0) is a change.
        Case c = make_case("unset limit", team(std::nullopt, 10, {running(1, 100)}));
        c.warnings = {"negative historical usage -100 SU"};
        c.new_limit = 100;
        c.new_minutes = 6000;
        c.limit_changes = true;
        c.lowered = false;
        cases.push_back(c);
    }
    {
        // 6030 minutes read as 100 SU, 6059 usage minutes as 100 SU; the limit is rewritten as
        // a whole number of hours, which lowers it by 30 minutes.
        Case c = make_case("minutes not a multiple of 60", team(0, 0, {running(1, 100)}));
        c.in.limit_minutes = 6030;
        c.in.usage_minutes = 6059;
        c.current_usage = 100;
        c.new_limit = 100;
        c.new_minutes = 6000;
        c.limit_changes = true;
        c.lowered = true;
        cases.push_back(c);
    }
    {
        Case c = make_case("root is skipped", team(100, 10, {running(1, 100)}));
        c.in.account = "root";
        c.action = LimitAction::skip;
        cases.push_back(c);
    }
    {
        Case c = make_case("no team is skipped", team(100, 10, {}));
        c.in.account = "ghost-lab";
        c.in.team_id.reset();
        c.action = LimitAction::skip;
        c.warnings = {"No existing team for Account=ghost-lab"};
        cases.push_back(c);
    }
    {
        // Ties on the expire date settle by allocation id, whatever the input order; an earlier
        // expire date goes first even with a higher id.
        Case c = make_case("ties in expire order",
               team(1000, 250,
                    {expired(9, 100, null_i, day(2025, 5, 1)),
                     expired(3, 100, null_i, day(2025, 5, 1)),
                     expired(12, 100, null_i, day(2025, 4, 1)), running(20, 700)}));
        // historical = 1000 - 700 - 300 = 0; current usage 250: 12 takes 100, 3 takes 100, 9 50.
        c.finals = "12:100,3:100,9:50";
        c.new_limit = 250 + 700;
        cases.push_back(c);
    }
    return cases;
}

START_TEST(test_plan_account)
{
    for (const auto &c : plan_cases()) {
        const AccountPlan p = plan_account(c.in, today);
        const std::string where = c.name;
#define EXPECT_INT(field, want)                                                                    \
    ck_assert_msg(!(want) || p.field == *(want), "%s: " #field " %lld, want %lld", where.c_str(),  \
                  static_cast<long long>(p.field), static_cast<long long>((want).value_or(-1)))
        ck_assert_msg(p.action == c.action, "%s: action %s, want %s", where.c_str(),
                      action_text(p.action), action_text(c.action));
        CK_STREQ(p.account, c.in.account);
        ck_assert_msg(finals(p) == c.finals, "%s: finals \"%s\", want \"%s\"", where.c_str(),
                      finals(p).c_str(), c.finals.c_str());
        ck_assert_msg(p.warnings.size() == c.warnings.size(), "%s: %zu warnings, want %zu (%s)",
                      where.c_str(), p.warnings.size(), c.warnings.size(),
                      p.warnings.empty() ? "" : p.warnings.front().c_str());
        for (std::size_t i = 0; i < c.warnings.size(); ++i)
            ck_assert_msg(p.warnings[i].find(c.warnings[i]) != std::string::npos,
                          "%s: warning \"%s\" lacks \"%s\"", where.c_str(), p.warnings[i].c_str(),
                          c.warnings[i].c_str());
        if (c.error.empty())
            ck_assert_msg(p.error.empty(), "%s: error \"%s\"", where.c_str(), p.error.c_str());
        else
            ck_assert_msg(p.error.find(c.error) != std::string::npos,
                          "%s: error \"%s\" lacks \"%s\"", where.c_str(), p.error.c_str(),
                          c.error.c_str());
        EXPECT_INT(new_limit, c.new_limit);
        EXPECT_INT(historical, c.historical);
        EXPECT_INT(current_usage, c.current_usage);
        EXPECT_INT(remaining_usage, c.remaining);
        EXPECT_INT(historical_usage_db, c.historical_db);
        EXPECT_INT(active_sus, c.active_sus);
        EXPECT_INT(expiring_sus, c.expiring_sus);
        EXPECT_INT(new_minutes, c.new_minutes);
        EXPECT_INT(limit_changes, c.limit_changes);
        EXPECT_INT(lowered, c.lowered);
        EXPECT_INT(locked, c.locked);
#undef EXPECT_INT
        if (c.reason)
            ck_assert_msg(p.reason == *c.reason, "%s: reason \"%s\", want \"%s\"", where.c_str(),
                          p.reason.c_str(), c.reason->c_str());
        // Invariants of every computed plan.
        if (p.action == LimitAction::keep || p.action == LimitAction::update) {
            ck_assert_msg(p.new_minutes == static_cast<std::uint64_t>(p.new_limit) * 60, "%s",
                          where.c_str());
            ck_assert_msg(!p.reason.empty(), "%s: no reason", where.c_str());
            ck_assert_msg((p.action == LimitAction::keep) ==
                              (!p.limit_changes && p.settlements.empty()),
                          "%s: keep/update", where.c_str());
        }
        if (p.locked)
            ck_assert_msg(p.settlements.empty(), "%s: a locked team settles", where.c_str());
    }
}
END_TEST

// The settlement carries what the task writes: ids, award, final, expire date.
START_TEST(test_settlement_fields)
{
    const AccountPlan p = plan_account(smith_lab(), today);
    ck_assert_uint_eq(p.settlements.size(), 1);
    const Settlement &s = p.settlements[0];
    ck_assert_int_eq(s.allocation_id, 2);
    ck_assert_int_eq(s.request_id, 102);
    ck_assert_int_eq(s.awarded, 5000);
    ck_assert_int_eq(s.final_, 4600);
    CK_STREQ(day_text(s.expire), "2026-07-01");
    ck_assert(p.old_minutes && *p.old_minutes == 1980000);
    ck_assert(p.team_id && *p.team_id == 7);
    ck_assert_int_eq(p.current_limit, 33000);
    ck_assert_int_eq(p.total_usage, 12600);
    // The next hour: A2 is settled now, the limit is 32600 SU: nothing left to do.
    LimitAccount next = smith_lab();
    next.allocations[1].final_ = 4600;
    next.limit_minutes = 1956000;
    const AccountPlan q = plan_account(next, today);
    ck_assert(q.action == LimitAction::keep);
    ck_assert_int_eq(q.new_limit, 32600);
    ck_assert(q.warnings.empty());
    // Two expiring allocations missing their award are both named.
    LimitAccount bad = team(0, 0, {expired(1, null_i, null_i), expired(2, null_i, null_i)});
    const AccountPlan e = plan_account(bad, today);
    ck_assert(e.action == LimitAction::error);
    ck_assert(e.settlements.empty());
    ck_assert(e.error.find("Allocation=1 (Request=101), Allocation=2 (Request=102) have no") !=
              std::string::npos);
}
END_TEST

// A plan as the breaker sees it.
AccountPlan planned(const std::string &account, LimitAction action, std::uint64_t old_su,
                    std::uint64_t new_su, bool active = true)
{
    AccountPlan p;
    p.account = account;
    p.action = action;
    p.team_active = active;
    p.old_minutes = old_su * 60;
    p.new_minutes = new_su * 60;
    p.new_limit = static_cast<std::int64_t>(new_su);
    p.limit_changes = old_su != new_su;
    p.lowered = new_su < old_su;
    return p;
}

// `lowered` lowered plans and `others` kept ones, plus two skipped that do not count.
std::vector<AccountPlan> cluster(int lowered, int others)
{
    std::vector<AccountPlan> plans;
    for (int i = 0; i < lowered; ++i)
        plans.push_back(planned("low" + std::to_string(i), LimitAction::update, 500, 400));
    for (int i = 0; i < others; ++i)
        plans.push_back(planned("ok" + std::to_string(i), LimitAction::keep, 500, 500));
    plans.push_back(planned("root", LimitAction::skip, 0, 0));
    plans.push_back(planned("ghost", LimitAction::skip, 9, 0));
    return plans;
}

struct BreakerCase {
    const char *name;
    std::vector<AccountPlan> plans;
    bool tripped;
    int managed, lowered;
    std::vector<std::string> reasons; // one substring per expected line, in order
};

START_TEST(test_breaker)
{
    const BreakerSettings s; // 0.2, 5
    // Zero cases run through plan_account: an active team whose allocations all expired.
    // historical = 100 - 0 - 0 = 100 = usage: current usage 0, Σfinal 0.
    const LimitAccount gone = team(100, 100, {expired(1, 100, 0)});
    LimitAccount gone_inactive = gone;
    gone_inactive.team_active = false;
    const AccountPlan zeroed = plan_account(gone, today), locked = plan_account(gone_inactive, today);
    ck_assert(zeroed.action == LimitAction::update && zeroed.new_minutes == 0);
    ck_assert(locked.action == LimitAction::update && locked.new_minutes == 0 && locked.locked);
    LimitAccount at_zero = gone;
    at_zero.limit_minutes = 0;
    const AccountPlan already = plan_account(at_zero, today);
    ck_assert(already.action == LimitAction::keep);

    std::vector<AccountPlan> with_zero = cluster(0, 3);
    with_zero.push_back(zeroed);

    const std::vector<BreakerCase> cases = {
        {"share rule trips", cluster(5, 15), true, 20, 5,
         {"Account=low0: limit 500 SU -> 400 SU (lowered)", "Account=low1:", "Account=low2:",
          "Account=low3:", "Account=low4:",
          "5 of 20 managed accounts would have their limit lowered (more than 20% and at least "
          "5)"}},
        {"share rule: at the share does not trip", cluster(5, 20), false, 25, 5, {}},
        {"below min_lowered does not trip", cluster(4, 0), false, 4, 4, {}},
        {"active team set to zero trips", with_zero, true, 4, 1,
         {"Account=lab: limit 100 SU -> 0 SU (an active team set to 0)"}},
        {"inactive team set to zero does not trip", {locked}, false, 1, 1, {}},
        {"already zero, unchanged, does not trip", {already}, false, 1, 0, {}},
        {"errors count as managed, not lowered",
         {planned("bad", LimitAction::error, 500, 0), planned("a", LimitAction::keep, 1, 1)},
         false, 2, 0, {}},
        {"nothing", {}, false, 0, 0, {}},
    };
    for (const auto &c : cases) {
        const BreakerVerdict v = check_breaker(c.plans, s);
        ck_assert_msg(v.tripped == c.tripped, "%s: tripped %d", c.name, v.tripped);
        ck_assert_msg(v.managed == c.managed, "%s: managed %d, want %d", c.name, v.managed,
                      c.managed);
        ck_assert_msg(v.lowered == c.lowered, "%s: lowered %d, want %d", c.name, v.lowered,
                      c.lowered);
        ck_assert_msg(v.reasons.size() == c.reasons.size(), "%s: %zu reasons, want %zu (%s)",
                      c.name, v.reasons.size(), c.reasons.size(),
                      v.reasons.empty() ? "" : v.reasons.front().c_str());
        for (std::size_t i = 0; i < c.reasons.size(); ++i)
            ck_assert_msg(v.reasons[i].find(c.reasons[i]) != std::string::npos,
                          "%s: reason \"%s\" lacks \"%s\"", c.name, v.reasons[i].c_str(),
                          c.reasons[i].c_str());
    }
    // Settings: a lower bar trips on fewer lowered limits.
    const BreakerVerdict v = check_breaker(cluster(2, 2), BreakerSettings{0.4, 2});
    ck_assert(v.tripped);
    CK_STREQ(v.reasons.back(),
             "2 of 4 managed accounts would have their limit lowered (more than 40% and at "
             "least 2)");
}
END_TEST

} // namespace

int main()
{
    Suite *s = suite_create("limits");
    TCase *tc = tcase_create("limits");
    tcase_add_test(tc, test_plan_account);
    tcase_add_test(tc, test_settlement_fields);
    tcase_add_test(tc, test_breaker);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
