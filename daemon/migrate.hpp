// SPDX-License-Identifier: GPL-2.0-or-later
// Schema migrations: keystone_slurm's own numbered, forward-only migrations, and the Keystone
// tables this system needs, created only where a site has no Keystone API to create them.
#pragma once

#include <pqxx/pqxx>
#include <string>
#include <vector>

namespace keystone {

// The PostgreSQL schema that holds keystone-slurm's own tables.
inline constexpr const char *own_schema = "keystone_slurm";

struct Migration {
    int version;      // leading number of the file name
    const char *name; // rest of the file name, without .sql
    const char *file; // the file, relative to the source tree: "sql/001_base.sql"
    const char *sql;  // the file's text
};

// Embedded at build time from sql/*.sql (own) and sql/keystone/*.sql (Keystone tables), in order.
const std::vector<Migration> &own_migrations();
const std::vector<Migration> &keystone_migrations();

// Highest own schema version this build knows.
int known_schema_version();

// The version recorded in the database: 0 when our schema does not exist yet.
int database_schema_version(pqxx::connection &c);

struct MigrateReport {
    int from = 0;
    int to = 0;
    std::vector<std::string> applied;          // "002_jobs", in order
    std::vector<std::string> keystone_created; // Keystone tables that did not exist before
};

// Applies every own migration newer than the database's, each in its own transaction, under an
// advisory lock so two migrators never interleave. With `keystone_schema` it first creates the
// Keystone tables that are missing (CREATE ... IF NOT EXISTS: an existing Keystone table is never
// altered), and refuses to when Django's migrations manage the database (django_migrations exists).
// Throws SchemaError if the database is newer than this build, Error on SQL failure
// (naming the migration file and PostgreSQL's message).
MigrateReport migrate(pqxx::connection &c, bool keystone_schema);

// For daemon start-up: throws SchemaError with what to run when the database's own schema is
// missing, older or newer than this build, or when a Keystone table this system needs is missing.
void check_schema(pqxx::connection &c);

// The Keystone tables keystone-slurm reads or writes (checked by check_schema).
const std::vector<std::string> &required_keystone_tables();

} // namespace keystone
