// SPDX-License-Identifier: GPL-2.0-or-later
// Implementation of message composition (see mail_message.hpp).
#include "mail_message.hpp"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

namespace keystone {

namespace {

constexpr std::size_t max_line = 78;      // RFC 5322's recommended line length
constexpr std::size_t max_word_line = 76; // RFC 2047: lines holding encoded words

bool is_atext(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return std::strchr("!#$%&'*+-/=?^_`{|}~", c) != nullptr && c != '\0';
}

bool plain_ascii(std::string_view s) {
    for (unsigned char c : s)
        if (c < 0x20 || c > 0x7e)
            return false;
    return s.find("=?") == std::string_view::npos;
}

std::string base64(std::string_view in) {
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        const std::uint32_t v = (static_cast<unsigned char>(in[i]) << 16) |
                                (static_cast<unsigned char>(in[i + 1]) << 8) |
                                static_cast<unsigned char>(in[i + 2]);
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += alphabet[(v >> 6) & 63];
        out += alphabet[v & 63];
    }
    if (i < in.size()) {
        std::uint32_t v = static_cast<unsigned char>(in[i]) << 16;
        if (i + 1 < in.size())
            v |= static_cast<unsigned char>(in[i + 1]) << 8;
        out += alphabet[(v >> 18) & 63];
        out += alphabet[(v >> 12) & 63];
        out += i + 1 < in.size() ? alphabet[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

// `text` as encoded words, the first on a line that already holds `used` characters, each later
// one on a continuation line (CRLF SP). Chunks end on character boundaries: a UTF-8 sequence is
// never split between two words, which RFC 2047 forbids.
std::string encoded_words(std::string_view text, std::size_t used) {
    static const std::string_view open = "=?UTF-8?B?", close = "?=";
    std::string out;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const std::size_t room = max_word_line - used - open.size() - close.size();
        std::size_t bytes = room / 4 * 3;
        if (bytes < 4)
            bytes = 4; // a line always takes at least one whole character
        std::size_t end = std::min(text.size(), pos + bytes);
        // Back up to the start of a character: continuation bytes are 10xxxxxx.
        while (end < text.size() && end > pos + 1 &&
               (static_cast<unsigned char>(text[end]) & 0xc0) == 0x80)
            --end;
        if (!out.empty())
            out += "\r\n ";
        out += open;
        out += base64(text.substr(pos, end - pos));
        out += close;
        pos = end;
        used = 1; // the folding space
    }
    return out;
}

// Plain ASCII text folded at spaces so lines stay within max_line where the words allow.
std::string folded_ascii(std::string_view text, std::size_t used) {
    std::string out;
    std::size_t line = used;
    std::size_t pos = 0;
    bool first = true;
    while (pos <= text.size()) {
        std::size_t sp = text.find(' ', pos);
        if (sp == std::string_view::npos)
            sp = text.size();
        const std::string_view word = text.substr(pos, sp - pos);
        if (first) {
            out += word;
            line += word.size();
            first = false;
        } else if (line + 1 + word.size() > max_line) {
            out += "\r\n ";
            out += word;
            line = 1 + word.size();
        } else {
            out += ' ';
            out += word;
            line += 1 + word.size();
        }
        pos = sp + 1;
    }
    return out;
}

bool long_word(std::string_view text) {
    std::size_t run = 0;
    for (char c : text) {
        run = c == ' ' ? 0 : run + 1;
        if (run > max_word_line - 2)
            return true;
    }
    return false;
}

} // namespace

bool valid_address(std::string_view address) {
    if (address.size() < 3 || address.size() > 254)
        return false;
    const std::size_t at = address.rfind('@');
    if (at == std::string_view::npos || at == 0 || at + 1 == address.size() || at > 64)
        return false;
    const std::string_view local = address.substr(0, at), domain = address.substr(at + 1);
    if (local.front() == '.' || local.back() == '.' || local.find("..") != std::string_view::npos)
        return false;
    for (unsigned char c : local)
        if (c != '.' && !is_atext(c))
            return false;
    if (domain.front() == '[') {
        if (domain.back() != ']' || domain.size() < 3)
            return false;
        // An IPv4 literal or "IPv6:..." (letters, digits, dots and colons).
        for (unsigned char c : domain.substr(1, domain.size() - 2))
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  c == '.' || c == ':'))
                return false;
        return true;
    }
    if (domain.front() == '.' || domain.back() == '.' ||
        domain.find("..") != std::string_view::npos)
        return false;
    for (unsigned char c : domain)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.'))
            return false;
    return true;
}

std::string header_value(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    bool space = false;
    for (char c : value) {
        const unsigned char u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f || c == ' ') {
            space = !out.empty();
            continue;
        }
        if (space)
            out += ' ';
        space = false;
        out += c;
    }
    return out;
}

std::string unstructured_header(std::string_view name, std::string_view value) {
    const std::string clean = header_value(value);
    std::string out(name);
    out += ": ";
    if (plain_ascii(clean) && !long_word(clean))
        out += folded_ascii(clean, out.size());
    else
        out += encoded_words(clean, out.size());
    out += "\r\n";
    return out;
}

std::string address_header(std::string_view name, std::string_view display,
                           std::string_view address) {
    if (!valid_address(address))
        throw MailFormatError("not a deliverable e-mail address: '" + header_value(address) + "'");
    const std::string clean = header_value(display);
    std::string out(name);
    out += ": ";
    if (clean.empty()) {
        out += address;
    } else if (plain_ascii(clean)) {
        out += '"';
        for (char c : clean) {
            if (c == '"' || c == '\\')
                out += '\\';
            out += c;
        }
        out += "\" <";
        out += address;
        out += '>';
    } else {
        out += encoded_words(clean, out.size());
        out += "\r\n <";
        out += address;
        out += '>';
    }
    out += "\r\n";
    return out;
}

std::string rfc5322_date(std::time_t t) {
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm {};
    localtime_r(&t, &tm);
    long off = tm.tm_gmtoff / 60;
    const char sign = off < 0 ? '-' : '+';
    if (off < 0)
        off = -off;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d %c%02ld%02ld",
                  days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
                  tm.tm_hour, tm.tm_min, tm.tm_sec, sign, off / 60, off % 60);
    return buf;
}

std::string quoted_printable(std::string_view text) {
    static const char hex[] = "0123456789ABCDEF";
    // Split into lines first, whatever the line ends: CRLF, LF or a lone CR.
    std::vector<std::string_view> lines;
    std::size_t start = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\r' || text[i] == '\n') {
            lines.push_back(text.substr(start, i - start));
            if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n')
                ++i;
            start = i + 1;
        }
    }
    if (start < text.size() || lines.empty())
        lines.push_back(text.substr(start));
    std::string out;
    out.reserve(text.size() + text.size() / 8 + 16);
    for (const std::string_view line : lines) {
        std::size_t col = 0;
        for (std::size_t i = 0; i < line.size(); ++i) {
            const unsigned char c = static_cast<unsigned char>(line[i]);
            const bool last = i + 1 == line.size();
            std::string piece;
            if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !last)) {
                piece.assign(1, static_cast<char>(c));
            } else {
                piece = {'=', hex[c >> 4], hex[c & 15]};
            }
            // Keep room for the soft break "=" within 76 characters; the last piece of a line
            // needs none.
            const std::size_t limit = last ? 76 : 75;
            if (col + piece.size() > limit) {
                out += "=\r\n";
                col = 0;
            }
            out += piece;
            col += piece.size();
        }
        out += "\r\n";
    }
    return out;
}

std::string html_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size() + text.size() / 8);
    for (char c : text) {
        switch (c) {
        case '&':
            out += "&amp;";
            break;
        case '<':
            out += "&lt;";
            break;
        case '>':
            out += "&gt;";
            break;
        case '"':
            out += "&quot;";
            break;
        case '\'':
            out += "&#x27;";
            break;
        default:
            out += c;
        }
    }
    return out;
}

std::string make_message_id(std::string_view local_part, std::string_view domain) {
    std::string local;
    for (unsigned char c : local_part)
        local += (is_atext(c) || c == '.') && c != '<' && c != '>' ? static_cast<char>(c) : '.';
    std::string dom;
    for (unsigned char c : domain)
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.')
            dom += static_cast<char>(c);
    if (dom.empty())
        dom = "localhost";
    return "<" + local + "@" + dom + ">";
}

std::string build_message(const MailContent &content) {
    // A boundary that starts with "=_" can never occur in quoted-printable text, which writes
    // every '=' as "=3D".
    std::uint32_t h = 2166136261u;
    for (unsigned char c : content.message_id) {
        h ^= c;
        h *= 16777619u;
    }
    char boundary[32];
    std::snprintf(boundary, sizeof boundary, "=_keystone_%08x", static_cast<unsigned>(h));

    std::string out;
    out.reserve(content.text.size() + content.html.size() + 1024);
    out += address_header("From", "", content.from_address);
    out += address_header("To", content.to_name, content.to_address);
    out += unstructured_header("Subject", content.subject);
    out += "Date: " + rfc5322_date(content.date) + "\r\n";
    out += "Message-ID: " + header_value(content.message_id) + "\r\n";
    out += "MIME-Version: 1.0\r\n";
    // RFC 3834: an automatic notice, so vacation responders stay quiet.
    out += "Auto-Submitted: auto-generated\r\n";
    out += std::string("Content-Type: multipart/alternative; boundary=\"") + boundary + "\"\r\n";
    out += "\r\n";
    out += std::string("--") + boundary + "\r\n";
    out += "Content-Type: text/plain; charset=utf-8\r\n";
    out += "Content-Transfer-Encoding: quoted-printable\r\n\r\n";
    out += quoted_printable(content.text);
    out += std::string("--") + boundary + "\r\n";
    out += "Content-Type: text/html; charset=utf-8\r\n";
    out += "Content-Transfer-Encoding: quoted-printable\r\n\r\n";
    out += quoted_printable(content.html);
    out += std::string("--") + boundary + "--\r\n";
    return out;
}

} // namespace keystone
