// SPDX-License-Identifier: GPL-2.0-or-later
// Allocation expiration notices (Keystone's notify_upcoming_expirations and
// notify_past_expirations, spec §6): who gets which notice (pure rules), the database reads
// behind them, and what a notice says (template context, rendered parts, the e-mail).
#pragma once

#include "config.hpp"
#include "mail_message.hpp"
#include "templates.hpp"

#include <ctime>
#include <map>
#include <optional>
#include <pqxx/pqxx>
#include <string>
#include <vector>

namespace keystone {

enum class NoticeKind { upcoming, past };

// Keystone's notification_type: "RE" (upcoming) or "RD" (past).
const char *notice_type(NoticeKind kind);
// The task's short name: "notify_upcoming_expirations" / "notify_past_expirations".
const char *notice_task(NoticeKind kind);
// The template base name: "upcoming_expiration" / "past_expiration".
const char *notice_template(NoticeKind kind);

// A calendar date as a day number: days since 1970-01-01. No time zone is involved in the
// arithmetic; local_day() and local_midnight() convert in the process time zone (CONFIG_TIMEZONE).
using Day = long;
Day civil_day(int year, unsigned month, unsigned day);
Day local_day(std::time_t t);
std::time_t local_midnight(Day day);
std::string day_text(Day day);                         // "2026-11-28"
std::optional<Day> parse_day(const std::string &text); // "2026-11-28"; nullopt otherwise

// A user's notification preferences (notifications_preference).
struct Preference {
    std::vector<long long> thresholds{30, 14}; // request_expiry_thresholds (days)
    bool notify_on_expiration = true;
    bool from_row = false;             // false: the user has no row, these are Keystone's defaults
    std::vector<std::string> problems; // entries of the row that were ignored, for a warning
};

// Reads a preference row: `thresholds_json` is request_expiry_thresholds as JSON text, nullopt
// when the user has no row (then the defaults [30, 14] and true apply, as Keystone's
// get_or_create gives). Keystone does not validate the list: integers (and whole numbers such as
// 30.0) are used, anything else is ignored and listed in `problems`; a value that is not a list
// counts as no thresholds.
Preference parse_preference(const std::optional<std::string> &thresholds_json,
                            std::optional<bool> notify_on_expiration);

// The smallest threshold >= `days_left`, nullopt when there is none (Keystone's rule 2).
std::optional<long long> upcoming_threshold(const std::vector<long long> &thresholds,
                                            long long days_left);

// PostgreSQL's `jsonb_value <= number` for a jsonb value given as its JSON text, which is what
// Keystone's de-duplication filter (metadata__days_to_expire__lte) runs: numbers compare by
// value; null and strings sort below every number (true); booleans, arrays and objects above
// (false); nullopt (the key is missing: SQL NULL) is false.
bool jsonb_at_most(const std::optional<std::string> &jsonb_text, long long number);

// One (user, request) pair a task looks at, with everything the rules need.
struct Candidate {
    NoticeKind kind = NoticeKind::upcoming;
    // the allocation request
    long long request_id = 0;
    std::string title;
    std::string submitted; // local time text "YYYY-MM-DD HH:MM"
    std::optional<Day> active, expire;
    long long team_id = 0;
    std::string team;
    // the user
    long long user_id = 0;
    std::string username, first_name, last_name;
    std::optional<std::string> email;
    Day joined = 0; // date(date_joined): the date in UTC, as Django's aware datetime gives it
    Preference preference;
    // Keystone notifications of this kind the user already has for this request: one entry per
    // row, the JSON text of metadata->'days_to_expire' (nullopt when the key is missing).
    std::vector<std::optional<std::string>> sent;
};

struct Decision {
    bool due = false;
    long long days_to_expire = 0; // upcoming: d = expire - today (stored in the metadata)
    long long threshold = 0;      // upcoming: the threshold d falls under
    std::string reason;           // when not due: why, for people
};

// Keystone's rules for an upcoming notice (spec §6.2): expire > today; a threshold >= d; the user
// joined, and the request started, more than `threshold` days before today; no notice of type
// RE for this request whose days_to_expire <= threshold.
Decision decide_upcoming(const Candidate &c, Day today);
// Keystone's rules for a past notice (spec §6.3): today - 3 < expire <= today;
// notify_on_expiration; no notice of type RD for this request.
Decision decide_past(const Candidate &c, Day today);
Decision decide(const Candidate &c, Day today);

// The notification's metadata as Keystone writes it: {"request_id": ID, "days_to_expire": D} for
// RE, {"request_id": ID} for RD.
std::string notice_metadata(NoticeKind kind, long long request_id, long long days_to_expire);

struct CandidateFilter {
    std::optional<long long> request_id;
    std::optional<std::string> username;
    // Every approved request of an active team on the kind's side of today (upcoming: expire >
    // today, past: expire <= today), not only those in the task's window (for previews).
    bool any_date = false;
};

// The candidates of a task run: approved requests (status AP) of active teams whose expire
// date is in the kind's window (upcoming: after today; past: the last three days up to today),
// crossed with the team's active members of every role, each with the preference row and the
// Keystone notifications already sent. Ordered by request, then user.
std::vector<Candidate> load_candidates(pqxx::connection &conn, NoticeKind kind, Day today,
                                       const std::string &time_zone,
                                       const CandidateFilter &filter = {});

struct AllocationInfo {
    std::string cluster;
    long long requested = 0;
    std::optional<long long> awarded, final;
};
struct TeamRequest {
    long long id = 0;
    std::string title, submitted, status; // status: Keystone's label ("Pending", "Approved")
    std::optional<Day> active, expire;
};
// What the templates show beside the request itself.
struct NoticeExtras {
    std::map<long long, std::vector<AllocationInfo>> allocations; // by request id
    std::map<long long, std::vector<TeamRequest>> team_requests;  // by team id: PD, or AP with
                                                                  // expire > today or NULL
};
NoticeExtras load_extras(pqxx::connection &conn, const std::vector<const Candidate *> &candidates,
                         Day today, const std::string &time_zone);

// Whether an allocation of the request has no final usage yet (not settled by update_limits).
bool has_unsettled_allocation(const NoticeExtras &extras, long long request_id);

// The template context of spec §6.2/§6.3: user_name, user_first, user_last, user_display; req_id,
// req_title, req_team, req_submitted, req_active, req_expire, req_days_left (upcoming);
// allocations [{alloc_cluster, alloc_requested, alloc_awarded, and for past notices
// alloc_final and alloc_percent}]; upcoming_requests [{id, title, submitted, active, expire,
// status}]. NULL numbers show as 0, NULL dates as "N/A".
TemplateData notice_context(const Candidate &c, const Decision &d, const NoticeExtras &extras);

struct RenderedNotice {
    std::string subject, text, html;
};
// Renders the kind's three templates (.subject, .txt, .html); the subject is one line and is
// also given to the text and HTML templates as `subject`. Throws TemplateError.
RenderedNotice render_notice(Templates &templates, NoticeKind kind, TemplateData context);

// The notice's Message-ID: the same for every attempt at the same notice on the same database
// (see make_message_id).
std::string notice_message_id(const Candidate &c, const Decision &d, const Config &config);

// The e-mail of a rendered notice to the candidate's address, from EMAIL_FROM_ADDRESS, dated
// `date`. The display name is "first last" (or nothing).
MailContent notice_mail(const Candidate &c, const Decision &d, const RenderedNotice &r,
                        const Config &config, std::time_t date);

} // namespace keystone
