// SPDX-License-Identifier: GPL-2.0-or-later
// keystonectl doctor (see doctor.hpp): the configuration, database, Slurm, plugin and spool
// checks and run_doctor(); the LDAP and mail checks are in doctor_net.cpp.
#include "config.h"

#include "doctor.hpp"
#include "doctor_checks.hpp"

#include "clusters.hpp"
#include "db.hpp"
#include "migrate.hpp"
#include "slurmdb.hpp"
#include "spool_status.hpp"
#include "tasks/task.hpp"
#include "util.hpp"

extern "C" {
#include "spool.h"
}

#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <getopt.h>
#include <grp.h>
#include <memory>
#include <optional>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

namespace keystone {

namespace doctor_detail {

void add(std::vector<Finding> &out, const char *area, std::string check, Status status,
         std::string detail, std::string remedy) {
    out.push_back(Finding{area, std::move(check), status, std::move(detail), std::move(remedy)});
}

} // namespace doctor_detail

namespace {

using namespace doctor_detail;
constexpr int exit_usage = 2;

const char help[] =
    "Usage: keystonectl doctor [--json] [--strict]\n"
    "Checks the installation and says what to change: the configuration (and settings that look\n"
    "wrong for production), PostgreSQL and the schema versions (ours and the Keystone tables\n"
    "keystone-slurm needs), Keystone's Celery beat schedule, the LDAP server (bind, TLS, paged\n"
    "results, the search base), the mail transport (an SMTP session without a message, or\n"
    "EMAIL_DEBUG_DIR), for each enabled cluster slurmdbd and the Slurm settings update_limits\n"
    "relies on, that the local slurmctld runs jobcomp/keystone of this version into the spool\n"
    "folder, and the spool folder (owner, mode, depth, age of the oldest file, quarantined\n"
    "files).\n\n"
    "  --json    print the findings as a JSON array\n"
    "  --strict  warnings make the exit status 1 too\n\n"
    "Exit status: 0 no error (warnings allowed), 1 at least one error (or, with --strict, a\n"
    "warning), 2 usage.\n";

std::string mode_text(mode_t mode) {
    char m[8];
    std::snprintf(m, sizeof m, "%04o", static_cast<unsigned>(mode & 07777));
    return m;
}

std::string user_text(uid_t uid) {
    struct passwd pw, *found = nullptr;
    char buf[4096];
    if (::getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found)
        return found->pw_name;
    return "uid " + std::to_string(uid);
}

std::string group_text(gid_t gid) {
    struct group gr, *found = nullptr;
    char buf[4096];
    if (::getgrgid_r(gid, &gr, buf, sizeof buf, &found) == 0 && found)
        return found->gr_name;
    return "gid " + std::to_string(gid);
}

bool is_local_host(const std::string &host) {
    return host.empty() || host == "localhost" || host == "127.0.0.1" || host == "::1" ||
           host[0] == '/';
}

// --- configuration ----------------------------------------------------------------------------

void check_config(const Config &config, const std::string &path, std::vector<Finding> &out) {
    add(out, "config", "configuration " + path, Status::ok, "read and valid");
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 022) != 0)
        add(out, "config", "permissions of " + path, Status::warning,
            "mode " + mode_text(st.st_mode) + ", owner " + user_text(st.st_uid) +
                ": writable by group or others, who could point keystoned at another database",
            "chmod go-w " + path);

    if (config.ldap_enabled()) {
        for (const auto &uri : config.ldap_server_uris) {
            std::string lower = uri;
            std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
            if (lower.rfind("ldap://", 0) == 0 && !config.ldap_start_tls)
                add(out, "config", "AUTH_LDAP_START_TLS (" + uri + ")",
                    config.ldap_bind_password.empty() ? Status::warning : Status::error,
                    "false on an ldap:// URI: the directory's answers travel unencrypted" +
                        std::string(config.ldap_bind_password.empty()
                                        ? ""
                                        : ", and the sync refuses to send the bind password"),
                    "set AUTH_LDAP_START_TLS=true (" + config.origin_text("AUTH_LDAP_START_TLS") +
                        ") or use an ldaps:// URI");
        }
        if (!config.ldap_require_cert)
            add(out, "config", "AUTH_LDAP_REQUIRE_CERT", Status::warning,
                "false: the LDAP server's certificate is not verified, so anyone on the path can "
                "pose as it",
                "set AUTH_LDAP_REQUIRE_CERT=true (" + config.origin_text("AUTH_LDAP_REQUIRE_CERT") +
                    ") and KEYSTONED_LDAP_CA_FILE to the CA that signed the server's certificate");
    }
    const bool notices = !config.schedules.at("notify_upcoming_expirations").empty() ||
                         !config.schedules.at("notify_past_expirations").empty();
    if (notices && !config.email_debug_dir.empty())
        add(out, "config", "EMAIL_DEBUG_DIR", Status::warning,
            "set (" + config.origin_text("EMAIL_DEBUG_DIR") +
                "): expiration notices are written to " + config.email_debug_dir +
                " and never reach the users",
            "remove EMAIL_DEBUG_DIR in production");
    if (!config.email_host_user.empty() && !config.email_use_tls)
        add(out, "config", "EMAIL_USE_TLS", Status::error,
            "false while EMAIL_HOST_USER is set: keystoned refuses to send the password "
            "unencrypted, so no notice goes out",
            "set EMAIL_USE_TLS=true (" + config.origin_text("EMAIL_USE_TLS") + ")");
    else if (notices && config.email_debug_dir.empty() && !config.email_use_tls &&
             !is_local_host(config.email_host))
        add(out, "config", "EMAIL_USE_TLS", Status::warning,
            "false with EMAIL_HOST=" + config.email_host +
                ": notices travel unencrypted to another host",
            "set EMAIL_USE_TLS=true if the server offers STARTTLS");
}

// --- PostgreSQL, schema, Celery beat, slurmdbd per cluster ----------------------------------

void check_database(const Config &config, std::vector<Finding> &out) {
    Database db(db_conninfo(config), "keystonectl");
    pqxx::connection *conn = nullptr;
    const std::string target =
        config.db_host + ":" + std::to_string(config.db_port) + "/" + config.db_name;
    try {
        conn = &db.conn();
        add(out, "postgresql", "connection", Status::ok, target);
    } catch (const std::exception &e) {
        add(out, "postgresql", "connection", Status::error, one_line(e),
            "start PostgreSQL or fix DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD (" + target +
                ")");
        return;
    }
    try {
        const int have = database_schema_version(*conn), want = known_schema_version();
        add(out, "schema", "keystone_slurm schema version",
            have == want ? Status::ok : Status::error,
            "database " + std::to_string(have) + ", this build " + std::to_string(want),
            have < want   ? "run keystonectl db migrate"
            : have > want ? "the database was migrated by a newer keystone-slurm: install that "
                            "version"
                          : "");
        std::string missing;
        {
            pqxx::read_transaction tx(*conn);
            for (const auto &t : required_keystone_tables())
                if (tx.exec_params1("SELECT to_regclass($1) IS NULL", t)[0].as<bool>())
                    missing += (missing.empty() ? "" : ", ") + t;
        }
        add(out, "schema", "Keystone tables", missing.empty() ? Status::ok : Status::error,
            missing.empty() ? "all present" : "missing: " + missing,
            missing.empty() ? ""
                            : "migrate Keystone's API, or keystonectl db migrate "
                              "--keystone-schema on a site without it");

        // Keystone's Celery beat: a task keystoned runs that is still enabled there runs twice.
        pqxx::read_transaction tx(*conn);
        if (!tx.exec("SELECT to_regclass('django_celery_beat_periodictask') IS NULL")[0][0]
                 .as<bool>()) {
            std::string both;
            for (const auto &row :
                 tx.exec("SELECT name, task FROM django_celery_beat_periodictask WHERE enabled"))
                for (const auto &t : all_tasks())
                    if (row[1].as<std::string>() == t.dotted_name &&
                        !config.schedules.at(t.short_name).empty())
                        both += (both.empty() ? "" : ", ") + row[0].as<std::string>();
            add(out, "celery", "Celery beat schedule", both.empty() ? Status::ok : Status::warning,
                both.empty() ? "no task keystoned runs is enabled in django_celery_beat"
                             : "still enabled in Keystone's beat schedule: " + both +
                                   " (both systems would run them)",
                both.empty() ? ""
                             : "switch them off in Keystone's admin (Periodic tasks) or stop "
                               "celery beat");
        } else {
            add(out, "celery", "Celery beat schedule", Status::info,
                "no django_celery_beat_periodictask table: nothing to switch off");
        }
    } catch (const std::exception &e) {
        add(out, "schema", "schema", Status::error, one_line(e), "keystonectl db status");
        return;
    }
    // Slurm, per enabled cluster this keystoned serves (KEYSTONED_CLUSTERS): another head
    // node's doctor checks the others.
    std::vector<std::string> clusters;
    try {
        pqxx::read_transaction tx(*conn);
        clusters = served_clusters(tx, config);
    } catch (const std::exception &e) {
        add(out, "schema", "allocations_cluster", Status::error, one_line(e));
        return;
    }
    if (clusters.empty()) {
        add(out, "slurm", "enabled clusters", Status::info,
            "none in allocations_cluster: the Slurm tasks have nothing to do");
        return;
    }
    std::unique_ptr<SlurmdbConnection> slurmdb;
    try {
        slurmdb = std::make_unique<SlurmdbConnection>(config.slurm_conf, config.slurmdb_timeout);
    } catch (const std::exception &e) {
        add(out, "slurm", "libslurm", Status::error, one_line(e),
            "set KEYSTONED_SLURM_CONF to the cluster's slurm.conf");
        return;
    }
    const bool limits_on = !config.schedules.at("update_limits").empty();
    for (const auto &c : clusters) {
        try {
            const bool known = slurmdb->cluster_exists(c);
            add(out, "slurm", "slurmdbd knows Cluster=" + c, known ? Status::ok : Status::error,
                known ? slurmdb->where() : "slurmdbd has no such cluster (sacctmgr show cluster)",
                known ? "" : "fix the name in allocations_cluster or disable it there");
            if (!known)
                continue;
        } catch (const std::exception &e) {
            add(out, "slurm", "slurmdbd for Cluster=" + c, Status::error, one_line(e),
                "start slurmdbd, or fix AccountingStorageHost/Port in slurm.conf");
            continue;
        }
        if (!limits_on)
            continue;
        try {
            for (const auto &p :
                 check_limit_prerequisites(config.slurm_conf, c, config.slurmdb_timeout)) {
                std::string remedy = p.advice;
                const std::string prefix = p.setting + "=" + p.value + ": ";
                if (remedy.rfind(prefix, 0) == 0)
                    remedy.erase(0, prefix.size());
                add(out, "slurm", p.setting + " (Cluster=" + c + ")",
                    p.ok ? Status::ok : Status::error, p.ok ? p.value : p.setting + "=" + p.value,
                    p.ok ? "" : remedy);
            }
        } catch (const std::exception &e) {
            add(out, "slurm", "slurmctld of Cluster=" + c, Status::error, one_line(e),
                "start slurmctld (update_limits reads usage and settings from it)");
        }
    }
}

// --- the local slurmctld and the plugin -------------------------------------------------------

std::string real_path(const std::string &p) {
    char buf[PATH_MAX];
    return ::realpath(p.c_str(), buf) ? std::string(buf) : p;
}

// The process `pid` on this host is a slurmctld.
bool is_local_slurmctld(long long pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/comm");
    std::string comm;
    return pid > 0 && std::getline(f, comm) && comm == "slurmctld";
}

// Returns slurmctld's SlurmUser uid when it could be asked.
std::optional<uid_t> check_plugin(const Config &config, std::vector<Finding> &out) {
    if (config.spool_dir.empty()) {
        add(out, "plugin", "jobcomp/keystone", Status::info,
            "KEYSTONED_SPOOL_DIR is empty: no spool ingest on this host, the plugin is not "
            "checked");
        return std::nullopt;
    }
    SlurmctldConfig ctld;
    try {
        ctld = read_slurmctld_config(config.slurm_conf);
    } catch (const std::exception &e) {
        add(out, "plugin", "slurmctld", Status::error, one_line(e),
            "start slurmctld, or set KEYSTONED_SLURM_CONF to this cluster's slurm.conf");
        return std::nullopt;
    }
    const std::string c = " (Cluster=" + ctld.cluster + ")";
    add(out, "plugin", "slurmctld" + c, Status::ok,
        "Slurm " + ctld.version + " on " + ctld.host + ", SlurmUser=" + ctld.slurm_user);
    const bool type_ok = ctld.jobcomp_type == "jobcomp/keystone";
    add(out, "plugin", "JobCompType" + c, type_ok ? Status::ok : Status::error,
        "JobCompType=" + (ctld.jobcomp_type.empty() ? "(none)" : ctld.jobcomp_type),
        type_ok ? ""
                : "set JobCompType=jobcomp/keystone and JobCompLoc=" + config.spool_dir +
                      " in slurm.conf and restart slurmctld: jobs reach keystoned only through "
                      "slurmdbd now");
    const bool loc_ok = real_path(ctld.jobcomp_loc) == real_path(config.spool_dir);
    if (type_ok)
        add(out, "plugin", "JobCompLoc" + c, loc_ok ? Status::ok : Status::error,
            "JobCompLoc=" + ctld.jobcomp_loc + ", KEYSTONED_SPOOL_DIR=" + config.spool_dir,
            loc_ok ? ""
                   : "make them the same folder: JobCompLoc in slurm.conf (restart slurmctld) "
                     "or KEYSTONED_SPOOL_DIR (" +
                         config.origin_text("KEYSTONED_SPOOL_DIR") + ")");
    if (!type_ok || !loc_ok)
        return ctld.slurm_uid;

    // The worker's stats file says which plugin runs and that it is alive.
    const std::string path = config.spool_dir + "/" + KS_SPOOL_STATS_FILE;
    const std::string not_loaded = "slurmctld did not load jobcomp/keystone (check slurmctld's "
                                   "log for 'jobcomp/keystone')";
    const PluginStats st = read_plugin_stats(config.spool_dir);
    if (!st.up) {
        add(out, "plugin", "plugin stats " + path, Status::warning, st.why, not_loaded);
        return ctld.slurm_uid;
    }
    const long long pid = st.pid;
    const long long age = static_cast<long long>(std::time(nullptr)) -
                          static_cast<long long>(st.time);
    // A live worker rewrites the file every interval; allow a few missed ones.
    const long long stale_after = 3 * st.interval_ms / 1000 + 10;
    const bool local = is_local_host(ctld.host) || ctld.host == host_name();
    const bool alive = is_local_slurmctld(pid);
    const std::string facts =
        "pid " + std::to_string(pid) + ", written " + std::to_string(age) + " s ago";
    if (age > stale_after || (local && !alive)) {
        add(out, "plugin", "plugin stats " + path, Status::warning,
            facts + (age > stale_after ? " (stale: more than " + std::to_string(stale_after) + " s)"
                                       : " by a process that is not a running slurmctld"),
            not_loaded);
        return ctld.slurm_uid;
    }
    add(out, "plugin", "plugin stats " + path, Status::ok, facts);
    const std::string &version = st.plugin_version, &slurm = st.slurm_version;
    if (version.empty() || slurm.empty()) {
        add(out, "plugin", "jobcomp/keystone version" + c, Status::warning,
            "the running plugin does not report its version (older than keystone-slurm " +
                std::string(PACKAGE_VERSION) + ")",
            "install the jobcomp/keystone plugin of keystone-slurm " +
                std::string(PACKAGE_VERSION) + " and restart slurmctld");
        return ctld.slurm_uid;
    }
    add(out, "plugin", "jobcomp/keystone version" + c,
        version == PACKAGE_VERSION ? Status::ok : Status::error,
        "plugin " + version + ", keystonectl " + PACKAGE_VERSION,
        version == PACKAGE_VERSION ? ""
                                    : "install the jobcomp/keystone plugin of keystone-slurm " +
                                          std::string(PACKAGE_VERSION) + " (or keystoned of " +
                                          version + ") and restart slurmctld");
    add(out, "plugin", "jobcomp/keystone Slurm version" + c,
        slurm == ctld.version ? Status::ok : Status::error,
        "built for Slurm " + slurm + ", slurmctld is " + ctld.version,
        slurm == ctld.version ? ""
                               : "rebuild the plugin against the source of Slurm " + ctld.version +
                                     " (scripts/fetch-slurm-source.sh, configure "
                                     "--with-slurm-source) and restart slurmctld");
    return ctld.slurm_uid;
}

// --- the spool folder -------------------------------------------------------------------------

void check_spool(const Config &config, std::optional<uid_t> slurm_uid, std::vector<Finding> &out) {
    if (config.spool_dir.empty()) {
        add(out, "spool", "KEYSTONED_SPOOL_DIR", Status::info,
            "empty: no spool ingest on this host");
        return;
    }
    const std::string &dir = config.spool_dir;
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0) {
        add(out, "spool", "spool folder " + dir, Status::error, std::strerror(errno),
            "create it, owned by SlurmUser, group keystone, mode 2770 (systemd-tmpfiles "
            "--create), or set KEYSTONED_SPOOL_DIR to slurm.conf's JobCompLoc (" +
                config.origin_text("KEYSTONED_SPOOL_DIR") + ")");
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        add(out, "spool", "spool folder " + dir, Status::error, "not a folder",
            "set KEYSTONED_SPOOL_DIR to slurm.conf's JobCompLoc");
        return;
    }
    const std::string facts = "owner " + user_text(st.st_uid) + ", group " + group_text(st.st_gid) +
                              ", mode " + mode_text(st.st_mode);
    if ((st.st_mode & S_IWOTH) != 0)
        add(out, "spool", "spool folder " + dir, Status::error,
            facts + ": anyone may write job records or delete them",
            "chmod 2770 " + dir + " (SlurmUser and group keystone only)");
    else if (slurm_uid && st.st_uid != *slurm_uid)
        add(out, "spool", "spool folder " + dir, Status::error,
            facts + ": not owned by SlurmUser (" + user_text(*slurm_uid) +
                "), which slurmctld writes as",
            "chown " + user_text(*slurm_uid) + " " + dir);
    else if ((st.st_mode & S_IRWXO) != 0)
        add(out, "spool", "spool folder " + dir, Status::warning,
            facts + ": others may read job records (names, folders, users)", "chmod o-rwx " + dir);
    else
        add(out, "spool", "spool folder " + dir, Status::ok, facts);

    if (::access(dir.c_str(), R_OK | W_OK | X_OK) != 0)
        add(out, "spool", "spool folder access", Status::error,
            std::string(std::strerror(errno)) + " for this user (" + user_text(::geteuid()) + ")",
            "keystoned's user must read the folder and delete files in it: add it to the "
            "folder's group (keystone), mode 2770");

    const SpoolScan scan = scan_spool(dir, config.quarantine_path());
    if (!scan.spool_ok) {
        add(out, "spool", "spool depth", Status::error, std::strerror(scan.spool_errno),
            "keystoned must be able to read the folder");
        return;
    }
    const long files = static_cast<long>(scan.files);
    const long age = static_cast<long>(scan.oldest_age.value_or(0));
    // A batch older than a few ingest intervals means keystoned is not ingesting.
    const long stale = std::max(300L, 10L * config.ingest_interval);
    add(out, "spool", "spool depth", age <= stale ? Status::ok : Status::error,
        std::to_string(files) + " batch file(s), the oldest " + std::to_string(age) + " s old",
        age <= stale ? ""
                     : "keystoned is not ingesting: is it running? see its log and the "
                       "quarantine folder " +
                           config.quarantine_path());
    // Quarantined files are jobs that never reached the table.
    const std::string quar = config.quarantine_path();
    if (!scan.quarantine_ok)
        add(out, "spool", "quarantine " + quar, Status::warning, "cannot be listed",
            "keystoned must be able to create and read it (same owner and mode as the spool)");
    else if (scan.quarantined > 0)
        add(out, "spool", "quarantine " + quar, Status::warning,
            std::to_string(scan.quarantined) +
                " file(s) that could not be ingested (their jobs are not in the table)",
            "read NAME.reason beside each file and keystone_slurm.spool_quarantine; after a "
            "fix move the file back into " + config.spool_dir + "; a job's record also comes "
            "in from slurmdbd through slurm_update_job_stats");
    else
        add(out, "spool", "quarantine " + quar, Status::ok, "empty");
}

} // namespace

const char *finding_status_name(FindingStatus status) {
    switch (status) {
    case FindingStatus::ok:
        return "ok";
    case FindingStatus::info:
        return "info";
    case FindingStatus::warning:
        return "warning";
    case FindingStatus::error:
        return "error";
    }
    return "error";
}

std::vector<Finding> run_doctor(const Config &config, const std::string &config_path) {
    std::vector<Finding> out;
    auto guarded = [&](const char *area, const std::function<void()> &f) {
        try {
            f();
        } catch (const std::exception &e) {
            add(out, area, "checks", Status::error, one_line(e));
        }
    };
    guarded("config", [&] { check_config(config, config_path, out); });
    guarded("postgresql", [&] { check_database(config, out); });
    guarded("ldap", [&] { check_ldap(config, out); });
    guarded("smtp", [&] { check_mail(config, out); });
    std::optional<uid_t> slurm_uid;
    guarded("plugin", [&] { slurm_uid = check_plugin(config, out); });
    guarded("spool", [&] { check_spool(config, slurm_uid, out); });
    return out;
}

int doctor_command(int argc, char **argv, const std::string &config_path,
                   const std::function<Config()> &load_config) {
    static const struct option longopts[] = {{"json", no_argument, nullptr, 'j'},
                                             {"strict", no_argument, nullptr, 's'},
                                             {"help", no_argument, nullptr, 'h'},
                                             {nullptr, 0, nullptr, 0}};
    bool as_json = false, strict = false;
    optind = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, nullptr)) != -1) {
        if (ch == 'h') {
            std::fputs(help, stdout);
            return EXIT_SUCCESS;
        }
        if (ch == 'j')
            as_json = true;
        else if (ch == 's')
            strict = true;
        else
            return exit_usage;
    }
    if (optind != argc) {
        std::fprintf(stderr, "keystonectl: doctor takes no arguments (see keystonectl doctor "
                             "--help)\n");
        return exit_usage;
    }
    std::vector<Finding> findings;
    try {
        const Config config = load_config();
        findings = run_doctor(config, config_path);
    } catch (const std::exception &e) {
        // Nothing else can be checked without a configuration.
        findings.push_back(Finding{"config", "configuration " + config_path, Status::error,
                                   e.what(),
                                   "fix the setting named (keystoned refuses to start with this "
                                   "file; keystoned --check-config shows the effective "
                                   "settings)"});
    }
    int errors = 0, warnings = 0;
    JsonPtr arr(json_array());
    for (const auto &f : findings) {
        errors += f.status == Status::error;
        warnings += f.status == Status::warning;
        if (as_json) {
            json_t *o = json_object();
            json_object_set_new(o, "area", json_string(f.area.c_str()));
            json_object_set_new(o, "check", json_string(f.check.c_str()));
            json_object_set_new(o, "status", json_string(finding_status_name(f.status)));
            json_object_set_new(o, "ok",
                                json_boolean(f.status == Status::ok || f.status == Status::info));
            json_object_set_new(o, "detail", json_string(f.detail.c_str()));
            json_object_set_new(o, "remedy",
                                f.remedy.empty() ? json_null() : json_string(f.remedy.c_str()));
            json_array_append_new(arr.get(), o);
        } else {
            const char *label = f.status == Status::ok        ? "ok"
                                : f.status == Status::info    ? "info"
                                : f.status == Status::warning ? "WARNING"
                                                              : "PROBLEM";
            std::printf("%-7s %-10s %s: %s%s%s\n", label, f.area.c_str(), f.check.c_str(),
                        f.detail.c_str(), f.remedy.empty() ? "" : ": ", f.remedy.c_str());
        }
    }
    if (as_json)
        std::printf("%s\n", json_text(arr.get()).c_str());
    else if (errors == 0 && warnings == 0)
        std::printf("everything checked is right\n");
    else
        std::printf("%d problem(s), %d warning(s) (PROBLEM and WARNING lines above)\n", errors,
                    warnings);
    return errors > 0 || (strict && warnings > 0) ? EXIT_FAILURE : EXIT_SUCCESS;
}

} // namespace keystone
