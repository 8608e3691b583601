// SPDX-License-Identifier: GPL-2.0-or-later
// Implementation of the LDAP directory client (see directory.hpp).
#include "directory.hpp"

#include "log.hpp"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <ldap.h>
#include <sys/time.h>

namespace keystone {

namespace {

struct MessageDeleter {
    void operator()(LDAPMessage *m) const noexcept { ldap_msgfree(m); }
};
using MessagePtr = std::unique_ptr<LDAPMessage, MessageDeleter>;

struct ControlDeleter {
    void operator()(LDAPControl *c) const noexcept { ldap_control_free(c); }
};
using ControlPtr = std::unique_ptr<LDAPControl, ControlDeleter>;

struct ControlsDeleter {
    void operator()(LDAPControl **c) const noexcept { ldap_controls_free(c); }
};
using ControlsPtr = std::unique_ptr<LDAPControl *, ControlsDeleter>;

struct MemDeleter {
    void operator()(void *p) const noexcept { ldap_memfree(p); }
};

struct BerDeleter {
    void operator()(BerElement *b) const noexcept { ber_free(b, 0); }
};

struct ValuesDeleter {
    void operator()(berval **v) const noexcept { ldap_value_free_len(v); }
};

std::string lower(std::string s)
{
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

bool starts_with(const std::string &s, const char *prefix)
{
    return lower(s).rfind(prefix, 0) == 0;
}

// libldap's diagnostic for the last operation on `ld`, when it has one.
std::string diagnostic(LDAP *ld)
{
    char *msg = nullptr;
    if (ld && ldap_get_option(ld, LDAP_OPT_DIAGNOSTIC_MESSAGE, &msg) == LDAP_OPT_SUCCESS && msg) {
        std::string out(msg);
        ldap_memfree(msg);
        if (!out.empty())
            return " (" + out + ")";
    }
    return "";
}

[[noreturn]] void fail(LDAP *ld, const std::string &what, int rc)
{
    throw DirectoryError(what + ": " + ldap_err2string(rc) + diagnostic(ld), rc);
}

void set_option(LDAP *ld, int option, const void *value, const char *name)
{
    int rc = ldap_set_option(ld, option, value);
    if (rc != LDAP_OPT_SUCCESS)
        fail(ld, std::string("ldap: cannot set ") + name, rc);
}

} // namespace

bool DirectoryError::transient() const noexcept
{
    return m_code == LDAP_SERVER_DOWN || m_code == LDAP_CONNECT_ERROR || m_code == LDAP_TIMEOUT ||
           m_code == LDAP_UNAVAILABLE || m_code == LDAP_BUSY;
}

Directory::Directory(const DirectoryOptions &options) : m_options(options)
{
    if (m_options.uris.empty())
        throw DirectoryError("ldap: no server URI (AUTH_LDAP_SERVER_URI is empty)", 0);
    std::string failures;
    int last_code = 0;
    for (const auto &uri : m_options.uris) {
        try {
            connect_one(uri);
            m_uri = uri;
            if (!failures.empty())
                log_warning("ldap: using %s after: %s", uri.c_str(), failures.c_str());
            return;
        } catch (const DirectoryError &e) {
            if (m_ld) {
                ldap_unbind_ext_s(m_ld, nullptr, nullptr);
                m_ld = nullptr;
            }
            if (!e.transient())
                throw;
            failures += (failures.empty() ? "" : "; ") + std::string(e.what());
            last_code = e.code();
        }
    }
    throw DirectoryError("ldap: no server could be reached: " + failures, last_code);
}

Directory::~Directory()
{
    if (m_ld)
        ldap_unbind_ext_s(m_ld, nullptr, nullptr);
}

void Directory::connect_one(const std::string &uri)
{
    const bool ldaps = starts_with(uri, "ldaps://");
    const bool ldapi = starts_with(uri, "ldapi://");
    const bool use_start_tls = !ldaps && !ldapi && m_options.start_tls;
    // Never a password in clear text: that needs ldaps://, StartTLS, or the local socket.
    if (!m_options.bind_password.empty() && !ldaps && !ldapi && !use_start_tls)
        throw DirectoryError("ldap: " + uri +
                                 ": refusing to send AUTH_LDAP_BIND_PASSWORD unencrypted; use "
                                 "ldaps:// or AUTH_LDAP_START_TLS=true",
                             LDAP_CONFIDENTIALITY_REQUIRED);

    int rc = ldap_initialize(&m_ld, uri.c_str());
    if (rc != LDAP_SUCCESS)
        fail(nullptr, "ldap: " + uri + ": bad URI", rc);
    const int version = LDAP_VERSION3;
    set_option(m_ld, LDAP_OPT_PROTOCOL_VERSION, &version, "protocol version");
    set_option(m_ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF, "referrals");
    struct timeval tv = {m_options.timeout_sec, 0};
    set_option(m_ld, LDAP_OPT_NETWORK_TIMEOUT, &tv, "network timeout");
    set_option(m_ld, LDAP_OPT_TIMEOUT, &tv, "timeout");
    // TLS settings belong to this handle only (a new context), never to the process.
    const int require = m_options.require_cert ? LDAP_OPT_X_TLS_DEMAND : LDAP_OPT_X_TLS_NEVER;
    set_option(m_ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &require, "TLS certificate check");
    if (!m_options.ca_file.empty())
        set_option(m_ld, LDAP_OPT_X_TLS_CACERTFILE, m_options.ca_file.c_str(), "TLS CA file");
    const int is_server = 0;
    set_option(m_ld, LDAP_OPT_X_TLS_NEWCTX, &is_server, "TLS context");

    if (use_start_tls) {
        rc = ldap_start_tls_s(m_ld, nullptr, nullptr);
        if (rc != LDAP_SUCCESS)
            fail(m_ld, "ldap: " + uri + ": StartTLS failed", rc);
    }
    berval cred;
    cred.bv_val = const_cast<char *>(m_options.bind_password.c_str());
    cred.bv_len = m_options.bind_password.size();
    rc = ldap_sasl_bind_s(m_ld, m_options.bind_dn.empty() ? nullptr : m_options.bind_dn.c_str(),
                          LDAP_SASL_SIMPLE, &cred, nullptr, nullptr, nullptr);
    if (rc != LDAP_SUCCESS)
        fail(m_ld,
             "ldap: " + uri + ": bind as " +
                 (m_options.bind_dn.empty() ? std::string("anonymous") : m_options.bind_dn) +
                 " failed",
             rc);
}

size_t Directory::search(const std::string &base, const std::string &filter,
                         const std::vector<std::string> &attributes,
                         const std::function<void(DirectoryEntry &&)> &on_entry)
{
    std::vector<char *> attrs;
    for (const auto &a : attributes)
        attrs.push_back(const_cast<char *>(a.c_str()));
    attrs.push_back(nullptr);

    const std::string where = "ldap: search of \"" + base + "\" with " + filter + " on " + m_uri;
    // The server's paging cookie, owned here until the next page replaces it.
    struct Cookie {
        berval value = {0, nullptr};
        ~Cookie() { clear(); }
        void clear()
        {
            if (value.bv_val)
                ber_memfree(value.bv_val);
            value = {0, nullptr};
        }
    } cookie_holder;
    berval &cookie = cookie_holder.value;
    size_t seen = 0;
    unsigned pages = 0;
    for (;;) {
        LDAPControl *page_raw = nullptr;
        int rc = ldap_create_page_control(m_ld, static_cast<ber_int_t>(m_options.page_size),
                                          cookie.bv_val ? &cookie : nullptr, 0, &page_raw);
        if (rc != LDAP_SUCCESS)
            fail(m_ld, where + ": cannot build the paged-results control", rc);
        ControlPtr page(page_raw);
        LDAPControl *server_controls[] = {page.get(), nullptr};
        struct timeval tv = {m_options.timeout_sec, 0};
        LDAPMessage *res_raw = nullptr;
        rc = ldap_search_ext_s(m_ld, base.c_str(), LDAP_SCOPE_SUBTREE, filter.c_str(),
                               attrs.data(), 0, server_controls, nullptr, &tv, LDAP_NO_LIMIT,
                               &res_raw);
        MessagePtr res(res_raw);
        if (rc != LDAP_SUCCESS)
            fail(m_ld, where + " failed after " + std::to_string(seen) + " entries", rc);
        ++pages;

        for (LDAPMessage *m = ldap_first_message(m_ld, res.get()); m;
             m = ldap_next_message(m_ld, m)) {
            if (ldap_msgtype(m) != LDAP_RES_SEARCH_ENTRY)
                continue; // references are not followed, results are read below
            DirectoryEntry entry;
            std::unique_ptr<char, MemDeleter> dn(ldap_get_dn(m_ld, m));
            if (!dn || !*dn)
                continue;
            entry.dn = dn.get();
            BerElement *ber_raw = nullptr;
            for (char *a = ldap_first_attribute(m_ld, m, &ber_raw); a;
                 a = ldap_next_attribute(m_ld, m, ber_raw)) {
                std::unique_ptr<char, MemDeleter> name(a);
                std::unique_ptr<berval *, ValuesDeleter> values(ldap_get_values_len(m_ld, m, a));
                auto &out = entry.attrs[lower(a)];
                if (values)
                    for (berval **v = values.get(); *v; ++v)
                        out.emplace_back((*v)->bv_val, (*v)->bv_len);
            }
            std::unique_ptr<BerElement, BerDeleter> ber(ber_raw);
            ++seen;
            on_entry(std::move(entry));
        }

        int result_code = 0;
        char *matched = nullptr, *text = nullptr;
        LDAPControl **ctrls_raw = nullptr;
        LDAPMessage *done = ldap_first_message(m_ld, res.get());
        while (done && ldap_msgtype(done) != LDAP_RES_SEARCH_RESULT)
            done = ldap_next_message(m_ld, done);
        if (!done)
            throw DirectoryError(where + ": no search result message", LDAP_PROTOCOL_ERROR);
        rc = ldap_parse_result(m_ld, done, &result_code, &matched, &text, nullptr, &ctrls_raw, 0);
        std::unique_ptr<char, MemDeleter> matched_owner(matched), text_owner(text);
        ControlsPtr ctrls(ctrls_raw);
        if (rc != LDAP_SUCCESS)
            fail(m_ld, where + ": cannot read the result", rc);
        if (result_code != LDAP_SUCCESS)
            throw DirectoryError(where + " stopped after " + std::to_string(seen) +
                                     " entries: " + ldap_err2string(result_code) +
                                     (text && *text ? std::string(" (") + text + ")" : ""),
                                 result_code);
        LDAPControl *response = ldap_control_find(LDAP_CONTROL_PAGEDRESULTS, ctrls.get(), nullptr);
        if (!response)
            break; // the server does not page: the result above was complete
        ber_int_t estimate = 0;
        cookie_holder.clear();
        rc = ldap_parse_pageresponse_control(m_ld, response, &estimate, &cookie);
        if (rc != LDAP_SUCCESS)
            fail(m_ld, where + ": bad paged-results response", rc);
        if (cookie.bv_len == 0)
            break;
    }
    log_debug("ldap: %zu entries in %u pages from %s", seen, pages, m_uri.c_str());
    return seen;
}

} // namespace keystone
