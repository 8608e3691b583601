// SPDX-License-Identifier: GPL-2.0-or-later
// Implementation of keystonectl doctor (see doctor.hpp).
#include "doctor.hpp"

#include "db.hpp"
#include "migrate.hpp"
#include "slurmdb.hpp"
#include "tasks/task.hpp"
#include "util.hpp"

extern "C" {
#include "spool.h"
}

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <memory>
#include <sys/stat.h>

namespace keystone {

namespace {

constexpr int exit_usage = 2;

const char help[] =
    "Usage: keystonectl doctor [--json]\n"
    "Checks the installation and says what to change: PostgreSQL and the schema versions (ours\n"
    "and the Keystone tables keystone-slurm needs), Keystone's Celery beat schedule (tasks that\n"
    "keystoned runs must be switched off there), for each enabled cluster slurmdbd and the\n"
    "Slurm settings update_limits relies on (asked from slurmctld), and the spool folder.\n\n"
    "  --json  print the findings as a JSON array\n\n"
    "Exit status: 0 everything is right, 1 something is not, 2 usage.\n";

void add(std::vector<Finding> &out, const char *area, std::string check, bool ok,
         std::string detail) {
    out.push_back(Finding{area, std::move(check), ok, std::move(detail)});
}

void check_spool(const Config &config, std::vector<Finding> &out) {
    if (config.spool_dir.empty()) {
        add(out, "spool", "KEYSTONED_SPOOL_DIR", true, "empty: no spool ingest on this host");
        return;
    }
    const std::string &dir = config.spool_dir;
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0) {
        add(out, "spool", "spool folder " + dir, false,
            std::string(std::strerror(errno)) +
                ": create it with the owner slurmctld writes as (SlurmUser), mode 0750, or set "
                "KEYSTONED_SPOOL_DIR to slurm.conf's JobCompLoc (" +
                config.origin_text("KEYSTONED_SPOOL_DIR") + ")");
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        add(out, "spool", "spool folder " + dir, false, "not a folder");
        return;
    }
    add(
        out, "spool", "spool folder " + dir, true,
        "owner uid " + std::to_string(st.st_uid) + ", mode " + [&] {
            char m[8];
            std::snprintf(m, sizeof m, "%04o", st.st_mode & 07777);
            return std::string(m);
        }());
    std::unique_ptr<DIR, int (*)(DIR *)> d(::opendir(dir.c_str()), ::closedir);
    if (!d) {
        add(out, "spool", "spool folder readable", false,
            std::string(std::strerror(errno)) + ": keystoned must be able to read and write it");
        return;
    }
    long files = 0;
    std::time_t oldest = 0;
    while (struct dirent *de = ::readdir(d.get())) {
        if (!ks_spool_is_batch_name(de->d_name))
            continue;
        struct stat fs;
        if (::fstatat(::dirfd(d.get()), de->d_name, &fs, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(fs.st_mode))
            continue;
        ++files;
        if (oldest == 0 || fs.st_mtime < oldest)
            oldest = fs.st_mtime;
    }
    const long age = files ? static_cast<long>(std::time(nullptr) - oldest) : 0;
    // A batch older than a few ingest intervals means keystoned is not ingesting.
    const long stale = std::max(300L, 10L * config.ingest_interval);
    add(out, "spool", "spool depth", age <= stale,
        std::to_string(files) + " batch file(s), the oldest " + std::to_string(age) + " s old" +
            (age > stale ? ": keystoned is not ingesting (is it running? see its log)" : ""));
}

void check_database(const Config &config, std::vector<Finding> &out) {
    Database db(db_conninfo(config), "keystonectl");
    pqxx::connection *conn = nullptr;
    try {
        conn = &db.conn();
        add(out, "postgresql", "connection", true,
            config.db_host + ":" + std::to_string(config.db_port) + "/" + config.db_name);
    } catch (const std::exception &e) {
        add(out, "postgresql", "connection", false,
            one_line(e) + ": check DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD");
        return;
    }
    try {
        const int have = database_schema_version(*conn), want = known_schema_version();
        add(out, "schema", "keystone_slurm schema version", have == want,
            "database " + std::to_string(have) + ", this build " + std::to_string(want) +
                (have < want   ? ": run keystonectl db migrate"
                 : have > want ? ": the database was migrated by a newer keystone-slurm"
                               : ""));
        std::string missing;
        {
            pqxx::read_transaction tx(*conn);
            for (const auto &t : required_keystone_tables())
                if (tx.exec_params1("SELECT to_regclass($1) IS NULL", t)[0].as<bool>())
                    missing += (missing.empty() ? "" : ", ") + t;
        }
        add(out, "schema", "Keystone tables", missing.empty(),
            missing.empty() ? "all present"
                            : "missing: " + missing +
                                  ": migrate Keystone's API, or keystonectl db migrate "
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
            add(out, "celery", "Celery beat schedule", both.empty(),
                both.empty() ? "no task keystoned runs is enabled in django_celery_beat"
                             : "still enabled in Keystone's beat schedule: " + both +
                                   ": switch them off in Keystone's admin (Periodic tasks) or "
                                   "stop celery beat, or both systems run them");
        }
    } catch (const std::exception &e) {
        add(out, "schema", "schema", false, one_line(e));
        return;
    }
    // Slurm, per enabled cluster.
    std::vector<std::string> clusters;
    try {
        pqxx::read_transaction tx(*conn);
        for (const auto &row :
             tx.exec("SELECT name FROM allocations_cluster WHERE enabled ORDER BY name"))
            clusters.push_back(row[0].as<std::string>());
    } catch (const std::exception &e) {
        add(out, "schema", "allocations_cluster", false, one_line(e));
        return;
    }
    if (clusters.empty()) {
        add(out, "slurm", "enabled clusters", true,
            "none in allocations_cluster: the Slurm tasks have nothing to do");
        return;
    }
    std::unique_ptr<SlurmdbConnection> slurmdb;
    try {
        slurmdb = std::make_unique<SlurmdbConnection>(config.slurm_conf, config.slurmdb_timeout);
    } catch (const std::exception &e) {
        add(out, "slurm", "libslurm", false, one_line(e));
        return;
    }
    const bool limits_on = !config.schedules.at("update_limits").empty();
    for (const auto &c : clusters) {
        try {
            const bool known = slurmdb->cluster_exists(c);
            add(out, "slurm", "slurmdbd knows Cluster=" + c, known,
                known ? slurmdb->where()
                      : "slurmdbd has no such cluster (sacctmgr show cluster): fix the name in "
                        "allocations_cluster or disable it there");
            if (!known)
                continue;
        } catch (const std::exception &e) {
            add(out, "slurm", "slurmdbd for Cluster=" + c, false, one_line(e));
            continue;
        }
        if (!limits_on)
            continue;
        try {
            for (const auto &p :
                 check_limit_prerequisites(config.slurm_conf, c, config.slurmdb_timeout))
                add(out, "slurm", p.setting + " (Cluster=" + c + ")", p.ok,
                    p.ok ? p.value : p.advice);
        } catch (const std::exception &e) {
            add(out, "slurm", "slurmctld of Cluster=" + c, false,
                one_line(e) + ": update_limits reads usage from slurmctld");
        }
    }
}

} // namespace

std::vector<Finding> run_doctor(const Config &config) {
    std::vector<Finding> out;
    add(out, "config", "configuration", true, "read and valid");
    try {
        check_database(config, out);
    } catch (const std::exception &e) {
        add(out, "postgresql", "checks", false, one_line(e));
    }
    try {
        check_spool(config, out);
    } catch (const std::exception &e) {
        add(out, "spool", "checks", false, one_line(e));
    }
    return out;
}

int doctor_command(int argc, char **argv, const std::function<Config()> &load_config) {
    static const struct option longopts[] = {{"json", no_argument, nullptr, 'j'},
                                             {"help", no_argument, nullptr, 'h'},
                                             {nullptr, 0, nullptr, 0}};
    bool as_json = false;
    optind = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, nullptr)) != -1) {
        if (ch == 'h') {
            std::fputs(help, stdout);
            return EXIT_SUCCESS;
        }
        if (ch == 'j')
            as_json = true;
        else
            return exit_usage;
    }
    if (optind != argc) {
        std::fprintf(stderr, "keystonectl: doctor takes no arguments (see keystonectl doctor "
                             "--help)\n");
        return exit_usage;
    }
    const Config config = load_config();
    const std::vector<Finding> findings = run_doctor(config);
    bool all_ok = true;
    JsonPtr arr(json_array());
    for (const auto &f : findings) {
        all_ok = all_ok && f.ok;
        if (as_json) {
            json_t *o = json_object();
            json_object_set_new(o, "area", json_string(f.area.c_str()));
            json_object_set_new(o, "check", json_string(f.check.c_str()));
            json_object_set_new(o, "ok", json_boolean(f.ok));
            json_object_set_new(o, "detail", json_string(f.detail.c_str()));
            json_array_append_new(arr.get(), o);
        } else {
            std::printf("%-7s %-10s %s: %s\n", f.ok ? "ok" : "PROBLEM", f.area.c_str(),
                        f.check.c_str(), f.detail.c_str());
        }
    }
    if (as_json)
        std::printf("%s\n", json_text(arr.get()).c_str());
    else
        std::printf("%s\n", all_ok ? "everything checked is right"
                                   : "some checks found problems (PROBLEM lines above)");
    return all_ok ? EXIT_SUCCESS : EXIT_FAILURE;
}

} // namespace keystone
