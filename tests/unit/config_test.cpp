// SPDX-License-Identifier: GPL-2.0-or-later
// Unit tests of daemon/config: file syntax, every setting's good and bad values, environment
// overrides, masking, file permissions and the libpq connection string.
#include "config.hpp"

#include <check.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

using keystone::Config;
using keystone::ConfigError;
using keystone::ConfigLine;
using keystone::Environment;
using keystone::LogLevel;

namespace {

const std::string conf = "/etc/keystone/keystoned.conf";

// The ConfigError message parse_config() throws for `text`, or "" when it parses.
std::string error_of(const std::string &text, const Environment &env = {}) {
    try {
        keystone::parse_config(text, conf, env);
    } catch (const ConfigError &e) {
        return e.what();
    }
    return std::string();
}

// parse_config() that must succeed; a ConfigError fails the test with its message.
Config parse_ok(const std::string &text, const Environment &env = {}) {
    try {
        return keystone::parse_config(text, conf, env);
    } catch (const ConfigError &e) {
        ck_abort_msg("unexpected ConfigError for \"%s\": %s", text.c_str(), e.what());
    }
}

void expect_eq(const std::string &got, const std::string &want, const std::string &context) {
    ck_assert_msg(got == want, "%s:\n  got:  \"%s\"\n  want: \"%s\"", context.c_str(), got.c_str(),
                  want.c_str());
}

// The line describe() prints for `name`; fails the test when there is none.
ConfigLine line_of(const Config &config, const std::string &name) {
    for (const ConfigLine &line : keystone::describe(config))
        if (line.name == name)
            return line;
    ck_abort_msg("describe() has no line for %s", name.c_str());
}

// A temporary file with `text` and permission bits `mode`; removed by the destructor.
class TempFile {
public:
    TempFile(const std::string &text, mode_t mode) {
        const char *dir = std::getenv("TMPDIR");
        std::string pattern = std::string(dir && *dir ? dir : "/tmp") + "/config_test.XXXXXX";
        std::vector<char> buffer(pattern.begin(), pattern.end());
        buffer.push_back('\0');
        const int fd = mkstemp(buffer.data());
        ck_assert_msg(fd >= 0, "mkstemp: %s", std::strerror(errno));
        m_path = buffer.data();
        ck_assert_int_eq(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
        ck_assert_int_eq(fchmod(fd, mode), 0);
        ck_assert_int_eq(close(fd), 0);
    }
    ~TempFile() { unlink(m_path.c_str()); }
    TempFile(const TempFile &) = delete;
    TempFile &operator=(const TempFile &) = delete;
    const std::string &path() const { return m_path; }

private:
    std::string m_path;
};

std::string load_error(const std::string &path, const Environment &env = {}) {
    try {
        keystone::load_config(path, env);
    } catch (const ConfigError &e) {
        return e.what();
    }
    return std::string();
}

// An existing Keystone .env, as an admin would have it next to the API.
const char *const keystone_env_sample = R"(# Keystone API settings (.env)
DEBUG=False
SECURE_SECRET_KEY='v9#x!2@kq$-=+)(*&^%zz'
SECURE_ALLOWED_HOSTS=keystone.example.edu,localhost
SECURE_ALLOWED_ORIGINS=https://keystone.example.edu
SECURE_CSRF_ORIGINS=https://keystone.example.edu
SECURE_SSL_TOKENS=true
SECURE_SSL_REDIRECT=true
SECURE_HSTS_SECONDS=31536000
SECURE_SESSION_AGE=1209600

DB_POSTGRES_ENABLE=true
DB_NAME=keystone
DB_USER=keystone
DB_PASSWORD="p@ss#word with \"quotes\""
DB_HOST=postgres.example.edu
DB_PORT=5432

REDIS_HOST=127.0.0.1
REDIS_PORT=6379
REDIS_DB=0
REDIS_PASSWORD='r3d1s pass'

AUTH_LDAP_SERVER_URI=ldaps://ldap1.example.edu ldaps://ldap2.example.edu
AUTH_LDAP_START_TLS=False
AUTH_LDAP_BIND_DN="cn=keystone,ou=services,dc=example,dc=edu"
AUTH_LDAP_BIND_PASSWORD=ldap#pass
AUTH_LDAP_USER_SEARCH="ou=people,dc=example,dc=edu"
AUTH_LDAP_USER_FILTER=(objectClass=posixAccount)
AUTH_LDAP_ATTR_MAP=first_name=givenName,last_name=sn,email=mail
AUTH_LDAP_REQUIRE_CERT=True

EMAIL_HOST=smtp.example.edu
EMAIL_PORT=587
EMAIL_HOST_USER=keystone
EMAIL_HOST_PASSWORD=mail-pass
EMAIL_USE_TLS=True
EMAIL_FROM_ADDRESS=keystone-noreply@example.edu
EMAIL_TEMPLATE_DIR=/etc/keystone/templates

CONFIG_TIMEZONE=America/New_York
CONFIG_STATIC_DIR=/var/www/keystone/static
CONFIG_UPLOAD_DIR=/var/www/keystone/media
CONFIG_METRICS_PORTS=9101-9150
LOG_APP_LEVEL=WARNING
LOG_REQ_RETENTION_SEC=2592000
LOG_AUD_RETENTION_SEC=2592000
LOG_TSK_RETENTION_SEC=604800
API_THROTTLE_ANON=120/min
API_THROTTLE_USER=300/min
)";

void check_keystone_sample(const Config &c) {
    expect_eq(c.db_name, "keystone", "DB_NAME");
    expect_eq(c.db_user, "keystone", "DB_USER");
    expect_eq(c.db_password, "p@ss#word with \"quotes\"", "DB_PASSWORD");
    expect_eq(c.db_host, "postgres.example.edu", "DB_HOST");
    ck_assert_int_eq(c.db_port, 5432);
    ck_assert_int_eq(c.ldap_server_uris.size(), 2);
    expect_eq(c.ldap_server_uris[1], "ldaps://ldap2.example.edu", "second LDAP URI");
    ck_assert(!c.ldap_start_tls);
    ck_assert(c.ldap_require_cert);
    expect_eq(c.ldap_bind_dn, "cn=keystone,ou=services,dc=example,dc=edu", "AUTH_LDAP_BIND_DN");
    expect_eq(c.ldap_bind_password, "ldap#pass", "AUTH_LDAP_BIND_PASSWORD");
    expect_eq(c.ldap_user_search, "ou=people,dc=example,dc=edu", "AUTH_LDAP_USER_SEARCH");
    ck_assert_int_eq(c.ldap_attr_map.size(), 3);
    expect_eq(c.ldap_attr_map.at("email"), "mail", "attr map email");
    ck_assert_int_eq(c.email_port, 587);
    ck_assert(c.email_use_tls);
    expect_eq(c.timezone, "America/New_York", "CONFIG_TIMEZONE");
    ck_assert_int_eq(c.log_tsk_retention_sec, 604800);
    expect_eq(c.web_api_settings.at("SECURE_SECRET_KEY"), "v9#x!2@kq$-=+)(*&^%zz",
              "SECURE_SECRET_KEY");
    expect_eq(c.web_api_settings.at("REDIS_PASSWORD"), "r3d1s pass", "REDIS_PASSWORD");
    expect_eq(c.web_api_settings.at("API_THROTTLE_USER"), "300/min", "API_THROTTLE_USER");
}

} // namespace

// ---- defaults --------------------------------------------------------------------------------

START_TEST(test_defaults) {
    const Config c = parse_ok("");
    expect_eq(c.db_name, "keystone", "DB_NAME");
    expect_eq(c.db_user, "", "DB_USER");
    expect_eq(c.db_password, "", "DB_PASSWORD");
    expect_eq(c.db_host, "localhost", "DB_HOST");
    ck_assert_int_eq(c.db_port, 5432);
    ck_assert(c.ldap_server_uris.empty());
    ck_assert(!c.ldap_enabled());
    expect_eq(c.ldap_bind_dn, "", "AUTH_LDAP_BIND_DN");
    expect_eq(c.ldap_bind_password, "", "AUTH_LDAP_BIND_PASSWORD");
    ck_assert(c.ldap_start_tls);
    expect_eq(c.ldap_user_search, "", "AUTH_LDAP_USER_SEARCH");
    expect_eq(c.ldap_user_filter, "(objectClass=account)", "AUTH_LDAP_USER_FILTER");
    expect_eq(c.ldap_login_filter, "(uid=%(user)s)", "AUTH_LDAP_LOGIN_FILTER");
    ck_assert(c.ldap_attr_map.empty());
    ck_assert(c.ldap_require_cert);
    ck_assert_int_eq(c.ldap_timeout, 10);
    ck_assert(!c.ldap_purge_removed);
    expect_eq(c.email_host, "localhost", "EMAIL_HOST");
    ck_assert_int_eq(c.email_port, 25);
    expect_eq(c.email_host_user, "", "EMAIL_HOST_USER");
    expect_eq(c.email_host_password, "", "EMAIL_HOST_PASSWORD");
    ck_assert(!c.email_use_tls);
    expect_eq(c.email_from_address, "noreply@keystone.bot", "EMAIL_FROM_ADDRESS");
    expect_eq(c.email_template_dir, "/etc/keystone/templates", "EMAIL_TEMPLATE_DIR");
    expect_eq(c.email_debug_dir, "", "EMAIL_DEBUG_DIR");
    ck_assert_int_eq(c.log_req_retention_sec, 2592000);
    ck_assert_int_eq(c.log_aud_retention_sec, 2592000);
    ck_assert_int_eq(c.log_tsk_retention_sec, 2592000);
    expect_eq(c.timezone, "UTC", "CONFIG_TIMEZONE");
    ck_assert(c.web_api_settings.empty());
    ck_assert(c.log_level == LogLevel::info);
    ck_assert(!c.syslog);
    expect_eq(c.worker, "", "KEYSTONED_WORKER");
    ck_assert_int_eq(c.db_connect_timeout, 10);
    ck_assert_int_eq(c.stop_timeout, 10);
    ck_assert_int_eq(c.cleanup_batch_size, 5000);
    ck_assert_int_eq(c.schedules.size(), 6);
    expect_eq(c.schedules.at("ldap_update_users"), "*/15 * * * *", "ldap_update_users");
    expect_eq(c.schedules.at("clear_log_records"), "0 * * * *", "clear_log_records");
    expect_eq(c.schedules.at("update_limits"), "0 * * * *", "update_limits");
    expect_eq(c.schedules.at("slurm_update_job_stats"), "*/5 * * * *", "slurm_update_job_stats");
    expect_eq(c.schedules.at("notify_upcoming_expirations"), "0 0 * * *", "upcoming");
    expect_eq(c.schedules.at("notify_past_expirations"), "0 0 * * *", "past");
    ck_assert(c.origins.empty());
    expect_eq(c.origin_text("DB_HOST"), "default", "origin of an unset setting");

    // A default-constructed Config is the same thing: the defaults live in one place.
    const Config d;
    expect_eq(d.db_name, c.db_name, "default-constructed DB_NAME");
    ck_assert_int_eq(d.cleanup_batch_size, c.cleanup_batch_size);
}
END_TEST

START_TEST(test_known_names) {
    const std::vector<std::string> &names = keystone::known_setting_names();
    const std::set<std::string> unique(names.begin(), names.end());
    ck_assert_int_eq(unique.size(), names.size());
    for (const char *name :
         {"DB_POSTGRES_ENABLE", "DB_PASSWORD", "AUTH_LDAP_SERVER_URI", "AUTH_LDAP_PURGE_REMOVED",
          "EMAIL_DEBUG_DIR", "DEBUG_EMAIL_DIR", "LOG_TSK_RETENTION_SEC", "CONFIG_TIMEZONE",
          "REDIS_PASSWORD", "SECURE_SECRET_KEY", "KEYSTONED_SCHEDULE_UPDATE_LIMITS",
          "KEYSTONED_CLEANUP_BATCH_SIZE"})
        ck_assert_msg(unique.count(name), "%s is not a known setting", name);
    // 29 Keystone settings used, the alias, 31 ignored ones, 32 of keystoned's own.
    ck_assert_int_eq(names.size(), 93);
    // Every known name is accepted by the file parser (never "unknown setting").
    for (const std::string &name : names) {
        const std::string error = error_of(name + "=x\n");
        ck_assert_msg(error.find("unknown setting") == std::string::npos, "%s", error.c_str());
    }
    // describe() follows the same order.
    const std::vector<ConfigLine> lines = keystone::describe(Config());
    std::size_t at = 0;
    for (const ConfigLine &line : lines) {
        const auto it = std::find(names.begin() + static_cast<long>(at), names.end(), line.name);
        ck_assert_msg(it != names.end(), "%s out of order", line.name.c_str());
        at = static_cast<std::size_t>(it - names.begin());
    }
}
END_TEST

// ---- file syntax -----------------------------------------------------------------------------

// How one line after "EMAIL_HOST_USER" parses: the value, or the error after "FILE:1: ".
struct QuoteCase {
    const char *line;
    const char *value; // null when the line is an error
    const char *error;
};

const QuoteCase quote_cases[] = {
    {"EMAIL_HOST_USER=plain", "plain", nullptr},
    {"EMAIL_HOST_USER=", "", nullptr},
    {"EMAIL_HOST_USER=\"\"", "", nullptr},
    {"EMAIL_HOST_USER=''", "", nullptr},
    {"EMAIL_HOST_USER = spaced  ", "spaced", nullptr},
    {"EMAIL_HOST_USER\t=\tt", "t", nullptr},
    {"  EMAIL_HOST_USER=indented", "indented", nullptr},
    {"export EMAIL_HOST_USER=exported", "exported", nullptr},
    {"  export\tEMAIL_HOST_USER='exported too'", "exported too", nullptr},
    {"EMAIL_HOST_USER=pass#word # not a comment", "pass#word # not a comment", nullptr},
    {"EMAIL_HOST_USER=#start", "#start", nullptr},
    {"EMAIL_HOST_USER=a\"b'c", "a\"b'c", nullptr},
    {"EMAIL_HOST_USER=a=b=c", "a=b=c", nullptr},
    {"EMAIL_HOST_USER=x\r", "x", nullptr},
    {"EMAIL_HOST_USER=\"a \\\"b\\\" \\\\ \\$x\\tq\\n\"", "a \"b\" \\ $x\tq\n", nullptr},
    {"EMAIL_HOST_USER=\"  inner spaces  \"  ", "  inner spaces  ", nullptr},
    {"EMAIL_HOST_USER=\"# not a comment\"", "# not a comment", nullptr},
    {"EMAIL_HOST_USER='a\\nb $x \"q\" # c'", "a\\nb $x \"q\" # c", nullptr},
    {"EMAIL_HOST_USER=\"abc", nullptr, "EMAIL_HOST_USER: unterminated double quote: '\"abc'"},
    {"EMAIL_HOST_USER=\"abc\\\"", nullptr,
     "EMAIL_HOST_USER: unterminated double quote: '\"abc\\\"'"},
    {"EMAIL_HOST_USER='abc", nullptr, "EMAIL_HOST_USER: unterminated single quote: ''abc'"},
    {"EMAIL_HOST_USER=\"abc\"def", nullptr,
     "EMAIL_HOST_USER: unexpected text after the closing quote: '\"abc\"def'"},
    {"EMAIL_HOST_USER='abc' # comment", nullptr,
     "EMAIL_HOST_USER: unexpected text after the closing quote: ''abc' # comment'"},
    {"EMAIL_HOST_USER=\"a\\qb\"", nullptr,
     "EMAIL_HOST_USER: unknown escape \\q in double quotes (use single quotes for literal "
     "text): '\"a\\qb\"'"},
};

START_TEST(test_quotes) {
    const QuoteCase &t = quote_cases[_i];
    const std::string text = std::string(t.line) + "\n";
    if (t.value) {
        expect_eq(parse_ok(text).email_host_user, t.value, t.line);
    } else {
        expect_eq(error_of(text), conf + ":1: " + t.error, t.line);
    }
}
END_TEST

// Whole files that must fail, with the complete message.
struct SyntaxCase {
    const char *text;
    const char *error; // after "FILE:"
};

const SyntaxCase syntax_cases[] = {
    {"DB_NAME=x\nDB_HOST localhost\n", "2: no '=' in line (expected NAME=value)"},
    {"export DB_HOST\n", "1: no '=' in line (expected NAME=value)"},
    {"db_host=x\n",
     "1: invalid setting name 'db_host' (expected NAME=value, NAME of A-Z, 0-9 and _)"},
    {"1DB=x\n", "1: invalid setting name '1DB' (expected NAME=value, NAME of A-Z, 0-9 and _)"},
    {"=x\n", "1: invalid setting name '' (expected NAME=value, NAME of A-Z, 0-9 and _)"},
    {"DB HOST=x\n",
     "1: invalid setting name 'DB HOST' (expected NAME=value, NAME of A-Z, 0-9 and _)"},
    {"\n# comment\nNO_SUCH_SETTING=1\n", "3: NO_SUCH_SETTING: unknown setting"},
    {"DB_HOST=a\n# again:\nDB_HOST=b\n", "3: DB_HOST: set twice (first on line 1)"},
    {"DB_HOST=a\nexport DB_HOST=a\n", "2: DB_HOST: set twice (first on line 1)"},
    {"DEBUG=1\nDEBUG=0\n", "2: DEBUG: set twice (first on line 1)"},
    {"DB_PORT=5432\nDB_PORT=54x\n", "2: DB_PORT: set twice (first on line 1)"},
    {"DB_HOST=a\nDB_PORT=54x\nNO_SUCH=1\n", "2: DB_PORT: not a port number: '54x'"},
};

START_TEST(test_syntax_errors) {
    const SyntaxCase &t = syntax_cases[_i];
    expect_eq(error_of(t.text), conf + ":" + t.error, t.error);
}
END_TEST

START_TEST(test_nul_byte) {
    expect_eq(error_of(std::string("DB_HOST=db\nDB_NAME=a\0b\n", 23)),
              conf + ":2: line contains a NUL byte", "NUL byte");
}
END_TEST

START_TEST(test_comments_and_blank_lines) {
    const Config c = parse_ok("# keystoned settings\n"
                              "\n"
                              "   # indented comment\n"
                              "\t\n"
                              "#DB_NAME=commented_out\n"
                              "DB_NAME=site\r\n"
                              "export DB_USER=ks\n"
                              "DB_HOST = db.example.org\n"
                              "DB_PASSWORD=se#cret\n"
                              "DB_PORT=6543"); // no newline at the end
    expect_eq(c.db_name, "site", "DB_NAME");
    expect_eq(c.db_user, "ks", "DB_USER");
    expect_eq(c.db_host, "db.example.org", "DB_HOST");
    expect_eq(c.db_password, "se#cret", "DB_PASSWORD");
    ck_assert_int_eq(c.db_port, 6543);
    expect_eq(c.origin_text("DB_NAME"), conf + ":6", "origin of DB_NAME");
    expect_eq(c.origin_text("DB_PORT"), conf + ":10", "origin of DB_PORT");
    expect_eq(c.origin_text("DB_PASSWORD"), conf + ":9", "origin of DB_PASSWORD");
    ck_assert_int_eq(c.origins.size(), 5);
}
END_TEST

START_TEST(test_secret_never_echoed) {
    for (const char *text :
         {"DB_PASSWORD=\"hunter2#x\n", "AUTH_LDAP_BIND_PASSWORD='hunter2\n",
          "EMAIL_HOST_PASSWORD=\"hunter2\"x\n", "REDIS_PASSWORD=\"hun\\qter2\"\n",
          "SECURE_SECRET_KEY='hunter2' x\n"}) {
        const std::string error = error_of(text);
        ck_assert_msg(!error.empty(), "no error for %s", text);
        ck_assert_msg(error.find("hunter2") == std::string::npos &&
                          error.find("hun") == std::string::npos,
                      "secret echoed: %s", error.c_str());
        ck_assert_msg(error.rfind(conf + ":1: ", 0) == 0, "no file:line: %s", error.c_str());
    }
    expect_eq(error_of("DB_PASSWORD=\"hunter2\n"),
              conf + ":1: DB_PASSWORD: unterminated double quote", "secret syntax error");
}
END_TEST

// ---- values ----------------------------------------------------------------------------------

// A line that must parse, and the value describe() then shows for `name`.
struct GoodCase {
    const char *line;
    const char *name;
    const char *shown;
};

const GoodCase good_cases[] = {
    {"DB_POSTGRES_ENABLE=true", "DB_POSTGRES_ENABLE", "true"},
    {"DB_POSTGRES_ENABLE=Yes", "DB_POSTGRES_ENABLE", "true"},
    {"DB_NAME=keystone_prod", "DB_NAME", "keystone_prod"},
    {"DB_USER=keystone", "DB_USER", "keystone"},
    {"DB_HOST=db.example.org", "DB_HOST", "db.example.org"},
    {"DB_HOST=db_1.internal", "DB_HOST", "db_1.internal"},
    {"DB_HOST=10.1.2.3", "DB_HOST", "10.1.2.3"},
    {"DB_HOST=::1", "DB_HOST", "::1"},
    {"DB_HOST=fd00::5:1", "DB_HOST", "fd00::5:1"},
    {"DB_HOST=/var/run/postgresql", "DB_HOST", "/var/run/postgresql"},
    {"DB_HOST=", "DB_HOST", ""},
    {"DB_PORT=1", "DB_PORT", "1"},
    {"DB_PORT=65535", "DB_PORT", "65535"},
    {"DB_PORT=05432", "DB_PORT", "5432"},
    {"AUTH_LDAP_SERVER_URI=", "AUTH_LDAP_SERVER_URI", ""},
    {"AUTH_LDAP_SERVER_URI=ldap://ldap.example.org", "AUTH_LDAP_SERVER_URI",
     "ldap://ldap.example.org"},
    {"AUTH_LDAP_SERVER_URI=ldaps://a.example.org:636,LDAPS://b.example.org  ldapi:///",
     "AUTH_LDAP_SERVER_URI", "ldaps://a.example.org:636 LDAPS://b.example.org ldapi:///"},
    {"AUTH_LDAP_BIND_DN=cn=admin,dc=example,dc=org", "AUTH_LDAP_BIND_DN",
     "cn=admin,dc=example,dc=org"},
    {"AUTH_LDAP_START_TLS=true", "AUTH_LDAP_START_TLS", "true"},
    {"AUTH_LDAP_START_TLS=TRUE", "AUTH_LDAP_START_TLS", "true"},
    {"AUTH_LDAP_START_TLS=yes", "AUTH_LDAP_START_TLS", "true"},
    {"AUTH_LDAP_START_TLS=on", "AUTH_LDAP_START_TLS", "true"},
    {"AUTH_LDAP_START_TLS=1", "AUTH_LDAP_START_TLS", "true"},
    {"AUTH_LDAP_START_TLS=y", "AUTH_LDAP_START_TLS", "true"},
    {"AUTH_LDAP_START_TLS=OK", "AUTH_LDAP_START_TLS", "true"},
    {"AUTH_LDAP_START_TLS=false", "AUTH_LDAP_START_TLS", "false"},
    {"AUTH_LDAP_START_TLS=False", "AUTH_LDAP_START_TLS", "false"},
    {"AUTH_LDAP_START_TLS=no", "AUTH_LDAP_START_TLS", "false"},
    {"AUTH_LDAP_START_TLS=OFF", "AUTH_LDAP_START_TLS", "false"},
    {"AUTH_LDAP_START_TLS=0", "AUTH_LDAP_START_TLS", "false"},
    {"AUTH_LDAP_START_TLS=n", "AUTH_LDAP_START_TLS", "false"},
    {"AUTH_LDAP_USER_SEARCH=ou=people,dc=example,dc=org", "AUTH_LDAP_USER_SEARCH",
     "ou=people,dc=example,dc=org"},
    {"AUTH_LDAP_USER_FILTER=(uid=*)", "AUTH_LDAP_USER_FILTER", "(uid=*)"},
    {"AUTH_LDAP_USER_FILTER=(&(objectClass=posixAccount)(!(uid=root)))", "AUTH_LDAP_USER_FILTER",
     "(&(objectClass=posixAccount)(!(uid=root)))"},
    {"AUTH_LDAP_USER_FILTER=(cn=a\\28b\\29)", "AUTH_LDAP_USER_FILTER", "(cn=a\\28b\\29)"},
    {"AUTH_LDAP_LOGIN_FILTER=(mail=%(user)s)", "AUTH_LDAP_LOGIN_FILTER", "(mail=%(user)s)"},
    {"AUTH_LDAP_ATTR_MAP=", "AUTH_LDAP_ATTR_MAP", ""},
    {"AUTH_LDAP_ATTR_MAP=last_name=sn,first_name=givenName, email = mail", "AUTH_LDAP_ATTR_MAP",
     "email=mail,first_name=givenName,last_name=sn"},
    {"AUTH_LDAP_ATTR_MAP=username=0.9.2342.19200300.100.1.1,department=ou,role=x-role",
     "AUTH_LDAP_ATTR_MAP", "department=ou,role=x-role,username=0.9.2342.19200300.100.1.1"},
    {"AUTH_LDAP_REQUIRE_CERT=False", "AUTH_LDAP_REQUIRE_CERT", "false"},
    {"AUTH_LDAP_TIMEOUT=1", "AUTH_LDAP_TIMEOUT", "1"},
    {"AUTH_LDAP_TIMEOUT=3600", "AUTH_LDAP_TIMEOUT", "3600"},
    {"AUTH_LDAP_PURGE_REMOVED=true", "AUTH_LDAP_PURGE_REMOVED", "true"},
    {"EMAIL_HOST=smtp.example.org", "EMAIL_HOST", "smtp.example.org"},
    {"EMAIL_HOST=192.0.2.25", "EMAIL_HOST", "192.0.2.25"},
    {"EMAIL_PORT=587", "EMAIL_PORT", "587"},
    {"EMAIL_USE_TLS=yes", "EMAIL_USE_TLS", "true"},
    {"EMAIL_FROM_ADDRESS=hpc-help+keystone@example.edu", "EMAIL_FROM_ADDRESS",
     "hpc-help+keystone@example.edu"},
    {"EMAIL_TEMPLATE_DIR=/srv/keystone/templates", "EMAIL_TEMPLATE_DIR", "/srv/keystone/templates"},
    {"EMAIL_DEBUG_DIR=/var/tmp/mails", "EMAIL_DEBUG_DIR", "/var/tmp/mails"},
    {"DEBUG_EMAIL_DIR=/var/tmp/old", "EMAIL_DEBUG_DIR", "/var/tmp/old"},
    {"LOG_REQ_RETENTION_SEC=0", "LOG_REQ_RETENTION_SEC", "0"},
    {"LOG_REQ_RETENTION_SEC=-1", "LOG_REQ_RETENTION_SEC", "-1"},
    {"LOG_AUD_RETENTION_SEC=+86400", "LOG_AUD_RETENTION_SEC", "86400"},
    {"LOG_TSK_RETENTION_SEC=9223372036854775807", "LOG_TSK_RETENTION_SEC", "9223372036854775807"},
    {"LOG_TSK_RETENTION_SEC=-9223372036854775808", "LOG_TSK_RETENTION_SEC", "-9223372036854775808"},
    {"CONFIG_TIMEZONE=UTC", "CONFIG_TIMEZONE", "UTC"},
    {"CONFIG_TIMEZONE=Europe/Berlin", "CONFIG_TIMEZONE", "Europe/Berlin"},
    {"CONFIG_TIMEZONE=America/New_York", "CONFIG_TIMEZONE", "America/New_York"},
    {"CONFIG_TIMEZONE=Etc/GMT+5", "CONFIG_TIMEZONE", "Etc/GMT+5"},
    {"KEYSTONED_LOG_LEVEL=error", "KEYSTONED_LOG_LEVEL", "error"},
    {"KEYSTONED_LOG_LEVEL=Warning", "KEYSTONED_LOG_LEVEL", "warning"},
    {"KEYSTONED_LOG_LEVEL=VERBOSE", "KEYSTONED_LOG_LEVEL", "verbose"},
    {"KEYSTONED_LOG_LEVEL=debug", "KEYSTONED_LOG_LEVEL", "debug"},
    {"KEYSTONED_LOG_LEVEL=DEBUG2", "KEYSTONED_LOG_LEVEL", "debug2"},
    {"KEYSTONED_SYSLOG=on", "KEYSTONED_SYSLOG", "true"},
    {"KEYSTONED_WORKER=node01.cluster", "KEYSTONED_WORKER", "node01.cluster"},
    {"KEYSTONED_DB_CONNECT_TIMEOUT=300", "KEYSTONED_DB_CONNECT_TIMEOUT", "300"},
    {"KEYSTONED_STOP_TIMEOUT=600", "KEYSTONED_STOP_TIMEOUT", "600"},
    {"KEYSTONED_CLEANUP_BATCH_SIZE=1", "KEYSTONED_CLEANUP_BATCH_SIZE", "1"},
    {"KEYSTONED_CLEANUP_BATCH_SIZE=1000000", "KEYSTONED_CLEANUP_BATCH_SIZE", "1000000"},
    {"KEYSTONED_LDAP_CA_FILE=/etc/ssl/ca.pem", "KEYSTONED_LDAP_CA_FILE", "/etc/ssl/ca.pem"},
    {"KEYSTONED_LDAP_PAGE_SIZE=1000", "KEYSTONED_LDAP_PAGE_SIZE", "1000"},
    {"KEYSTONED_LDAP_MAX_REMOVE=0", "KEYSTONED_LDAP_MAX_REMOVE", "0"},
    {"KEYSTONED_LDAP_MAX_REMOVE_PERCENT=100", "KEYSTONED_LDAP_MAX_REMOVE_PERCENT", "100"},
    {"KEYSTONED_SPOOL_DIR=/srv/spool", "KEYSTONED_SPOOL_DIR", "/srv/spool"},
    {"KEYSTONED_SPOOL_DIR=", "KEYSTONED_SPOOL_DIR", ""},
    {"KEYSTONED_QUARANTINE_DIR=/srv/q", "KEYSTONED_QUARANTINE_DIR", "/srv/q"},
    {"KEYSTONED_INGEST_INTERVAL=3600", "KEYSTONED_INGEST_INTERVAL", "3600"},
    {"KEYSTONED_INGEST_MAX_RECORDS=1", "KEYSTONED_INGEST_MAX_RECORDS", "1"},
    {"KEYSTONED_INGEST_CONNECTIONS=16", "KEYSTONED_INGEST_CONNECTIONS", "16"},
    {"KEYSTONED_SLURM_CONF=/etc/slurm/slurm.conf", "KEYSTONED_SLURM_CONF", "/etc/slurm/slurm.conf"},
    {"KEYSTONED_JOBS_OVERLAP=0", "KEYSTONED_JOBS_OVERLAP", "0"},
    {"KEYSTONED_JOBS_FIRST_WINDOW=60", "KEYSTONED_JOBS_FIRST_WINDOW", "60"},
    {"KEYSTONED_CLUSTERS=alpha, beta gamma-2", "KEYSTONED_CLUSTERS", "alpha,beta,gamma-2"},
    {"KEYSTONED_CLUSTERS=", "KEYSTONED_CLUSTERS", ""},
    {"KEYSTONED_METRICS_ADDRESS=off", "KEYSTONED_METRICS_ADDRESS", "off"},
    {"KEYSTONED_METRICS_ADDRESS=", "KEYSTONED_METRICS_ADDRESS", ""},
    {"KEYSTONED_METRICS_ADDRESS=0.0.0.0:9100", "KEYSTONED_METRICS_ADDRESS", "0.0.0.0:9100"},
    {"KEYSTONED_METRICS_ADDRESS=[::1]:9817", "KEYSTONED_METRICS_ADDRESS", "[::1]:9817"},
    {"KEYSTONED_METRICS_ADDRESS=head01:65535", "KEYSTONED_METRICS_ADDRESS", "head01:65535"},
    {"KEYSTONED_SCHEDULE_UPDATE_LIMITS=off", "KEYSTONED_SCHEDULE_UPDATE_LIMITS", "off"},
    {"KEYSTONED_SCHEDULE_UPDATE_LIMITS=OFF", "KEYSTONED_SCHEDULE_UPDATE_LIMITS", "off"},
    {"KEYSTONED_SCHEDULE_CLEAR_LOG_RECORDS=30 2 * * *", "KEYSTONED_SCHEDULE_CLEAR_LOG_RECORDS",
     "30 2 * * *"},
    // Cron syntax is the caller's business (daemon/cron.hpp): not checked here.
    {"KEYSTONED_SCHEDULE_NOTIFY_PAST_EXPIRATIONS=whenever",
     "KEYSTONED_SCHEDULE_NOTIFY_PAST_EXPIRATIONS", "whenever"},
    {"SECURE_ALLOWED_HOSTS=api.example.org,localhost", "SECURE_ALLOWED_HOSTS",
     "api.example.org,localhost"},
    {"DEBUG=maybe", "DEBUG", "maybe"},
    {"REDIS_PORT=not checked", "REDIS_PORT", "not checked"},
};

START_TEST(test_good_values) {
    const GoodCase &t = good_cases[_i];
    const Config c = parse_ok(std::string(t.line) + "\n");
    const ConfigLine line = line_of(c, t.name);
    expect_eq(line.value, t.shown, t.line);
    expect_eq(line.origin, conf + ":1", std::string("origin for ") + t.line);
}
END_TEST

// A line that must fail, with the message after "FILE:1: ".
struct BadCase {
    const char *line;
    const char *error;
};

const BadCase bad_cases[] = {
    {"DB_POSTGRES_ENABLE=false",
     "DB_POSTGRES_ENABLE: keystoned needs PostgreSQL (Keystone's SQLite mode is not supported); "
     "set DB_POSTGRES_ENABLE=true or remove the line"},
    {"DB_POSTGRES_ENABLE=0",
     "DB_POSTGRES_ENABLE: keystoned needs PostgreSQL (Keystone's SQLite mode is not supported); "
     "set DB_POSTGRES_ENABLE=true or remove the line"},
    {"DB_POSTGRES_ENABLE=sqlite", "DB_POSTGRES_ENABLE: not a boolean (true or false): 'sqlite'"},
    {"DB_NAME=", "DB_NAME: must not be empty: ''"},
    {"DB_HOST=db host",
     "DB_HOST: not a host name, IP address or absolute socket directory: 'db host'"},
    {"DB_HOST=run/postgresql",
     "DB_HOST: not a host name, IP address or absolute socket directory: 'run/postgresql'"},
    {"DB_HOST=db..example.org",
     "DB_HOST: not a host name, IP address or absolute socket directory: 'db..example.org'"},
    {"DB_HOST=-db", "DB_HOST: not a host name, IP address or absolute socket directory: '-db'"},
    {"DB_HOST=db:5432",
     "DB_HOST: not a host name, IP address or absolute socket directory: 'db:5432'"},
    {"DB_PORT=54x", "DB_PORT: not a port number: '54x'"},
    {"DB_PORT=0", "DB_PORT: not a port number: '0'"},
    {"DB_PORT=65536", "DB_PORT: not a port number: '65536'"},
    {"DB_PORT=-1", "DB_PORT: not a port number: '-1'"},
    {"DB_PORT=+5432", "DB_PORT: not a port number: '+5432'"},
    {"DB_PORT=", "DB_PORT: not a port number: ''"},
    {"DB_PORT=99999999999999999999999", "DB_PORT: not a port number: '99999999999999999999999'"},
    {"DB_PORT=\" 5432\"", "DB_PORT: not a port number: ' 5432'"},
    {"AUTH_LDAP_SERVER_URI=http://ldap.example.org",
     "AUTH_LDAP_SERVER_URI: not an ldap://, ldaps:// or ldapi:// URI: 'http://ldap.example.org'"},
    {"AUTH_LDAP_SERVER_URI=ldaps://a.example.org, ldap.example.org",
     "AUTH_LDAP_SERVER_URI: not an ldap://, ldaps:// or ldapi:// URI: 'ldap.example.org'"},
    {"AUTH_LDAP_START_TLS=maybe", "AUTH_LDAP_START_TLS: not a boolean (true or false): 'maybe'"},
    {"AUTH_LDAP_START_TLS=", "AUTH_LDAP_START_TLS: not a boolean (true or false): ''"},
    {"AUTH_LDAP_START_TLS=tru", "AUTH_LDAP_START_TLS: not a boolean (true or false): 'tru'"},
    {"AUTH_LDAP_REQUIRE_CERT=never",
     "AUTH_LDAP_REQUIRE_CERT: not a boolean (true or false): 'never'"},
    {"EMAIL_USE_TLS=2", "EMAIL_USE_TLS: not a boolean (true or false): '2'"},
    {"KEYSTONED_SYSLOG=enabled", "KEYSTONED_SYSLOG: not a boolean (true or false): 'enabled'"},
    {"AUTH_LDAP_USER_FILTER=objectClass=account",
     "AUTH_LDAP_USER_FILTER: not an LDAP filter (one parenthesised expression with balanced "
     "parentheses): 'objectClass=account'"},
    {"AUTH_LDAP_USER_FILTER=((uid=a)",
     "AUTH_LDAP_USER_FILTER: not an LDAP filter (one parenthesised expression with balanced "
     "parentheses): '((uid=a)'"},
    {"AUTH_LDAP_USER_FILTER=(uid=a))(",
     "AUTH_LDAP_USER_FILTER: not an LDAP filter (one parenthesised expression with balanced "
     "parentheses): '(uid=a))('"},
    {"AUTH_LDAP_USER_FILTER=(uid=a)(uid=b)",
     "AUTH_LDAP_USER_FILTER: not an LDAP filter (one parenthesised expression with balanced "
     "parentheses): '(uid=a)(uid=b)'"},
    {"AUTH_LDAP_USER_FILTER=",
     "AUTH_LDAP_USER_FILTER: not an LDAP filter (one parenthesised expression with balanced "
     "parentheses): ''"},
    {"AUTH_LDAP_ATTR_MAP=nickname=cn",
     "AUTH_LDAP_ATTR_MAP: unknown field 'nickname' (username, first_name, last_name, email, "
     "department, role)"},
    {"AUTH_LDAP_ATTR_MAP=email=mail,email=altMail",
     "AUTH_LDAP_ATTR_MAP: field email is mapped twice: 'email=mail,email=altMail'"},
    {"AUTH_LDAP_ATTR_MAP=email", "AUTH_LDAP_ATTR_MAP: entry 'email' is not field=ldapAttribute"},
    {"AUTH_LDAP_ATTR_MAP=email=mail,,role=title",
     "AUTH_LDAP_ATTR_MAP: empty entry in the list: 'email=mail,,role=title'"},
    {"AUTH_LDAP_ATTR_MAP=email=mail,",
     "AUTH_LDAP_ATTR_MAP: empty entry in the list: 'email=mail,'"},
    {"AUTH_LDAP_ATTR_MAP=email=1mail",
     "AUTH_LDAP_ATTR_MAP: not an LDAP attribute name or OID for email: '1mail'"},
    {"AUTH_LDAP_ATTR_MAP=email=ma il",
     "AUTH_LDAP_ATTR_MAP: not an LDAP attribute name or OID for email: 'ma il'"},
    {"AUTH_LDAP_ATTR_MAP=email=",
     "AUTH_LDAP_ATTR_MAP: not an LDAP attribute name or OID for email: ''"},
    {"AUTH_LDAP_ATTR_MAP=username=1.2.",
     "AUTH_LDAP_ATTR_MAP: not an LDAP attribute name or OID for username: '1.2.'"},
    {"AUTH_LDAP_ATTR_MAP=username=12",
     "AUTH_LDAP_ATTR_MAP: not an LDAP attribute name or OID for username: '12'"},
    {"AUTH_LDAP_TIMEOUT=0", "AUTH_LDAP_TIMEOUT: not an integer between 1 and 3600: '0'"},
    {"AUTH_LDAP_TIMEOUT=3601", "AUTH_LDAP_TIMEOUT: not an integer between 1 and 3600: '3601'"},
    {"AUTH_LDAP_TIMEOUT=10s", "AUTH_LDAP_TIMEOUT: not an integer between 1 and 3600: '10s'"},
    {"AUTH_LDAP_TIMEOUT=-5", "AUTH_LDAP_TIMEOUT: not an integer between 1 and 3600: '-5'"},
    {"AUTH_LDAP_TIMEOUT=1.5", "AUTH_LDAP_TIMEOUT: not an integer between 1 and 3600: '1.5'"},
    {"EMAIL_HOST=smtp.example.org:25",
     "EMAIL_HOST: not a host name or IP address: 'smtp.example.org:25'"},
    {"EMAIL_HOST=", "EMAIL_HOST: not a host name or IP address: ''"},
    {"EMAIL_PORT=smtp", "EMAIL_PORT: not a port number: 'smtp'"},
    {"EMAIL_FROM_ADDRESS=noreply",
     "EMAIL_FROM_ADDRESS: not a bare e-mail address such as noreply@example.org: 'noreply'"},
    {"EMAIL_FROM_ADDRESS=a@b@example.org",
     "EMAIL_FROM_ADDRESS: not a bare e-mail address such as noreply@example.org: "
     "'a@b@example.org'"},
    {"EMAIL_FROM_ADDRESS=Keystone <noreply@example.org>",
     "EMAIL_FROM_ADDRESS: not a bare e-mail address such as noreply@example.org: "
     "'Keystone <noreply@example.org>'"},
    {"EMAIL_FROM_ADDRESS=@example.org",
     "EMAIL_FROM_ADDRESS: not a bare e-mail address such as noreply@example.org: "
     "'@example.org'"},
    {"EMAIL_FROM_ADDRESS=noreply@",
     "EMAIL_FROM_ADDRESS: not a bare e-mail address such as noreply@example.org: 'noreply@'"},
    {"EMAIL_FROM_ADDRESS=\"a@b\\nBcc: x@y\"",
     "EMAIL_FROM_ADDRESS: not a bare e-mail address such as noreply@example.org: "
     "'a@b\\x0aBcc: x@y'"},
    {"DEBUG_EMAIL_DIR=\"/tmp", "DEBUG_EMAIL_DIR: unterminated double quote: '\"/tmp'"},
    {"LOG_REQ_RETENTION_SEC=30d",
     "LOG_REQ_RETENTION_SEC: not an integer number of seconds (0 or less turns pruning off): "
     "'30d'"},
    {"LOG_AUD_RETENTION_SEC=",
     "LOG_AUD_RETENTION_SEC: not an integer number of seconds (0 or less turns pruning off): "
     "''"},
    {"LOG_AUD_RETENTION_SEC=--5",
     "LOG_AUD_RETENTION_SEC: not an integer number of seconds (0 or less turns pruning off): "
     "'--5'"},
    {"LOG_AUD_RETENTION_SEC=1e5",
     "LOG_AUD_RETENTION_SEC: not an integer number of seconds (0 or less turns pruning off): "
     "'1e5'"},
    {"LOG_TSK_RETENTION_SEC=9223372036854775808",
     "LOG_TSK_RETENTION_SEC: number out of range: '9223372036854775808'"},
    {"LOG_TSK_RETENTION_SEC=-9223372036854775809",
     "LOG_TSK_RETENTION_SEC: number out of range: '-9223372036854775809'"},
    {"CONFIG_TIMEZONE=../etc/passwd",
     "CONFIG_TIMEZONE: not a time zone name such as Europe/Berlin: '../etc/passwd'"},
    {"CONFIG_TIMEZONE=Europe/../../../etc/passwd",
     "CONFIG_TIMEZONE: not a time zone name such as Europe/Berlin: "
     "'Europe/../../../etc/passwd'"},
    {"CONFIG_TIMEZONE=/etc/localtime",
     "CONFIG_TIMEZONE: must be a zone name such as Europe/Berlin, not a path: '/etc/localtime'"},
    {"CONFIG_TIMEZONE=", "CONFIG_TIMEZONE: must not be empty: ''"},
    {"CONFIG_TIMEZONE=Europe//Berlin",
     "CONFIG_TIMEZONE: not a time zone name such as Europe/Berlin: 'Europe//Berlin'"},
    {"CONFIG_TIMEZONE=Mars/Olympus_Mons",
     "CONFIG_TIMEZONE: unknown time zone (no TZif file /usr/share/zoneinfo/Mars/Olympus_Mons): "
     "'Mars/Olympus_Mons'"},
    {"CONFIG_TIMEZONE=Europe",
     "CONFIG_TIMEZONE: unknown time zone (no TZif file /usr/share/zoneinfo/Europe): 'Europe'"},
    {"CONFIG_TIMEZONE=zone.tab",
     "CONFIG_TIMEZONE: unknown time zone (no TZif file /usr/share/zoneinfo/zone.tab): "
     "'zone.tab'"},
    {"KEYSTONED_LOG_LEVEL=trace",
     "KEYSTONED_LOG_LEVEL: not a log level (error, warning, info, verbose, debug, debug2): "
     "'trace'"},
    {"KEYSTONED_LOG_LEVEL=",
     "KEYSTONED_LOG_LEVEL: not a log level (error, warning, info, verbose, debug, debug2): ''"},
    {"KEYSTONED_WORKER=node 01",
     "KEYSTONED_WORKER: must not contain spaces or control characters: 'node 01'"},
    {"KEYSTONED_DB_CONNECT_TIMEOUT=301",
     "KEYSTONED_DB_CONNECT_TIMEOUT: not an integer between 1 and 300: '301'"},
    {"KEYSTONED_STOP_TIMEOUT=601",
     "KEYSTONED_STOP_TIMEOUT: not an integer between 1 and 600: '601'"},
    {"KEYSTONED_STOP_TIMEOUT=0", "KEYSTONED_STOP_TIMEOUT: not an integer between 1 and 600: '0'"},
    {"KEYSTONED_CLEANUP_BATCH_SIZE=0",
     "KEYSTONED_CLEANUP_BATCH_SIZE: not an integer between 1 and 1000000: '0'"},
    {"KEYSTONED_CLEANUP_BATCH_SIZE=1000001",
     "KEYSTONED_CLEANUP_BATCH_SIZE: not an integer between 1 and 1000000: '1000001'"},
    {"KEYSTONED_CLEANUP_BATCH_SIZE=5k",
     "KEYSTONED_CLEANUP_BATCH_SIZE: not an integer between 1 and 1000000: '5k'"},
    {"KEYSTONED_LDAP_PAGE_SIZE=0",
     "KEYSTONED_LDAP_PAGE_SIZE: not an integer between 1 and 100000: '0'"},
    {"KEYSTONED_LDAP_MAX_REMOVE_PERCENT=101",
     "KEYSTONED_LDAP_MAX_REMOVE_PERCENT: not an integer between 0 and 100: '101'"},
    {"KEYSTONED_SPOOL_DIR=spool", "KEYSTONED_SPOOL_DIR: not an absolute path: 'spool'"},
    {"KEYSTONED_SLURM_CONF=slurm.conf",
     "KEYSTONED_SLURM_CONF: not an absolute path: 'slurm.conf'"},
    {"KEYSTONED_INGEST_INTERVAL=0",
     "KEYSTONED_INGEST_INTERVAL: not an integer between 1 and 3600: '0'"},
    {"KEYSTONED_INGEST_CONNECTIONS=0",
     "KEYSTONED_INGEST_CONNECTIONS: not an integer between 1 and 16: '0'"},
    {"KEYSTONED_JOBS_OVERLAP=2592001",
     "KEYSTONED_JOBS_OVERLAP: not an integer between 0 and 2592000: '2592001'"},
    {"KEYSTONED_LDAP_MAX_REMOVE=-1",
     "KEYSTONED_LDAP_MAX_REMOVE: not an integer between 0 and 100000000: '-1'"},
    {"KEYSTONED_CLUSTERS=a,a", "KEYSTONED_CLUSTERS: cluster named twice: a"},
    {"KEYSTONED_CLUSTERS=a;b", "KEYSTONED_CLUSTERS: not a cluster name: 'a;b'"},
    {"KEYSTONED_METRICS_ADDRESS=9817",
     "KEYSTONED_METRICS_ADDRESS: not HOST:PORT (or \"off\"): '9817'"},
    {"KEYSTONED_METRICS_ADDRESS=::1:9817",
     "KEYSTONED_METRICS_ADDRESS: not HOST:PORT (write an IPv6 address as [ADDRESS]:PORT): "
     "'::1:9817'"},
    {"KEYSTONED_METRICS_ADDRESS=localhost:0",
     "KEYSTONED_METRICS_ADDRESS: not a port number (1-65535) after the last ':': 'localhost:0'"},
    {"KEYSTONED_METRICS_ADDRESS=localhost:http",
     "KEYSTONED_METRICS_ADDRESS: not a port number (1-65535) after the last ':': "
     "'localhost:http'"},
    {"KEYSTONED_SCHEDULE_LDAP_UPDATE_USERS=",
     "KEYSTONED_SCHEDULE_LDAP_UPDATE_USERS: empty (write off to disable the task): ''"},
    {"KEYSTONED_SCHEDULE_SLURM_UPDATE_JOB_STATS=\"\"",
     "KEYSTONED_SCHEDULE_SLURM_UPDATE_JOB_STATS: empty (write off to disable the task): ''"},
};

START_TEST(test_bad_values) {
    const BadCase &t = bad_cases[_i];
    expect_eq(error_of(std::string(t.line) + "\n"), conf + ":1: " + t.error, t.line);
}
END_TEST

START_TEST(test_ldap_lists) {
    const Config c = parse_ok("AUTH_LDAP_SERVER_URI=\" ldaps://a.example.org:636 , "
                              "ldap://b.example.org,,ldapi://%2Fvar%2Frun%2Fslapd.sock \"\n"
                              "AUTH_LDAP_ATTR_MAP=username=uid,first_name=givenName,"
                              "last_name=sn,email=mail,department=ou,role=employeeType\n");
    ck_assert(c.ldap_enabled());
    const std::vector<std::string> want = {"ldaps://a.example.org:636", "ldap://b.example.org",
                                           "ldapi://%2Fvar%2Frun%2Fslapd.sock"};
    ck_assert_int_eq(c.ldap_server_uris.size(), want.size());
    for (std::size_t i = 0; i < want.size(); ++i)
        expect_eq(c.ldap_server_uris[i], want[i], "LDAP URI");
    ck_assert_int_eq(c.ldap_attr_map.size(), 6);
    expect_eq(c.ldap_attr_map.at("username"), "uid", "username");
    expect_eq(c.ldap_attr_map.at("role"), "employeeType", "role");
    expect_eq(c.ldap_attr_map.at("department"), "ou", "department");
}
END_TEST

START_TEST(test_schedules) {
    const Config c = parse_ok("KEYSTONED_SCHEDULE_SLURM_UPDATE_JOB_STATS=off\n"
                              "KEYSTONED_SCHEDULE_UPDATE_LIMITS=\"30 * * * *\"\n");
    expect_eq(c.schedules.at("slurm_update_job_stats"), "", "disabled task");
    expect_eq(c.schedules.at("update_limits"), "30 * * * *", "update_limits");
    expect_eq(c.schedules.at("ldap_update_users"), "*/15 * * * *", "untouched default");
    expect_eq(keystone::schedule_setting_name("update_limits"), "KEYSTONED_SCHEDULE_UPDATE_LIMITS",
              "schedule_setting_name");
    expect_eq(c.origin_text(keystone::schedule_setting_name("update_limits")), conf + ":2",
              "origin of a schedule");
    expect_eq(c.origin_text(keystone::schedule_setting_name("ldap_update_users")), "default",
              "origin of a default schedule");
    // Every schedule key has its setting.
    for (const auto &entry : c.schedules) {
        const std::string name = keystone::schedule_setting_name(entry.first);
        const auto &names = keystone::known_setting_names();
        ck_assert_msg(std::find(names.begin(), names.end(), name) != names.end(), "%s",
                      name.c_str());
    }
}
END_TEST

START_TEST(test_log_levels) {
    for (LogLevel level : {LogLevel::error, LogLevel::warning, LogLevel::info, LogLevel::verbose,
                           LogLevel::debug, LogLevel::debug2}) {
        const auto parsed = keystone::parse_log_level(keystone::log_level_name(level));
        ck_assert(parsed && *parsed == level);
    }
    ck_assert(keystone::parse_log_level("Debug2") == LogLevel::debug2);
    ck_assert(!keystone::parse_log_level("debug3"));
    ck_assert(!keystone::parse_log_level(""));
}
END_TEST

START_TEST(test_debug_email_dir_alias) {
    const Config old_name = parse_ok("\nDEBUG_EMAIL_DIR=/var/tmp/mails\n");
    expect_eq(old_name.email_debug_dir, "/var/tmp/mails", "DEBUG_EMAIL_DIR value");
    expect_eq(old_name.origin_text("EMAIL_DEBUG_DIR"), conf + ":2", "alias origin");
    for (const ConfigLine &line : keystone::describe(old_name))
        ck_assert_msg(line.name != "DEBUG_EMAIL_DIR", "alias listed by describe()");

    expect_eq(error_of("DEBUG_EMAIL_DIR=/a\nEMAIL_DEBUG_DIR=/b\n"),
              conf + ":2: EMAIL_DEBUG_DIR: already set as DEBUG_EMAIL_DIR on line 1 (two names "
                     "for one setting); keep one",
              "both names in the file");
    expect_eq(error_of("EMAIL_DEBUG_DIR=/a\nDEBUG_EMAIL_DIR=/b\n"),
              conf + ":2: DEBUG_EMAIL_DIR: already set as EMAIL_DEBUG_DIR on line 1 (two names "
                     "for one setting); keep one",
              "both names in the file, other order");
    expect_eq(error_of("DEBUG_EMAIL_DIR=/a\nDEBUG_EMAIL_DIR=/b\n"),
              conf + ":2: DEBUG_EMAIL_DIR: set twice (first on line 1)", "alias twice");

    const Config from_env = parse_ok("EMAIL_DEBUG_DIR=/file\n", {{"DEBUG_EMAIL_DIR", "/env"}});
    expect_eq(from_env.email_debug_dir, "/env", "alias from the environment");
    expect_eq(from_env.origin_text("EMAIL_DEBUG_DIR"), "environment variable DEBUG_EMAIL_DIR",
              "alias origin from the environment");
    expect_eq(error_of("", {{"DEBUG_EMAIL_DIR", "/a"}, {"EMAIL_DEBUG_DIR", "/b"}}),
              "environment variables EMAIL_DEBUG_DIR and DEBUG_EMAIL_DIR are both set (two "
              "names for one setting); keep one",
              "both names in the environment");
}
END_TEST

// ---- environment -----------------------------------------------------------------------------

START_TEST(test_environment_overrides) {
    const Environment env = {
        {"DB_PORT", "6543"},
        {"DB_PASSWORD", "from-env"},
        {"PATH", "/usr/bin:/bin"},
        {"HOME", "/root"},
        {"db_port", "1"},
        {"DB_SOMETHING_ELSE", "x"},
        {"KEYSTONED_SYSLOG", "yes"},
        {"REDIS_HOST", "redis.internal"},
        {"AUTH_LDAP_TIMEOUT", "30"},
        {"KEYSTONED_SCHEDULE_UPDATE_LIMITS", "off"},
        // What systemd's EnvironmentFile= pointing at the same file exports: no override.
        {"DB_NAME", "site"},
    };
    const Config c = parse_ok("DB_HOST=db.example.org\nDB_PORT=5432\nDB_NAME='site'\n", env);
    ck_assert_int_eq(c.db_port, 6543);
    expect_eq(c.db_host, "db.example.org", "file value kept");
    expect_eq(c.db_password, "from-env", "DB_PASSWORD");
    ck_assert(c.syslog);
    ck_assert_int_eq(c.ldap_timeout, 30);
    expect_eq(c.schedules.at("update_limits"), "", "schedule off from the environment");
    expect_eq(c.web_api_settings.at("REDIS_HOST"), "redis.internal", "ignored from env");
    ck_assert_int_eq(c.web_api_settings.size(), 1);
    expect_eq(c.origin_text("DB_PORT"), "environment variable DB_PORT", "env origin");
    expect_eq(c.origin_text("DB_HOST"), conf + ":1", "file origin");
    expect_eq(c.origin_text("DB_NAME"), conf + ":3", "same value in file and environment");
    expect_eq(c.origin_text("DB_USER"), "default", "default origin");
    expect_eq(line_of(c, "DB_PORT").origin, "environment variable DB_PORT", "describe origin");
}
END_TEST

struct EnvCase {
    const char *name;
    const char *value;
    const char *error;
};

const EnvCase env_cases[] = {
    {"DB_PORT", "54x", "environment variable DB_PORT: not a port number: '54x'"},
    // Environment values are taken exactly as they are: no trimming, no unquoting.
    {"DB_PORT", " 5432", "environment variable DB_PORT: not a port number: ' 5432'"},
    {"DB_PORT", "\"5432\"", "environment variable DB_PORT: not a port number: '\"5432\"'"},
    {"DB_POSTGRES_ENABLE", "False",
     "environment variable DB_POSTGRES_ENABLE: keystoned needs PostgreSQL (Keystone's SQLite "
     "mode is not supported); set DB_POSTGRES_ENABLE=true or remove the line"},
    {"AUTH_LDAP_START_TLS", "nope",
     "environment variable AUTH_LDAP_START_TLS: not a boolean (true or false): 'nope'"},
    {"CONFIG_TIMEZONE", "../../etc/passwd",
     "environment variable CONFIG_TIMEZONE: not a time zone name such as Europe/Berlin: "
     "'../../etc/passwd'"},
    {"KEYSTONED_SCHEDULE_CLEAR_LOG_RECORDS", "",
     "environment variable KEYSTONED_SCHEDULE_CLEAR_LOG_RECORDS: empty (write off to disable "
     "the task): ''"},
};

START_TEST(test_environment_errors) {
    const EnvCase &t = env_cases[_i];
    expect_eq(error_of("DB_PORT=5432\n", {{t.name, t.value}}), t.error, t.error);
}
END_TEST

START_TEST(test_file_checked_before_environment) {
    // The whole file is validated even where the environment would override it.
    expect_eq(error_of("DB_PORT=54x\n", {{"DB_PORT", "5432"}}),
              conf + ":1: DB_PORT: not a port number: '54x'", "file error first");
}
END_TEST

START_TEST(test_process_environment) {
    ck_assert_int_eq(setenv("KEYSTONE_CONFIG_TEST_VARIABLE", "a=b c", 1), 0);
    const Environment env = keystone::process_environment();
    const auto it = env.find("KEYSTONE_CONFIG_TEST_VARIABLE");
    ck_assert(it != env.end());
    expect_eq(it->second, "a=b c", "value with '='");
    ck_assert_int_eq(unsetenv("KEYSTONE_CONFIG_TEST_VARIABLE"), 0);
}
END_TEST

// ---- describe --------------------------------------------------------------------------------

START_TEST(test_describe_masks_secrets) {
    const std::string secret = "Tr0ub4dor&3";
    const Config c = parse_ok("DB_PASSWORD=" + secret + "\nAUTH_LDAP_BIND_PASSWORD=" + secret +
                              "\nEMAIL_HOST_PASSWORD=" + secret + "\nSECURE_SECRET_KEY=" + secret +
                              "\nREDIS_PASSWORD=" + secret + "\nREDIS_DB=2\n");
    for (const char *name : {"DB_PASSWORD", "AUTH_LDAP_BIND_PASSWORD", "EMAIL_HOST_PASSWORD",
                             "SECURE_SECRET_KEY", "REDIS_PASSWORD"})
        expect_eq(line_of(c, name).value, "********", name);
    for (const ConfigLine &line : keystone::describe(c))
        ck_assert_msg(line.value.find(secret) == std::string::npos, "%s shows the secret",
                      line.name.c_str());
    ck_assert(line_of(c, "SECURE_SECRET_KEY").ignored);
    ck_assert(line_of(c, "REDIS_DB").ignored);
    expect_eq(line_of(c, "REDIS_DB").value, "2", "ignored value shown");
    ck_assert(!line_of(c, "DB_PASSWORD").ignored);

    // Empty secrets show as empty: "not set" is useful to see.
    const Config empty = parse_ok("DB_PASSWORD=\nREDIS_PASSWORD=''\n");
    expect_eq(line_of(empty, "DB_PASSWORD").value, "", "empty DB_PASSWORD");
    expect_eq(line_of(empty, "REDIS_PASSWORD").value, "", "empty REDIS_PASSWORD");
}
END_TEST

START_TEST(test_describe_defaults) {
    const std::vector<ConfigLine> lines = keystone::describe(Config());
    // Every setting keystoned uses; no alias; ignored ones only when set.
    ck_assert_int_eq(lines.size(), 61);
    for (const ConfigLine &line : lines) {
        expect_eq(line.origin, "default", line.name);
        ck_assert(!line.ignored);
    }
    expect_eq(lines.front().name, "DB_POSTGRES_ENABLE", "first line");
    expect_eq(line_of(Config(), "DB_POSTGRES_ENABLE").value, "true", "DB_POSTGRES_ENABLE");
    expect_eq(line_of(Config(), "AUTH_LDAP_USER_FILTER").value, "(objectClass=account)", "filter");
    expect_eq(line_of(Config(), "KEYSTONED_SCHEDULE_LDAP_UPDATE_USERS").value, "*/15 * * * *",
              "schedule");
    expect_eq(line_of(Config(), "KEYSTONED_LOG_LEVEL").value, "info", "log level");
    expect_eq(line_of(Config(), "LOG_REQ_RETENTION_SEC").value, "2592000", "retention");
}
END_TEST

// ---- files -----------------------------------------------------------------------------------

START_TEST(test_permissions) {
    {
        const TempFile file("DB_HOST=db\nDB_PASSWORD=secret\n", 0644);
        expect_eq(load_error(file.path()),
                  file.path() +
                      ": holds DB_PASSWORD but is readable by group/others (mode "
                      "0644); chmod 600 " +
                      file.path(),
                  "0644 with a password");
    }
    {
        const TempFile file("REDIS_PASSWORD=secret\n", 0640);
        expect_eq(load_error(file.path()),
                  file.path() +
                      ": holds REDIS_PASSWORD but is readable by group/others (mode "
                      "0640); chmod 600 " +
                      file.path(),
                  "0640 with a Redis password");
    }
    {
        const TempFile file("EMAIL_HOST_PASSWORD=x\n", 0604);
        ck_assert_msg(load_error(file.path()).find("(mode 0604)") != std::string::npos,
                      "0604 accepted");
    }
    {
        const TempFile file("DB_HOST=db\nDB_PASSWORD=secret\n", 0600);
        const Config c = keystone::load_config(file.path(), {});
        expect_eq(c.db_password, "secret", "0600 with a password");
        expect_eq(c.origin_text("DB_PASSWORD"), file.path() + ":2", "origin in a real file");
    }
    {
        const TempFile file("DB_HOST=db\n", 0644);
        expect_eq(keystone::load_config(file.path(), {}).db_host, "db", "0644 without secrets");
    }
    {
        const TempFile file("DB_PASSWORD=\nSECURE_SECRET_KEY=''\n", 0644);
        expect_eq(load_error(file.path()), "", "0644 with empty secrets");
    }
    {
        // A secret from the environment says nothing about the file.
        const TempFile file("DB_HOST=db\n", 0644);
        const Config c = keystone::load_config(file.path(), {{"DB_PASSWORD", "secret"}});
        expect_eq(c.db_password, "secret", "password from the environment");
    }
    {
        // Syntax errors are reported for files too, with the path.
        const TempFile file("DB_HOST=db\nDB_PORT=54x\n", 0600);
        expect_eq(load_error(file.path()), file.path() + ":2: DB_PORT: not a port number: '54x'",
                  "error in a real file");
    }
}
END_TEST

START_TEST(test_missing_and_odd_files) {
    const std::string missing = "/nonexistent-keystone-dir/keystoned.conf";
    expect_eq(load_error(missing), missing + ": No such file or directory", "missing file");
    const char *dir = std::getenv("TMPDIR");
    const std::string directory = dir && *dir ? dir : "/tmp";
    expect_eq(load_error(directory), directory + ": not a regular file", "directory");
    expect_eq(load_error("/dev/null"), "/dev/null: not a regular file", "device");
}
END_TEST

START_TEST(test_keystone_env_sample) {
    check_keystone_sample(parse_ok(keystone_env_sample));
    const TempFile file(keystone_env_sample, 0600);
    const Config c = keystone::load_config(file.path(), {});
    check_keystone_sample(c);
    expect_eq(line_of(c, "DB_PASSWORD").value, "********", "masked");
    expect_eq(line_of(c, "REDIS_PASSWORD").value, "********", "masked");
    expect_eq(line_of(c, "API_THROTTLE_ANON").value, "120/min", "ignored shown");
    ck_assert(line_of(c, "API_THROTTLE_ANON").ignored);
}
END_TEST

// ---- db_conninfo -----------------------------------------------------------------------------

START_TEST(test_db_conninfo) {
    expect_eq(keystone::db_conninfo(Config()),
              "host='localhost' port='5432' dbname='keystone' connect_timeout='10'", "defaults");
    const Config c = parse_ok("DB_HOST=db.example.org\nDB_PORT=6543\nDB_USER=keystone\n"
                              "DB_PASSWORD=\"p w'd\\\\x\"\nKEYSTONED_DB_CONNECT_TIMEOUT=5\n");
    expect_eq(c.db_password, "p w'd\\x", "password as parsed");
    expect_eq(keystone::db_conninfo(c),
              "host='db.example.org' port='6543' dbname='keystone' user='keystone' "
              "password='p w\\'d\\\\x' connect_timeout='5'",
              "quoted password");
    const Config socket = parse_ok("DB_HOST=/var/run/postgresql\nDB_NAME=my db\n");
    expect_eq(keystone::db_conninfo(socket),
              "host='/var/run/postgresql' port='5432' dbname='my db' connect_timeout='10'",
              "socket directory");
    const Config no_host = parse_ok("DB_HOST=\n");
    expect_eq(keystone::db_conninfo(no_host), "port='5432' dbname='keystone' connect_timeout='10'",
              "empty host");
}
END_TEST

// ---- runner ----------------------------------------------------------------------------------

namespace {

template <typename T, std::size_t n> int count(const T (&)[n]) {
    return static_cast<int>(n);
}

Suite *config_suite() {
    Suite *suite = suite_create("config");

    TCase *syntax = tcase_create("syntax");
    tcase_add_test(syntax, test_defaults);
    tcase_add_test(syntax, test_known_names);
    tcase_add_loop_test(syntax, test_quotes, 0, count(quote_cases));
    tcase_add_loop_test(syntax, test_syntax_errors, 0, count(syntax_cases));
    tcase_add_test(syntax, test_nul_byte);
    tcase_add_test(syntax, test_comments_and_blank_lines);
    tcase_add_test(syntax, test_secret_never_echoed);
    suite_add_tcase(suite, syntax);

    TCase *values = tcase_create("values");
    tcase_add_loop_test(values, test_good_values, 0, count(good_cases));
    tcase_add_loop_test(values, test_bad_values, 0, count(bad_cases));
    tcase_add_test(values, test_ldap_lists);
    tcase_add_test(values, test_schedules);
    tcase_add_test(values, test_log_levels);
    tcase_add_test(values, test_debug_email_dir_alias);
    suite_add_tcase(suite, values);

    TCase *environment = tcase_create("environment");
    tcase_add_test(environment, test_environment_overrides);
    tcase_add_loop_test(environment, test_environment_errors, 0, count(env_cases));
    tcase_add_test(environment, test_file_checked_before_environment);
    tcase_add_test(environment, test_process_environment);
    suite_add_tcase(suite, environment);

    TCase *output = tcase_create("describe");
    tcase_add_test(output, test_describe_masks_secrets);
    tcase_add_test(output, test_describe_defaults);
    tcase_add_test(output, test_db_conninfo);
    suite_add_tcase(suite, output);

    TCase *files = tcase_create("files");
    tcase_add_test(files, test_permissions);
    tcase_add_test(files, test_missing_and_odd_files);
    tcase_add_test(files, test_keystone_env_sample);
    suite_add_tcase(suite, files);

    return suite;
}

} // namespace

int main() {
    SRunner *runner = srunner_create(config_suite());
    srunner_run_all(runner, CK_NORMAL);
    const int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
