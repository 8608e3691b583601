// SPDX-License-Identifier: GPL-2.0-or-later
// keystonectl limits plan / history: what update_limits would change, and what it changed.
// (`keystonectl limits apply` is `keystonectl run update_limits`, handled in keystonectl.cpp.)
#pragma once

#include "config.hpp"

#include <functional>

namespace keystone {

// `keystonectl limits SUBCOMMAND ...`: argv[0] is "limits", argv[1] "plan" or "history".
// `load_config` reads and validates the configuration (exits the process on error); it is called
// only after the arguments were parsed, so --help works without one. Returns the exit status:
// plan: 0 planned (every cluster read, no account error), 1 a cluster or account could not be
// planned, 2 usage; history: 0 listed, 1 database error, 2 usage.
int limits_command(int argc, char **argv, const std::function<Config()> &load_config);

} // namespace keystone
