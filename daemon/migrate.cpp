// SPDX-License-Identifier: GPL-2.0-or-later
// Implementation of the schema migrations (see migrate.hpp).
#include "migrate.hpp"

#include "db.hpp"
#include "error.hpp"
#include "log.hpp"

#include <algorithm>
#include <set>

namespace keystone {

namespace {

// Arbitrary constant pair for pg_advisory_xact_lock: "keystone-slurm migrations".
constexpr int lock_class = 0x4b53;
constexpr int lock_migrate = 1;

std::set<std::string> existing_tables(pqxx::work &tx)
{
    std::set<std::string> out;
    for (const auto &row : tx.exec("SELECT c.relname FROM pg_class c "
                                   "JOIN pg_namespace n ON n.oid = c.relnamespace "
                                   "WHERE c.relkind IN ('r', 'p', 'v') "
                                   "AND n.nspname = ANY (current_schemas(false))"))
        out.insert(row[0].as<std::string>());
    return out;
}



} // namespace

const std::vector<std::string> &required_keystone_tables()
{
    static const std::vector<std::string> tables = {
        "django_celery_results_taskresult",
        "logging_requestlog",
        "auditlog_logentry",
    };
    return tables;
}

int known_schema_version()
{
    int v = 0;
    for (const auto &m : own_migrations())
        v = std::max(v, m.version);
    return v;
}

int database_schema_version(pqxx::connection &c)
{
    pqxx::read_transaction tx(c);
    auto exists = tx.exec_params1("SELECT to_regclass($1) IS NOT NULL",
                                  std::string(own_schema) + ".schema_version");
    if (!exists[0].as<bool>())
        return 0;
    auto row = tx.exec1(std::string("SELECT COALESCE(MAX(version), 0) FROM ") + own_schema +
                        ".schema_version");
    return row[0].as<int>();
}

MigrateReport migrate(pqxx::connection &c, bool keystone_schema)
{
    MigrateReport report;
    if (keystone_schema) {
        pqxx::work tx(c);
        tx.exec_params("SELECT pg_advisory_xact_lock($1, $2)", lock_class, lock_migrate);
        auto before = existing_tables(tx);
        // Where Keystone's API ran Django's migrations, those own every Keystone table: adding
        // what our DDL has and theirs lacks (an index of a newer release) would break their next
        // migration. Refuse instead of touching anything.
        if (before.count("django_migrations"))
            throw SchemaError("migrate: --keystone-schema refused: this database is managed by "
                              "Keystone's own Django migrations (table django_migrations exists); "
                              "run `keystone-api migrate` there, and `keystonectl db migrate` "
                              "without --keystone-schema");
        for (const auto &m : keystone_migrations()) {
            try {
                tx.exec0(m.sql);
            } catch (const pqxx::sql_error &e) {
                throw Error(std::string("migrate: ") + m.file + " failed: " + one_line(e));
            }
        }
        auto after = existing_tables(tx);
        for (const auto &t : after)
            if (!before.count(t))
                report.keystone_created.push_back(t);
        tx.commit();
    }

    {
        pqxx::work tx(c);
        tx.exec_params("SELECT pg_advisory_xact_lock($1, $2)", lock_class, lock_migrate);
        tx.exec0(std::string("CREATE SCHEMA IF NOT EXISTS ") + own_schema);
        tx.exec0(std::string("CREATE TABLE IF NOT EXISTS ") + own_schema +
                 ".schema_version ("
                 "version integer PRIMARY KEY, "
                 "name text NOT NULL, "
                 "applied_at timestamptz NOT NULL, "
                 "applied_by text NOT NULL)");
        tx.commit();
    }
    report.from = database_schema_version(c);
    report.to = report.from;
    if (report.from > known_schema_version())
        throw SchemaError("migrate: the database has keystone_slurm schema version " +
                          std::to_string(report.from) + " but this build knows only up to " +
                          std::to_string(known_schema_version()) +
                          ": install the newer keystone-slurm that wrote it");

    std::vector<Migration> todo;
    for (const auto &m : own_migrations())
        if (m.version > report.from)
            todo.push_back(m);
    std::sort(todo.begin(), todo.end(),
              [](const Migration &a, const Migration &b) { return a.version < b.version; });
    for (const auto &m : todo) {
        pqxx::work tx(c);
        tx.exec_params("SELECT pg_advisory_xact_lock($1, $2)", lock_class, lock_migrate);
        // Another migrator may have applied it while we waited for the lock.
        auto done = tx.exec_params1(std::string("SELECT count(*) FROM ") + own_schema +
                                        ".schema_version WHERE version = $1",
                                    m.version);
        if (done[0].as<int>() > 0)
            continue;
        std::string label = std::to_string(m.version);
        label.insert(0, 3 - std::min<size_t>(3, label.size()), '0');
        label += std::string("_") + m.name;
        try {
            tx.exec0(m.sql);
        } catch (const pqxx::sql_error &e) {
            throw Error(std::string("migrate: ") + m.file + " failed: " + one_line(e));
        }
        tx.exec_params0(std::string("INSERT INTO ") + own_schema +
                            ".schema_version (version, name, applied_at, applied_by) "
                            "VALUES ($1, $2, now(), current_user)",
                        m.version, std::string(m.name));
        tx.commit();
        report.applied.push_back(label);
        report.to = m.version;
        log_info("migrate: applied %s.sql", label.c_str());
    }
    return report;
}

void check_schema(pqxx::connection &c)
{
    int have = database_schema_version(c);
    int want = known_schema_version();
    if (have == 0)
        throw SchemaError("database: schema keystone_slurm does not exist: run "
                          "`keystonectl db migrate` (add --keystone-schema where no Keystone API "
                          "created Keystone's tables)");
    if (have < want)
        throw SchemaError("database: keystone_slurm schema is at version " + std::to_string(have) +
                          ", this build needs " + std::to_string(want) +
                          ": run `keystonectl db migrate`");
    if (have > want)
        throw SchemaError("database: keystone_slurm schema is at version " + std::to_string(have) +
                          ", newer than this build knows (" + std::to_string(want) +
                          "): upgrade keystone-slurm");
    pqxx::read_transaction tx(c);
    std::vector<std::string> missing;
    for (const auto &t : required_keystone_tables()) {
        auto r = tx.exec_params1("SELECT to_regclass($1) IS NOT NULL", t);
        if (!r[0].as<bool>())
            missing.push_back(t);
    }
    if (!missing.empty()) {
        std::string list;
        for (const auto &t : missing)
            list += (list.empty() ? "" : ", ") + t;
        throw SchemaError("database: Keystone table(s) missing: " + list +
                          ": point DB_NAME at Keystone's database, or run `keystonectl db migrate "
                          "--keystone-schema` for a standalone installation");
    }
}

} // namespace keystone
