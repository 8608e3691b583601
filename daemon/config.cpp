// SPDX-License-Identifier: GPL-2.0-or-later
// Parsing and validation of keystoned.conf and its environment overrides (see config.hpp).
#include "config.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <cstdlib>
#include <cstdint>
#include <cstdio>
#include <fcntl.h>
#include <limits>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

extern char **environ;

namespace keystone {

namespace {

constexpr const char *masked_value = "********";
constexpr const char *zoneinfo_dir = "/usr/share/zoneinfo";
constexpr const char *schedule_prefix = "KEYSTONED_SCHEDULE_";
constexpr const char *environment_file = "environment";
// A settings file is a few kB; anything this large is the wrong file.
constexpr off_t max_file_size = 1 << 20;

// A value that cannot be used. The caller prefixes where it came from and the setting name, and
// appends the value itself when `echo_value` is set and the setting is not secret.
class BadValue : public std::runtime_error {
public:
    explicit BadValue(const std::string &detail, bool echo_value = true)
        : std::runtime_error(detail), m_echo_value(echo_value) {}
    bool echo_value() const { return m_echo_value; }

private:
    bool m_echo_value;
};

// Closes a file descriptor when it goes out of scope.
class FileDescriptor {
public:
    explicit FileDescriptor(int fd) : m_fd(fd) {}
    ~FileDescriptor() {
        if (m_fd >= 0)
            ::close(m_fd);
    }
    FileDescriptor(const FileDescriptor &) = delete;
    FileDescriptor &operator=(const FileDescriptor &) = delete;
    int get() const { return m_fd; }

private:
    int m_fd;
};

std::string errno_text(int error) {
    return std::generic_category().message(error);
}

bool is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}
bool is_upper(char c) {
    return c >= 'A' && c <= 'Z';
}
bool is_lower(char c) {
    return c >= 'a' && c <= 'z';
}
bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
bool is_alpha(char c) {
    return is_upper(c) || is_lower(c);
}

std::string_view trim_left(std::string_view s) {
    while (!s.empty() && is_blank(s.front()))
        s.remove_prefix(1);
    return s;
}

std::string_view trim_right(std::string_view s) {
    while (!s.empty() && is_blank(s.back()))
        s.remove_suffix(1);
    return s;
}

std::string_view trim(std::string_view s) {
    return trim_right(trim_left(s));
}

std::string to_lower(std::string_view s) {
    std::string out(s);
    for (char &c : out)
        if (is_upper(c))
            c = static_cast<char>(c - 'A' + 'a');
    return out;
}

std::string to_upper(std::string_view s) {
    std::string out(s);
    for (char &c : out)
        if (is_lower(c))
            c = static_cast<char>(c - 'a' + 'A');
    return out;
}

bool starts_with(std::string_view s, std::string_view prefix) {
    return s.substr(0, prefix.size()) == prefix;
}

// The value in single quotes for a message, control characters shown as \xNN so that a stray CR
// or escape sequence cannot garble the terminal.
std::string printable(std::string_view value) {
    std::string out = "'";
    for (char c : value) {
        auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7f) {
            char hex[8];
            std::snprintf(hex, sizeof hex, "\\x%02x", byte);
            out += hex;
        } else {
            out += c;
        }
    }
    return out + "'";
}

bool valid_setting_name(std::string_view name) {
    if (name.empty() || !(is_upper(name[0]) || name[0] == '_'))
        return false;
    for (char c : name)
        if (!(is_upper(c) || is_digit(c) || c == '_'))
            return false;
    return true;
}

// ---- value types -------------------------------------------------------------------------

// django-environ reads every word outside its "true" list as False, so a typo silently turns
// StartTLS off. Here anything outside the two lists is an error.
bool parse_bool(const std::string &value) {
    const std::string word = to_lower(value);
    for (const char *yes : {"true", "yes", "on", "1", "y", "ok"})
        if (word == yes)
            return true;
    for (const char *no : {"false", "no", "off", "0", "n"})
        if (word == no)
            return false;
    throw BadValue("not a boolean (true or false)");
}

enum class IntParse { ok, junk, overflow };

// A decimal integer: digits only, with one leading + or - when `allow_sign` is set.
IntParse parse_decimal(std::string_view s, bool allow_sign, std::int64_t &out) {
    bool negative = false;
    if (allow_sign && !s.empty() && (s[0] == '+' || s[0] == '-')) {
        negative = s[0] == '-';
        s.remove_prefix(1);
    }
    if (s.empty())
        return IntParse::junk;
    for (char c : s)
        if (!is_digit(c))
            return IntParse::junk;
    const std::uint64_t max_positive = std::numeric_limits<std::int64_t>::max();
    const std::uint64_t limit = negative ? max_positive + 1 : max_positive;
    std::uint64_t magnitude = 0;
    for (char c : s) {
        const auto digit = static_cast<std::uint64_t>(c - '0');
        if (magnitude > (limit - digit) / 10)
            return IntParse::overflow;
        magnitude = magnitude * 10 + digit;
    }
    if (!negative)
        out = static_cast<std::int64_t>(magnitude);
    else if (magnitude == max_positive + 1)
        out = std::numeric_limits<std::int64_t>::min();
    else
        out = -static_cast<std::int64_t>(magnitude);
    return IntParse::ok;
}

int parse_ranged(const std::string &value, int low, int high) {
    std::int64_t number = 0;
    if (parse_decimal(value, false, number) != IntParse::ok || number < low || number > high)
        throw BadValue("not an integer between " + std::to_string(low) + " and " +
                       std::to_string(high));
    return static_cast<int>(number);
}

int parse_port(const std::string &value) {
    std::int64_t number = 0;
    if (parse_decimal(value, false, number) != IntParse::ok || number < 1 || number > 65535)
        throw BadValue("not a port number");
    return static_cast<int>(number);
}

std::int64_t parse_seconds(const std::string &value) {
    std::int64_t number = 0;
    switch (parse_decimal(value, true, number)) {
    case IntParse::ok:
        return number;
    case IntParse::overflow:
        throw BadValue("number out of range");
    case IntParse::junk:
        break;
    }
    throw BadValue("not an integer number of seconds (0 or less turns pruning off)");
}

// ---- string checks -----------------------------------------------------------------------

void check_not_empty(const std::string &value) {
    if (value.empty())
        throw BadValue("must not be empty");
}

// A DNS name (labels of letters, digits, '-' and '_'), an IPv4 or an IPv6 address.
bool valid_host_name(const std::string &value) {
    unsigned char address[16];
    if (inet_pton(AF_INET6, value.c_str(), address) == 1)
        return true;
    if (value.empty() || value.size() > 253)
        return false;
    std::string_view rest = value;
    while (true) {
        const std::size_t dot = rest.find('.');
        const std::string_view label = rest.substr(0, dot);
        if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
            return false;
        for (char c : label)
            if (!(is_alpha(c) || is_digit(c) || c == '-' || c == '_'))
                return false;
        if (dot == std::string_view::npos)
            return true;
        rest.remove_prefix(dot + 1);
    }
}

void check_host(const std::string &value) {
    if (!valid_host_name(value))
        throw BadValue("not a host name or IP address");
}

void check_db_host(const std::string &value) {
    // Empty lets libpq pick its default socket, as Django does with HOST="".
    if (value.empty() || value.front() == '/')
        return;
    if (!valid_host_name(value))
        throw BadValue("not a host name, IP address or absolute socket directory");
}

void check_ldap_filter(const std::string &value) {
    // Literal parentheses inside a filter value are escaped (\28, \29), so counting is exact.
    bool ok = value.size() >= 2 && value.front() == '(' && value.back() == ')';
    int depth = 0;
    for (std::size_t i = 0; ok && i < value.size(); ++i) {
        if (value[i] == '(')
            ++depth;
        else if (value[i] == ')')
            --depth;
        // Depth 0 before the last character would be two filters side by side.
        if (depth < 0 || (depth == 0 && i + 1 < value.size()))
            ok = false;
    }
    if (!ok || depth != 0)
        throw BadValue(
            "not an LDAP filter (one parenthesised expression with balanced parentheses)");
}

void check_email_address(const std::string &value) {
    const std::size_t at = value.find('@');
    bool ok = at != std::string::npos && at > 0 && at + 1 < value.size() &&
              value.find('@', at + 1) == std::string::npos;
    for (char c : value) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20 || byte == 0x7f || c == ' ' || c == '<' || c == '>')
            ok = false;
    }
    if (!ok)
        throw BadValue("not a bare e-mail address such as noreply@example.org");
}

void check_timezone(const std::string &value) {
    if (value.empty())
        throw BadValue("must not be empty");
    if (value.front() == '/')
        throw BadValue("must be a zone name such as Europe/Berlin, not a path");
    std::string_view rest = value;
    while (true) {
        const std::size_t slash = rest.find('/');
        const std::string_view part = rest.substr(0, slash);
        bool ok = !part.empty() && part != "." && part != "..";
        for (char c : part)
            if (!(is_alpha(c) || is_digit(c) || c == '_' || c == '-' || c == '+' || c == '.'))
                ok = false;
        if (!ok)
            throw BadValue("not a time zone name such as Europe/Berlin");
        if (slash == std::string_view::npos)
            break;
        rest.remove_prefix(slash + 1);
    }
    // The same file glibc loads for TZ=<name>; zone.tab and friends live there too, hence
    // the magic check.
    const std::string file = std::string(zoneinfo_dir) + "/" + value;
    FileDescriptor fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    struct stat st = {};
    char magic[4] = {};
    if (fd.get() < 0 || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
        ::read(fd.get(), magic, sizeof magic) != static_cast<ssize_t>(sizeof magic) ||
        std::string_view(magic, sizeof magic) != "TZif")
        throw BadValue("unknown time zone (no TZif file " + file + ")");
}

void check_worker(const std::string &value) {
    // django_celery_results' TaskResult.worker is a varchar(100).
    if (value.size() > 100)
        throw BadValue("longer than 100 characters");
    for (char c : value) {
        const auto byte = static_cast<unsigned char>(c);
        if (byte <= 0x20 || byte == 0x7f)
            throw BadValue("must not contain spaces or control characters");
    }
}

// ---- compound values ---------------------------------------------------------------------

// KEYSTONED_CLUSTERS: names separated by commas and/or spaces; each a Slurm cluster name
// (letters, digits, '_', '-', '.'), no duplicates.
std::vector<std::string> parse_cluster_list(const std::string &value) {
    std::vector<std::string> names;
    std::string current;
    auto flush = [&]() {
        if (current.empty())
            return;
        for (char c : current) {
            const auto byte = static_cast<unsigned char>(c);
            if (!std::isalnum(byte) && c != '_' && c != '-' && c != '.')
                throw BadValue("not a cluster name: " + printable(current), false);
        }
        for (const std::string &n : names)
            if (n == current)
                throw BadValue("cluster named twice: " + current, false);
        names.push_back(current);
        current.clear();
    };
    for (char c : value) {
        if (c == ',' || c == ' ' || c == '\t')
            flush();
        else
            current += c;
    }
    flush();
    return names;
}

// KEYSTONED_METRICS_ADDRESS: "", "off", "HOST:PORT" or "[IPV6]:PORT" with a port 1..65535.
void check_metrics_address(const std::string &v) {
    if (v.empty() || v == "off")
        return;
    const auto colon = v.rfind(':');
    if (colon == std::string::npos || colon == 0)
        throw BadValue("not HOST:PORT (or \"off\")");
    const std::string host = v.substr(0, colon);
    const std::string port = v.substr(colon + 1);
    if (host.front() == '[' ? host.back() != ']' || host.size() < 3
                            : host.find(':') != std::string::npos)
        throw BadValue("not HOST:PORT (write an IPv6 address as [ADDRESS]:PORT)");
    if (port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) < 1 ||
        std::stoi(port) > 65535)
        throw BadValue("not a port number (1-65535) after the last ':'");
}

std::vector<std::string> parse_ldap_uris(const std::string &value) {
    std::vector<std::string> uris;
    std::string current;
    auto flush = [&]() {
        if (current.empty())
            return;
        const std::string lower = to_lower(current);
        if (!starts_with(lower, "ldap://") && !starts_with(lower, "ldaps://") &&
            !starts_with(lower, "ldapi://"))
            throw BadValue("not an ldap://, ldaps:// or ldapi:// URI: " + printable(current),
                           false);
        uris.push_back(current);
        current.clear();
    };
    for (char c : value) {
        if (c == ',' || is_blank(c))
            flush();
        else
            current += c;
    }
    flush();
    return uris;
}

bool valid_ldap_attribute(std::string_view name) {
    if (name.empty())
        return false;
    if (is_alpha(name[0])) {
        for (char c : name)
            if (!(is_alpha(c) || is_digit(c) || c == '-'))
                return false;
        return true;
    }
    // A numeric OID: digit groups separated by single dots, at least two groups.
    bool dot_seen = false;
    bool digit_before = false;
    for (char c : name) {
        if (is_digit(c)) {
            digit_before = true;
        } else if (c == '.' && digit_before) {
            dot_seen = true;
            digit_before = false;
        } else {
            return false;
        }
    }
    return dot_seen && digit_before;
}

std::map<std::string, std::string> parse_attr_map(const std::string &value) {
    static const char *const fields[] = {"username", "first_name", "last_name",
                                         "email",    "department", "role"};
    std::map<std::string, std::string> map;
    if (trim(value).empty())
        return map;
    std::string_view rest = value;
    while (true) {
        const std::size_t comma = rest.find(',');
        const std::string_view entry = trim(rest.substr(0, comma));
        const std::size_t eq = entry.find('=');
        if (entry.empty())
            throw BadValue("empty entry in the list", true);
        if (eq == std::string_view::npos)
            throw BadValue("entry " + printable(entry) + " is not field=ldapAttribute", false);
        const std::string field(trim(entry.substr(0, eq)));
        const std::string attribute(trim(entry.substr(eq + 1)));
        bool known = false;
        for (const char *f : fields)
            known = known || field == f;
        if (!known)
            throw BadValue("unknown field " + printable(field) +
                               " (username, first_name, last_name, email, department, role)",
                           false);
        if (!valid_ldap_attribute(attribute))
            throw BadValue("not an LDAP attribute name or OID for " + field + ": " +
                               printable(attribute),
                           false);
        if (!map.emplace(field, attribute).second)
            throw BadValue("field " + field + " is mapped twice", true);
        if (comma == std::string_view::npos)
            break;
        rest.remove_prefix(comma + 1);
    }
    return map;
}

std::string show_attr_map(const std::map<std::string, std::string> &map) {
    std::string out;
    for (const auto &[field, attribute] : map)
        out += (out.empty() ? "" : ",") + field + "=" + attribute;
    return out;
}

// ---- the table of settings ---------------------------------------------------------------

enum class Kind {
    boolean,
    integer,
    port,
    seconds,
    string, // free text or a validated string
    secret, // free text never shown
    log_level,
    schedule,
    ignored,        // Keystone web API only: stored raw
    ignored_secret, // the same, never shown
    alias,          // another name for the setting `alias_of`
};

using Apply = void (*)(Config &config, const std::string &name, const std::string &value);
using Show = std::string (*)(const Config &config, const std::string &name);

struct Setting {
    const char *name;
    Kind kind;
    Apply apply; // null for aliases
    Show show;   // null for aliases
    const char *alias_of;
};

bool is_secret(const Setting &setting) {
    return setting.kind == Kind::secret || setting.kind == Kind::ignored_secret;
}

template <bool Config::*field> Setting boolean(const char *name) {
    return {name, Kind::boolean,
            [](Config &c, const std::string &, const std::string &v) { c.*field = parse_bool(v); },
            [](const Config &c, const std::string &) {
                return std::string(c.*field ? "true" : "false");
            },
            nullptr};
}

template <int Config::*field, int low, int high> Setting integer(const char *name) {
    return {name, Kind::integer,
            [](Config &c, const std::string &, const std::string &v) {
                c.*field = parse_ranged(v, low, high);
            },
            [](const Config &c, const std::string &) { return std::to_string(c.*field); }, nullptr};
}

template <int Config::*field> Setting port(const char *name) {
    return {name, Kind::port,
            [](Config &c, const std::string &, const std::string &v) { c.*field = parse_port(v); },
            [](const Config &c, const std::string &) { return std::to_string(c.*field); }, nullptr};
}

template <std::int64_t Config::*field> Setting seconds(const char *name) {
    return {
        name, Kind::seconds,
        [](Config &c, const std::string &, const std::string &v) { c.*field = parse_seconds(v); },
        [](const Config &c, const std::string &) { return std::to_string(c.*field); }, nullptr};
}

void accept_any(const std::string &) {}

void check_absolute_or_empty(const std::string &v) {
    if (!v.empty() && v[0] != '/')
        throw BadValue("not an absolute path");
}

template <std::string Config::*field, void (*check)(const std::string &) = accept_any>
Setting text(const char *name) {
    return {name, Kind::string,
            [](Config &c, const std::string &, const std::string &v) {
                check(v);
                c.*field = v;
            },
            [](const Config &c, const std::string &) { return c.*field; }, nullptr};
}

template <std::string Config::*field> Setting secret(const char *name) {
    return {name, Kind::secret,
            [](Config &c, const std::string &, const std::string &v) { c.*field = v; },
            [](const Config &c, const std::string &) {
                return (c.*field).empty() ? std::string() : std::string(masked_value);
            },
            nullptr};
}

std::string schedule_task(const std::string &setting_name) {
    return to_lower(
        std::string_view(setting_name).substr(std::string_view(schedule_prefix).size()));
}

Setting schedule(const char *name) {
    return {name, Kind::schedule,
            [](Config &c, const std::string &n, const std::string &v) {
                // The cron syntax is checked by the caller (daemon/cron.hpp).
                if (v.empty())
                    throw BadValue("empty (write off to disable the task)");
                c.schedules[schedule_task(n)] = to_lower(v) == "off" ? std::string() : v;
            },
            [](const Config &c, const std::string &n) {
                const std::string &v = c.schedules.at(schedule_task(n));
                return v.empty() ? std::string("off") : v;
            },
            nullptr};
}

void store_raw(Config &c, const std::string &n, const std::string &v) {
    c.web_api_settings[n] = v;
}

std::string show_raw(const Config &c, const std::string &n) {
    const auto it = c.web_api_settings.find(n);
    return it == c.web_api_settings.end() ? std::string() : it->second;
}

std::string show_masked(const Config &c, const std::string &n) {
    return show_raw(c, n).empty() ? std::string() : std::string(masked_value);
}

Setting ignored(const char *name) {
    return {name, Kind::ignored, store_raw, show_raw, nullptr};
}

Setting ignored_secret(const char *name) {
    return {name, Kind::ignored_secret, store_raw, show_masked, nullptr};
}

const std::vector<Setting> &settings() {
    static const std::vector<Setting> table = {
        {"DB_POSTGRES_ENABLE", Kind::boolean,
         [](Config &, const std::string &, const std::string &v) {
             if (!parse_bool(v))
                 throw BadValue("keystoned needs PostgreSQL (Keystone's SQLite mode is not "
                                "supported); set DB_POSTGRES_ENABLE=true or remove the line",
                                false);
         },
         [](const Config &, const std::string &) { return std::string("true"); }, nullptr},
        text<&Config::db_name, check_not_empty>("DB_NAME"),
        text<&Config::db_user>("DB_USER"),
        secret<&Config::db_password>("DB_PASSWORD"),
        text<&Config::db_host, check_db_host>("DB_HOST"),
        port<&Config::db_port>("DB_PORT"),

        {"AUTH_LDAP_SERVER_URI", Kind::string,
         [](Config &c, const std::string &, const std::string &v) {
             c.ldap_server_uris = parse_ldap_uris(v);
         },
         [](const Config &c, const std::string &) {
             std::string out;
             for (const std::string &uri : c.ldap_server_uris)
                 out += (out.empty() ? "" : " ") + uri;
             return out;
         },
         nullptr},
        text<&Config::ldap_bind_dn>("AUTH_LDAP_BIND_DN"),
        secret<&Config::ldap_bind_password>("AUTH_LDAP_BIND_PASSWORD"),
        boolean<&Config::ldap_start_tls>("AUTH_LDAP_START_TLS"),
        text<&Config::ldap_user_search>("AUTH_LDAP_USER_SEARCH"),
        text<&Config::ldap_user_filter, check_ldap_filter>("AUTH_LDAP_USER_FILTER"),
        text<&Config::ldap_login_filter>("AUTH_LDAP_LOGIN_FILTER"),
        {"AUTH_LDAP_ATTR_MAP", Kind::string,
         [](Config &c, const std::string &, const std::string &v) {
             c.ldap_attr_map = parse_attr_map(v);
         },
         [](const Config &c, const std::string &) { return show_attr_map(c.ldap_attr_map); },
         nullptr},
        boolean<&Config::ldap_require_cert>("AUTH_LDAP_REQUIRE_CERT"),
        integer<&Config::ldap_timeout, 1, 3600>("AUTH_LDAP_TIMEOUT"),
        boolean<&Config::ldap_purge_removed>("AUTH_LDAP_PURGE_REMOVED"),

        text<&Config::email_host, check_host>("EMAIL_HOST"),
        port<&Config::email_port>("EMAIL_PORT"),
        text<&Config::email_host_user>("EMAIL_HOST_USER"),
        secret<&Config::email_host_password>("EMAIL_HOST_PASSWORD"),
        boolean<&Config::email_use_tls>("EMAIL_USE_TLS"),
        text<&Config::email_from_address, check_email_address>("EMAIL_FROM_ADDRESS"),
        text<&Config::email_template_dir>("EMAIL_TEMPLATE_DIR"),
        text<&Config::email_debug_dir>("EMAIL_DEBUG_DIR"),
        {"DEBUG_EMAIL_DIR", Kind::alias, nullptr, nullptr, "EMAIL_DEBUG_DIR"},

        seconds<&Config::log_req_retention_sec>("LOG_REQ_RETENTION_SEC"),
        seconds<&Config::log_aud_retention_sec>("LOG_AUD_RETENTION_SEC"),
        seconds<&Config::log_tsk_retention_sec>("LOG_TSK_RETENTION_SEC"),
        text<&Config::timezone, check_timezone>("CONFIG_TIMEZONE"),

        {"KEYSTONED_LOG_LEVEL", Kind::log_level,
         [](Config &c, const std::string &, const std::string &v) {
             const auto level = parse_log_level(v);
             if (!level)
                 throw BadValue("not a log level (error, warning, info, verbose, debug, debug2)");
             c.log_level = *level;
         },
         [](const Config &c, const std::string &) {
             return std::string(log_level_name(c.log_level));
         },
         nullptr},
        boolean<&Config::syslog>("KEYSTONED_SYSLOG"),
        text<&Config::worker, check_worker>("KEYSTONED_WORKER"),
        integer<&Config::db_connect_timeout, 1, 300>("KEYSTONED_DB_CONNECT_TIMEOUT"),
        integer<&Config::stop_timeout, 1, 600>("KEYSTONED_STOP_TIMEOUT"),
        integer<&Config::cleanup_batch_size, 1, 1000000>("KEYSTONED_CLEANUP_BATCH_SIZE"),
        text<&Config::ldap_ca_file>("KEYSTONED_LDAP_CA_FILE"),
        integer<&Config::ldap_page_size, 1, 100000>("KEYSTONED_LDAP_PAGE_SIZE"),
        integer<&Config::ldap_max_remove, 0, 100000000>("KEYSTONED_LDAP_MAX_REMOVE"),
        integer<&Config::ldap_max_remove_percent, 0, 100>("KEYSTONED_LDAP_MAX_REMOVE_PERCENT"),
        text<&Config::spool_dir, check_absolute_or_empty>("KEYSTONED_SPOOL_DIR"),
        text<&Config::quarantine_dir, check_absolute_or_empty>("KEYSTONED_QUARANTINE_DIR"),
        integer<&Config::ingest_interval, 1, 3600>("KEYSTONED_INGEST_INTERVAL"),
        integer<&Config::ingest_max_records, 1, 10000000>("KEYSTONED_INGEST_MAX_RECORDS"),
        integer<&Config::ingest_connections, 1, 16>("KEYSTONED_INGEST_CONNECTIONS"),
        text<&Config::slurm_conf, check_absolute_or_empty>("KEYSTONED_SLURM_CONF"),
        integer<&Config::slurmdb_timeout, 10, 3600>("KEYSTONED_SLURMDB_TIMEOUT"),
        integer<&Config::jobs_overlap, 0, 2592000>("KEYSTONED_JOBS_OVERLAP"),
        integer<&Config::jobs_first_window, 60, 31536000>("KEYSTONED_JOBS_FIRST_WINDOW"),
        text<&Config::email_ca_file, check_absolute_or_empty>("KEYSTONED_EMAIL_CA_FILE"),
        integer<&Config::notify_retry_window, 0, 86400>("KEYSTONED_NOTIFY_RETRY_WINDOW"),
        integer<&Config::notify_settle_wait, 0, 86400>("KEYSTONED_NOTIFY_SETTLE_WAIT"),
        integer<&Config::limits_max_lower_percent, 0, 100>("KEYSTONED_LIMITS_MAX_LOWER_PERCENT"),
        integer<&Config::limits_min_lowered, 1, 1000000>("KEYSTONED_LIMITS_MIN_LOWERED"),
        {"KEYSTONED_CLUSTERS", Kind::string,
         [](Config &c, const std::string &, const std::string &v) {
             c.clusters = parse_cluster_list(v);
         },
         [](const Config &c, const std::string &) {
             std::string out;
             for (const std::string &name : c.clusters)
                 out += (out.empty() ? "" : ",") + name;
             return out;
         },
         nullptr},
        text<&Config::metrics_address, check_metrics_address>("KEYSTONED_METRICS_ADDRESS"),
        schedule("KEYSTONED_SCHEDULE_LDAP_UPDATE_USERS"),
        schedule("KEYSTONED_SCHEDULE_CLEAR_LOG_RECORDS"),
        schedule("KEYSTONED_SCHEDULE_UPDATE_LIMITS"),
        schedule("KEYSTONED_SCHEDULE_SLURM_UPDATE_JOB_STATS"),
        schedule("KEYSTONED_SCHEDULE_NOTIFY_UPCOMING_EXPIRATIONS"),
        schedule("KEYSTONED_SCHEDULE_NOTIFY_PAST_EXPIRATIONS"),

        ignored("DEBUG"),
        ignored_secret("SECURE_SECRET_KEY"),
        ignored("SECURE_ALLOWED_HOSTS"),
        ignored("SECURE_ALLOWED_ORIGINS"),
        ignored("SECURE_CSRF_ORIGINS"),
        ignored("SECURE_SSL_TOKENS"),
        ignored("SECURE_SESSION_AGE"),
        ignored("SECURE_TOKEN_DOMAIN"),
        ignored("SECURE_SSL_REDIRECT"),
        ignored("SECURE_HSTS_SECONDS"),
        ignored("SECURE_HSTS_SUBDOMAINS"),
        ignored("SECURE_HSTS_PRELOAD"),
        ignored("CONFIG_STATIC_DIR"),
        ignored("CONFIG_UPLOAD_DIR"),
        ignored("CONFIG_UPLOAD_SIZE"),
        ignored("CONFIG_UPLOAD_COUNT"),
        ignored("CONFIG_METRICS_PORTS"),
        ignored("CONFIG_LOG_LEVEL"),
        ignored("CONFIG_LOG_RETENTION"),
        ignored("CONFIG_REQUEST_RETENTION"),
        ignored("LOG_APP_LEVEL"),
        ignored("LOG_APP_FILE"),
        ignored("LOG_APP_RETENTION_BYTES"),
        ignored("LOG_APP_RETENTION_FILES"),
        ignored("LOG_APP_RETENTION_SEC"),
        ignored("API_THROTTLE_ANON"),
        ignored("API_THROTTLE_USER"),
        ignored("REDIS_HOST"),
        ignored("REDIS_PORT"),
        ignored("REDIS_DB"),
        ignored_secret("REDIS_PASSWORD"),
    };
    return table;
}

const Setting *find_setting(std::string_view name) {
    for (const Setting &setting : settings())
        if (name == setting.name)
            return &setting;
    return nullptr;
}

// The setting that receives the value: itself, or the one an alias stands for.
const Setting &resolve(const Setting &setting) {
    return setting.alias_of ? *find_setting(setting.alias_of) : setting;
}

// Applies `value` of `setting` (as written, possibly an alias) to `config`; `prefix` is
// "FILE:LINE: NAME" or "environment variable NAME".
void apply_value(Config &config, const Setting &setting, const std::string &value,
                 const std::string &prefix) {
    const Setting &target = resolve(setting);
    try {
        target.apply(config, target.name, value);
    } catch (const BadValue &e) {
        std::string message = prefix + ": " + e.what();
        if (e.echo_value() && !is_secret(target))
            message += ": " + printable(value);
        throw ConfigError(message);
    }
}

// The value from the text after '=': "..." with \" \\ \n \t \$ escapes, '...' literal, and
// anything else literal with blanks trimmed at both ends (a '#' in it is part of the value:
// passwords contain '#'). Only blanks may follow a closing quote.
std::string unquote(std::string_view raw) {
    const std::string_view text = trim_left(raw);
    if (text.empty())
        return std::string();
    const char quote = text.front();
    if (quote != '"' && quote != '\'')
        return std::string(trim_right(text));

    std::string value;
    std::size_t i = 1;
    bool closed = false;
    for (; i < text.size(); ++i) {
        const char c = text[i];
        if (c == quote) {
            closed = true;
            break;
        }
        if (quote == '"' && c == '\\') {
            if (++i == text.size())
                break;
            switch (text[i]) {
            case '"':
            case '\\':
            case '$':
                value += text[i];
                break;
            case 'n':
                value += '\n';
                break;
            case 't':
                value += '\t';
                break;
            default:
                throw BadValue(std::string("unknown escape \\") + text[i] +
                                   " in double quotes (use single quotes for literal text)",
                               false);
            }
            continue;
        }
        value += c;
    }
    if (!closed)
        throw BadValue(quote == '"' ? "unterminated double quote" : "unterminated single quote",
                       false);
    if (!trim(text.substr(i + 1)).empty())
        throw BadValue("unexpected text after the closing quote", false);
    return value;
}

// What the file set, beyond the Config itself.
struct FileValues {
    std::map<std::string, std::string> values; // setting name (never an alias) -> value
    std::string secret_name;                   // first secret set to a non-empty value
};

// Parses and applies one line of the file.
void parse_line(std::string_view line, const std::string &path, int number, Config &config,
                FileValues &file) {
    const std::string where = path + ":" + std::to_string(number);
    if (line.find('\0') != std::string_view::npos)
        throw ConfigError(where + ": line contains a NUL byte");
    std::string_view rest = trim_left(line);
    if (rest.empty() || rest.front() == '#')
        return;
    if (starts_with(rest, "export") && rest.size() > 6 && is_blank(rest[6]))
        rest = trim_left(rest.substr(6));

    const std::size_t eq = rest.find('=');
    if (eq == std::string_view::npos)
        throw ConfigError(where + ": no '=' in line (expected NAME=value)");
    const std::string name(trim_right(rest.substr(0, eq)));
    if (!valid_setting_name(name))
        throw ConfigError(where + ": invalid setting name " + printable(name) +
                          " (expected NAME=value, NAME of A-Z, 0-9 and _)");
    const Setting *setting = find_setting(name);
    if (!setting)
        throw ConfigError(where + ": " + name + ": unknown setting");
    const Setting &target = resolve(*setting);
    const std::string prefix = where + ": " + name;

    const auto previous = config.origins.find(target.name);
    if (previous != config.origins.end()) {
        const Origin &first = previous->second;
        const std::string first_name = first.set_as.empty() ? target.name : first.set_as;
        if (first_name == name)
            throw ConfigError(prefix + ": set twice (first on line " + std::to_string(first.line) +
                              ")");
        throw ConfigError(prefix + ": already set as " + first_name + " on line " +
                          std::to_string(first.line) + " (two names for one setting); keep one");
    }

    const std::string_view raw = rest.substr(eq + 1);
    std::string value;
    try {
        value = unquote(raw);
    } catch (const BadValue &e) {
        std::string message = prefix + ": " + e.what();
        if (!is_secret(target))
            message += ": " + printable(trim(raw));
        throw ConfigError(message);
    }
    apply_value(config, *setting, value, prefix);
    if (is_secret(target) && !value.empty() && file.secret_name.empty())
        file.secret_name = target.name;
    file.values[target.name] = value;
    config.origins[target.name] =
        Origin{path, number, setting->alias_of ? std::string(name) : std::string()};
}

FileValues parse_text(std::string_view text, const std::string &path, Config &config) {
    FileValues file;
    int number = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t end = text.find('\n', pos);
        if (end == std::string_view::npos)
            end = text.size();
        parse_line(text.substr(pos, end - pos), path, ++number, config, file);
        pos = end + 1;
    }
    return file;
}

void apply_environment(const Environment &env, const FileValues &file, Config &config) {
    for (const Setting &setting : settings()) {
        const auto it = env.find(setting.name);
        if (it == env.end())
            continue;
        const Setting &target = resolve(setting);
        if (&target != &setting && env.count(target.name))
            throw ConfigError(std::string("environment variables ") + target.name + " and " +
                              setting.name + " are both set (two names for one setting); " +
                              "keep one");
        // A unit with EnvironmentFile= pointing at this file exports every line again; an
        // identical value changes nothing, and messages should keep pointing at FILE:LINE.
        const auto in_file = file.values.find(target.name);
        if (in_file != file.values.end() && in_file->second == it->second)
            continue;
        apply_value(config, setting, it->second,
                    std::string("environment variable ") + setting.name);
        config.origins[target.name] = Origin{
            environment_file, 0, &target != &setting ? std::string(setting.name) : std::string()};
    }
}

std::string read_file(int fd, const std::string &path) {
    std::string text;
    char buffer[8192];
    while (true) {
        const ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            throw ConfigError(path + ": " + errno_text(errno));
        if (n == 0)
            return text;
        text.append(buffer, static_cast<std::size_t>(n));
        if (text.size() > static_cast<std::size_t>(max_file_size))
            throw ConfigError(path + ": larger than 1 MiB; not a settings file");
    }
}

} // namespace

std::string conninfo_value(const std::string &value) {
    std::string out = "'";
    for (char c : value) {
        if (c == '\'' || c == '\\')
            out += '\\';
        out += c;
    }
    return out + "'";
}

std::string config_path(const std::string &option) {
    if (!option.empty())
        return option;
    const char *env = std::getenv("KEYSTONE_CONF");
    return env && *env ? env : default_config_path;
}

const char *log_level_name(LogLevel level) {
    switch (level) {
    case LogLevel::error:
        return "error";
    case LogLevel::warning:
        return "warning";
    case LogLevel::info:
        return "info";
    case LogLevel::verbose:
        return "verbose";
    case LogLevel::debug:
        return "debug";
    case LogLevel::debug2:
        return "debug2";
    }
    return "info";
}

std::optional<LogLevel> parse_log_level(std::string_view name) {
    const std::string lower = to_lower(name);
    for (LogLevel level : {LogLevel::error, LogLevel::warning, LogLevel::info, LogLevel::verbose,
                           LogLevel::debug, LogLevel::debug2})
        if (lower == log_level_name(level))
            return level;
    return std::nullopt;
}

Environment process_environment() {
    Environment env;
    for (char **entry = environ; entry && *entry; ++entry) {
        const std::string_view text(*entry);
        const std::size_t eq = text.find('=');
        if (eq != std::string_view::npos)
            env.emplace(std::string(text.substr(0, eq)), std::string(text.substr(eq + 1)));
    }
    return env;
}

bool Config::serves_cluster(const std::string &name) const {
    if (clusters.empty())
        return true;
    for (const std::string &c : clusters)
        if (c == name)
            return true;
    return false;
}

std::string Config::origin_text(const std::string &name) const {
    const auto it = origins.find(name);
    if (it == origins.end())
        return "default";
    const Origin &origin = it->second;
    if (origin.line == 0 && origin.file == environment_file)
        return "environment variable " + (origin.set_as.empty() ? name : origin.set_as);
    return origin.file + ":" + std::to_string(origin.line);
}

const std::vector<std::string> &known_setting_names() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> list;
        for (const Setting &setting : settings())
            list.emplace_back(setting.name);
        return list;
    }();
    return names;
}

std::string schedule_setting_name(const std::string &task) {
    return schedule_prefix + to_upper(task);
}

Config parse_config(std::string_view text, const std::string &path, const Environment &env) {
    Config config;
    const FileValues file = parse_text(text, path, config);
    apply_environment(env, file, config);
    return config;
}

Config load_config(const std::string &path, const Environment &env) {
    // O_NONBLOCK so that a FIFO in its place cannot hang us; it changes nothing for a regular
    // file, which is all we accept.
    FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (fd.get() < 0)
        throw ConfigError(path + ": " + errno_text(errno));
    struct stat st = {};
    if (::fstat(fd.get(), &st) != 0)
        throw ConfigError(path + ": " + errno_text(errno));
    if (!S_ISREG(st.st_mode))
        throw ConfigError(path + ": not a regular file");
    if (st.st_size > max_file_size)
        throw ConfigError(path + ": larger than 1 MiB; not a settings file");
    const std::string text = read_file(fd.get(), path);

    Config config;
    const FileValues file = parse_text(text, path, config);
    if (!file.secret_name.empty() && (st.st_mode & 044) != 0) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        throw ConfigError(path + ": holds " + file.secret_name +
                          " but is readable by group/others (mode " + mode + "); chmod 600 " +
                          path);
    }
    apply_environment(env, file, config);
    return config;
}

std::vector<ConfigLine> describe(const Config &config) {
    std::vector<ConfigLine> lines;
    for (const Setting &setting : settings()) {
        if (setting.kind == Kind::alias)
            continue;
        const bool web_only = setting.kind == Kind::ignored || setting.kind == Kind::ignored_secret;
        if (web_only && !config.web_api_settings.count(setting.name))
            continue;
        lines.push_back(ConfigLine{setting.name, setting.show(config, setting.name),
                                   config.origin_text(setting.name), web_only});
    }
    return lines;
}

std::string db_conninfo(const Config &config) {
    std::string out;
    auto add = [&out](const char *keyword, const std::string &value) {
        out += (out.empty() ? "" : " ") + std::string(keyword) + "=" + conninfo_value(value);
    };
    if (!config.db_host.empty())
        add("host", config.db_host);
    add("port", std::to_string(config.db_port));
    add("dbname", config.db_name);
    if (!config.db_user.empty())
        add("user", config.db_user);
    if (!config.db_password.empty())
        add("password", config.db_password);
    add("connect_timeout", std::to_string(config.db_connect_timeout));
    return out;
}

} // namespace keystone
