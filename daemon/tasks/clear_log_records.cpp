// SPDX-License-Identifier: GPL-2.0-or-later
// Task apps.logging.tasks.clear_log_records: prunes Keystone's request, audit and task logs.
//
// Keystone deletes each type with one DELETE. We delete in batches of KEYSTONED_CLEANUP_BATCH_SIZE
// rows, each batch its own short transaction, so a large backlog never holds locks for long, never
// builds one huge transaction, and a stop request is honoured between batches. Rows another session
// has locked are skipped (SKIP LOCKED) and picked up by the next run.
#include "tasks/task.hpp"

#include "db.hpp"
#include "error.hpp"
#include "log.hpp"

#include <chrono>

namespace keystone {

namespace {

struct LogType {
    const char *table;
    const char *column;  // the timestamp the retention applies to
    const char *setting; // its retention setting
    const char *extra;   // further condition on rows that may go
    std::int64_t Config::*retention;
};

const LogType log_types[] = {
    {"logging_requestlog", "timestamp", "LOG_REQ_RETENTION_SEC", "",
     &Config::log_req_retention_sec},
    {"auditlog_logentry", "timestamp", "LOG_AUD_RETENTION_SEC", "", &Config::log_aud_retention_sec},
    // A task still running keeps its row: it is the only trace of the run until it ends.
    {"django_celery_results_taskresult", "date_done", "LOG_TSK_RETENTION_SEC",
     " AND status <> 'STARTED'", &Config::log_tsk_retention_sec},
};


} // namespace

void run_clear_log_records(RunContext &ctx) {
    const Config &cfg = ctx.config;
    const std::int64_t batch = cfg.cleanup_batch_size;
    json_t *summary = ctx.summary();
    JsonPtr deleted(json_object());
    JsonPtr disabled(json_array());
    long long batches = 0;
    double longest_ms = 0;
    json_object_set_new(summary, "dry_run", json_boolean(ctx.options.dry_run));

    for (const auto &type : log_types) {
        const std::int64_t retention = cfg.*type.retention;
        if (retention <= 0) {
            json_array_append_new(disabled.get(), json_string(type.table));
            log_verbose("clear_log_records: %s=%lld: pruning of %s is off", type.setting,
                        static_cast<long long>(retention), type.table);
            continue;
        }
        const std::string cutoff = pg_timestamp(ctx.now - std::chrono::seconds(retention));
        long long count = 0;
        try {
            if (ctx.options.dry_run) {
                pqxx::read_transaction tx(ctx.conn);
                auto row = tx.exec_params1(std::string("SELECT count(*) FROM ") + type.table +
                                               " WHERE \"" + type.column + "\" <= $1::timestamptz" +
                                               type.extra,
                                           cutoff);
                count = row[0].as<long long>();
            } else {
                // Rows are picked oldest first through the timestamp index and addressed by
                // ctid, which saves the primary-key lookup per row; FOR UPDATE keeps them where
                // they are until commit. Each batch starts at the newest timestamp the previous
                // one deleted, so the index scan never wades through the entries of rows
                // already deleted (they stay in the index until vacuum).
                const std::string col = std::string("\"") + type.column + "\"";
                const std::string sql =
                    std::string("WITH d AS (DELETE FROM ") + type.table +
                    " WHERE ctid = ANY (ARRAY (SELECT ctid FROM " + type.table + " WHERE " + col +
                    " >= $3::timestamptz AND " + col + " <= $1::timestamptz" + type.extra +
                    " ORDER BY " + col + " LIMIT $2 FOR UPDATE SKIP LOCKED)) RETURNING " + col +
                    ") SELECT count(*), max(" + col + ")::text FROM d";
                // Prepared once per connection: libpqxx ignores a second prepare() of the same
                // name with the same text, so later runs on this lane reuse the plan.
                const std::string statement = std::string("clear_log_records_") + type.table;
                ctx.conn.prepare(statement, sql);
                std::string from = "-infinity";
                for (;;) {
                    ctx.check_stop();
                    auto started = std::chrono::steady_clock::now();
                    pqxx::work tx(ctx.conn);
                    // Never queue for long behind a schema change holding the table.
                    tx.exec0("SET LOCAL lock_timeout = '10s'");
                    auto res = tx.exec_prepared(statement, cutoff, batch, from);
                    auto row = res.at(0);
                    tx.commit();
                    double ms = std::chrono::duration<double, std::milli>(
                                    std::chrono::steady_clock::now() - started)
                                    .count();
                    longest_ms = std::max(longest_ms, ms);
                    ++batches;
                    const auto n = row[0].as<long long>();
                    count += n;
                    if (!row[1].is_null())
                        from = row[1].as<std::string>();
                    log_debug("clear_log_records: deleted %lld rows from %s in %.1f ms", n,
                              type.table, ms);
                    if (n < batch)
                        break;
                }
            }
        } catch (const Interrupted &) {
            json_object_set_new(deleted.get(), type.table, json_integer(count));
            json_object_set(summary, ctx.options.dry_run ? "would_delete" : "deleted",
                            deleted.get());
            throw;
        } catch (const pqxx::broken_connection &) {
            throw; // nothing more can be done on this connection: the run fails as a whole
        } catch (const std::exception &e) {
            if (!ctx.conn.is_open())
                throw; // the connection died under a statement: the run fails as a whole
            ctx.add_error(std::string("clear_log_records: pruning ") + type.table +
                          " failed after " + std::to_string(count) + " rows: " + one_line(e));
        }
        json_object_set_new(deleted.get(), type.table, json_integer(count));
        log_info("clear_log_records: %s %lld rows from %s (%s=%lld, cutoff %s)",
                 ctx.options.dry_run ? "would delete" : "deleted", count, type.table, type.setting,
                 static_cast<long long>(retention), cutoff.c_str());
    }
    json_object_set(summary, ctx.options.dry_run ? "would_delete" : "deleted", deleted.get());
    json_object_set(summary, "disabled", disabled.get());
    if (!ctx.options.dry_run) {
        json_object_set_new(summary, "batches", json_integer(batches));
        json_object_set_new(summary, "longest_batch_ms", json_real(longest_ms));
    }
}

} // namespace keystone
