// SPDX-License-Identifier: GPL-2.0-or-later
// Unit tests for expiration notices: Keystone's eligibility rules (the threshold timeline of
// spec §6.2, the past window of §6.3), preference parsing, jsonb comparison, retry backoff, the
// settlement decision, message composition (encoded words, folding, quoted-printable, header
// injection) and the templates (escaping, strictness, errors naming file and line, refusals).
#include "mail_message.hpp"
#include "notify.hpp"
#include "notify_run.hpp"
#include "templates.hpp"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

// Last: check.h defines a macro `fail` that breaks standard headers included after it.
#include <check.h>

using namespace keystone;

// ck_assert_str_eq keeps the pointer it is given: compare a std::string that outlives it.
#define CK_STREQ(expr, want)                                                                       \
    do {                                                                                           \
        const std::string got_ = (expr);                                                           \
        const std::string want_ = (want);                                                          \
        ck_assert_str_eq(got_.c_str(), want_.c_str());                                             \
    } while (0)

namespace {

const Day today = civil_day(2026, 11, 28);

// An old user in an old request, thresholds [30, 14]: every rule but the threshold holds.
Candidate upcoming_candidate(long long days_left) {
    Candidate c;
    c.kind = NoticeKind::upcoming;
    c.request_id = 7;
    c.user_id = 3;
    c.username = "alice";
    c.email = "alice@example.org";
    c.joined = today - 400;
    c.active = today - 300;
    c.expire = today + days_left;
    return c;
}

// Runs the rules day by day as the daily task would: days_left from `first` down to 1, the
// request (and the user's join date) moving relative to "today" as days pass. A notice that is
// due is recorded as Keystone's row would be (days_to_expire). Returns the days a notice went
// out on.
std::vector<long long> timeline(long long first, long long active_span, long long joined_ago,
                                const std::vector<long long> &thresholds = {30, 14}) {
    std::vector<long long> sent_on;
    std::vector<std::optional<std::string>> sent;
    for (long long d = first; d >= 1; --d) {
        const long long elapsed = first - d; // days since the first run
        Candidate c = upcoming_candidate(d);
        c.preference.thresholds = thresholds;
        c.active = *c.expire - active_span;
        c.joined = today - (joined_ago + elapsed);
        c.sent = sent;
        const Decision dec = decide_upcoming(c, today);
        if (dec.due) {
            ck_assert_int_eq(dec.days_to_expire, d);
            sent_on.push_back(d);
            sent.push_back(std::to_string(dec.days_to_expire));
        }
    }
    return sent_on;
}

std::string join(const std::vector<long long> &v) {
    std::string out;
    for (auto x : v)
        out += (out.empty() ? "" : ",") + std::to_string(x);
    return out;
}

// A scratch folder, removed at the end of the test.
struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/ks-notify-test.XXXXXX";
        ck_assert_ptr_nonnull(mkdtemp(tmpl));
        path = tmpl;
        chmod(path.c_str(), 0755);
    }
    ~TempDir() {
        const std::string cmd = "rm -rf '" + path + "'";
        if (std::system(cmd.c_str()) != 0) {
        }
    }
    std::string write(const std::string &name, const std::string &text, mode_t mode = 0644) const {
        const std::string file = path + "/" + name;
        std::ofstream(file) << text;
        chmod(file.c_str(), mode);
        return file;
    }
};

TemplateData sample_context(NoticeKind kind) {
    Candidate c = upcoming_candidate(30);
    c.kind = kind;
    c.first_name = "Zoë";
    c.last_name = "O'Brien <admin>";
    c.title = "<script>alert(1)</script> & \"quotes\"";
    c.team = "Lab One";
    c.team_id = 1;
    c.submitted = "2025-01-01 10:00";
    NoticeExtras extras;
    AllocationInfo a;
    a.cluster = "smp";
    a.requested = 1000;
    a.awarded = 800;
    a.final = 200;
    extras.allocations[7].push_back(a);
    TeamRequest t;
    t.id = 7;
    t.title = c.title;
    t.status = "Approved";
    extras.team_requests[1].push_back(t);
    Decision d;
    d.due = true;
    d.days_to_expire = 30;
    return notice_context(c, d, extras);
}

// A quoted-printable decoder for checking round trips (soft breaks removed, =XX decoded).
std::string qp_decode(const std::string &qp) {
    std::string out;
    for (std::size_t i = 0; i < qp.size(); ++i) {
        if (qp[i] == '=' && i + 2 < qp.size() && qp[i + 1] == '\r' && qp[i + 2] == '\n') {
            i += 2;
        } else if (qp[i] == '=' && i + 2 < qp.size()) {
            out += static_cast<char>(std::stoi(qp.substr(i + 1, 2), nullptr, 16));
            i += 2;
        } else {
            out += qp[i];
        }
    }
    return out;
}

std::string b64_decode(const std::string &in) {
    static const std::string alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    unsigned v = 0;
    int bits = 0;
    for (char c : in) {
        if (c == '=')
            break;
        v = (v << 6) | static_cast<unsigned>(alphabet.find(c));
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((v >> bits) & 0xff);
        }
    }
    return out;
}

// The text of a header made of encoded words, decoded (for round-trip checks).
std::string decode_words(const std::string &header_text) {
    std::string out;
    std::size_t pos = 0;
    while ((pos = header_text.find("=?UTF-8?B?", pos)) != std::string::npos) {
        const std::size_t end = header_text.find("?=", pos + 10);
        out += b64_decode(header_text.substr(pos + 10, end - pos - 10));
        pos = end + 2;
    }
    return out;
}

// Every line of `text` (CRLF-separated) is at most `max` characters long.
bool lines_within(const std::string &text, std::size_t max) {
    std::size_t start = 0;
    while (start < text.size()) {
        std::size_t end = text.find("\r\n", start);
        if (end == std::string::npos)
            end = text.size();
        if (end - start > max)
            return false;
        start = end + 2;
    }
    return true;
}

} // namespace

// ---- dates ---------------------------------------------------------------------------------

START_TEST(test_days) {
    ck_assert_int_eq(civil_day(1970, 1, 1), 0);
    ck_assert_int_eq(civil_day(2000, 3, 1) - civil_day(2000, 2, 28), 2); // leap year
    ck_assert_int_eq(civil_day(2100, 3, 1) - civil_day(2100, 2, 28), 1); // not a leap year
    CK_STREQ(day_text(civil_day(2026, 11, 28)), "2026-11-28");
    CK_STREQ(day_text(civil_day(1969, 12, 31)), "1969-12-31");
    ck_assert(parse_day("2026-11-28") == civil_day(2026, 11, 28));
    for (const char *bad :
         {"2026-02-30", "2026-13-01", "2026-1-1", "28.11.2026", "", "2026-11-28x"})
        ck_assert_msg(!parse_day(bad), "%s parsed", bad);
    setenv("TZ", "Etc/GMT-2", 1); // UTC+2
    tzset();
    // 2026-11-27 23:00 UTC is already the 28th at UTC+2.
    ck_assert_int_eq(
        local_day(static_cast<std::time_t>(civil_day(2026, 11, 27)) * 86400 + 23 * 3600),
        civil_day(2026, 11, 28));
    ck_assert_int_eq(local_midnight(civil_day(2026, 11, 28)),
                     static_cast<std::time_t>(civil_day(2026, 11, 28)) * 86400 - 2 * 3600);
    setenv("TZ", "UTC", 1);
    tzset();
}
END_TEST

// ---- preferences and comparisons -------------------------------------------------------------

START_TEST(test_preferences) {
    Preference p = parse_preference(std::nullopt, std::nullopt);
    ck_assert(!p.from_row);
    ck_assert(p.thresholds == (std::vector<long long>{30, 14}));
    ck_assert(p.notify_on_expiration);

    p = parse_preference(std::string("[]"), false);
    ck_assert(p.from_row && p.thresholds.empty() && !p.notify_on_expiration);

    // Keystone does not validate the list: whole numbers are used, the rest ignored and listed.
    p = parse_preference(std::string("[7, \"x\", 30.0, 2.5, true, 60]"), true);
    ck_assert(p.thresholds == (std::vector<long long>{7, 30, 60}));
    ck_assert_int_eq(p.problems.size(), 3);
    ck_assert(p.problems[0].find("\"x\"") != std::string::npos);

    p = parse_preference(std::string("{\"a\": 1}"), true);
    ck_assert(p.thresholds.empty());
    ck_assert_int_eq(p.problems.size(), 1);
}
END_TEST

START_TEST(test_threshold) {
    const std::vector<long long> t = {30, 14};
    ck_assert(!upcoming_threshold(t, 31));
    ck_assert(upcoming_threshold(t, 30) == 30);
    ck_assert(upcoming_threshold(t, 20) == 30);
    ck_assert(upcoming_threshold(t, 15) == 30);
    ck_assert(upcoming_threshold(t, 14) == 14);
    ck_assert(upcoming_threshold(t, 1) == 14);
    ck_assert(upcoming_threshold({14, 30, 7}, 10) == 14); // unsorted lists work
    ck_assert(!upcoming_threshold({}, 1));
}
END_TEST

START_TEST(test_jsonb_at_most) {
    ck_assert(jsonb_at_most(std::string("30"), 30));
    ck_assert(jsonb_at_most(std::string("14"), 30));
    ck_assert(!jsonb_at_most(std::string("31"), 30));
    ck_assert(!jsonb_at_most(std::string("14.5"), 14));
    ck_assert(jsonb_at_most(std::string("14.0"), 14));
    // jsonb orders Object > Array > Boolean > Number > String > Null.
    ck_assert(jsonb_at_most(std::string("\"99\""), 30));
    ck_assert(jsonb_at_most(std::string("null"), 30));
    ck_assert(!jsonb_at_most(std::string("true"), 30));
    ck_assert(!jsonb_at_most(std::string("[1]"), 30));
    ck_assert(!jsonb_at_most(std::string("{}"), 30));
    ck_assert(!jsonb_at_most(std::nullopt, 30)); // the key is missing: SQL NULL
}
END_TEST

// ---- the rules -------------------------------------------------------------------------------

START_TEST(test_upcoming_timeline) {
    // Spec §6.2 with [30, 14], an old user and an old request: d = 30 and d = 14, nothing else.
    CK_STREQ(join(timeline(31, 400, 400)), "30,14");
    // First seen at d = 20: one at 20, a second at 14.
    CK_STREQ(join(timeline(20, 400, 400)), "20,14");
    // A request active for only 30 days in total: skipped at 30 (rule 4), notified at 14.
    CK_STREQ(join(timeline(31, 30, 400)), "14");
    // A user who joined 5 days before the first run: too new at 30, notified at 14 (rule 3).
    CK_STREQ(join(timeline(31, 400, 5)), "14");
    // Opted out of upcoming notices: never.
    CK_STREQ(join(timeline(31, 400, 400, {})), "");
    // Other thresholds: every one in turn.
    CK_STREQ(join(timeline(31, 400, 400, {7, 1, 21})), "21,7,1");
}
END_TEST

START_TEST(test_upcoming_rules) {
    Candidate c = upcoming_candidate(30);
    Decision d = decide_upcoming(c, today);
    ck_assert(d.due);
    ck_assert_int_eq(d.days_to_expire, 30);
    ck_assert_int_eq(d.threshold, 30);

    c = upcoming_candidate(30);
    c.active.reset();
    ck_assert(!decide_upcoming(c, today).due);
    c = upcoming_candidate(30);
    c.expire.reset();
    ck_assert(!decide_upcoming(c, today).due);
    c = upcoming_candidate(0); // expires today: a past notice, not an upcoming one
    ck_assert(!decide_upcoming(c, today).due);

    // Joined exactly `threshold` days ago is not enough: date_joined < today - threshold.
    c = upcoming_candidate(30);
    c.joined = today - 30;
    ck_assert(!decide_upcoming(c, today).due);
    c.joined = today - 31;
    ck_assert(decide_upcoming(c, today).due);
    c.active = today - 30;
    d = decide_upcoming(c, today);
    ck_assert(!d.due);
    ck_assert_msg(d.reason.find("started on") != std::string::npos, "%s", d.reason.c_str());

    // A Keystone row from before the switch suppresses the notice for the whole threshold.
    c = upcoming_candidate(25);
    c.sent = {std::string("30")};
    d = decide_upcoming(c, today);
    ck_assert(!d.due);
    ck_assert_msg(d.reason.find("already notified") != std::string::npos, "%s", d.reason.c_str());
    // ... but not for the next threshold.
    c = upcoming_candidate(14);
    c.sent = {std::string("30")};
    ck_assert(decide_upcoming(c, today).due);
    // A row without days_to_expire matches nothing (Keystone's filter is NULL there).
    c = upcoming_candidate(25);
    c.sent = {std::nullopt};
    ck_assert(decide_upcoming(c, today).due);
}
END_TEST

START_TEST(test_past_rules) {
    Candidate c = upcoming_candidate(0);
    c.kind = NoticeKind::past;
    // Within three days (today, yesterday, the day before), and not after.
    for (long ago = -1; ago <= 4; ++ago) {
        c.expire = today - ago;
        const bool want = ago >= 0 && ago <= 2;
        ck_assert_msg(decide_past(c, today).due == want, "expired %ld days ago", ago);
    }
    c.expire = today;
    c.preference.notify_on_expiration = false;
    ck_assert(!decide_past(c, today).due);
    c.preference.notify_on_expiration = true;
    c.sent = {std::nullopt};
    ck_assert(!decide_past(c, today).due);
    // No join-date or start-date rule for past notices.
    c.sent.clear();
    c.joined = today;
    c.active.reset();
    ck_assert(decide_past(c, today).due);
    ck_assert(decide(c, today).due);
}
END_TEST

START_TEST(test_metadata) {
    CK_STREQ(notice_metadata(NoticeKind::upcoming, 42, 30),
             "{\"request_id\": 42, \"days_to_expire\": 30}");
    CK_STREQ(notice_metadata(NoticeKind::past, 42, 0), "{\"request_id\": 42}");
    CK_STREQ(notice_type(NoticeKind::upcoming), "RE");
    CK_STREQ(notice_type(NoticeKind::past), "RD");
}
END_TEST

START_TEST(test_retry_and_settlement) {
    ck_assert_int_eq(notice_retry_delay(1).count(), 15);
    ck_assert_int_eq(notice_retry_delay(2).count(), 30);
    ck_assert_int_eq(notice_retry_delay(5).count(), 240);
    ck_assert_int_eq(notice_retry_delay(12).count(), 6 * 3600);
    ck_assert_int_eq(notice_retry_delay(1000).count(), 6 * 3600);
    ck_assert(notice_in_backoff(200, 100, true));
    ck_assert(!notice_in_backoff(200, 100, false)); // a run by hand tries at once
    ck_assert(!notice_in_backoff(100, 100, true));

    ck_assert(settlement_state(false, true, false) == Settlement::absent);
    ck_assert(settlement_state(true, false, false) == Settlement::off);
    ck_assert(settlement_state(true, true, true) == Settlement::done);
    ck_assert(settlement_state(true, true, false) == Settlement::pending);
}
END_TEST

// ---- message composition ---------------------------------------------------------------------

START_TEST(test_addresses) {
    for (const char *good : {"alice@example.org", "a.b+c@x-y.example.org", "o'brien@example.org",
                             "x@[127.0.0.1]", "x@[IPv6:::1]"})
        ck_assert_msg(valid_address(good), "%s refused", good);
    for (const char *bad :
         {"", "alice", "@example.org", "alice@", "a b@example.org",
          "alice@example.org\r\nBcc: x@y.z", "alice@exa mple.org", "<alice@example.org>",
          "alice@example..org", ".a@example.org", "zoë@example.org", "a@b@c",
          "\"quoted\"@example.org", "alice@example.org\n"})
        ck_assert_msg(!valid_address(bad), "%s accepted", bad);
    ck_assert(!valid_address(std::string(65, 'a') + "@example.org"));
}
END_TEST

START_TEST(test_headers) {
    CK_STREQ(header_value("  a\r\nBcc: x\t\x01z \x7f "), "a Bcc: x z");
    CK_STREQ(unstructured_header("Subject", "Hello"), "Subject: Hello\r\n");
    // A CR/LF in a value never starts a header of its own.
    CK_STREQ(unstructured_header("Subject", "Hi\r\nBcc: victim@example.org"),
             "Subject: Hi Bcc: victim@example.org\r\n");
    // Long ASCII text is folded at spaces, every line within 78 characters.
    std::string words;
    for (int i = 0; i < 40; ++i)
        words += "word" + std::to_string(i) + " ";
    const std::string folded = unstructured_header("Subject", words);
    ck_assert(lines_within(folded, 78));
    ck_assert(folded.find("\r\n ") != std::string::npos);
    // Non-ASCII: encoded words, each line within 76, never a raw byte above 127, decodes back.
    const std::string text = "Grüße aus Zürich — 東京の割り当て #42 " + std::string(60, 'x');
    const std::string encoded = unstructured_header("Subject", text);
    ck_assert(lines_within(encoded, 76));
    for (unsigned char ch : encoded)
        ck_assert_int_lt(ch, 128);
    CK_STREQ(decode_words(encoded), text);
    // Text that looks like an encoded word is encoded itself, so it reads back as written.
    ck_assert(unstructured_header("Subject", "=?UTF-8?B?SGk=?=").find("=?UTF-8?B?PT9") !=
              std::string::npos);

    CK_STREQ(address_header("To", "", "a@example.org"), "To: a@example.org\r\n");
    CK_STREQ(address_header("To", "Bob \"B\" Smith\\", "b@example.org"),
             "To: \"Bob \\\"B\\\" Smith\\\\\" <b@example.org>\r\n");
    CK_STREQ(address_header("To", "Evil\r\nBcc: v@example.org", "b@example.org"),
             "To: \"Evil Bcc: v@example.org\" <b@example.org>\r\n");
    const std::string zoe = address_header("To", "Zoë Müller", "z@example.org");
    ck_assert(zoe.find("=?UTF-8?B?") == 4);
    CK_STREQ(decode_words(zoe), "Zoë Müller");
    ck_assert(zoe.find("<z@example.org>\r\n") != std::string::npos);
    ck_assert_msg(zoe.find("\r\n", zoe.find("\r\n") + 1) == zoe.size() - 2, "%s", zoe.c_str());
    bool threw = false;
    try {
        address_header("To", "x", "x@example.org\r\nBcc: y@example.org");
    } catch (const MailFormatError &) {
        threw = true;
    }
    ck_assert(threw);
}
END_TEST

START_TEST(test_quoted_printable) {
    CK_STREQ(quoted_printable("a=b"), "a=3Db\r\n");
    CK_STREQ(quoted_printable("trailing \nspace"), "trailing=20\r\nspace\r\n");
    CK_STREQ(quoted_printable("ü"), "=C3=BC\r\n");
    CK_STREQ(quoted_printable(""), "\r\n");
    // Line ends: CRLF, LF and a lone CR all become CRLF.
    CK_STREQ(quoted_printable("a\r\nb\nc\rd"), "a\r\nb\r\nc\r\nd\r\n");
    // Long lines get soft breaks; every line within 76; decoding gives the text back.
    std::string long_text;
    for (int i = 0; i < 50; ++i)
        long_text += "Grüße=" + std::to_string(i) + " ";
    long_text += "\nend";
    const std::string qp = quoted_printable(long_text);
    ck_assert(lines_within(qp, 76));
    std::string crlf = long_text;
    crlf.replace(crlf.find('\n'), 1, "\r\n");
    CK_STREQ(qp_decode(qp), crlf + "\r\n");
}
END_TEST

START_TEST(test_message) {
    setenv("TZ", "UTC", 1);
    tzset();
    CK_STREQ(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
    setenv("TZ", "Etc/GMT+5", 1); // UTC-5
    tzset();
    CK_STREQ(rfc5322_date(86400 * 365), "Thu, 31 Dec 1970 19:00:00 -0500");
    setenv("TZ", "UTC", 1);
    tzset();

    CK_STREQ(html_escape("<a href=\"x\">'&'</a>"),
             "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;");
    CK_STREQ(make_message_id("keystone.RE.r1 <x>", "example.org"),
             "<keystone.RE.r1..x.@example.org>");

    MailContent m;
    m.from_address = "noreply@keystone.bot";
    m.to_address = "alice@example.org";
    m.to_name = "Alice";
    m.subject = "Your HPC allocation #1 is expiring soon";
    m.text = "plain =\n.dot line\n";
    m.html = "<p>html</p>";
    m.message_id = make_message_id("keystone.RE.r1.d30.u3", "keystone.bot");
    m.date = 0;
    const std::string msg = build_message(m);
    const std::size_t body = msg.find("\r\n\r\n");
    const std::string head = msg.substr(0, body + 2);
    for (const char *h : {"From: noreply@keystone.bot\r\n", "To: \"Alice\" <alice@example.org>\r\n",
                          "Subject: Your HPC allocation #1 is expiring soon\r\n",
                          "Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n",
                          "Message-ID: <keystone.RE.r1.d30.u3@keystone.bot>\r\n",
                          "MIME-Version: 1.0\r\n", "Auto-Submitted: auto-generated\r\n",
                          "Content-Type: multipart/alternative; boundary=\"=_keystone_"})
        ck_assert_msg(head.find(h) != std::string::npos, "missing %s in\n%s", h, head.c_str());
    // No bare LF anywhere: every line ends with CRLF.
    for (std::size_t i = 0; i < msg.size(); ++i)
        if (msg[i] == '\n')
            ck_assert_msg(i > 0 && msg[i - 1] == '\r', "bare LF at %zu", i);
    ck_assert(msg.find("Content-Type: text/plain; charset=utf-8") <
              msg.find("Content-Type: text/html"));
    ck_assert(msg.find("plain =3D\r\n.dot line\r\n") != std::string::npos);
    ck_assert(msg.size() >= 2 && msg.compare(msg.size() - 4, 4, "--\r\n") == 0);
    // Same notice, same id and boundary: a resend after a crash is recognisably the same mail.
    ck_assert(build_message(m) == msg);
}
END_TEST

// ---- templates -------------------------------------------------------------------------------

START_TEST(test_builtin_templates) {
    Templates t("");
    for (NoticeKind kind : {NoticeKind::upcoming, NoticeKind::past}) {
        RenderedNotice r = render_notice(t, kind, sample_context(kind));
        if (kind == NoticeKind::upcoming)
            CK_STREQ(r.subject, "Your HPC allocation #7 is expiring soon");
        else
            CK_STREQ(r.subject, "Your HPC allocation #7 has expired");
        // Values reach the text as they are and the HTML escaped, never as markup.
        ck_assert_msg(r.text.find("<script>alert(1)</script> & \"quotes\"") != std::string::npos,
                      "%s", r.text.c_str());
        ck_assert(r.html.find("<script>") == std::string::npos);
        ck_assert(r.html.find("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;") !=
                  std::string::npos);
        ck_assert(r.html.find("O&#x27;Brien &lt;admin&gt;") != std::string::npos);
        ck_assert(r.text.find("Zoë O'Brien <admin>") != std::string::npos);
        ck_assert(r.text.find("smp") != std::string::npos);
        ck_assert(r.html.find("<title>" + r.subject + "</title>") != std::string::npos);
        if (kind == NoticeKind::past)
            ck_assert_msg(r.text.find("200 of 800 SUs used (25%)") != std::string::npos, "%s",
                          r.text.c_str());
        CK_STREQ(t.origin(std::string(notice_template(kind)) + ".html"),
                 std::string("built-in ") + notice_template(kind) + ".html");
    }
}
END_TEST

START_TEST(test_template_overrides) {
    TempDir dir;
    // Triple mustaches and {{&x}} do not get around the escaping in an HTML template.
    const std::string file =
        dir.write("upcoming_expiration.html.mustache",
                  "<p>{{{req_title}}}|{{&req_title}}|{{req_title}}</p>\n{{> footer}}");
    dir.write("footer.html.mustache", "<i>{{req_team}}</i>\n");
    Templates t(dir.path);
    const std::string html =
        t.render("upcoming_expiration.html", sample_context(NoticeKind::upcoming));
    const std::string esc = "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;";
    CK_STREQ(html, "<p>" + esc + "|" + esc + "|" + esc + "</p>\n<i>Lab One</i>\n");
    CK_STREQ(t.origin("upcoming_expiration.html"), file);
    // Files not overridden still come built in.
    CK_STREQ(t.origin("upcoming_expiration.txt"), "built-in upcoming_expiration.txt");
    // A Keystone (Jinja) template beside them is reported, not used.
    dir.write("past_expiration.html", "{% block main %}{% endblock %}");
    ck_assert_int_eq(t.foreign_templates().size(), 1);
}
END_TEST

namespace {
std::string render_error(const std::string &dir, const std::string &name) {
    Templates t(dir);
    try {
        t.render(name, sample_context(NoticeKind::upcoming));
    } catch (const TemplateError &e) {
        return e.what();
    }
    return "(no error)";
}
} // namespace

START_TEST(test_template_errors) {
    TempDir dir;
    // An unknown name: error with file and line (Keystone's StrictUndefined).
    std::string f =
        dir.write("upcoming_expiration.txt.mustache", "Dear {{user_display}},\n\n{{req_titel}}\n");
    CK_STREQ(render_error(dir.path, "upcoming_expiration.txt"),
             f + ":3: undefined variable 'req_titel'");
    // A section that is never closed: the line where it opens.
    f = dir.write("upcoming_expiration.txt.mustache",
                  "a\nb\n{{#allocations}}\n{{alloc_cluster}}\n");
    CK_STREQ(render_error(dir.path, "upcoming_expiration.txt"),
             f + ":3: Unclosed section \"allocations\"");
    // An error inside a partial names the partial's file.
    dir.write("upcoming_expiration.txt.mustache", "x\n{{> footer}}\n");
    const std::string footer = dir.write("footer.txt.mustache", "ok\n{{nope}}\n");
    CK_STREQ(render_error(dir.path, "upcoming_expiration.txt"),
             footer + ":2: undefined variable 'nope'");
    dir.write("footer.txt.mustache", "{{/x}}\n");
    ck_assert(
        render_error(dir.path, "upcoming_expiration.txt").find(footer + ":1: Unopened section") ==
        0);
    dir.write("upcoming_expiration.txt.mustache", "x\n{{> missing}}\n");
    ck_assert(render_error(dir.path, "upcoming_expiration.txt")
                  .find("no template missing.txt.mustache") != std::string::npos);
    // Empty output is an error, as in Keystone.
    f = dir.write("upcoming_expiration.txt.mustache",
                  "{{#upcoming_requests}}{{/upcoming_requests}}\n");
    ck_assert_int_eq(render_error(dir.path, "upcoming_expiration.txt")
                         .find(f + ": the template renders to nothing"),
                     0);
    // A world-writable template is refused; so is a world-writable folder (unless sticky).
    f = dir.write("upcoming_expiration.txt.mustache", "fine {{req_id}}\n", 0666);
    ck_assert(render_error(dir.path, "upcoming_expiration.txt")
                  .find(f + ": refused: the file is writable by everyone") == 0);
    chmod(f.c_str(), 0644);
    CK_STREQ(
        Templates(dir.path).render("upcoming_expiration.txt", sample_context(NoticeKind::upcoming)),
        "fine 7\n");
    chmod(dir.path.c_str(), 0777);
    ck_assert(render_error(dir.path, "upcoming_expiration.txt").find("is writable by everyone") !=
              std::string::npos);
    chmod(dir.path.c_str(), 01777);
    CK_STREQ(render_error(dir.path, "upcoming_expiration.txt"), "(no error)");
    chmod(dir.path.c_str(), 0755);
    // Unknown template names.
    ck_assert(render_error("", "nothing.txt").find("no template nothing.txt.mustache built in") ==
              0);
}
END_TEST

int main() {
    setenv("TZ", "UTC", 1);
    tzset();
    Suite *s = suite_create("notify");
    TCase *rules = tcase_create("rules");
    tcase_add_test(rules, test_days);
    tcase_add_test(rules, test_preferences);
    tcase_add_test(rules, test_threshold);
    tcase_add_test(rules, test_jsonb_at_most);
    tcase_add_test(rules, test_upcoming_timeline);
    tcase_add_test(rules, test_upcoming_rules);
    tcase_add_test(rules, test_past_rules);
    tcase_add_test(rules, test_metadata);
    tcase_add_test(rules, test_retry_and_settlement);
    suite_add_tcase(s, rules);
    TCase *mail = tcase_create("mail");
    tcase_add_test(mail, test_addresses);
    tcase_add_test(mail, test_headers);
    tcase_add_test(mail, test_quoted_printable);
    tcase_add_test(mail, test_message);
    suite_add_tcase(s, mail);
    TCase *templates = tcase_create("templates");
    tcase_add_test(templates, test_builtin_templates);
    tcase_add_test(templates, test_template_overrides);
    tcase_add_test(templates, test_template_errors);
    suite_add_tcase(s, templates);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
