// SPDX-License-Identifier: GPL-2.0-or-later
// Implementation of an expiration-notice run (see notify_run.hpp).
#include "notify_run.hpp"

#include "clusters.hpp"
#include "db.hpp"
#include "error.hpp"
#include "log.hpp"
#include "mailer.hpp"
#include "migrate.hpp"
#include "task_log.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <thread>

namespace keystone {

namespace {

constexpr std::size_t listed_max = 100; // notices listed by name in a recorded result

using PairKey = std::pair<long long, long long>; // (user id, request id)

struct RetryRow {
    int attempts = 0;
    std::time_t next_attempt = 0;
    std::string last_error;
};

std::map<PairKey, RetryRow> load_retries(pqxx::connection &conn, NoticeKind kind) {
    std::map<PairKey, RetryRow> out;
    pqxx::read_transaction tx(conn);
    // Whole seconds rounded down: a run that waited until the retry time compares it with
    // time(), which rounds down too (a cast would round up half the time).
    auto rows = tx.exec_params(std::string("SELECT user_id, request_id, attempts, "
                                           "floor(EXTRACT(EPOCH FROM next_attempt_at))::bigint, "
                                           "last_error FROM ") +
                                   own_schema + ".notice_retry WHERE notification_type = $1",
                               std::string(notice_type(kind)));
    for (const auto &r : rows) {
        RetryRow row;
        row.attempts = r[2].as<int>();
        row.next_attempt = static_cast<std::time_t>(r[3].as<long long>());
        row.last_error = r[4].as<std::string>();
        out[{r[0].as<long long>(), r[1].as<long long>()}] = row;
    }
    return out;
}

// The statements of a run, prepared once per connection (libpqxx ignores a repeated prepare of
// the same name and text, so a lane's later runs reuse them).
void prepare_statements(pqxx::connection &conn) {
    // Records a sent notice and drops its retry state in one statement, so it costs one round
    // trip and commits on its own (autocommit): a statement is atomic.
    conn.prepare("notify_record_sent",
                 "WITH recorded AS (INSERT INTO notifications_notification (\"time\", read, "
                 "subject, message_text, message_html, metadata, notification_type, user_id) "
                 "VALUES (now(), false, $1, $2, $3, $4::jsonb, $5, $6) "
                 "ON CONFLICT (user_id, notification_type, metadata) DO NOTHING) "
                 "DELETE FROM " +
                     std::string(own_schema) +
                     ".notice_retry WHERE user_id = $6 AND notification_type = $5 AND "
                     "request_id = $7");
    conn.prepare("notify_forget_retry",
                 std::string("DELETE FROM ") + own_schema +
                     ".notice_retry WHERE user_id = $1 AND notification_type = $2 AND "
                     "request_id = $3");
    conn.prepare("notify_record_failure",
                 std::string("INSERT INTO ") + own_schema +
                     ".notice_retry (user_id, notification_type, request_id, metadata, attempts, "
                     "first_failed_at, last_attempt_at, next_attempt_at, last_error) "
                     "VALUES ($1, $2, $3, $4::jsonb, $5, $6::timestamptz, $6::timestamptz, "
                     "$7::timestamptz, $8) "
                     "ON CONFLICT (user_id, notification_type, request_id) DO UPDATE SET "
                     "metadata = EXCLUDED.metadata, attempts = EXCLUDED.attempts, "
                     "last_attempt_at = EXCLUDED.last_attempt_at, "
                     "next_attempt_at = EXCLUDED.next_attempt_at, "
                     "last_error = EXCLUDED.last_error");
}

json_t *notice_json(const Candidate &c, const Decision &d) {
    json_t *o = json_object();
    json_object_set_new(o, "user", json_string(c.username.c_str()));
    json_object_set_new(o, "request_id", json_integer(c.request_id));
    if (c.kind == NoticeKind::upcoming)
        json_object_set_new(o, "days_to_expire", json_integer(d.days_to_expire));
    return o;
}

// Sleeps until `until`, waking every 200 ms to honour a stop request.
void wait_until(const RunContext &ctx, Clock::time_point until) {
    while (Clock::now() < until) {
        ctx.check_stop();
        std::this_thread::sleep_for(
            std::min<Clock::duration>(std::chrono::milliseconds(200), until - Clock::now()));
    }
}

} // namespace

std::chrono::seconds notice_retry_delay(int attempts) {
    const long long cap = 6 * 3600;
    long long delay = 15;
    for (int i = 1; i < attempts && delay < cap; ++i)
        delay *= 2;
    return std::chrono::seconds(std::min(delay, cap));
}

bool notice_in_backoff(std::time_t next_attempt_at, std::time_t now, bool honour_backoff) {
    return honour_backoff && next_attempt_at > now;
}

Settlement settlement_state(bool registered, bool scheduled, bool finished_today) {
    if (!registered)
        return Settlement::absent;
    if (!scheduled)
        return Settlement::off;
    return finished_today ? Settlement::done : Settlement::pending;
}

const char *settlement_name(Settlement s) {
    switch (s) {
    case Settlement::absent:
        return "absent";
    case Settlement::off:
        return "off";
    case Settlement::done:
        return "done";
    case Settlement::pending:
        return "pending";
    }
    return "unknown";
}

bool task_finished_since(pqxx::connection &conn, const std::string &dotted_name, std::time_t since,
                         std::string *ended_at) {
    pqxx::read_transaction tx(conn);
    const std::vector<std::string> clusters = enabled_clusters(tx);
    // The first end since `since` per task name and args.
    const char *first_end_sql =
        "SELECT task_args, "
        "       to_char(min(date_done) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
        "FROM django_celery_results_taskresult "
        "WHERE task_name = $1 AND status IN ('SUCCESS', 'FAILURE') AND date_created >= "
        "to_timestamp($2) GROUP BY task_args";
    std::string latest;
    if (clusters.empty()) {
        const pqxx::result r =
            tx.exec_params(first_end_sql, dotted_name, static_cast<long long>(since));
        for (const auto &row : r)
            if (latest.empty() || row[1].as<std::string>() < latest)
                latest = row[1].as<std::string>();
        if (latest.empty())
            return false;
    } else {
        std::map<std::string, std::string> ends; // task_args -> first end
        for (const auto &row : tx.exec_params(first_end_sql, dotted_name + "_for_cluster",
                                              static_cast<long long>(since)))
            ends[row[0].is_null() ? "" : row[0].as<std::string>()] = row[1].as<std::string>();
        for (const std::string &cluster : clusters) {
            auto it = ends.find(python_args_repr({cluster}));
            if (it == ends.end())
                return false;
            latest = std::max(latest, it->second);
        }
    }
    if (ended_at)
        *ended_at = latest;
    return true;
}

void run_notices(RunContext &ctx, NoticeKind kind, const NoticeRunOptions &options) {
    const Config &cfg = ctx.config;
    json_t *summary = ctx.summary();
    const bool dry = ctx.options.dry_run;
    const char *task = notice_task(kind);
    const std::string type = notice_type(kind);
    const std::time_t now_t = Clock::to_time_t(ctx.now);
    const Day today = local_day(now_t);
    json_object_set_new(summary, "dry_run", json_boolean(dry));
    json_object_set_new(summary, "today", json_string(day_text(today).c_str()));
    json_object_set_new(summary, "notification_type", json_string(type.c_str()));

    Templates templates(cfg.email_template_dir);
    for (const auto &file : templates.foreign_templates())
        log_warning("%s: %s is a Keystone (Jinja) template, which keystoned does not read: "
                    "write %s.mustache to change this notice (see keystoned(8))",
                    task, file.c_str(), file.c_str());
    if (!dry)
        prepare_statements(ctx.conn);

    std::unique_ptr<Mailer> mailer;
    long long candidates = 0, due_count = 0, sent = 0, no_email = 0, bad_address = 0, held = 0,
              in_backoff = 0, would_send = 0, dropped = 0;
    std::map<std::string, long long> template_errors; // message -> notices it stopped
    std::set<PairKey> unsent;                         // failed in this run, not sent since
    std::set<long long> warned_users;
    std::string last_send_error;
    JsonPtr listed(json_array()), skipped_names(json_array());
    std::map<PairKey, RetryRow> retries;
    std::set<PairKey> last_due;
    std::optional<Clock::time_point> first_failure;
    int pass = 0;

    for (;;) {
        ++pass;
        ctx.check_stop();
        const std::vector<Candidate> all = load_candidates(ctx.conn, kind, today, cfg.timezone);
        std::vector<std::pair<const Candidate *, Decision>> due;
        for (const auto &c : all) {
            Decision d = decide(c, today);
            if (!c.preference.problems.empty() && warned_users.insert(c.user_id).second)
                for (const auto &p : c.preference.problems)
                    log_warning("%s: User=%s: notifications_preference: %s", task,
                                c.username.c_str(), p.c_str());
            if (d.due)
                due.emplace_back(&c, d);
            else
                log_debug2("%s: User=%s Request=%lld: not due: %s", task, c.username.c_str(),
                           c.request_id, d.reason.c_str());
        }
        if (pass == 1) {
            candidates = static_cast<long long>(all.size());
            due_count = static_cast<long long>(due.size());
        }
        last_due.clear();
        std::vector<const Candidate *> due_candidates;
        for (const auto &[c, d] : due) {
            last_due.insert({c->user_id, c->request_id});
            due_candidates.push_back(c);
        }
        const NoticeExtras extras = load_extras(ctx.conn, due_candidates, today, cfg.timezone);
        retries = load_retries(ctx.conn, kind);
        const bool honour_backoff = ctx.options.scheduled || pass > 1;

        // Why the rest of this pass is not attempted: the server cannot be reached or the
        // settings cannot work, so every further message would fail the same way.
        std::optional<SendError> stopped;
        long long pass_transient = 0;
        bool setup_failed = false;
        std::optional<Clock::time_point> wake;

        for (const auto &item : due) {
            // Named, not structured bindings: the lambda below captures them.
            const Candidate *const c = item.first;
            const Decision &d = item.second;
            ctx.check_stop();
            const PairKey key{c->user_id, c->request_id};
            if (!c->email || header_value(*c->email).empty()) {
                if (pass == 1) {
                    ++no_email;
                    if (dry || listed_max > json_array_size(skipped_names.get()))
                        json_array_append_new(skipped_names.get(),
                                              json_string(c->username.c_str()));
                    log_warning("%s: User=%s has no e-mail address: notice for Request=%lld "
                                "skipped",
                                task, c->username.c_str(), c->request_id);
                }
                continue;
            }
            if (!valid_address(*c->email)) {
                if (pass == 1) {
                    ++bad_address;
                    log_warning("%s: User=%s: e-mail address '%s' is not one we send to: notice "
                                "for Request=%lld skipped",
                                task, c->username.c_str(), header_value(*c->email).c_str(),
                                c->request_id);
                }
                continue;
            }
            if (options.hold_unsettled && has_unsettled_allocation(extras, c->request_id)) {
                if (pass == 1)
                    ++held;
                continue;
            }
            auto retry = retries.find(key);
            if (retry != retries.end() &&
                notice_in_backoff(retry->second.next_attempt, std::time(nullptr), honour_backoff)) {
                if (pass == 1) {
                    ++in_backoff;
                    log_verbose("%s: User=%s Request=%lld: retry %d waits until %s", task,
                                c->username.c_str(), c->request_id, retry->second.attempts + 1,
                                iso_utc(retry->second.next_attempt).c_str());
                }
                continue;
            }
            const std::string metadata = notice_metadata(kind, c->request_id, d.days_to_expire);
            auto record_failure = [&](const SendError &e) {
                const int attempts = (retry != retries.end() ? retry->second.attempts : 0) + 1;
                const auto at = Clock::now();
                const auto next = at + notice_retry_delay(attempts);
                pqxx::work tx(ctx.conn);
                tx.exec_prepared("notify_record_failure", c->user_id, type, c->request_id, metadata,
                                 attempts, pg_timestamp(at), pg_timestamp(next),
                                 std::string(e.what()));
                tx.commit();
                unsent.insert(key);
                last_send_error = e.what();
                if (e.transient()) {
                    ++pass_transient;
                    if (!wake || next < *wake)
                        wake = next;
                    if (!first_failure)
                        first_failure = at;
                }
            };
            if (stopped) {
                record_failure(*stopped);
                continue;
            }
            RenderedNotice rendered;
            try {
                rendered = render_notice(templates, kind, notice_context(*c, d, extras));
            } catch (const TemplateError &e) {
                // Counted once per notice: a later pass renders it again.
                if (pass == 1 && template_errors[e.what()]++ == 0)
                    log_error("%s: template error: %s", task, e.what());
                continue;
            }
            if (dry) {
                ++would_send;
                json_t *o = notice_json(*c, d);
                json_object_set_new(o, "email", json_string(c->email->c_str()));
                json_object_set_new(o, "subject", json_string(rendered.subject.c_str()));
                json_array_append_new(listed.get(), o);
                continue;
            }
            MailContent mail = notice_mail(*c, d, rendered, cfg, std::time(nullptr));
            const std::string message = build_message(mail);
            if (!mailer) {
                mailer = std::make_unique<Mailer>(mail_settings(cfg));
                mailer->set_abort_check([&ctx] { return ctx.stopping(); });
            }
            try {
                mailer->send(cfg.email_from_address, *c->email, message,
                             type + "-r" + std::to_string(c->request_id) + "-" + c->username);
            } catch (const SendError &e) {
                log_warning("%s: User=%s Request=%lld: not sent (%s): %s", task,
                            c->username.c_str(), c->request_id, send_error_kind_name(e.kind()),
                            e.what());
                record_failure(e);
                if (e.kind() == SendError::Kind::setup)
                    setup_failed = true;
                if (e.stops_sending())
                    stopped = e;
                continue;
            }
            // Accepted by the server: now, and only now, it counts as sent. A crash before the
            // commit sends it once more on the next run; never zero times.
            try {
                pqxx::nontransaction tx(ctx.conn);
                tx.exec_prepared("notify_record_sent", rendered.subject, rendered.text,
                                 rendered.html, metadata, type, c->user_id, c->request_id);
            } catch (const pqxx::integrity_constraint_violation &e) {
                // The user went away under us (a foreign key): the mail is out, there is
                // nothing to record it against. Any other database error ends the run; the
                // notice is then sent once more by the next run (never zero times).
                ctx.add_error(std::string(task) + ": User=" + c->username +
                              " Request=" + std::to_string(c->request_id) +
                              ": sent, but not recorded: " + one_line(e));
                continue;
            }
            ++sent;
            unsent.erase(key);
            if (listed_max > json_array_size(listed.get()))
                json_array_append_new(listed.get(), notice_json(*c, d));
            log_debug("%s: sent %s to User=%s <%s> for Request=%lld%s", task, type.c_str(),
                      c->username.c_str(), c->email->c_str(), c->request_id,
                      kind == NoticeKind::upcoming
                          ? (" days_to_expire=" + std::to_string(d.days_to_expire)).c_str()
                          : "");
        }
        if (dry || pass_transient == 0 || setup_failed || cfg.notify_retry_window <= 0 || !wake)
            break;
        if (*wake > *first_failure + std::chrono::seconds(cfg.notify_retry_window))
            break;
        log_info("%s: %lld notice(s) not sent (%s); trying again at %s "
                 "(KEYSTONED_NOTIFY_RETRY_WINDOW=%d)",
                 task, static_cast<long long>(unsent.size()), last_send_error.c_str(),
                 iso_utc(Clock::to_time_t(*wake)).c_str(), cfg.notify_retry_window);
        wait_until(ctx, *wake);
    }

    // A notice that failed earlier in the run and is no longer due is not "not sent".
    for (auto it = unsent.begin(); it != unsent.end();)
        it = last_due.count(*it) ? std::next(it) : unsent.erase(it);
    long long pending = 0;
    if (!dry) {
        // Retry state of notices that are no longer due (their window has passed, the user
        // opted out or left the team, Keystone sent it): nothing will try them again.
        for (const auto &[key, row] : retries) {
            if (last_due.count(key))
                continue;
            pqxx::work tx(ctx.conn);
            tx.exec_prepared("notify_forget_retry", key.first, type, key.second);
            tx.commit();
            ++dropped;
            log_warning("%s: UserId=%lld Request=%lld: no longer due after %d failed attempt(s); "
                        "last error: %s",
                        task, key.first, key.second, row.attempts, row.last_error.c_str());
        }
        pqxx::read_transaction tx(ctx.conn);
        pending = tx.exec_params1(std::string("SELECT count(*) FROM ") + own_schema +
                                      ".notice_retry WHERE notification_type = $1",
                                  type)[0]
                      .as<long long>();
    }

    json_object_set_new(summary, "transport",
                        json_string(mailer ? mailer->transport().c_str()
                                           : Mailer(mail_settings(cfg)).transport().c_str()));
    json_object_set_new(summary, "candidates", json_integer(candidates));
    json_object_set_new(summary, "due", json_integer(due_count));
    if (dry) {
        json_object_set_new(summary, "would_send", json_integer(would_send));
        json_object_set(summary, "notices", listed.get());
    } else {
        json_object_set_new(summary, "sent", json_integer(sent));
        json_object_set_new(summary, "failed",
                            json_integer(static_cast<json_int_t>(unsent.size())));
        json_object_set_new(summary, "pending_retry", json_integer(pending));
        json_object_set_new(summary, "dropped_retries", json_integer(dropped));
        json_object_set_new(summary, "passes", json_integer(pass));
        json_object_set_new(summary, "smtp_connections",
                            json_integer(mailer ? mailer->connections() : 0));
        json_object_set(summary, "notices", listed.get());
    }
    json_object_set_new(summary, "skipped_no_email", json_integer(no_email));
    json_object_set(summary, "users_without_email", skipped_names.get());
    json_object_set_new(summary, "skipped_bad_address", json_integer(bad_address));
    json_object_set_new(summary, "deferred_backoff", json_integer(in_backoff));
    if (kind == NoticeKind::past)
        json_object_set_new(summary, "held_unsettled", json_integer(held));
    long long template_failed = 0;
    for (const auto &[message, count] : template_errors)
        template_failed += count;
    json_object_set_new(summary, "template_errors", json_integer(template_failed));

    for (const auto &[message, count] : template_errors)
        ctx.add_error(std::string(task) + ": " + std::to_string(count) +
                      " notice(s) not sent: template error: " + message);
    if (!unsent.empty())
        ctx.add_error(std::string(task) + ": " + std::to_string(unsent.size()) +
                      " notice(s) not sent, retried by a later run: " + last_send_error);
    if (held > 0)
        ctx.add_error(
            std::string(task) + ": " + std::to_string(held) +
            " notice(s) held back until their allocations are settled: " + options.hold_reason);
    if (dry)
        log_info("%s: dry run: %lld of %lld candidate notice(s) due, %lld would be sent, %lld "
                 "without e-mail",
                 task, due_count, candidates, would_send, no_email);
    else
        log_info("%s: %lld of %lld candidate notice(s) due: %lld sent via %s, %zu failed, %lld "
                 "without e-mail, %lld waiting for their retry time",
                 task, due_count, candidates, sent,
                 mailer ? mailer->transport().c_str() : "(no message sent)", unsent.size(),
                 no_email, in_backoff);
}

} // namespace keystone
