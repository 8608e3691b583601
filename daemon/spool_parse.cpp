// SPDX-License-Identifier: GPL-2.0-or-later
// The fast batch-file reader (see spool_parse.hpp). It mirrors the strict reader in
// plugins/jobcomp/spool.c (ks_spool_read_file, _check_header, ks_record_from_json): every check
// here is one of those, and anything this file does not handle itself is declined, never judged.
#include "spool_parse.hpp"

extern "C" {
#include "keystone_record.h"
#include "spool.h"
}

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace keystone {

namespace {

// The record's members in encoding order (spool.c's _members, keystone_record.h).
enum class Kind { str, u32, limit, time, billing };

struct Member {
    const char *key; // "\"name\":"
    Kind kind;
    int field;          // string field (Kind::str)
    std::size_t offset; // offset in ks_record (other kinds)
};

#define KS_M_S(name, f)                                                                            \
    {                                                                                              \
        "\"" name "\":", Kind::str, f, 0                                                           \
    }
#define KS_M_N(name, k, m)                                                                         \
    {                                                                                              \
        "\"" name "\":", k, -1, offsetof(ks_record, m)                                             \
    }

const Member members[] = {
    KS_M_S("cluster", KS_STR_CLUSTER),
    KS_M_N("job_id", Kind::u32, job_id),
    KS_M_N("array_job_id", Kind::u32, array_job_id),
    KS_M_N("array_task_id", Kind::u32, array_task_id),
    KS_M_N("het_job_id", Kind::u32, het_job_id),
    KS_M_N("het_job_offset", Kind::u32, het_job_offset),
    KS_M_S("het_job_info", KS_STR_HET_JOB_INFO),
    KS_M_S("job_name", KS_STR_JOB_NAME),
    KS_M_S("user", KS_STR_USER),
    KS_M_N("uid", Kind::u32, uid),
    KS_M_S("group", KS_STR_GROUP),
    KS_M_N("gid", Kind::u32, gid),
    KS_M_S("account", KS_STR_ACCOUNT),
    KS_M_S("partition", KS_STR_PARTITION),
    KS_M_S("qos", KS_STR_QOS),
    KS_M_S("state", KS_STR_STATE),
    KS_M_N("exit_code", Kind::u32, exit_code),
    KS_M_N("exit_signal", Kind::u32, exit_signal),
    KS_M_N("derived_exit_code", Kind::u32, derived_exit_code),
    KS_M_N("derived_signal", Kind::u32, derived_signal),
    KS_M_N("submit_time", Kind::time, submit_time),
    KS_M_N("eligible_time", Kind::time, eligible_time),
    KS_M_N("start_time", Kind::time, start_time),
    KS_M_N("end_time", Kind::time, end_time),
    KS_M_N("elapsed_sec", Kind::u32, elapsed_sec),
    KS_M_N("time_limit_min", Kind::limit, time_limit_min),
    KS_M_N("node_count", Kind::u32, node_count),
    KS_M_S("node_list", KS_STR_NODE_LIST),
    KS_M_N("cpus", Kind::u32, cpus),
    KS_M_S("tres_alloc", KS_STR_TRES_ALLOC),
    KS_M_N("billing", Kind::billing, billing),
    KS_M_N("priority", Kind::u32, priority),
    KS_M_S("work_dir", KS_STR_WORK_DIR),
    KS_M_S("reservation", KS_STR_RESERVATION),
};
#undef KS_M_S
#undef KS_M_N

int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

// A cursor over one line; every step returns false to decline.
class Line {
public:
    Line(const char *s, std::size_t n) : m_p(s), m_end(s + n) {}

    bool at_end() const { return m_p == m_end; }

    bool literal(const char *s, std::size_t n)
    {
        if (static_cast<std::size_t>(m_end - m_p) < n || std::memcmp(m_p, s, n) != 0)
            return false;
        m_p += n;
        return true;
    }
    bool literal(const char *s) { return literal(s, std::strlen(s)); }
    bool peek(char c) const { return m_p < m_end && *m_p == c; }
    bool peek_digit() const { return m_p < m_end && *m_p >= '0' && *m_p <= '9'; }

    // A JSON string (the opening quote next) of at most `max` bytes once decoded: its bytes in
    // *out / *len, pointing into the line when it has no escape, else into `buf` (max bytes).
    // Declines control characters, invalid UTF-8 (jansson rejects both), \u0000 (rejected
    // without JSON_ALLOW_NUL), \u escapes of surrogates (pairs are jansson's job) and strings
    // longer than `max` (an error the strict reader words).
    bool string(std::size_t max, char *buf, const char **out, std::size_t *len)
    {
        if (!literal("\"", 1))
            return false;
        const char *start = m_p;
        // The common case: no escape, ASCII or valid UTF-8, straight from the line.
        while (m_p < m_end) {
            const auto c = static_cast<unsigned char>(*m_p);
            if (c == '"') {
                const auto n = static_cast<std::size_t>(m_p - start);
                if (n > max)
                    return false;
                *out = start;
                *len = n;
                ++m_p;
                return true;
            }
            if (c == '\\')
                break;
            if (c < 0x20)
                return false;
            if (c < 0x80) {
                ++m_p;
                continue;
            }
            const std::size_t k = utf8_seq(reinterpret_cast<const unsigned char *>(m_p),
                                           static_cast<std::size_t>(m_end - m_p));
            if (k == 0)
                return false;
            m_p += k;
        }
        if (m_p == m_end)
            return false;
        // Escapes: decode into buf.
        std::size_t n = static_cast<std::size_t>(m_p - start);
        if (n > max)
            return false;
        std::memcpy(buf, start, n);
        while (m_p < m_end) {
            const auto c = static_cast<unsigned char>(*m_p);
            if (c == '"') {
                *out = buf;
                *len = n;
                ++m_p;
                return true;
            }
            if (c < 0x20)
                return false;
            if (c != '\\') {
                std::size_t k = 1;
                if (c >= 0x80) {
                    k = utf8_seq(reinterpret_cast<const unsigned char *>(m_p),
                                 static_cast<std::size_t>(m_end - m_p));
                    if (k == 0)
                        return false;
                }
                if (n + k > max)
                    return false;
                std::memcpy(buf + n, m_p, k);
                n += k;
                m_p += k;
                continue;
            }
            if (m_end - m_p < 2)
                return false;
            const char e = m_p[1];
            m_p += 2;
            char one = 0;
            switch (e) {
            case '"':
            case '\\':
            case '/':
                one = e;
                break;
            case 'b':
                one = '\b';
                break;
            case 'f':
                one = '\f';
                break;
            case 'n':
                one = '\n';
                break;
            case 'r':
                one = '\r';
                break;
            case 't':
                one = '\t';
                break;
            case 'u': {
                if (m_end - m_p < 4)
                    return false;
                unsigned v = 0;
                for (int i = 0; i < 4; ++i) {
                    const int h = hex_value(m_p[i]);
                    if (h < 0)
                        return false;
                    v = v << 4 | static_cast<unsigned>(h);
                }
                m_p += 4;
                if (v == 0 || (v >= 0xD800 && v <= 0xDFFF))
                    return false;
                char u[3];
                std::size_t k;
                if (v < 0x80) {
                    u[0] = static_cast<char>(v);
                    k = 1;
                } else if (v < 0x800) {
                    u[0] = static_cast<char>(0xC0 | v >> 6);
                    u[1] = static_cast<char>(0x80 | (v & 0x3F));
                    k = 2;
                } else {
                    u[0] = static_cast<char>(0xE0 | v >> 12);
                    u[1] = static_cast<char>(0x80 | ((v >> 6) & 0x3F));
                    u[2] = static_cast<char>(0x80 | (v & 0x3F));
                    k = 3;
                }
                if (n + k > max)
                    return false;
                std::memcpy(buf + n, u, k);
                n += k;
                continue;
            }
            default:
                return false;
            }
            if (n + 1 > max)
                return false;
            buf[n++] = one;
        }
        return false;
    }

    // `null` (true, *is_null set) or a JSON integer of at most 18 digits without a sign (jansson:
    // no leading zeros; a fraction or exponent would make it a real, declined here).
    bool unsigned_or_null(bool *is_null, std::uint64_t *v)
    {
        if (literal("null", 4)) {
            *is_null = true;
            return true;
        }
        *is_null = false;
        return digits(v) && !real_follows();
    }

    // A JSON number: an integer as above (*v, *integer) or a real in JSON's grammar (*d).
    bool number(bool *integer, std::uint64_t *v, double *d)
    {
        const char *start = m_p;
        if (!digits(v))
            return false;
        if (!real_follows()) {
            *integer = true;
            return true;
        }
        *integer = false;
        m_p = start;
        // JSON: int frac? exp?, the int part already known to be well formed.
        while (m_p < m_end && *m_p >= '0' && *m_p <= '9')
            ++m_p;
        if (peek('.')) {
            ++m_p;
            if (!(m_p < m_end && *m_p >= '0' && *m_p <= '9'))
                return false;
            while (m_p < m_end && *m_p >= '0' && *m_p <= '9')
                ++m_p;
        }
        if (peek('e') || peek('E')) {
            ++m_p;
            if (peek('+') || peek('-'))
                ++m_p;
            if (!(m_p < m_end && *m_p >= '0' && *m_p <= '9'))
                return false;
            while (m_p < m_end && *m_p >= '0' && *m_p <= '9')
                ++m_p;
        }
        // Correctly rounded, as glibc's strtod (jansson's conversion) is; out of range
        // (overflow, which jansson rejects, or underflow) declines.
        const auto r = std::from_chars(start, m_p, *d);
        return r.ec == std::errc() && r.ptr == m_p && std::isfinite(*d);
    }

private:
    bool digits(std::uint64_t *v)
    {
        const char *start = m_p;
        std::uint64_t x = 0;
        while (m_p < m_end && *m_p >= '0' && *m_p <= '9') {
            x = x * 10 + static_cast<unsigned>(*m_p - '0');
            ++m_p;
        }
        const auto n = m_p - start;
        if (n == 0 || n > 18 || (n > 1 && *start == '0'))
            return false;
        *v = x;
        return true;
    }
    bool real_follows() const { return peek('.') || peek('e') || peek('E'); }

    const char *m_p;
    const char *m_end;
};

struct JsonDeleter {
    void operator()(json_t *j) const noexcept { json_decref(j); }
};
using JsonPtr = std::unique_ptr<json_t, JsonDeleter>;

// spool.c's _parse_line: no NUL byte, one JSON value with duplicate keys rejected.
JsonPtr parse_json_line(const char *s, std::size_t n)
{
    if (std::memchr(s, '\0', n) != nullptr)
        return nullptr;
    json_error_t je;
    return JsonPtr(json_loadb(s, n, JSON_REJECT_DUPLICATES, &je));
}

// spool.c's _check_header, for acceptance only: the count when the header is right.
bool header_count(const char *s, std::size_t n, std::size_t *count)
{
    static const char *const names[] = {"format", "format_version", "record_version", "writer",
                                        "pid",    "seq",            "created",        "count"};
    JsonPtr h = parse_json_line(s, n);
    if (!h || !json_is_object(h.get()) || json_object_size(h.get()) != 8)
        return false; // eight distinct keys, all of them known below: no unknown member
    for (const char *name : names) {
        json_t *v = json_object_get(h.get(), name);
        if (v == nullptr)
            return false;
        const bool text = std::strcmp(name, "format") == 0 || std::strcmp(name, "writer") == 0;
        if (text ? !json_is_string(v) : (!json_is_integer(v) || json_integer_value(v) < 0))
            return false;
    }
    if (std::strcmp(json_string_value(json_object_get(h.get(), "format")), KS_SPOOL_FORMAT) != 0 ||
        json_integer_value(json_object_get(h.get(), "format_version")) !=
            KS_SPOOL_FORMAT_VERSION ||
        json_integer_value(json_object_get(h.get(), "record_version")) != KS_RECORD_VERSION)
        return false;
    const json_int_t c = json_integer_value(json_object_get(h.get(), "count"));
    if (static_cast<std::uintmax_t>(c) > KS_SPOOL_MAX_FILE_SIZE)
        return false;
    *count = static_cast<std::size_t>(c);
    return true;
}

// spool.c's _slurp, for acceptance only: the whole regular file of at most
// KS_SPOOL_MAX_FILE_SIZE bytes, read as one size; anything else (an error, a file that changed
// size meanwhile) declines.
bool slurp(const std::string &path, std::vector<char> &data)
{
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat st;
    bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
              static_cast<std::uintmax_t>(st.st_size) <= KS_SPOOL_MAX_FILE_SIZE;
    if (ok) {
        const auto size = static_cast<std::size_t>(st.st_size);
        data.resize(size);
        std::size_t got = 0;
        while (ok && got < size) {
            const ssize_t n = ::read(fd, data.data() + got, size - got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                ok = false;
            else
                got += static_cast<std::size_t>(n);
        }
    }
    ::close(fd);
    return ok;
}

} // namespace

std::size_t utf8_seq(const unsigned char *p, std::size_t n)
{
    const unsigned c = p[0];
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
        return n >= 3 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
        return n >= 4 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 &&
                       (p[3] & 0xC0) == 0x80
                   ? 4
                   : 0;
    }
    return 0;
}

bool decode_record_line(const char *s, std::size_t len, ks_record &r)
{
    Line line(s, len);
    char buf[KS_JOB_NAME_MAX + 4]; // the longest field's maximum
    ks_record_init(&r);
    if (!line.literal("{", 1))
        return false;
    bool first = true;
    for (const Member &m : members) {
        if (!first && !line.literal(",", 1))
            return false;
        first = false;
        if (!line.literal(m.key))
            return false;
        char *base = reinterpret_cast<char *>(&r) + m.offset;
        switch (m.kind) {
        case Kind::str: {
            const char *text;
            std::size_t n;
            if (!line.string(ks_str_field_max(m.field), buf, &text, &n))
                return false;
            ks_record_set_strn(&r, m.field, text, n);
            break;
        }
        case Kind::u32:
        case Kind::limit: {
            std::uint32_t u = KS_NO_VAL;
            bool is_null;
            std::uint64_t v;
            if (m.kind == Kind::limit && line.literal("-1", 2)) {
                // Exactly -1: not -10, -1.5 or -1e3.
                if (line.peek_digit() || line.peek('.') || line.peek('e') || line.peek('E'))
                    return false;
                u = KS_INFINITE;
            } else {
                if (!line.unsigned_or_null(&is_null, &v))
                    return false;
                if (!is_null) {
                    if (v >= KS_NO_VAL)
                        return false; // out of range: the strict reader's error
                    u = static_cast<std::uint32_t>(v);
                }
            }
            std::memcpy(base, &u, sizeof u);
            break;
        }
        case Kind::time: {
            std::time_t t = 0;
            bool is_null;
            std::uint64_t v;
            if (!line.unsigned_or_null(&is_null, &v))
                return false;
            if (!is_null) {
                if (v == 0)
                    return false; // not a time after the epoch
                t = static_cast<std::time_t>(v);
            }
            std::memcpy(base, &t, sizeof t);
            break;
        }
        case Kind::billing: {
            double d = -1.0;
            if (!line.literal("null", 4)) {
                bool integer;
                std::uint64_t v;
                if (!line.number(&integer, &v, &d))
                    return false;
                if (integer)
                    d = static_cast<double>(static_cast<json_int_t>(v));
                if (!(d >= 0) || !std::isfinite(d))
                    return false;
            }
            std::memcpy(base, &d, sizeof d);
            break;
        }
        }
    }
    if (!line.literal(",\"truncated\":[", 14))
        return false;
    r.truncated = 0;
    if (!line.literal("]", 1)) {
        for (;;) {
            const char *text;
            std::size_t n;
            if (!line.string(64, buf, &text, &n))
                return false;
            int f = 0;
            for (; f < KS_STR_COUNT; ++f) {
                const char *name = ks_str_field_name(f);
                if (std::strlen(name) == n && std::memcmp(name, text, n) == 0)
                    break;
            }
            if (f == KS_STR_COUNT || (r.truncated & (1u << f)))
                return false;
            r.truncated |= 1u << f;
            if (line.literal("]", 1))
                break;
            if (!line.literal(",", 1))
                return false;
        }
    }
    // "raw" (strings that are not UTF-8) is left to jansson.
    return line.literal("}", 1) && line.at_end();
}

SpoolReader::SpoolReader() : m_record(std::make_unique<ks_record>()) {}

SpoolReader::~SpoolReader() = default;

bool SpoolReader::read(const std::string &path, const Sink &sink)
{
    if (!slurp(path, m_data) || m_data.empty())
        return false;
    const char *p = m_data.data();
    const char *end = p + m_data.size();
    const char *nl = static_cast<const char *>(std::memchr(p, '\n', m_data.size()));
    std::size_t count = 0;
    if (nl == nullptr || !header_count(p, static_cast<std::size_t>(nl - p), &count))
        return false;
    p = nl + 1;
    for (std::size_t i = 0; i < count; ++i) {
        if (p == end)
            return false;
        nl = static_cast<const char *>(std::memchr(p, '\n', static_cast<std::size_t>(end - p)));
        if (nl == nullptr)
            return false;
        const auto n = static_cast<std::size_t>(nl - p);
        ks_record &r = *m_record;
        if (!decode_record_line(p, n, r)) {
            // As the strict reader does it, for this line only.
            JsonPtr v = parse_json_line(p, n);
            char err[256];
            if (!v || ks_record_from_json(v.get(), &r, err, sizeof err) != KS_SUCCESS)
                return false;
        }
        if (!sink(r, i, count))
            return false;
        p = nl + 1;
    }
    return p == end;
}

} // namespace keystone
