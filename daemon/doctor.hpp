// SPDX-License-Identifier: GPL-2.0-or-later
// keystonectl doctor: checks an installation and says what to change.
#pragma once

#include "config.hpp"

#include <functional>
#include <string>
#include <vector>

namespace keystone {

// One finding: what was checked, whether it is right, and what to change when it is not.
struct Finding {
    std::string area;  // "postgresql", "schema", "slurm", "spool", "celery"
    std::string check; // what was checked, one line: "PriorityDecayHalfLife (Cluster=ks)"
    bool ok = false;
    std::string detail; // what was found; when !ok, what to change
};

// Runs every check against `config`: PostgreSQL (connection, our schema version, the Keystone
// tables we need), Keystone's Celery beat schedule (tasks keystoned now runs still enabled there),
// per enabled cluster: slurmdbd knows it, and the Slurm settings the limits task relies on
// (through slurmctld); the spool folder (exists, depth, age of the oldest file). A check that
// cannot run is a finding that is not ok. Never throws.
std::vector<Finding> run_doctor(const Config &config);

// `keystonectl doctor [--json]`: argv[0] is "doctor". Returns 0 when every finding is ok, 1
// otherwise, 2 for a usage error.
int doctor_command(int argc, char **argv, const std::function<Config()> &load_config);

} // namespace keystone
