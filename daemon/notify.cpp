// SPDX-License-Identifier: GPL-2.0-or-later
// Implementation of the expiration notice rules, reads and composition (see notify.hpp).
#include "notify.hpp"

#include "util.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <jansson.h>

namespace keystone {

namespace {

namespace mu = kainjow::mustache;

// The window of past notices: requests that expired today or in the two days before.
constexpr long past_window_days = 3;

const char *status_label(const std::string &code) {
    if (code == "PD")
        return "Pending";
    if (code == "AP")
        return "Approved";
    if (code == "DC")
        return "Declined";
    if (code == "CR")
        return "Changes Requested";
    return "Unknown";
}

std::string day_or_na(const std::optional<Day> &d) {
    return d ? day_text(*d) : std::string("N/A");
}

std::optional<Day> day_field(const pqxx::field &f) {
    if (f.is_null())
        return std::nullopt;
    return parse_day(f.as<std::string>());
}

std::optional<long long> opt_int(const pqxx::field &f) {
    if (f.is_null())
        return std::nullopt;
    return f.as<long long>();
}

// "{1,2,3}": a bigint[] parameter (libpqxx 6.4 has no array binding).
std::string id_array(const std::vector<long long> &ids) {
    std::string out = "{";
    for (std::size_t i = 0; i < ids.size(); ++i)
        out += (i ? "," : "") + std::to_string(ids[i]);
    return out + "}";
}

std::string thresholds_text(const std::vector<long long> &t) {
    std::string out = "[";
    for (std::size_t i = 0; i < t.size(); ++i)
        out += (i ? ", " : "") + std::to_string(t[i]);
    return out + "]";
}

} // namespace

const char *notice_type(NoticeKind kind) {
    return kind == NoticeKind::upcoming ? "RE" : "RD";
}

const char *notice_task(NoticeKind kind) {
    return kind == NoticeKind::upcoming ? "notify_upcoming_expirations" : "notify_past_expirations";
}

const char *notice_template(NoticeKind kind) {
    return kind == NoticeKind::upcoming ? "upcoming_expiration" : "past_expiration";
}

Day civil_day(int year, unsigned month, unsigned day) {
    // Days from 1970-01-01 in the proleptic Gregorian calendar, counting years from March so
    // the leap day comes last.
    const int y = static_cast<int>(month) <= 2 ? year - 1 : year;
    const long era = (y >= 0 ? y : y - 399) / 400;
    const long yoe = y - era * 400;
    const long mp = (static_cast<long>(month) + 9) % 12;
    const long doy = (153 * mp + 2) / 5 + static_cast<long>(day) - 1;
    const long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

namespace {
void civil_from_day(Day z, int &year, unsigned &month, unsigned &day) {
    z += 719468;
    const long era = (z >= 0 ? z : z - 146096) / 146097;
    const long doe = z - era * 146097;
    const long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const long mp = (5 * doy + 2) / 153;
    day = static_cast<unsigned>(doy - (153 * mp + 2) / 5 + 1);
    month = static_cast<unsigned>(mp < 10 ? mp + 3 : mp - 9);
    year = static_cast<int>(yoe + era * 400 + (month <= 2 ? 1 : 0));
}
} // namespace

Day local_day(std::time_t t) {
    struct tm tm {};
    localtime_r(&t, &tm);
    return civil_day(tm.tm_year + 1900, static_cast<unsigned>(tm.tm_mon + 1),
                     static_cast<unsigned>(tm.tm_mday));
}

std::time_t local_midnight(Day day) {
    int y;
    unsigned m, d;
    civil_from_day(day, y, m, d);
    struct tm tm {};
    tm.tm_year = y - 1900;
    tm.tm_mon = static_cast<int>(m) - 1;
    tm.tm_mday = static_cast<int>(d);
    tm.tm_isdst = -1;
    return mktime(&tm);
}

std::string day_text(Day day) {
    int y;
    unsigned m, d;
    civil_from_day(day, y, m, d);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", y, m, d);
    return buf;
}

std::optional<Day> parse_day(const std::string &text) {
    int y;
    unsigned m, d;
    char tail;
    if (text.size() != 10 || std::sscanf(text.c_str(), "%4d-%2u-%2u%c", &y, &m, &d, &tail) != 3)
        return std::nullopt;
    if (m < 1 || m > 12 || d < 1 || d > 31)
        return std::nullopt;
    const Day day = civil_day(y, m, d);
    int y2;
    unsigned m2, d2;
    civil_from_day(day, y2, m2, d2);
    if (y2 != y || m2 != m || d2 != d) // 2026-02-30
        return std::nullopt;
    return day;
}

Preference parse_preference(const std::optional<std::string> &thresholds_json,
                            std::optional<bool> notify_on_expiration) {
    Preference p;
    if (!thresholds_json && !notify_on_expiration)
        return p;
    p.from_row = true;
    p.notify_on_expiration = notify_on_expiration.value_or(true);
    p.thresholds.clear();
    if (!thresholds_json)
        return p;
    json_error_t err;
    JsonPtr j(json_loads(thresholds_json->c_str(), JSON_DECODE_ANY, &err));
    if (!j || !json_is_array(j.get())) {
        p.problems.push_back("request_expiry_thresholds is not a list: " + *thresholds_json);
        return p;
    }
    std::size_t i;
    json_t *v;
    json_array_foreach(j.get(), i, v) {
        if (json_is_integer(v)) {
            p.thresholds.push_back(json_integer_value(v));
        } else if (json_is_real(v) && std::floor(json_real_value(v)) == json_real_value(v) &&
                   std::fabs(json_real_value(v)) < 1e15) {
            p.thresholds.push_back(static_cast<long long>(json_real_value(v)));
        } else {
            char *s = json_dumps(v, JSON_ENCODE_ANY);
            p.problems.push_back(std::string("threshold ") + (s ? s : "?") +
                                 " is not a whole number of days: ignored");
            std::free(s);
        }
    }
    return p;
}

std::optional<long long> upcoming_threshold(const std::vector<long long> &thresholds,
                                            long long days_left) {
    std::optional<long long> best;
    for (long long t : thresholds)
        if (t >= days_left && (!best || t < *best))
            best = t;
    return best;
}

bool jsonb_at_most(const std::optional<std::string> &jsonb_text, long long number) {
    if (!jsonb_text)
        return false;
    json_error_t err;
    JsonPtr j(json_loads(jsonb_text->c_str(), JSON_DECODE_ANY, &err));
    if (!j)
        return false;
    // jsonb's order across types: Object > Array > Boolean > Number > String > Null.
    if (json_is_null(j.get()) || json_is_string(j.get()))
        return true;
    if (json_is_integer(j.get()))
        return json_integer_value(j.get()) <= number;
    if (json_is_real(j.get()))
        return json_real_value(j.get()) <= static_cast<double>(number);
    return false;
}

Decision decide_upcoming(const Candidate &c, Day today) {
    Decision d;
    if (!c.expire) {
        d.reason = "the request has no expiry date";
        return d;
    }
    const long long left = *c.expire - today;
    if (left < 1) {
        d.reason = "the request expired on " + day_text(*c.expire);
        return d;
    }
    d.days_to_expire = left;
    const auto threshold = upcoming_threshold(c.preference.thresholds, left);
    if (!threshold) {
        d.reason = c.preference.thresholds.empty()
                       ? "the user has no expiry thresholds (opted out of these notices)"
                       : std::to_string(left) + " days left: more than every threshold " +
                             thresholds_text(c.preference.thresholds);
        return d;
    }
    d.threshold = *threshold;
    if (!(c.joined < today - *threshold)) {
        d.reason = "the user joined on " + day_text(c.joined) + ", not more than " +
                   std::to_string(*threshold) + " days ago";
        return d;
    }
    if (!c.active) {
        d.reason = "the request has no start (active) date";
        return d;
    }
    if (!(*c.active < today - *threshold)) {
        d.reason = "the request started on " + day_text(*c.active) + ", not more than " +
                   std::to_string(*threshold) + " days ago";
        return d;
    }
    for (const auto &sent : c.sent) {
        if (jsonb_at_most(sent, *threshold)) {
            d.reason = "already notified within the " + std::to_string(*threshold) +
                       "-day threshold (days_to_expire " + sent.value_or("?") + ")";
            return d;
        }
    }
    d.due = true;
    return d;
}

Decision decide_past(const Candidate &c, Day today) {
    Decision d;
    if (!c.expire) {
        d.reason = "the request has no expiry date";
        return d;
    }
    if (*c.expire > today) {
        d.reason = "the request expires on " + day_text(*c.expire) + ", after today";
        return d;
    }
    if (!(*c.expire > today - past_window_days)) {
        d.reason = "the request expired on " + day_text(*c.expire) + ", more than " +
                   std::to_string(past_window_days - 1) + " days ago";
        return d;
    }
    if (!c.preference.notify_on_expiration) {
        d.reason = "the user opted out of expiry notices (notify_on_expiration false)";
        return d;
    }
    if (!c.sent.empty()) {
        d.reason = "already notified";
        return d;
    }
    d.due = true;
    return d;
}

Decision decide(const Candidate &c, Day today) {
    return c.kind == NoticeKind::upcoming ? decide_upcoming(c, today) : decide_past(c, today);
}

std::string notice_metadata(NoticeKind kind, long long request_id, long long days_to_expire) {
    if (kind == NoticeKind::upcoming)
        return "{\"request_id\": " + std::to_string(request_id) +
               ", \"days_to_expire\": " + std::to_string(days_to_expire) + "}";
    return "{\"request_id\": " + std::to_string(request_id) + "}";
}

std::vector<Candidate> load_candidates(pqxx::connection &conn, NoticeKind kind, Day today,
                                       const std::string &time_zone,
                                       const CandidateFilter &filter) {
    std::string window;
    if (kind == NoticeKind::upcoming)
        window = "r.expire > $1::date";
    else if (filter.any_date)
        window = "r.expire <= $1::date";
    else
        window =
            "r.expire <= $1::date AND r.expire > $1::date - " + std::to_string(past_window_days);
    pqxx::read_transaction tx(conn);
    const std::string today_text = day_text(today);
    std::optional<long long> request_id = filter.request_id;
    std::optional<std::string> username = filter.username;
    auto rows = tx.exec_params(
        "SELECT r.id, r.title, to_char(r.submitted AT TIME ZONE $2, 'YYYY-MM-DD HH24:MI'), "
        "       to_char(r.active, 'YYYY-MM-DD'), to_char(r.expire, 'YYYY-MM-DD'), t.id, t.name, "
        "       u.id, u.username, u.first_name, u.last_name, u.email, "
        "       to_char(u.date_joined AT TIME ZONE 'UTC', 'YYYY-MM-DD'), "
        "       p.request_expiry_thresholds::text, p.notify_on_expiration "
        "FROM allocations_allocationrequest r "
        "JOIN users_team t ON t.id = r.team_id "
        "JOIN users_membership m ON m.team_id = t.id "
        "JOIN users_user u ON u.id = m.user_id "
        "LEFT JOIN notifications_preference p ON p.user_id = u.id "
        "WHERE r.status = 'AP' AND t.is_active AND u.is_active AND " +
            window +
            " AND ($3::bigint IS NULL OR r.id = $3) AND ($4::text IS NULL OR u.username = $4) "
            "ORDER BY r.id, u.id",
        today_text, time_zone, request_id, username);
    std::vector<Candidate> out;
    out.reserve(rows.size());
    std::vector<long long> request_ids;
    for (const auto &row : rows) {
        Candidate c;
        c.kind = kind;
        c.request_id = row[0].as<long long>();
        c.title = row[1].as<std::string>();
        c.submitted = row[2].as<std::string>();
        c.active = day_field(row[3]);
        c.expire = day_field(row[4]);
        c.team_id = row[5].as<long long>();
        c.team = row[6].as<std::string>();
        c.user_id = row[7].as<long long>();
        c.username = row[8].as<std::string>();
        c.first_name = row[9].is_null() ? "" : row[9].as<std::string>();
        c.last_name = row[10].is_null() ? "" : row[10].as<std::string>();
        if (!row[11].is_null())
            c.email = row[11].as<std::string>();
        c.joined = parse_day(row[12].as<std::string>()).value_or(0);
        std::optional<std::string> thresholds;
        std::optional<bool> notify;
        if (!row[13].is_null())
            thresholds = row[13].as<std::string>();
        if (!row[14].is_null())
            notify = row[14].as<bool>();
        c.preference = parse_preference(thresholds, notify);
        if (request_ids.empty() || request_ids.back() != c.request_id)
            request_ids.push_back(c.request_id);
        out.push_back(std::move(c));
    }
    if (out.empty())
        return out;

    // Keystone's notifications of this kind for these requests: matched on
    // metadata->'request_id' as Keystone's own filter does (jsonb equality).
    auto sent = tx.exec_params(
        "SELECT n.user_id, r.id, (n.metadata -> 'days_to_expire')::text "
        "FROM notifications_notification n "
        "JOIN allocations_allocationrequest r ON (n.metadata -> 'request_id') = to_jsonb(r.id) "
        "WHERE n.notification_type = $1 AND r.id = ANY ($2::bigint[])",
        std::string(notice_type(kind)), id_array(request_ids));
    std::map<std::pair<long long, long long>, std::vector<std::optional<std::string>>> by_pair;
    for (const auto &row : sent) {
        std::optional<std::string> days;
        if (!row[2].is_null())
            days = row[2].as<std::string>();
        by_pair[{row[0].as<long long>(), row[1].as<long long>()}].push_back(days);
    }
    for (auto &c : out) {
        auto it = by_pair.find({c.user_id, c.request_id});
        if (it != by_pair.end())
            c.sent = it->second;
    }
    return out;
}

NoticeExtras load_extras(pqxx::connection &conn, const std::vector<const Candidate *> &candidates,
                         Day today, const std::string &time_zone) {
    NoticeExtras extras;
    std::vector<long long> requests, teams;
    for (const Candidate *c : candidates) {
        requests.push_back(c->request_id);
        teams.push_back(c->team_id);
    }
    if (requests.empty())
        return extras;
    for (auto *v : {&requests, &teams}) {
        std::sort(v->begin(), v->end());
        v->erase(std::unique(v->begin(), v->end()), v->end());
    }
    pqxx::read_transaction tx(conn);
    auto allocs = tx.exec_params(
        "SELECT ra.request_id, c.name, ra.requested, ra.awarded, ra.final "
        "FROM allocations_resourceallocation ra "
        "JOIN allocations_cluster c ON c.id = ra.cluster_id "
        "WHERE ra.request_id = ANY ($1::bigint[]) ORDER BY ra.request_id, c.name, ra.id",
        id_array(requests));
    for (const auto &row : allocs) {
        AllocationInfo a;
        a.cluster = row[1].as<std::string>();
        a.requested = row[2].as<long long>();
        a.awarded = opt_int(row[3]);
        a.final = opt_int(row[4]);
        extras.allocations[row[0].as<long long>()].push_back(std::move(a));
    }
    auto reqs = tx.exec_params(
        "SELECT r.team_id, r.id, r.title, to_char(r.submitted AT TIME ZONE $3, "
        "'YYYY-MM-DD HH24:MI'), to_char(r.active, 'YYYY-MM-DD'), to_char(r.expire, 'YYYY-MM-DD'), "
        "r.status FROM allocations_allocationrequest r "
        "WHERE r.team_id = ANY ($1::bigint[]) AND (r.status = 'PD' OR (r.status = 'AP' AND "
        "(r.expire > $2::date OR r.expire IS NULL))) ORDER BY r.team_id, r.submitted, r.id",
        id_array(teams), day_text(today), time_zone);
    for (const auto &row : reqs) {
        TeamRequest t;
        t.id = row[1].as<long long>();
        t.title = row[2].as<std::string>();
        t.submitted = row[3].as<std::string>();
        t.active = day_field(row[4]);
        t.expire = day_field(row[5]);
        t.status = status_label(row[6].as<std::string>());
        extras.team_requests[row[0].as<long long>()].push_back(std::move(t));
    }
    return extras;
}

bool has_unsettled_allocation(const NoticeExtras &extras, long long request_id) {
    auto it = extras.allocations.find(request_id);
    if (it == extras.allocations.end())
        return false;
    for (const auto &a : it->second)
        if (!a.final)
            return true;
    return false;
}

TemplateData notice_context(const Candidate &c, const Decision &d, const NoticeExtras &extras) {
    // Names and titles are one-line fields: a line break in one (hostile or pasted) is shown
    // as a space, as in the headers.
    const auto line = [](const std::string &s) { return header_value(s); };
    TemplateData ctx;
    std::string display = line(c.first_name);
    if (!line(c.last_name).empty())
        display += (display.empty() ? "" : " ") + line(c.last_name);
    if (display.empty())
        display = line(c.username);
    ctx.set("user_name", line(c.username));
    ctx.set("user_first", line(c.first_name));
    ctx.set("user_last", line(c.last_name));
    ctx.set("user_display", display);
    ctx.set("req_id", std::to_string(c.request_id));
    ctx.set("req_title", line(c.title));
    ctx.set("req_team", line(c.team));
    ctx.set("req_submitted", c.submitted);
    ctx.set("req_active", day_or_na(c.active));
    ctx.set("req_expire", day_or_na(c.expire));
    if (c.kind == NoticeKind::upcoming)
        ctx.set("req_days_left", std::to_string(d.days_to_expire));

    TemplateData allocations(TemplateData::type::list);
    auto ait = extras.allocations.find(c.request_id);
    if (ait != extras.allocations.end()) {
        for (const auto &a : ait->second) {
            TemplateData item;
            item.set("alloc_cluster", line(a.cluster));
            item.set("alloc_requested", std::to_string(a.requested));
            item.set("alloc_awarded", std::to_string(a.awarded.value_or(0)));
            if (c.kind == NoticeKind::past) {
                item.set("alloc_final", std::to_string(a.final.value_or(0)));
                std::string percent = "N/A";
                if (a.awarded.value_or(0) > 0) {
                    char buf[32];
                    std::snprintf(buf, sizeof buf, "%.0f%%",
                                  100.0 * static_cast<double>(a.final.value_or(0)) /
                                      static_cast<double>(*a.awarded));
                    percent = buf;
                }
                item.set("alloc_percent", percent);
            }
            allocations.push_back(item);
        }
    }
    ctx.set("allocations", allocations);

    TemplateData upcoming(TemplateData::type::list);
    auto rit = extras.team_requests.find(c.team_id);
    if (rit != extras.team_requests.end()) {
        for (const auto &r : rit->second) {
            TemplateData item;
            item.set("id", std::to_string(r.id));
            item.set("title", line(r.title));
            item.set("submitted", r.submitted);
            item.set("active", day_or_na(r.active));
            item.set("expire", day_or_na(r.expire));
            item.set("status", r.status);
            upcoming.push_back(item);
        }
    }
    ctx.set("upcoming_requests", upcoming);
    return ctx;
}

RenderedNotice render_notice(Templates &templates, NoticeKind kind, TemplateData context) {
    const std::string base = notice_template(kind);
    RenderedNotice r;
    r.subject = header_value(templates.render(base + ".subject", context));
    context.set("subject", r.subject);
    r.text = templates.render(base + ".txt", context);
    r.html = templates.render(base + ".html", context);
    return r;
}

std::string notice_message_id(const Candidate &c, const Decision &d, const Config &config) {
    // The database a notice belongs to, so two installations never share an id.
    std::uint64_t h = 14695981039346656037ull;
    for (unsigned char ch :
         config.db_host + ":" + std::to_string(config.db_port) + "/" + config.db_name) {
        h ^= ch;
        h *= 1099511628211ull;
    }
    char hex[20];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
    std::string local =
        std::string("keystone.") + notice_type(c.kind) + ".r" + std::to_string(c.request_id);
    if (c.kind == NoticeKind::upcoming)
        local += ".d" + std::to_string(d.days_to_expire);
    local += ".u" + std::to_string(c.user_id) + "." + hex;
    const std::string &from = config.email_from_address;
    const std::size_t at = from.rfind('@');
    return make_message_id(local, at == std::string::npos ? "localhost" : from.substr(at + 1));
}

MailContent notice_mail(const Candidate &c, const Decision &d, const RenderedNotice &r,
                        const Config &config, std::time_t date) {
    MailContent m;
    m.from_address = config.email_from_address;
    m.to_address = c.email.value_or("");
    std::string name = c.first_name;
    if (!c.last_name.empty())
        name += (name.empty() ? "" : " ") + c.last_name;
    m.to_name = name;
    m.subject = r.subject;
    m.text = r.text;
    m.html = r.html;
    m.message_id = notice_message_id(c, d, config);
    m.date = date;
    return m;
}

} // namespace keystone
