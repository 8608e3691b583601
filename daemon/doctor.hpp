// SPDX-License-Identifier: GPL-2.0-or-later
// keystonectl doctor: checks an installation and says what to change.
#pragma once

#include "config.hpp"

#include <functional>
#include <string>
#include <vector>

namespace keystone {

// How a finding stands. info: nothing to check here (a feature that is off) or a fact worth
// knowing; warning: works, but not as it should in production; error: something keystoned needs
// does not work.
enum class FindingStatus { ok, info, warning, error };

// "ok", "info", "warning", "error".
const char *finding_status_name(FindingStatus status);

// One finding: what was checked, how it stands, what was found, and what to change.
struct Finding {
    std::string area;  // "config", "postgresql", "schema", "celery", "ldap", "smtp", "slurm",
                       // "plugin", "spool"
    std::string check; // the subject, one line: "PriorityDecayHalfLife (Cluster=ks)"
    FindingStatus status = FindingStatus::error;
    std::string detail; // what was found
    std::string remedy; // what to change; empty when there is nothing to change
};

// Runs every check against `config` (read from `config_path`): the configuration file and
// settings that look wrong for production; PostgreSQL (connection, our schema version, the
// Keystone tables we need); Keystone's Celery beat schedule; LDAP (bind, TLS, paging, the search
// base) on each URI; the mail transport (SMTP session without a message, or EMAIL_DEBUG_DIR);
// per enabled cluster: slurmdbd knows it and the Slurm settings the limits task relies on
// (through slurmctld); the local slurmctld runs jobcomp/keystone of this version into
// KEYSTONED_SPOOL_DIR; the spool folder (owner, mode, depth, age of the oldest file). A check
// that cannot run is an error finding. Never throws.
std::vector<Finding> run_doctor(const Config &config, const std::string &config_path);

// `keystonectl doctor [--json] [--strict]`: argv[0] is "doctor". `load_config` reads the
// configuration from `config_path` and throws on a bad one, which becomes a finding. Returns 0
// when no finding is an error (with --strict: and none is a warning), 1 otherwise, 2 for a usage
// error.
int doctor_command(int argc, char **argv, const std::string &config_path,
                   const std::function<Config()> &load_config);

} // namespace keystone
