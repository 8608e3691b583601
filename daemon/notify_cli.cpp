// SPDX-License-Identifier: GPL-2.0-or-later
// Implementation of keystonectl notify (see notify_cli.hpp).
#include "notify_cli.hpp"

#include "db.hpp"
#include "notify.hpp"
#include "util.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <getopt.h>
#include <string>
#include <vector>

namespace keystone {

namespace {

constexpr int exit_usage = 2;

const char preview_help[] =
    "Usage: keystonectl notify preview [--request ID] [--user NAME] [--raw]\n"
    "Renders the expiration notices that are due today, as notify_upcoming_expirations and\n"
    "notify_past_expirations would send them now, with the templates in effect\n"
    "(EMAIL_TEMPLATE_DIR, else the built-in ones). Nothing is sent or recorded.\n\n"
    "  --request ID  only this allocation request; when no notice of it is due today, it is\n"
    "                rendered anyway for each active member, with the reason it is not due\n"
    "  --user NAME   only this user (user name)\n"
    "  --raw         print each message exactly as it would be sent (RFC 5322, CRLF line\n"
    "                ends) instead of its headers and its decoded text and HTML parts\n\n"
    "Exit status: 0 rendered (or nothing due), 1 a template or database error, 2 usage.\n";

const char notify_help[] =
    "Usage: keystonectl notify preview [--request ID] [--user NAME] [--raw]\n"
    "preview renders the expiration notices due today without sending them\n"
    "(keystonectl notify preview --help).\n";

[[noreturn]] void usage_error(const std::string &msg) {
    std::fprintf(stderr, "keystonectl: %s (see keystonectl notify preview --help)\n", msg.c_str());
    std::exit(exit_usage);
}

// Why a request given with --request has no candidate at all, for people.
std::string why_no_candidate(pqxx::connection &conn, long long request_id,
                             const std::optional<std::string> &user) {
    pqxx::read_transaction tx(conn);
    auto rows = tx.exec_params(
        "SELECT r.status, t.is_active, r.expire IS NULL, "
        "       (SELECT count(*) FROM users_membership m JOIN users_user u ON u.id = m.user_id "
        "        WHERE m.team_id = t.id AND u.is_active AND ($2::text IS NULL OR u.username = $2)) "
        "FROM allocations_allocationrequest r JOIN users_team t ON t.id = r.team_id "
        "WHERE r.id = $1",
        request_id, user);
    const std::string req = "request " + std::to_string(request_id);
    if (rows.empty())
        return req + " does not exist";
    const auto &r = rows[0];
    if (r[0].as<std::string>() != "AP")
        return req + " is not approved (status " + r[0].as<std::string>() + ")";
    if (!r[1].as<bool>())
        return req + " belongs to an inactive team";
    if (r[2].as<bool>())
        return req + " has no expiry date";
    if (r[3].as<long long>() == 0)
        return user ? "user " + *user + " is not an active member of the team of " + req
                    : req + ": its team has no active members";
    return req + ": no notice";
}

void print_readable(const Candidate &c, const MailContent &m) {
    std::printf("From: %s\n", m.from_address.c_str());
    if (m.to_address.empty())
        std::printf("To: (no e-mail address: the task skips this user)\n");
    else if (m.to_name.empty())
        std::printf("To: %s\n", m.to_address.c_str());
    else
        std::printf("To: %s <%s>\n", header_value(m.to_name).c_str(), m.to_address.c_str());
    std::printf("Subject: %s\n", m.subject.c_str());
    std::printf("Date: %s\n", rfc5322_date(m.date).c_str());
    std::printf("Message-ID: %s\n", m.message_id.c_str());
    std::printf("\n--- text/plain ---\n%s", m.text.c_str());
    if (!m.text.empty() && m.text.back() != '\n')
        std::printf("\n");
    std::printf("--- text/html ---\n%s", m.html.c_str());
    if (!m.html.empty() && m.html.back() != '\n')
        std::printf("\n");
    (void)c;
}

int preview(int argc, char **argv, const std::function<Config()> &load_config) {
    static const struct option longopts[] = {{"request", required_argument, nullptr, 'r'},
                                             {"user", required_argument, nullptr, 'u'},
                                             {"raw", no_argument, nullptr, 'R'},
                                             {"help", no_argument, nullptr, 'h'},
                                             {nullptr, 0, nullptr, 0}};
    std::optional<long long> request;
    std::optional<std::string> user;
    bool raw = false;
    optind = 0; // glibc: re-initialise getopt after the global options
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, nullptr)) != -1) {
        switch (ch) {
        case 'r': {
            char *end = nullptr;
            const long long v = std::strtoll(optarg, &end, 10);
            if (!*optarg || *end || v < 1)
                usage_error(std::string("--request: not a request id: '") + optarg + "'");
            request = v;
            break;
        }
        case 'u':
            user = optarg;
            break;
        case 'R':
            raw = true;
            break;
        case 'h':
            std::fputs(preview_help, stdout);
            return EXIT_SUCCESS;
        default:
            return exit_usage;
        }
    }
    if (optind != argc)
        usage_error(std::string("notify preview: unexpected argument '") + argv[optind] + "'");

    const Config config = load_config();
    Database db(db_conninfo(config), "keystonectl");
    int status = EXIT_SUCCESS;
    try {
        pqxx::connection &conn = db.conn();
        const std::time_t now = std::time(nullptr);
        const Day today = local_day(now);
        std::vector<Candidate> all;
        for (NoticeKind kind : {NoticeKind::upcoming, NoticeKind::past}) {
            CandidateFilter filter;
            filter.request_id = request;
            filter.username = user;
            filter.any_date = request.has_value();
            for (auto &c : load_candidates(conn, kind, today, config.timezone, filter))
                all.push_back(std::move(c));
        }
        std::vector<std::pair<const Candidate *, Decision>> shown;
        for (const auto &c : all) {
            Decision d = decide(c, today);
            if (d.due || request)
                shown.emplace_back(&c, d);
        }
        if (shown.empty()) {
            if (request)
                std::printf("# no notice: %s\n", why_no_candidate(conn, *request, user).c_str());
            else
                std::printf("# no notice is due today (%s)%s\n", day_text(today).c_str(),
                            user ? (" for user " + *user).c_str() : "");
            return EXIT_SUCCESS;
        }
        std::vector<const Candidate *> candidates;
        for (const auto &s : shown)
            candidates.push_back(s.first);
        const NoticeExtras extras = load_extras(conn, candidates, today, config.timezone);
        Templates templates(config.email_template_dir);
        for (const auto &file : templates.foreign_templates())
            std::fprintf(stderr,
                         "keystonectl: warning: %s is a Keystone (Jinja) template, which "
                         "keystoned does not read: write %s.mustache\n",
                         file.c_str(), file.c_str());
        for (std::size_t i = 0; i < shown.size(); ++i) {
            const Candidate *const c = shown[i].first;
            const Decision &d = shown[i].second;
            std::string what = std::string(notice_type(c->kind)) + " to " + c->username + " <" +
                               c->email.value_or("no e-mail address") + "> for request #" +
                               std::to_string(c->request_id);
            if (c->kind == NoticeKind::upcoming && d.days_to_expire > 0)
                what += " (days_to_expire " + std::to_string(d.days_to_expire) + ")";
            if (!raw)
                std::printf("%s# %s: %s\n", i ? "\n" : "", what.c_str(),
                            d.due ? "due today" : ("not due today: " + d.reason).c_str());
            RenderedNotice r;
            try {
                r = render_notice(templates, c->kind, notice_context(*c, d, extras));
            } catch (const TemplateError &e) {
                std::fprintf(stderr, "keystonectl: error: %s: %s\n", what.c_str(), e.what());
                status = EXIT_FAILURE;
                continue;
            }
            MailContent m = notice_mail(*c, d, r, config, now);
            if (!raw) {
                print_readable(*c, m);
                continue;
            }
            try {
                const std::string message = build_message(m);
                std::fwrite(message.data(), 1, message.size(), stdout);
            } catch (const MailFormatError &e) {
                std::fprintf(stderr, "keystonectl: %s: %s: the task skips this user\n",
                             what.c_str(), e.what());
            }
        }
    } catch (const std::exception &e) {
        std::fprintf(stderr, "keystonectl: error: %s\n", one_line(e).c_str());
        return EXIT_FAILURE;
    }
    return status;
}

} // namespace

int notify_command(int argc, char **argv, const std::function<Config()> &load_config) {
    if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0) {
        std::fputs(notify_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? exit_usage : EXIT_SUCCESS;
    }
    const std::string sub = argv[1];
    if (sub == "preview")
        return preview(argc - 1, argv + 1, load_config);
    usage_error("notify: unknown subcommand '" + sub + "'");
}

} // namespace keystone
