// SPDX-License-Identifier: GPL-2.0-or-later
// Composes e-mail messages (RFC 5322 + MIME): multipart text and HTML, Message-ID and Date,
// RFC 2047 encoded words for non-ASCII names and subjects, and no way for a value to add a header.
#pragma once

#include "error.hpp"

#include <ctime>
#include <string>
#include <string_view>

namespace keystone {

// A message that cannot be composed (an address we will not send to). what() names the value.
class MailFormatError : public Error {
public:
    using Error::Error;
};

// What a message says. Every text is UTF-8 and may come from the database: none of them can
// break out of its header or part (control characters in header values become spaces).
struct MailContent {
    std::string from_address; // bare address, e.g. noreply@keystone.bot
    std::string to_address;   // bare address of the one recipient
    std::string to_name;      // the recipient's display name; empty: the bare address only
    std::string subject;
    std::string text;       // the text/plain part
    std::string html;       // the text/html part
    std::string message_id; // with the angle brackets, from make_message_id()
    std::time_t date = 0;   // the Date header, written in the process time zone
};

// Whether `address` is an addr-spec we send to: dot-atom local part (RFC 5322 atext), '@', a
// domain of letters, digits, hyphens and dots or an address literal in brackets; ASCII only, no
// spaces or control characters, at most 254 characters.
[[nodiscard]] bool valid_address(std::string_view address);

// `value` made safe for a header: every run of spaces and control characters (CR, LF, TAB, NUL,
// DEL, ...) becomes one space; leading and trailing ones are dropped.
std::string header_value(std::string_view value);

// The header field "NAME: VALUE" with its CRLF, VALUE sanitised (header_value) and, when it is not
// plain ASCII or contains "=?", written as RFC 2047 encoded words (UTF-8, base64, each at most 75
// characters, never splitting a character). Lines are folded to at most 78 characters where the
// text allows.
std::string unstructured_header(std::string_view name, std::string_view value);

// The address header "NAME: display <address>" with its CRLF; the display name is a quoted
// string when it is printable ASCII, RFC 2047 encoded words otherwise, and left out when empty.
// Throws MailFormatError when `address` is not valid_address().
std::string address_header(std::string_view name, std::string_view display,
                           std::string_view address);

// RFC 5322 date-time of `t` in the process time zone: "Sat, 28 Nov 2026 00:00:00 +0100".
std::string rfc5322_date(std::time_t t);

// `text` in quoted-printable (RFC 2045): line ends normalised to CRLF, lines at most 76
// characters, '=', control characters, trailing blanks and every non-ASCII byte encoded. Ends
// with CRLF.
std::string quoted_printable(std::string_view text);

// `text` with & < > " ' replaced by their HTML character references.
std::string html_escape(std::string_view text);

// A Message-ID "<local@domain>" from the parts that identify a notice and `domain` (the sender
// address's domain). The same parts give the same id, so a message sent twice (after a crash
// between the server's acceptance and our record) carries one id that mail clients de-duplicate.
std::string make_message_id(std::string_view local_part, std::string_view domain);

// The complete message, CRLF line ends, headers then a multipart/alternative body with the text
// part first and the HTML part second (both UTF-8, quoted-printable). Throws MailFormatError when
// an address is not valid_address().
std::string build_message(const MailContent &content);

} // namespace keystone
