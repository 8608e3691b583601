// SPDX-License-Identifier: GPL-2.0-or-later
// Inside keystonectl doctor: the finding helper shared by its files, and the checks of the
// network services (doctor_net.cpp). run_doctor() in doctor.cpp calls them all.
#pragma once

#include "config.hpp"
#include "doctor.hpp"

#include <string>
#include <vector>

namespace keystone::doctor_detail {

using Status = FindingStatus;

// Appends a finding; `remedy` says what to change ("" when nothing is to change).
void add(std::vector<Finding> &out, const char *area, std::string check, Status status,
         std::string detail, std::string remedy = "");

// The LDAP server: bind over the configured TLS with the CA, paged results, the search base,
// each fail-over URI; info when LDAP is off.
void check_ldap(const Config &config, std::vector<Finding> &out);

// The mail transport: an SMTP session without a message (EHLO, STARTTLS, AUTH, NOOP), or
// EMAIL_DEBUG_DIR; info when no notification task is scheduled.
void check_mail(const Config &config, std::vector<Finding> &out);

} // namespace keystone::doctor_detail
