// SPDX-License-Identifier: GPL-2.0-or-later
// Implementation of the LDAP directory client (see directory.hpp).
#include "directory.hpp"

#include "config.hpp"
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
                         const std::function<void(DirectoryEntry &)> &on_entry)
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
    DirectoryEntry entry;
    std::string key;
    for (;;) {
        LDAPControl *page_raw = nullptr;
        int rc = ldap_create_page_control(m_ld, static_cast<ber_int_t>(m_options.page_size),
                                          cookie.bv_val ? &cookie : nullptr, 0, &page_raw);
        if (rc != LDAP_SUCCESS)
            fail(m_ld, where + ": cannot build the paged-results control", rc);
        ControlPtr page(page_raw);
        LDAPControl *server_controls[] = {page.get(), nullptr};
        struct timeval tv = {m_options.timeout_sec, 0};
        int msgid = 0;
        rc = ldap_search_ext(m_ld, base.c_str(), LDAP_SCOPE_SUBTREE, filter.c_str(), attrs.data(),
                             0, server_controls, nullptr, &tv, LDAP_NO_LIMIT, &msgid);
        if (rc != LDAP_SUCCESS)
            fail(m_ld, where + " failed after " + std::to_string(seen) + " entries", rc);
        ++pages;

        // Entries are taken one message at a time as they arrive, so parsing them overlaps with
        // the server still sending the rest of the page.
        MessagePtr done;
        while (!done) {
            LDAPMessage *msg_raw = nullptr;
            struct timeval wait = {m_options.timeout_sec, 0};
            rc = ldap_result(m_ld, msgid, LDAP_MSG_ONE, &wait, &msg_raw);
            MessagePtr msg(msg_raw);
            if (rc == 0)
                throw DirectoryError(where + ": no answer within AUTH_LDAP_TIMEOUT=" +
                                         std::to_string(m_options.timeout_sec) + " s after " +
                                         std::to_string(seen) + " entries",
                                     LDAP_TIMEOUT);
            if (rc < 0) {
                int err = LDAP_OTHER;
                ldap_get_option(m_ld, LDAP_OPT_RESULT_CODE, &err);
                fail(m_ld, where + " failed after " + std::to_string(seen) + " entries", err);
            }
            if (rc == LDAP_RES_SEARCH_RESULT) {
                done = std::move(msg);
                break;
            }
            if (rc != LDAP_RES_SEARCH_ENTRY)
                continue; // references are not followed
            // ldap_get_dn_ber/ldap_get_attribute_ber read the entry in place: no copy of the DN or
            // of the attribute names, one array of values per attribute.
            LDAPMessage *m = msg.get();
            BerElement *ber_raw = nullptr;
            berval dn = {0, nullptr};
            rc = ldap_get_dn_ber(m_ld, m, &ber_raw, &dn);
            std::unique_ptr<BerElement, BerDeleter> ber(ber_raw);
            if (rc != LDAP_SUCCESS || dn.bv_len == 0)
                continue;
            // One entry object serves the whole search: its map keeps the attribute names and
            // its vectors their capacity from one entry to the next, so reading an entry
            // allocates only for the values the callback keeps.
            for (auto &kv : entry.attrs)
                kv.second.clear();
            entry.dn.assign(dn.bv_val, dn.bv_len);
            for (;;) {
                berval name = {0, nullptr};
                berval *values_raw = nullptr;
                rc = ldap_get_attribute_ber(m_ld, m, ber.get(), &name, &values_raw);
                std::unique_ptr<berval, MemDeleter> values(values_raw);
                if (rc != LDAP_SUCCESS || name.bv_val == nullptr)
                    break;
                key.assign(name.bv_val, name.bv_len);
                for (auto &ch : key)
                    ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
                auto slot = entry.attrs.find(key);
                if (slot == entry.attrs.end())
                    slot = entry.attrs.emplace(key, std::vector<std::string>()).first;
                for (berval *v = values.get(); v && v->bv_val; ++v)
                    slot->second.emplace_back(v->bv_val, v->bv_len);
            }
            ++seen;
            on_entry(entry);
        }

        int result_code = 0;
        char *matched = nullptr, *text = nullptr;
        LDAPControl **ctrls_raw = nullptr;
        rc = ldap_parse_result(m_ld, done.get(), &result_code, &matched, &text, nullptr,
                               &ctrls_raw, 0);
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

// --- keystonectl doctor's probe (not used by the sync) ------------------------------------

DirectoryProbe Directory::probe(const std::string &base)
{
    DirectoryProbe out;
    struct timeval tv = {m_options.timeout_sec, 0};
    char supported[] = "supportedControl";
    char *root_attrs[] = {supported, nullptr};
    LDAPMessage *raw = nullptr;
    // supportedControl is operational: the root DSE returns it only when asked by name.
    int rc = ldap_search_ext_s(m_ld, "", LDAP_SCOPE_BASE, "(objectClass=*)", root_attrs, 0,
                               nullptr, nullptr, &tv, 1, &raw);
    MessagePtr root(raw);
    if (rc != LDAP_SUCCESS)
        fail(m_ld, "ldap: " + m_uri + ": reading the root DSE", rc);
    for (LDAPMessage *e = ldap_first_entry(m_ld, root.get()); e; e = ldap_next_entry(m_ld, e)) {
        berval **vals = ldap_get_values_len(m_ld, e, supported);
        for (berval **v = vals; v && *v; ++v)
            if (std::string((*v)->bv_val, (*v)->bv_len) == LDAP_CONTROL_PAGEDRESULTS)
                out.paged_results = true;
        ldap_value_free_len(vals);
    }

    char no_attrs[] = LDAP_NO_ATTRS; // "1.1": the entry's DN only
    char *base_attrs[] = {no_attrs, nullptr};
    raw = nullptr;
    rc = ldap_search_ext_s(m_ld, base.c_str(), LDAP_SCOPE_BASE, "(objectClass=*)", base_attrs, 0,
                           nullptr, nullptr, &tv, 1, &raw);
    MessagePtr found(raw);
    if (rc == LDAP_SUCCESS && ldap_count_entries(m_ld, found.get()) > 0)
        out.base_found = true;
    else if (rc == LDAP_SUCCESS)
        out.base_error = "not visible to the bound identity";
    else if (rc == LDAP_SERVER_DOWN || rc == LDAP_TIMEOUT || rc == LDAP_CONNECT_ERROR)
        fail(m_ld, "ldap: " + m_uri + ": looking up \"" + base + "\"", rc);
    else
        out.base_error = std::string(ldap_err2string(rc)) + diagnostic(m_ld);
    return out;
}

DirectoryOptions directory_options(const Config &config)
{
    DirectoryOptions o;
    o.uris = config.ldap_server_uris;
    o.bind_dn = config.ldap_bind_dn;
    o.bind_password = config.ldap_bind_password;
    o.start_tls = config.ldap_start_tls;
    o.require_cert = config.ldap_require_cert;
    o.ca_file = config.ldap_ca_file;
    o.timeout_sec = config.ldap_timeout;
    o.page_size = config.ldap_page_size;
    return o;
}

} // namespace keystone
