// SPDX-License-Identifier: GPL-2.0-or-later
// A fast reader for jobcomp/keystone's batch files (plugins/jobcomp/spool.h): the records in the
// form the plugin's writer emits them (compact JSON, members in the documented order) are decoded
// without building a jansson tree. It never decides that a file is invalid: whatever it does not
// recognise (a line it cannot decode, a header or file layout that is not exactly right, an I/O
// error) it declines, and the caller reads the file with the strict reader,
// ks_spool_read_file(), which then accepts it or names what is wrong, exactly as without this
// reader. What it accepts, the strict reader accepts too, with the same records.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

// common/keystone_record.h
struct ks_record;

namespace keystone {

// Length of the valid UTF-8 sequence (RFC 3629) at p[0..n) (n >= 1), 0 when p[0] starts none: no
// overlong forms, no surrogates, nothing above U+10FFFF (the rule of the plugin's writer and of
// jansson's parser).
std::size_t utf8_seq(const unsigned char *p, std::size_t n);

// Decodes one record line (without its newline) in the writer's form into `r`. True when the
// line is such a record and ks_record_from_json() would accept it with the same result; false
// when it is not (then `r` is unspecified): the line may still be valid (a "raw" member, \u
// escapes of surrogates, whitespace, ...) or invalid; only the strict reader can tell.
[[nodiscard]] bool decode_record_line(const char *line, std::size_t len, ks_record &r);

// Reads batch files; one per thread (it keeps its buffers between files).
class SpoolReader {
public:
    SpoolReader();
    ~SpoolReader();
    SpoolReader(const SpoolReader &) = delete;
    SpoolReader &operator=(const SpoolReader &) = delete;

    // Called for each record in file order with its index and the file's record count; false
    // declines the file.
    using Sink = std::function<bool(const ks_record &, std::size_t, std::size_t)>;

    // Reads the batch file at `path`: header, exactly `count` record lines, nothing after them,
    // each record decoded by decode_record_line() or, where that declines, by jansson and
    // ks_record_from_json() as the strict reader does. True when the whole file was read and
    // every record handed to `sink`; false when it declined (anything the strict reader might
    // reject, or `sink` said no): the caller must then use ks_spool_read_file() and drop what
    // `sink` received. Never modifies the file.
    [[nodiscard]] bool read(const std::string &path, const Sink &sink);

private:
    std::vector<char> m_data;           // the file
    std::unique_ptr<ks_record> m_record; // one record, reused
};

} // namespace keystone
