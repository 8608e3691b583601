// SPDX-License-Identifier: GPL-2.0-or-later
// Unit tests of the LDAP user-sync plan: entry parsing with hostile values, the create / update /
// take-over / reactivate / remove rules, and the safety guards.
#include "user_sync.hpp"

#include <algorithm>
#include <cstdlib>
#include <string>

// Last: check.h defines a macro `fail` that breaks standard headers included after it.
#include <check.h>

using namespace keystone;

namespace {

DirectoryEntry entry(const std::string &dn, std::map<std::string, std::vector<std::string>> attrs)
{
    DirectoryEntry e;
    e.dn = dn;
    e.attrs = std::move(attrs);
    return e;
}

const std::map<std::string, std::string> attr_map = {
    {"first_name", "givenName"}, {"last_name", "sn"}, {"email", "mail"}};

DbUser db_user(long long id, const std::string &name, bool ldap, bool active = true)
{
    DbUser u;
    u.id = id;
    u.username = name;
    u.is_ldap_user = ldap;
    u.is_active = active;
    return u;
}

bool has(const std::vector<std::string> &v, const std::string &x)
{
    return std::find(v.begin(), v.end(), x) != v.end();
}

} // namespace

START_TEST(test_utf8)
{
    ck_assert(valid_utf8(""));
    ck_assert(valid_utf8("plain ascii"));
    ck_assert(valid_utf8("Grüße — 漢字 😀"));
    ck_assert(!valid_utf8(std::string("nul\0byte", 8)));
    ck_assert(!valid_utf8("\xff"));
    ck_assert(!valid_utf8("\xc3"));             // truncated sequence
    ck_assert(!valid_utf8("\xc0\xaf"));         // overlong '/'
    ck_assert(!valid_utf8("\xed\xa0\x80"));     // surrogate
    ck_assert(!valid_utf8("\xf4\x90\x80\x80")); // past U+10FFFF
    ck_assert_str_eq(truncate_utf8("abcdef", 3).c_str(), "abc");
    ck_assert_str_eq(truncate_utf8("äöü", 2).c_str(), "äö");
    ck_assert_str_eq(truncate_utf8("ab", 10).c_str(), "ab");
}
END_TEST

START_TEST(test_parser_hostile_entries)
{
    EntryParser p(attr_map);
    ck_assert_int_eq(p.attributes().size(), 4);
    p.add(entry("uid=ok,ou=people", {{"uid", {"ok"}}, {"givenname", {"O'Brien\"); DROP TABLE users_user; --"}}}));
    p.add(entry("cn=nouid,ou=people", {{"givenname", {"x"}}}));
    p.add(entry("uid=bad,ou=people", {{"uid", {"bad\xff"}}}));
    p.add(entry("uid=long,ou=people", {{"uid", {std::string(151, 'a')}}}));
    p.add(entry("uid=dup1,ou=people", {{"uid", {"dup"}}}));
    p.add(entry("uid=dup2,ou=other", {{"uid", {"dup"}}}));
    p.add(entry("uid=fields,ou=people",
                {{"uid", {"fields"}},
                 {"sn", {std::string(10000, 'x')}},
                 {"mail", {"m\xfe@example.org"}},
                 {"givenname", {"line\nbreak"}}}));
    p.finish();
    ck_assert_int_eq(p.entries(), 7);
    ck_assert_int_eq(p.users().size(), 2);
    ck_assert_int_eq(p.skipped(), 5); // nouid, bad, long, both dups
    ck_assert(p.seen("dup"));   // a duplicated name is never treated as removed
    const LdapUser &ok = p.users()[0];
    ck_assert_str_eq(ok.username.c_str(), "ok");
    ck_assert_str_eq(ok.fields.at("first_name").c_str(), "O'Brien\"); DROP TABLE users_user; --");
    const LdapUser &f = p.users()[1];
    ck_assert_int_eq(f.fields.at("last_name").size(), 150);
    ck_assert(f.fields.count("email") == 0);
    ck_assert_str_eq(f.fields.at("first_name").c_str(), "line\nbreak");
    // Every warning names the DN it is about.
    ck_assert_int_eq(p.warnings().size(), 7);
    for (const auto &w : p.warnings())
        ck_assert_msg(w.find("ou=") != std::string::npos, "warning without a DN: %s", w.c_str());
}
END_TEST

START_TEST(test_username_attribute_mapping)
{
    EntryParser p(std::map<std::string, std::string>{{"username", "sAMAccountName"}});
    p.add(entry("cn=a", {{"samaccountname", {"alice"}}, {"uid", {"ignored"}}}));
    p.finish();
    ck_assert_int_eq(p.users().size(), 1);
    ck_assert_str_eq(p.users()[0].username.c_str(), "alice");
}
END_TEST

START_TEST(test_plan_rules)
{
    EntryParser p(attr_map);
    p.add(entry("uid=new", {{"uid", {"new"}}, {"mail", {"new@x"}}}));
    p.add(entry("uid=same", {{"uid", {"same"}}, {"mail", {"same@x"}}}));
    p.add(entry("uid=changed", {{"uid", {"changed"}}, {"mail", {"new@x"}}}));
    p.add(entry("uid=nomail", {{"uid", {"nomail"}}}));
    p.add(entry("uid=local", {{"uid", {"local"}}, {"mail", {"l@x"}}}));
    p.add(entry("uid=login", {{"uid", {"login"}}}));
    p.add(entry("uid=back", {{"uid", {"back"}}}));
    p.add(entry("uid=handoff", {{"uid", {"handoff"}}}));
    p.finish();

    std::vector<DbUser> db;
    db.push_back(db_user(1, "same", true));
    db.back().fields["email"] = "same@x";
    db.push_back(db_user(2, "changed", true));
    db.back().fields["email"] = "old@x";
    db.push_back(db_user(3, "nomail", true));
    db.back().fields["email"] = "keep@x"; // absent from the entry: must stay
    db.push_back(db_user(4, "local", false));
    db.back().local_password = true;      // a local admin
    db.push_back(db_user(5, "login", false)); // created by the LDAP login backend: no password
    db.push_back(db_user(6, "back", true, false));
    db.back().deactivated_by_sync = true;
    db.push_back(db_user(7, "handoff", true, false)); // deactivated by an admin
    db.push_back(db_user(8, "gone", true));
    db.push_back(db_user(9, "gone_inactive", true, false));
    db.push_back(db_user(10, "admin", false)); // local, not in LDAP: never removed
    db.back().local_password = true;

    SyncPlan plan = make_plan(p, db, false);
    ck_assert_int_eq(plan.ldap_users_in_db, 7);
    ck_assert_int_eq(plan.create.size(), 1);
    ck_assert_str_eq(plan.create[0].username.c_str(), "new");
    ck_assert_int_eq(plan.unchanged, 3); // same, nomail, and handoff (kept inactive)
    std::map<std::string, UserUpdate> up;
    for (const auto &u : plan.update)
        up[u.username] = u;
    ck_assert_int_eq(up.size(), 3);
    ck_assert_str_eq(up.at("changed").set.at("email").c_str(), "new@x");
    ck_assert(up.at("login").take_over);
    ck_assert(up.at("back").reactivate);
    ck_assert(!up.count("nomail"));
    ck_assert(has(plan.local_untouched, "local"));
    ck_assert(has(plan.kept_inactive, "handoff"));
    ck_assert_int_eq(plan.remove.size(), 1); // only the active one in deactivate mode
    ck_assert_str_eq(plan.remove[0].username.c_str(), "gone");

    SyncPlan purge = make_plan(p, db, true);
    ck_assert_int_eq(purge.remove.size(), 2); // inactive ones are deleted too
}
END_TEST

START_TEST(test_guards)
{
    std::vector<DbUser> db;
    for (int i = 0; i < 40; ++i)
        db.push_back(db_user(i + 1, "u" + std::to_string(i), true));
    EntryParser empty(attr_map);
    empty.finish();
    SyncPlan all = make_plan(empty, db, false);
    auto g = guard_violation(all, empty, GuardLimits{1000, 100}, false);
    ck_assert(g.has_value());
    ck_assert_msg(g->find("no entries") != std::string::npos, "%s", g->c_str());

    EntryParser most(attr_map);
    for (int i = 0; i < 30; ++i)
        most.add(entry("uid=u" + std::to_string(i), {{"uid", {"u" + std::to_string(i)}}}));
    most.finish();
    SyncPlan ten = make_plan(most, db, false); // 10 of 40 removed: 25 %
    ck_assert_int_eq(ten.remove.size(), 10);
    ck_assert(!guard_violation(ten, most, GuardLimits{10, 25}, false));
    auto by_count = guard_violation(ten, most, GuardLimits{9, 100}, false);
    ck_assert(by_count && by_count->find("KEYSTONED_LDAP_MAX_REMOVE=9") != std::string::npos);
    auto by_share = guard_violation(ten, most, GuardLimits{100, 20}, false);
    ck_assert(by_share && by_share->find("KEYSTONED_LDAP_MAX_REMOVE_PERCENT=20%") != std::string::npos);
    ck_assert(by_share->find("u30") != std::string::npos); // lists the users
    ck_assert(by_share->find("--force") != std::string::npos);

    // No LDAP users yet and an empty directory: nothing to protect, no guard.
    std::vector<DbUser> none;
    SyncPlan fresh = make_plan(empty, none, false);
    ck_assert(!guard_violation(fresh, empty, GuardLimits{}, false));
}
END_TEST

int main()
{
    Suite *s = suite_create("user_sync");
    TCase *tc = tcase_create("plan");
    tcase_add_test(tc, test_utf8);
    tcase_add_test(tc, test_parser_hostile_entries);
    tcase_add_test(tc, test_username_attribute_mapping);
    tcase_add_test(tc, test_plan_rules);
    tcase_add_test(tc, test_guards);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
