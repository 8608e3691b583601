// SPDX-License-Identifier: GPL-2.0-or-later
// keystonectl notify: looks at expiration notices without sending them (notify preview).
#pragma once

#include "config.hpp"

#include <functional>

namespace keystone {

// `keystonectl notify SUBCOMMAND ...`: argv[0] is "notify". `load_config` reads and validates
// the configuration (it exits the process on error); it is called only after the arguments were
// parsed, so --help works without one. Returns the exit status: 0 done, 1 an error (database,
// template), 2 usage.
int notify_command(int argc, char **argv, const std::function<Config()> &load_config);

} // namespace keystone
