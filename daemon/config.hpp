// SPDX-License-Identifier: GPL-2.0-or-later
// keystoned.conf: reads Keystone's NAME=value settings file plus environment overrides into one
// validated, typed Config.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace keystone {

// Where keystoned and keystonectl look for their configuration unless told otherwise.
inline constexpr const char *default_config_path = "/etc/keystone/keystoned.conf";

// A configuration that cannot be used. what() is the complete message for the admin, naming the
// file and line (or the environment variable), the setting and the bad value, e.g.
// "/etc/keystone/keystoned.conf:12: DB_PORT: not a port number: '54x'". Values of secret
// settings never appear in it.
class ConfigError : public std::runtime_error {
public:
    explicit ConfigError(const std::string &message) : std::runtime_error(message) {}
};

// The configuration file to read: `option` (-f) when given, else $KEYSTONE_CONF when set and
// not empty, else default_config_path.
std::string config_path(const std::string &option);

// Environment variables by name.
using Environment = std::map<std::string, std::string>;

// A copy of this process's environment (::environ). Entries without '=' are skipped; when a name
// occurs twice the first one wins, as with getenv(3).
Environment process_environment();

// Where a setting's value came from: file and line for the configuration file, file
// "environment" and line 0 for an environment variable. `set_as` is the name actually used when
// it differs from the setting's own (the older alias DEBUG_EMAIL_DIR), otherwise empty.
struct Origin {
    std::string file;
    int line = 0;
    std::string set_as;
};

// Log levels, named like Slurm's. Declared here because the configuration selects one; log.hpp
// declares it opaquely.
enum class LogLevel { error, warning, info, verbose, debug, debug2 };

// The level's name ("error" ... "debug2"). Never returns null.
const char *log_level_name(LogLevel level);
// Parses a level name, case-insensitive; nullopt for anything else.
std::optional<LogLevel> parse_log_level(std::string_view name);

// The effective configuration. A default-constructed Config holds every default: the member
// initialisers below are the only place defaults are written down. Field comments give the
// setting name.
struct Config {
    // DB_POSTGRES_ENABLE is accepted when true or unset; keystoned always uses PostgreSQL, so it
    // has no field.
    std::string db_name = "keystone";  // DB_NAME, never empty
    std::string db_user;               // DB_USER; empty: libpq's default (the OS user)
    std::string db_password;           // DB_PASSWORD (secret)
    std::string db_host = "localhost"; // DB_HOST: host name, IP address or socket directory;
                                       // empty: libpq's default socket
    int db_port = 5432;                // DB_PORT

    // AUTH_LDAP_SERVER_URI, split at spaces and commas; empty: LDAP is off.
    std::vector<std::string> ldap_server_uris;
    std::string ldap_bind_dn;                               // AUTH_LDAP_BIND_DN; empty: anonymous
    std::string ldap_bind_password;                         // AUTH_LDAP_BIND_PASSWORD (secret)
    bool ldap_start_tls = true;                             // AUTH_LDAP_START_TLS
    std::string ldap_user_search;                           // AUTH_LDAP_USER_SEARCH (base DN)
    std::string ldap_user_filter = "(objectClass=account)"; // AUTH_LDAP_USER_FILTER
    std::string ldap_login_filter = "(uid=%(user)s)";       // AUTH_LDAP_LOGIN_FILTER (unused)
    // AUTH_LDAP_ATTR_MAP: Keystone field (username, first_name, last_name, email, department,
    // role) -> LDAP attribute name or OID.
    std::map<std::string, std::string> ldap_attr_map;
    // AUTH_LDAP_REQUIRE_CERT. true (our default): verify the server's certificate; false: do not
    // require a valid one. Keystone's code has this inverted (True there disables the check), so
    // an old .env saying True gets the safe behaviour here.
    bool ldap_require_cert = true;
    int ldap_timeout = 10;           // AUTH_LDAP_TIMEOUT, 1..3600 s
    bool ldap_purge_removed = false; // AUTH_LDAP_PURGE_REMOVED

    std::string email_host = "localhost";                       // EMAIL_HOST
    int email_port = 25;                                        // EMAIL_PORT
    std::string email_host_user;                                // EMAIL_HOST_USER
    std::string email_host_password;                            // EMAIL_HOST_PASSWORD (secret)
    bool email_use_tls = false;                                 // EMAIL_USE_TLS
    std::string email_from_address = "noreply@keystone.bot";    // EMAIL_FROM_ADDRESS (bare address)
    std::string email_template_dir = "/etc/keystone/templates"; // EMAIL_TEMPLATE_DIR
    std::string email_debug_dir; // EMAIL_DEBUG_DIR or its older name DEBUG_EMAIL_DIR

    // Retention in seconds; 0 or negative turns pruning of that log type off (Keystone's rule).
    std::int64_t log_req_retention_sec = 2592000; // LOG_REQ_RETENTION_SEC
    std::int64_t log_aud_retention_sec = 2592000; // LOG_AUD_RETENTION_SEC
    std::int64_t log_tsk_retention_sec = 2592000; // LOG_TSK_RETENTION_SEC

    // CONFIG_TIMEZONE: a zone name with a TZif file under /usr/share/zoneinfo.
    std::string timezone = "UTC";

    // Keystone settings only its web API uses, kept verbatim (NAME -> value) for --check-config.
    std::map<std::string, std::string> web_api_settings;

    LogLevel log_level = LogLevel::info; // KEYSTONED_LOG_LEVEL
    bool syslog = false;                 // KEYSTONED_SYSLOG
    std::string worker;                  // KEYSTONED_WORKER; empty: gethostname() at run time
    int db_connect_timeout = 10;         // KEYSTONED_DB_CONNECT_TIMEOUT, 1..300 s
    int stop_timeout = 10;               // KEYSTONED_STOP_TIMEOUT, 1..600 s
    int cleanup_batch_size = 5000;       // KEYSTONED_CLEANUP_BATCH_SIZE, 1..1000000 rows
    // KEYSTONED_LDAP_CA_FILE: CA certificates for the LDAP server's certificate; empty: libldap's
    // default (TLS_CACERT of ldap.conf, else the system's trust store).
    std::string ldap_ca_file;
    int ldap_page_size = 500;            // KEYSTONED_LDAP_PAGE_SIZE, entries per page
    // The LDAP sync changes nothing and fails when it would deactivate or delete more than
    // KEYSTONED_LDAP_MAX_REMOVE users, or more than KEYSTONED_LDAP_MAX_REMOVE_PERCENT per cent of
    // the LDAP users in the database, unless run with --force.
    int ldap_max_remove = 100;           // KEYSTONED_LDAP_MAX_REMOVE
    int ldap_max_remove_percent = 10;    // KEYSTONED_LDAP_MAX_REMOVE_PERCENT, 0..100

    // Job records. KEYSTONED_SPOOL_DIR: the jobcomp/keystone spool folder (slurm.conf's
    // JobCompLoc) that keystoned ingests; empty: no ingest.
    std::string spool_dir = "/var/spool/keystone/jobs";
    // KEYSTONED_QUARANTINE_DIR: where files that cannot be ingested go; empty: SPOOL/quarantine.
    std::string quarantine_dir;
    int ingest_interval = 2;          // KEYSTONED_INGEST_INTERVAL, 1..3600 s between spool scans
    int ingest_max_records = 50000;   // KEYSTONED_INGEST_MAX_RECORDS, 1..10000000 per transaction
    // KEYSTONED_INGEST_CONNECTIONS, 1..16: database connections (one loading thread each) that
    // load a spool backlog side by side; a job's records always take the same one.
    int ingest_connections = 2;
    // KEYSTONED_SLURM_CONF: slurm.conf for the slurmdb API; empty: libslurm's default
    // ($SLURM_CONF, else the path Slurm was built with).
    std::string slurm_conf;
    // KEYSTONED_SLURMDB_TIMEOUT: seconds (10..3600) one slurmdbd request may take before it is
    // abandoned (libslurm itself waits up to 900 s per attempt on a slurmdbd that stopped
    // answering).
    int slurmdb_timeout = 300;
    // The reconciliation reads slurmdbd from its last watermark minus KEYSTONED_JOBS_OVERLAP
    // seconds (0..2592000); the first run of a cluster reads KEYSTONED_JOBS_FIRST_WINDOW
    // seconds back (60..31536000).
    int jobs_overlap = 3600;
    int jobs_first_window = 86400;

    // The limits task's circuit breaker: a cluster's run is not applied (without --force) when
    // it would lower more than KEYSTONED_LIMITS_MAX_LOWER_PERCENT per cent (0..100) of the
    // managed accounts' limits and at least KEYSTONED_LIMITS_MIN_LOWERED (1..1000000) of them,
    // or set an active team's limit to 0.
    int limits_max_lower_percent = 20;
    int limits_min_lowered = 5;

    // Expiration notices. KEYSTONED_EMAIL_CA_FILE: CA certificates for the SMTP server's
    // certificate (EMAIL_USE_TLS); empty: the system's trust store.
    std::string email_ca_file;
    // A run retries notices whose send failed for a reason that may pass (server unreachable,
    // 4xx) for up to KEYSTONED_NOTIFY_RETRY_WINDOW seconds (0..86400; 0: later runs only).
    int notify_retry_window = 3600;
    // notify_past_expirations waits up to KEYSTONED_NOTIFY_SETTLE_WAIT seconds (0..86400) for
    // update_limits to settle the day's expirations.
    int notify_settle_wait = 3600;

    // KEYSTONED_CLUSTERS: the clusters whose per-cluster tasks (reconciliation, limits) this
    // keystoned runs, for a head node per cluster sharing one database; empty: every enabled
    // cluster. Names as in allocations_cluster.name, separated by commas or spaces.
    std::vector<std::string> clusters;
    // KEYSTONED_METRICS_ADDRESS: where keystoned serves Prometheus metrics ("HOST:PORT",
    // "[IPv6]:PORT"); empty or "off": no endpoint.
    std::string metrics_address = "127.0.0.1:9817";

    // This daemon runs cluster `name`'s per-cluster tasks (KEYSTONED_CLUSTERS is empty or names it).
    bool serves_cluster(const std::string &name) const;

    // The quarantine folder in effect.
    std::string quarantine_path() const
    {
        return quarantine_dir.empty() ? spool_dir + "/quarantine" : quarantine_dir;
    }

    // KEYSTONED_SCHEDULE_<TASK>: task short name -> cron expression, "" when the task is off.
    // The expressions are not checked here: the caller parses them (daemon/cron.hpp) and names
    // origin_text(schedule_setting_name(task)) in its message.
    std::map<std::string, std::string> schedules = {
        {"ldap_update_users", "*/15 * * * *"},
        {"clear_log_records", "0 * * * *"},
        {"update_limits", "0 * * * *"},
        {"slurm_update_job_stats", "*/5 * * * *"},
        {"notify_upcoming_expirations", "0 0 * * *"},
        {"notify_past_expirations", "0 0 * * *"},
    };

    // Setting name -> where it was set, for every setting that was set (aliases are recorded
    // under the setting's own name, with Origin::set_as).
    std::map<std::string, Origin> origins;

    // "FILE:LINE", "environment variable NAME" or "default", for messages about a setting.
    std::string origin_text(const std::string &name) const;

    // LDAP synchronisation is configured (AUTH_LDAP_SERVER_URI is not empty).
    bool ldap_enabled() const { return !ldap_server_uris.empty(); }
};

// Every setting name the file and the environment accept, in a stable order (the order of
// describe()), including the alias DEBUG_EMAIL_DIR and the ignored web-API settings.
const std::vector<std::string> &known_setting_names();

// The setting that holds a task's schedule: "ldap_update_users" ->
// "KEYSTONED_SCHEDULE_LDAP_UPDATE_USERS".
std::string schedule_setting_name(const std::string &task);

// Reads and validates the whole file at `path`, then applies the environment overrides from
// `env`: known names only, values taken verbatim (no trimming or unquoting) and validated like
// a file line. An environment value equal to the file's changes nothing and keeps the file's
// origin (a unit with EnvironmentFile= exports the same lines). The file must be a regular
// file; one that sets a secret to a non-empty value must not be readable by group or others.
// Throws ConfigError on any problem, naming the first one found ("PATH: No such file or
// directory" for a missing file).
Config load_config(const std::string &path, const Environment &env);

// Same as load_config() for text already read; `path` is used in messages only and no file
// type or permission check is made (for tests and for reading from a pipe).
Config parse_config(std::string_view text, const std::string &path, const Environment &env);

// One line of `keystoned --check-config`. `ignored` marks Keystone settings that only the web
// API uses.
struct ConfigLine {
    std::string name, value, origin;
    bool ignored = false;
};

// Every setting keystoned uses as NAME, display value and origin text, in a stable order;
// secret values are shown as "********" when non-empty. Ignored web-API settings follow, but
// only those that were set. Aliases are not listed separately.
std::vector<ConfigLine> describe(const Config &config);

// A libpq connection string built from the DB_* settings: host (unless empty), port, dbname,
// user and password (unless empty), each value single-quoted with \ and ' escaped as libpq
// requires, and connect_timeout from KEYSTONED_DB_CONNECT_TIMEOUT. Holds the password: do not
// log it.
std::string db_conninfo(const Config &config);

// `value` as a libpq connection-string value: single-quoted, \ and ' escaped.
std::string conninfo_value(const std::string &value);

} // namespace keystone
