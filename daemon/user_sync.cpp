// SPDX-License-Identifier: GPL-2.0-or-later
// Implementation of the LDAP user-sync plan (see user_sync.hpp).
#include "user_sync.hpp"

#include <algorithm>
#include <cctype>
#include <unordered_map>

namespace keystone {

namespace {

std::string lower(std::string s)
{
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

// Length of the UTF-8 sequence starting at s[i], or 0 when it is invalid (overlong forms,
// surrogates, code points past U+10FFFF, NUL).
size_t utf8_sequence(const std::string &s, size_t i)
{
    const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = b(i);
    if (c == 0)
        return 0;
    if (c < 0x80)
        return 1;
    size_t n;
    unsigned cp;
    if ((c & 0xe0) == 0xc0) {
        n = 2;
        cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3;
        cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (i + n > s.size())
        return 0;
    for (size_t k = 1; k < n; ++k) {
        if ((b(i + k) & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (b(i + k) & 0x3f);
    }
    static const unsigned min_for_length[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_length[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

} // namespace

namespace {

size_t field_slot(const std::string &name)
{
    for (size_t i = 0; i < user_field_names.size(); ++i)
        if (name == user_field_names[i])
            return i;
    throw std::out_of_range("not a users_user field the sync fills: " + name);
}

} // namespace

std::optional<std::string> &UserFields::operator[](const std::string &name)
{
    return values[field_slot(name)];
}

const std::optional<std::string> &UserFields::get(const std::string &name) const
{
    return values[field_slot(name)];
}

const std::string &UserFields::at(const std::string &name) const
{
    const auto &v = get(name);
    if (!v)
        throw std::out_of_range("field not set: " + name);
    return *v;
}

bool UserFields::empty() const
{
    for (const auto &v : values)
        if (v)
            return false;
    return true;
}

const std::map<std::string, size_t> &user_field_lengths()
{
    static const std::map<std::string, size_t> lengths = {
        {"first_name", 150}, {"last_name", 150}, {"email", 254},
        {"department", 1000}, {"role", 1000},
    };
    return lengths;
}

bool valid_utf8(const std::string &s)
{
    // Most directory values are plain ASCII: check that first, byte by byte, without decoding.
    bool ascii = true;
    for (unsigned char c : s)
        if (c == 0 || c >= 0x80) {
            ascii = false;
            break;
        }
    if (ascii)
        return true;
    for (size_t i = 0; i < s.size();) {
        size_t n = utf8_sequence(s, i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

std::string truncate_utf8(const std::string &s, size_t max_chars)
{
    size_t i = 0, chars = 0;
    while (i < s.size() && chars < max_chars) {
        size_t n = utf8_sequence(s, i);
        if (n == 0)
            break;
        i += n;
        ++chars;
    }
    return s.substr(0, i);
}

EntryParser::EntryParser(const std::map<std::string, std::string> &attr_map)
{
    auto it = attr_map.find("username");
    m_username_attr = lower(it == attr_map.end() ? "uid" : it->second);
    for (const auto &[field, attr] : attr_map)
        if (field != "username")
            m_field_attr.emplace_back(field_slot(field), lower(attr));
}

std::vector<std::string> EntryParser::attributes() const
{
    std::vector<std::string> out = {m_username_attr};
    for (const auto &slot_attr : m_field_attr)
        if (std::find(out.begin(), out.end(), slot_attr.second) == out.end())
            out.push_back(slot_attr.second);
    return out;
}

void EntryParser::add(DirectoryEntry &entry)
{
    ++m_entries;
    auto it = entry.attrs.find(m_username_attr);
    if (it == entry.attrs.end() || it->second.empty() || it->second.front().empty()) {
        m_warnings.push_back("ldap: skipped \"" + entry.dn + "\": no " + m_username_attr +
                             " attribute");
        ++m_skipped;
        return;
    }
    std::string &name = it->second.front();
    if (!valid_utf8(name)) {
        m_warnings.push_back("ldap: skipped \"" + entry.dn + "\": its " + m_username_attr +
                             " is not valid UTF-8");
        ++m_skipped;
        return;
    }
    if (truncate_utf8(name, 150).size() != name.size()) {
        m_warnings.push_back("ldap: skipped \"" + entry.dn + "\": its " + m_username_attr +
                             " is longer than Keystone's 150 characters");
        ++m_skipped;
        return;
    }
    if (++m_count[name] > 1) {
        m_warnings.push_back("ldap: skipped \"" + entry.dn + "\": user name \"" + name +
                             "\" occurs more than once in the directory");
        ++m_skipped;
        return;
    }
    LdapUser user;
    user.username = std::move(name);
    user.dn = std::move(entry.dn);
    for (const auto &[slot, attr] : m_field_attr) {
        const std::string field = user_field_names[slot];
        auto a = entry.attrs.find(attr);
        if (a == entry.attrs.end() || a->second.empty() || a->second.front().empty())
            continue;
        std::string &value = a->second.front();
        if (!valid_utf8(value)) {
            m_warnings.push_back("ldap: \"" + user.dn + "\": " + attr +
                                 " is not valid UTF-8: " + field + " left as it is");
            continue;
        }
        const size_t limit = user_field_lengths().at(field);
        // A value of at most `limit` bytes has at most `limit` characters: no second pass.
        if (value.size() > limit) {
            std::string cut = truncate_utf8(value, limit);
            if (cut.size() != value.size())
                m_warnings.push_back("ldap: \"" + user.dn + "\": " + attr + " cut to " +
                                     std::to_string(limit) + " characters for " + field);
            value = std::move(cut);
        }
        user.fields.values[slot] = std::move(value);
    }
    m_users.push_back(std::move(user));
}

void EntryParser::finish()
{
    // The first entry of a duplicated name was kept when it came in; drop it too: which entry is
    // the real one cannot be told, so that user is neither changed nor removed.
    const size_t before = m_users.size();
    m_users.erase(std::remove_if(m_users.begin(), m_users.end(),
                                 [&](const LdapUser &u) {
                                     if (m_count[u.username] <= 1)
                                         return false;
                                     m_warnings.push_back("ldap: skipped \"" + u.dn +
                                                          "\": user name \"" + u.username +
                                                          "\" occurs more than once in the "
                                                          "directory");
                                     return true;
                                 }),
                  m_users.end());
    m_skipped += before - m_users.size();
}

SyncPlan make_plan(const EntryParser &directory, const std::vector<DbUser> &db, bool purge)
{
    SyncPlan plan;
    std::unordered_map<std::string, const DbUser *> by_name;
    by_name.reserve(db.size());
    for (const auto &u : db) {
        by_name[u.username] = &u;
        if (u.is_ldap_user)
            ++plan.ldap_users_in_db;
    }
    for (const auto &entry : directory.users()) {
        auto it = by_name.find(entry.username);
        if (it == by_name.end()) {
            plan.create.push_back(entry);
            continue;
        }
        const DbUser &u = *it->second;
        if (!u.is_ldap_user && u.local_password) {
            plan.local_untouched.push_back(u.username);
            continue;
        }
        UserUpdate up;
        up.id = u.id;
        up.username = u.username;
        up.take_over = !u.is_ldap_user;
        for (size_t i = 0; i < user_field_names.size(); ++i) {
            const auto &value = entry.fields.values[i];
            if (value && u.fields.values[i] != value)
                up.set.values[i] = value;
        }
        if (!u.is_active) {
            if (u.deactivated_by_sync)
                up.reactivate = true;
            else
                plan.kept_inactive.push_back(u.username);
        } else if (u.deactivated_by_sync) {
            plan.clear_state.push_back({u.id, u.username});
        }
        if (up.set.empty() && !up.take_over && !up.reactivate)
            ++plan.unchanged;
        else
            plan.update.push_back(std::move(up));
    }
    for (const auto &u : db) {
        if (!u.is_ldap_user || directory.seen(u.username))
            continue;
        if (purge || u.is_active)
            plan.remove.push_back({u.id, u.username});
    }
    return plan;
}

std::optional<std::string> guard_violation(const SyncPlan &plan, const EntryParser &directory,
                                           const GuardLimits &limits, bool purge)
{
    const char *verb = purge ? "delete" : "deactivate";
    if (directory.entries() == 0 && plan.ldap_users_in_db > 0)
        return "the directory search returned no entries: refusing to " + std::string(verb) +
               " all " + std::to_string(plan.ldap_users_in_db) +
               " LDAP users (check AUTH_LDAP_USER_SEARCH and AUTH_LDAP_USER_FILTER; --force "
               "applies it)";
    const size_t n = plan.remove.size();
    const bool over_count = n > static_cast<size_t>(limits.max_remove);
    const bool over_share =
        limits.max_remove_percent < 100 && plan.ldap_users_in_db > 0 &&
        n * 100 > static_cast<size_t>(limits.max_remove_percent) * plan.ldap_users_in_db;
    if (!over_count && !over_share)
        return std::nullopt;
    std::string list;
    for (size_t i = 0; i < n && i < 50; ++i)
        list += (i ? ", " : "") + plan.remove[i].username;
    if (n > 50)
        list += ", ... (" + std::to_string(n - 50) + " more)";
    return "would " + std::string(verb) + " " + std::to_string(n) + " of " +
           std::to_string(plan.ldap_users_in_db) + " LDAP users, more than " +
           (over_count ? "KEYSTONED_LDAP_MAX_REMOVE=" + std::to_string(limits.max_remove)
                       : "KEYSTONED_LDAP_MAX_REMOVE_PERCENT=" +
                             std::to_string(limits.max_remove_percent) + "%") +
           ": nothing changed; check the directory, then run `keystonectl run ldap_update_users "
           "--force` to apply. Users: " +
           list;
}

} // namespace keystone
