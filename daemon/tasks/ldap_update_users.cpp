// SPDX-License-Identifier: GPL-2.0-or-later
// Task apps.users.tasks.ldap_update_users: creates, updates, reactivates and deactivates (or
// deletes) Keystone users from the LDAP directory. The rules are in user_sync.hpp; this file reads
// the directory and the database, applies the plan in one transaction, and reports.
#include "tasks/task.hpp"

#include "db.hpp"
#include "directory.hpp"
#include "error.hpp"
#include "log.hpp"
#include "migrate.hpp"
#include "user_sync.hpp"

#include <chrono>
#include <future>
#include <thread>

namespace keystone {

namespace {

constexpr size_t listed_max = 100; // names listed per category in a recorded result

// The directory read, retried on a server that cannot be reached (Keystone retries the whole
// task three times with 2, 4 and 8 s of backoff; so do we, for the search only).
void read_directory(RunContext &ctx, EntryParser &parser, json_t *summary)
{
    const Config &cfg = ctx.config;
    const DirectoryOptions opts = directory_options(cfg);
    for (int attempt = 1;; ++attempt) {
        try {
            Directory dir(opts);
            EntryParser fresh(cfg.ldap_attr_map);
            dir.search(cfg.ldap_user_search, cfg.ldap_user_filter, fresh.attributes(),
                       [&](DirectoryEntry &e) { fresh.add(e); });
            fresh.finish();
            parser = std::move(fresh);
            json_object_set_new(summary, "server", json_string(dir.uri().c_str()));
            json_object_set_new(summary, "attempts", json_integer(attempt));
            return;
        } catch (const DirectoryError &e) {
            if (!e.transient() || attempt >= 4)
                throw;
            const int delay = 1 << attempt; // 2, 4, 8 s
            log_warning("ldap_update_users: %s; retrying in %d s (attempt %d of 4)", e.what(),
                        delay, attempt);
            for (int i = 0; i < delay * 10; ++i) {
                ctx.check_stop();
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
        }
    }
}

std::vector<DbUser> read_users(pqxx::connection &conn)
{
    pqxx::read_transaction tx(conn);
    auto rows = tx.exec(
        "SELECT u.id, u.username, u.is_active, u.is_ldap_user, "
        "       (u.password <> '' AND u.password NOT LIKE '!%'), s.username IS NOT NULL, "
        "       u.first_name, u.last_name, u.email, u.department, u.role "
        "FROM users_user u LEFT JOIN " +
        std::string(own_schema) + ".ldap_user_state s ON s.username = u.username");
    std::vector<DbUser> out;
    out.reserve(rows.size());
    for (const auto &r : rows) {
        DbUser u;
        u.id = r[0].as<long long>();
        u.username = r[1].as<std::string>();
        u.is_active = r[2].as<bool>();
        u.is_ldap_user = r[3].as<bool>();
        u.local_password = r[4].as<bool>();
        u.deactivated_by_sync = r[5].as<bool>();
        for (size_t i = 0; i < user_field_names.size(); ++i)
            if (!r[static_cast<int>(6 + i)].is_null())
                u.fields.values[i] = r[static_cast<int>(6 + i)].c_str();
        out.push_back(std::move(u));
    }
    return out;
}

json_t *name_list(const std::vector<std::string> &names, bool all)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < names.size() && (all || i < listed_max); ++i)
        json_array_append_new(arr, json_string(names[i].c_str()));
    return arr;
}

template <typename T, typename F> std::vector<std::string> names_of(const std::vector<T> &v, F f)
{
    std::vector<std::string> out;
    out.reserve(v.size());
    for (const auto &x : v)
        out.push_back(f(x));
    return out;
}


// Drops the sync's record that it deactivated `username` (the user is active again or gone).
void forget_deactivation(pqxx::work &tx, const std::string &username)
{
    tx.exec_params0(std::string("DELETE FROM ") + own_schema +
                        ".ldap_user_state WHERE username = $1",
                    username);
}

// Deletes a user and what Keystone (Django) cascades to; returns why it could not, or nullopt.
std::optional<std::string> delete_user(pqxx::work &tx, const UserRef &u)
{
    auto requests = tx.exec_params1(
        "SELECT count(*) FROM allocations_allocationrequest WHERE submitter_id = $1", u.id);
    if (requests[0].as<long long>() > 0)
        return "submitted " + requests[0].as<std::string>() + " allocation request(s)";
    pqxx::subtransaction sub(tx, "delete_user");
    try {
        // What Django's on_delete does for Keystone's models: CASCADE for memberships,
        // preferences, notifications and many-to-many rows; SET_NULL for log records.
        static const char *const cascade[] = {
            "DELETE FROM users_membership WHERE user_id = $1",
            "DELETE FROM notifications_preference WHERE user_id = $1",
            "DELETE FROM notifications_notification WHERE user_id = $1",
            "DELETE FROM allocations_allocationrequest_assignees WHERE user_id = $1",
            "UPDATE logging_requestlog SET user_id = NULL WHERE user_id = $1",
            "UPDATE auditlog_logentry SET actor_id = NULL WHERE actor_id = $1",
        };
        for (const char *sql : cascade)
            sub.exec_params0(sql, u.id);
        for (const char *optional_table : {"users_user_groups", "users_user_user_permissions",
                                           "authtoken_token", "django_admin_log"}) {
            auto exists = sub.exec_params1("SELECT to_regclass($1) IS NOT NULL",
                                           std::string(optional_table));
            if (exists[0].as<bool>())
                sub.exec_params0(std::string("DELETE FROM ") + optional_table +
                                     " WHERE user_id = $1",
                                 u.id);
        }
        sub.exec_params0("DELETE FROM users_user WHERE id = $1", u.id);
        sub.commit();
        return std::nullopt;
    } catch (const pqxx::foreign_key_violation &e) {
        return std::string("still referenced: ") + one_line(e.what());
    }
}

} // namespace

void run_ldap_update_users(RunContext &ctx)
{
    const Config &cfg = ctx.config;
    json_t *summary = ctx.summary();
    json_object_set_new(summary, "dry_run", json_boolean(ctx.options.dry_run));
    if (!cfg.ldap_enabled()) {
        json_object_set_new(summary, "skipped",
                            json_string("LDAP is off: AUTH_LDAP_SERVER_URI is empty"));
        log_info("ldap_update_users: AUTH_LDAP_SERVER_URI is empty: nothing to do");
        return;
    }

    using Steady = std::chrono::steady_clock;
    auto seconds_since = [](Steady::time_point t) {
        return std::chrono::duration<double>(Steady::now() - t).count();
    };
    // The directory is read on a thread of its own while this one reads the users table on the
    // run's connection: the two waits overlap.
    auto t0 = Steady::now();
    EntryParser directory(cfg.ldap_attr_map);
    JsonPtr server_info(json_object());
    auto reading = std::async(std::launch::async, [&] {
        read_directory(ctx, directory, server_info.get());
        log_verbose("ldap_update_users: directory read in %.3f s", seconds_since(t0));
    });
    std::vector<DbUser> db;
    try {
        db = read_users(ctx.conn);
        log_verbose("ldap_update_users: %zu users read in %.3f s", db.size(), seconds_since(t0));
    } catch (...) {
        reading.wait();
        throw;
    }
    reading.get(); // rethrows a directory failure: nothing has been changed yet
    json_object_update(summary, server_info.get());
    for (const auto &w : directory.warnings())
        log_warning("%s", w.c_str());
    ctx.check_stop();

    const bool purge = cfg.ldap_purge_removed;
    t0 = Steady::now();
    SyncPlan plan = make_plan(directory, db, purge);
    log_verbose("ldap_update_users: planned in %.3f s", seconds_since(t0));
    const bool all = ctx.options.dry_run;

    json_object_set_new(summary, "entries", json_integer(directory.entries()));
    json_object_set_new(summary, "skipped", json_integer(directory.skipped()));
    json_object_set_new(summary, "warnings", json_integer(directory.warnings().size()));
    json_object_set_new(summary, "mode", json_string(purge ? "purge" : "deactivate"));
    json_object_set_new(summary, "unchanged", json_integer(plan.unchanged));
    auto username = [](const auto &x) { return x.username; };
    std::vector<std::string> updated, reactivated, taken_over;
    for (const auto &u : plan.update) {
        if (!u.set.empty() || u.take_over)
            updated.push_back(u.username);
        if (u.reactivate)
            reactivated.push_back(u.username);
        if (u.take_over)
            taken_over.push_back(u.username);
    }

    auto guard = guard_violation(plan, directory,
                                 GuardLimits{cfg.ldap_max_remove, cfg.ldap_max_remove_percent},
                                 purge);
    if (guard && ctx.options.force) {
        log_warning("ldap_update_users: applying despite the guard (--force): %s", guard->c_str());
        json_object_set_new(summary, "forced", json_true());
        guard.reset();
    }

    std::vector<std::string> removed, delete_refused;
    const bool work_to_do = !plan.create.empty() || !plan.update.empty() ||
                            !plan.remove.empty() || !plan.clear_state.empty();
    if (!ctx.options.dry_run && !guard && work_to_do) {
        pqxx::work tx(ctx.conn);
        // Keystone's foreign keys are deferred: check them per statement, so a user who cannot
        // be deleted is caught at its own DELETE.
        tx.exec0("SET CONSTRAINTS ALL IMMEDIATE");
        for (const auto &u : plan.create) {
            tx.exec_params0(
                "INSERT INTO users_user (password, last_login, is_superuser, username, "
                "first_name, last_name, email, department, role, is_active, is_staff, "
                "is_ldap_user, date_joined) "
                "VALUES ('', NULL, false, $1, $2, $3, $4, $5, $6, true, false, true, now())",
                u.username, u.fields.get("first_name"), u.fields.get("last_name"),
                u.fields.get("email"), u.fields.get("department"), u.fields.get("role"));
        }
        for (const auto &u : plan.update) {
            auto has = [&](const char *f) { return u.set.has(f); };
            tx.exec_params0(
                "UPDATE users_user SET is_ldap_user = true, "
                "first_name = CASE WHEN $2 THEN $3 ELSE first_name END, "
                "last_name = CASE WHEN $4 THEN $5 ELSE last_name END, "
                "email = CASE WHEN $6 THEN $7 ELSE email END, "
                "department = CASE WHEN $8 THEN $9 ELSE department END, "
                "role = CASE WHEN $10 THEN $11 ELSE role END, "
                "is_active = is_active OR $12 WHERE id = $1",
                u.id, has("first_name"), u.set.get("first_name"), has("last_name"),
                u.set.get("last_name"), has("email"), u.set.get("email"), has("department"),
                u.set.get("department"), has("role"), u.set.get("role"), u.reactivate);
            if (u.reactivate)
                forget_deactivation(tx, u.username);
        }
        for (const auto &u : plan.clear_state)
            forget_deactivation(tx, u.username);
        for (const auto &u : plan.remove) {
            if (purge) {
                auto why = delete_user(tx, u);
                if (!why) {
                    removed.push_back(u.username);
                    forget_deactivation(tx, u.username);
                    continue;
                }
                delete_refused.push_back(u.username + " (" + *why + ")");
                log_warning("ldap_update_users: User=%s cannot be deleted: %s: deactivated "
                            "instead",
                            u.username.c_str(), why->c_str());
            } else {
                removed.push_back(u.username);
            }
            tx.exec_params0("UPDATE users_user SET is_active = false WHERE id = $1 AND is_active",
                            u.id);
            tx.exec_params0(std::string("INSERT INTO ") + own_schema +
                                ".ldap_user_state (username, deactivated_at) VALUES ($1, now()) "
                                "ON CONFLICT (username) DO NOTHING",
                            u.username);
        }
        ctx.check_stop(); // a stop request before the commit leaves everything as it was
        tx.commit();
    } else {
        removed = names_of(plan.remove, username);
    }

    const bool applied = !ctx.options.dry_run && !guard;
    const char *k_create = applied ? "created" : "would_create";
    const char *k_update = applied ? "updated" : "would_update";
    const char *k_react = applied ? "reactivated" : "would_reactivate";
    const char *k_remove = applied ? (purge ? "deleted" : "deactivated")
                                   : (purge ? "would_delete" : "would_deactivate");
    json_object_set_new(summary, k_create, json_integer(plan.create.size()));
    json_object_set_new(summary, k_update, json_integer(updated.size()));
    json_object_set_new(summary, k_react, json_integer(reactivated.size()));
    json_object_set_new(summary, k_remove, json_integer(removed.size()));
    json_object_set_new(summary, "kept_inactive", json_integer(plan.kept_inactive.size()));
    json_object_set_new(summary, "local_untouched", json_integer(plan.local_untouched.size()));
    if (purge)
        json_object_set_new(summary, "deactivated_not_deleted",
                            json_integer(delete_refused.size()));
    JsonPtr users(json_object());
    json_object_set_new(users.get(), k_create,
                        name_list(names_of(plan.create, username), all));
    json_object_set_new(users.get(), k_update, name_list(updated, all));
    json_object_set_new(users.get(), k_react, name_list(reactivated, all));
    json_object_set_new(users.get(), k_remove, name_list(removed, all));
    json_object_set_new(users.get(), "taken_over", name_list(taken_over, all));
    json_object_set_new(users.get(), "kept_inactive", name_list(plan.kept_inactive, all));
    json_object_set_new(users.get(), "local_untouched", name_list(plan.local_untouched, all));
    if (purge)
        json_object_set_new(users.get(), "deactivated_not_deleted", name_list(delete_refused, all));
    json_object_set(summary, "users", users.get());

    for (const auto &name : plan.local_untouched)
        log_warning("ldap_update_users: User=%s is a local account (is_ldap_user false, with a "
                    "password): left alone",
                    name.c_str());
    if (guard)
        throw Error("safety guard: " + *guard);
    log_info("ldap_update_users: %zu entries from %s: %s %zu, %s %zu, %s %zu, %s %zu, %zu "
             "unchanged, %zu skipped",
             directory.entries(), json_string_value(json_object_get(summary, "server")), k_create,
             plan.create.size(), k_update, updated.size(), k_react, reactivated.size(), k_remove,
             removed.size(), plan.unchanged, directory.skipped());
}

} // namespace keystone
