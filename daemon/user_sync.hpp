// SPDX-License-Identifier: GPL-2.0-or-later
// The pure part of the LDAP user sync: directory entries and the users table in, a plan out
// (who to create, update, reactivate, deactivate or delete), plus the safety guards. No I/O.
#pragma once

#include "directory.hpp"

#include <array>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace keystone {

// Keystone's users_user columns the sync may fill, with their varchar length in characters.
const std::map<std::string, size_t> &user_field_lengths();

// True when `s` is valid UTF-8 without NUL bytes (what a PostgreSQL text column accepts).
bool valid_utf8(const std::string &s);
// `s` cut to at most `max_chars` characters (code points) of valid UTF-8.
std::string truncate_utf8(const std::string &s, size_t max_chars);

// The users_user columns the sync may fill, in a fixed order.
inline constexpr std::array<const char *, 5> user_field_names = {"first_name", "last_name",
                                                                 "email", "department", "role"};

// Values of those columns, one slot each (nullopt: not set / not in the entry). A fixed array
// rather than a map: the sync holds one of these per user, for 100,000 users and more.
struct UserFields {
    std::array<std::optional<std::string>, user_field_names.size()> values;

    // The slot of a column by name; throws std::out_of_range for a name not in the list.
    std::optional<std::string> &operator[](const std::string &name);
    const std::optional<std::string> &get(const std::string &name) const;
    bool has(const std::string &name) const { return get(name).has_value(); }
    size_t count(const std::string &name) const { return has(name) ? 1 : 0; }
    // The value; throws std::out_of_range when the slot is empty.
    const std::string &at(const std::string &name) const;
    bool empty() const;
};

struct LdapUser {
    std::string username;
    std::string dn;
    UserFields fields; // only the mapped attributes this entry has
};

// Turns directory entries into users, one at a time (the search streams them). Entries without
// the user-name attribute, with an unusable user name (invalid UTF-8, too long), and every entry
// of a user name that occurs more than once are skipped with a warning naming the DN; a field
// value that is not valid UTF-8 is ignored (the column keeps its value), one that is too long is
// cut, each with a warning. Never throws for bad data.
class EntryParser {
public:
    // `attr_map`: Keystone field -> LDAP attribute (AUTH_LDAP_ATTR_MAP); "username" defaults
    // to uid.
    explicit EntryParser(const std::map<std::string, std::string> &attr_map);

    // The attributes to ask the server for.
    std::vector<std::string> attributes() const;

    // Takes the entry's strings over (moves them out).
    void add(DirectoryEntry &entry);
    void add(DirectoryEntry &&entry) { add(entry); }
    // Ends the stream: drops duplicated user names. Call once, before users().
    void finish();

    const std::vector<LdapUser> &users() const { return m_users; }
    // Every user name the directory has (duplicates included): such users are never removed.
    bool seen(const std::string &username) const { return m_count.count(username) > 0; }
    const std::vector<std::string> &warnings() const { return m_warnings; }
    size_t entries() const { return m_entries; }
    size_t skipped() const { return m_skipped; }

private:
    std::string m_username_attr;                   // lower case
    std::vector<std::pair<size_t, std::string>> m_field_attr; // field slot, lower-case attribute
    std::vector<LdapUser> m_users;
    std::unordered_map<std::string, unsigned> m_count;
    std::vector<std::string> m_warnings;
    size_t m_entries = 0;
    size_t m_skipped = 0;
};

// One row of users_user as the sync sees it.
struct DbUser {
    long long id = 0;
    std::string username;
    bool is_active = true;
    bool is_ldap_user = false;
    bool local_password = false;       // has a password Django could check: a local account
    bool deactivated_by_sync = false;  // keystone_slurm.ldap_user_state has a row
    UserFields fields;
};

struct UserUpdate {
    long long id = 0;
    std::string username;
    UserFields set;           // changed fields only
    bool take_over = false;   // is_ldap_user false -> true (an account with no local password)
    bool reactivate = false;  // the sync had deactivated it; it is back in the directory
};

struct UserRef {
    long long id = 0;
    std::string username;
};

struct SyncPlan {
    std::vector<LdapUser> create;
    std::vector<UserUpdate> update;
    std::vector<UserRef> remove;               // deactivate, or delete with AUTH_LDAP_PURGE_REMOVED
    std::vector<std::string> kept_inactive;    // in the directory, deactivated by someone else
    std::vector<std::string> local_untouched;  // a local account of the same name: left alone
    std::vector<UserRef> clear_state;          // active again by hand: forget our deactivation
    size_t unchanged = 0;
    size_t ldap_users_in_db = 0;
};

// The rules (documented in keystoned(8)):
// - a user name not in users_user is created;
// - an LDAP user (is_ldap_user) gets every mapped field its entry has that differs; a field its
//   entry lacks is left as it is;
// - an account with is_ldap_user false is taken over only when it has no usable local password
//   (created by Keystone's LDAP login backend); one with a local password is never touched;
// - an inactive LDAP user back in the directory is reactivated only if the sync deactivated it;
// - an LDAP user not in the directory is removed: deactivated (if active), or with `purge`
//   deleted (active or not).
SyncPlan make_plan(const EntryParser &directory, const std::vector<DbUser> &db, bool purge);

struct GuardLimits {
    int max_remove = 100;        // more than this many removals trips the guard
    int max_remove_percent = 10; // so does more than this share of the LDAP users in the database
};

// Why the plan must not be applied without --force, or nullopt. Trips when the directory
// returned no entries while the database has LDAP users, and when the removals exceed either
// limit. The message lists the users concerned (the first 50).
std::optional<std::string> guard_violation(const SyncPlan &plan, const EntryParser &directory,
                                           const GuardLimits &limits, bool purge);

} // namespace keystone
