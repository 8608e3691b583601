// SPDX-License-Identifier: GPL-2.0-or-later
// E-mail templates: Mustache (kainjow/mustache, Debian's libkainjow-mustache-dev), built-in
// defaults compiled in from templates/*.mustache, overridden per file from EMAIL_TEMPLATE_DIR.
#pragma once

#include "error.hpp"

#include <kainjow/mustache.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace keystone {

// The values a template sees: strings, lists and objects (kainjow's data type).
using TemplateData = kainjow::mustache::data;

// A template that cannot be used. what() is one line naming the file and, where it is the
// template's fault, the line: "/etc/keystone/templates/upcoming_expiration.html.mustache:12:
// undefined variable 'req_titel'", "built-in footer.txt: ...".
class TemplateError : public Error {
public:
    using Error::Error;
};

struct BuiltinTemplate {
    const char *name; // "upcoming_expiration.html": the file name without .mustache
    const char *text;
};

// The built-in templates, generated at build time from templates/*.mustache by
// templates/embed.sh (the same files are installed under $(pkgdatadir)/templates).
const std::vector<BuiltinTemplate> &builtin_templates();

// A set of templates for one run. A template NAME ("upcoming_expiration.html",
// "upcoming_expiration.txt", "upcoming_expiration.subject", a partial "footer.html") is the file
// NAME.mustache in the override folder when that file exists, else the built-in one. Files are
// read once per Templates object. Not thread-safe.
class Templates {
public:
    // `dir`: EMAIL_TEMPLATE_DIR; empty, or a folder that does not exist: built-ins only.
    explicit Templates(std::string dir);

    // Renders template `name` with `data`. In a template whose name ends in ".html" every value
    // is HTML-escaped ({{{name}}} and {{&name}} too: no value reaches the HTML unescaped); in
    // the others values are inserted as they are. A partial {{> footer}} in "X.html" is the
    // template "footer.html" (same kind). Strict: a name that resolves to no value is an error,
    // as with Keystone's StrictUndefined.
    // Throws TemplateError naming the file and line: syntax errors, undefined names, a file that
    // cannot be read, a world-writable file or a world-writable (non-sticky) override folder,
    // and an empty result.
    std::string render(const std::string &name, const TemplateData &data);

    // The file `name` comes from: its path, or "built-in NAME". Throws TemplateError like
    // render() when the override file cannot be used.
    std::string origin(const std::string &name);

    // Keystone's own Jinja templates ("upcoming_expiration.html", ...) in the override folder
    // that have no .mustache counterpart: they are not used, the caller warns about them.
    std::vector<std::string> foreign_templates() const;

private:
    struct Source {
        std::string origin; // path or "built-in NAME"
        std::string text;
        std::optional<std::string> error; // why it cannot be used
    };
    const Source &load(const std::string &name);

    std::string m_dir;
    std::map<std::string, Source> m_cache;
};

} // namespace keystone
