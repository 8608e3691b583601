// SPDX-License-Identifier: GPL-2.0-or-later
// Implementation of the e-mail templates (see templates.hpp).
#include "templates.hpp"

#include "mail_message.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <regex>
#include <sstream>
#include <sys/stat.h>

namespace keystone {

namespace {

namespace mu = kainjow::mustache;

constexpr const char *suffix = ".mustache";

// Keystone's own (Jinja) template files, which keystoned cannot render.
const char *const keystone_template_names[] = {"upcoming_expiration.html", "past_expiration.html"};

// "html" for "upcoming_expiration.html", "subject" for "x.subject".
std::string kind_of(const std::string &name) {
    const std::size_t dot = name.rfind('.');
    return dot == std::string::npos ? std::string() : name.substr(dot + 1);
}

int line_at(const std::string &text, std::size_t offset) {
    offset = std::min(offset, text.size());
    return 1 + static_cast<int>(
                   std::count(text.begin(), text.begin() + static_cast<long>(offset), '\n'));
}

// kainjow reports syntax errors as "Unclosed section \"x\" at 123" (a character offset):
// "LINE: Unclosed section \"x\"".
std::string located_syntax_error(const std::string &origin, const std::string &text,
                                 const std::string &message) {
    static const std::regex at(R"(^(.*) at ([0-9]+)$)");
    std::smatch m;
    if (std::regex_match(message, m, at))
        return origin + ":" + std::to_string(line_at(text, std::stoul(m[2].str()))) + ": " +
               m[1].str();
    return origin + ": " + message;
}

// The line of the first tag naming `name` ({{name}}, {{#name}}, {{{name}}}, ...), or 0.
int tag_line(const std::string &text, const std::string &name) {
    std::string quoted;
    for (char c : name) {
        if (std::strchr(R"(\^$.|?*+()[]{})", c))
            quoted += '\\';
        quoted += c;
    }
    const std::regex tag(R"(\{\{\{?\s*[#^/&]?\s*)" + quoted + R"(\s*\}?\}\})");
    std::smatch m;
    if (std::regex_search(text, m, tag))
        return line_at(text, static_cast<std::size_t>(m.position(0)));
    return 0;
}

std::string identity(const std::string &s) {
    return s;
}

// kainjow's context with three changes: names that resolve to nothing are recorded (strict
// mode), partials come from the template set, and in HTML templates every string value is
// handed out HTML-escaped, whichever tag asks for it ({{x}}, {{{x}}} or {{&x}}).
class StrictContext : public mu::context<std::string> {
public:
    using Loader = std::function<const mu::data *(const std::string &)>;
    StrictContext(const mu::data *data, bool html, Loader loader)
        : mu::context<std::string>(data), m_html(html), m_loader(std::move(loader)) {}

    const mu::data *get(const std::string &name) const override {
        const mu::data *v = mu::context<std::string>::get(name);
        if (!v) {
            if (std::find(m_missing.begin(), m_missing.end(), name) == m_missing.end())
                m_missing.push_back(name);
            return nullptr;
        }
        if (!m_html || !v->is_string())
            return v;
        auto it = m_escaped.find(v);
        if (it == m_escaped.end())
            it = m_escaped.emplace(v, mu::data(html_escape(v->string_value()))).first;
        return &it->second;
    }

    const mu::data *get_partial(const std::string &name) const override { return m_loader(name); }

    const std::vector<std::string> &missing() const { return m_missing; }

private:
    bool m_html;
    Loader m_loader;
    mutable std::vector<std::string> m_missing;
    mutable std::map<const mu::data *, mu::data> m_escaped;
};

} // namespace

Templates::Templates(std::string dir) : m_dir(std::move(dir)) {}

const Templates::Source &Templates::load(const std::string &name) {
    auto it = m_cache.find(name);
    if (it != m_cache.end())
        return it->second;
    Source src;
    const std::string file = name + suffix;
    bool overridden = false;
    if (!m_dir.empty()) {
        const std::string path = m_dir + "/" + file;
        struct stat st {};
        if (::stat(path.c_str(), &st) == 0) {
            overridden = true;
            src.origin = path;
            struct stat dst {};
            if (!S_ISREG(st.st_mode)) {
                src.error = path + ": not a regular file";
            } else if (st.st_mode & S_IWOTH) {
                // Anyone on the host could change what every user is sent (Keystone refuses
                // such a template too).
                src.error =
                    path + ": refused: the file is writable by everyone (chmod o-w " + path + ")";
            } else if (::stat(m_dir.c_str(), &dst) == 0 && (dst.st_mode & S_IWOTH) &&
                       !(dst.st_mode & S_ISVTX)) {
                src.error = path + ": refused: its folder " + m_dir +
                            " is writable by everyone (chmod o-w " + m_dir + ")";
            } else {
                std::ifstream in(path, std::ios::binary);
                std::stringstream ss;
                ss << in.rdbuf();
                if (!in.good() && !in.eof())
                    src.error = path + ": cannot read: " + std::strerror(errno);
                else
                    src.text = ss.str();
            }
        } else if (errno != ENOENT && errno != ENOTDIR) {
            overridden = true;
            src.origin = path;
            src.error = path + ": " + std::strerror(errno);
        }
    }
    if (!overridden) {
        src.origin = "built-in " + name;
        bool found = false;
        for (const auto &b : builtin_templates()) {
            if (name == b.name) {
                src.text = b.text;
                found = true;
                break;
            }
        }
        if (!found)
            src.error = "no template " + file +
                        (m_dir.empty() ? std::string(" built in")
                                       : " in EMAIL_TEMPLATE_DIR=" + m_dir + " nor built in");
    }
    return m_cache.emplace(name, std::move(src)).first->second;
}

std::string Templates::origin(const std::string &name) {
    const Source &src = load(name);
    if (src.error)
        throw TemplateError(*src.error);
    return src.origin;
}

std::string Templates::render(const std::string &name, const TemplateData &data) {
    const Source &src = load(name);
    if (src.error)
        throw TemplateError(*src.error);
    mu::mustache tmpl(src.text);
    if (!tmpl.is_valid())
        throw TemplateError(located_syntax_error(src.origin, src.text, tmpl.error_message()));
    // Values are escaped as they are looked up (StrictContext), so the library's own escaping
    // is off: it would escape twice, and it never escapes {{{x}}}.
    tmpl.set_custom_escape(identity);

    const std::string kind = kind_of(name);
    std::optional<std::string> partial_error;
    std::vector<const Source *> used{&src};
    std::map<std::string, mu::data> partials;
    auto loader = [&](const std::string &partial) -> const mu::data * {
        std::string pname = partial;
        if (pname.find('.') == std::string::npos && !kind.empty())
            pname += "." + kind;
        auto it = partials.find(pname);
        if (it != partials.end())
            return &it->second;
        const Source &p = load(pname);
        if (p.error) {
            if (!partial_error)
                partial_error = *p.error;
            return nullptr;
        }
        mu::mustache check(p.text);
        if (!check.is_valid()) {
            if (!partial_error)
                partial_error = located_syntax_error(p.origin, p.text, check.error_message());
            return nullptr;
        }
        used.push_back(&p);
        return &partials.emplace(pname, mu::data(p.text)).first->second;
    };
    StrictContext ctx(&data, kind == "html", loader);
    std::string out = tmpl.render(ctx);
    if (partial_error)
        throw TemplateError(*partial_error + " (a partial of " + src.origin + ")");
    if (!tmpl.is_valid())
        throw TemplateError(src.origin + ": " + tmpl.error_message());
    if (!ctx.missing().empty()) {
        const std::string &miss = ctx.missing().front();
        for (const Source *s : used) {
            if (int line = tag_line(s->text, miss))
                throw TemplateError(s->origin + ":" + std::to_string(line) +
                                    ": undefined variable '" + miss + "'");
        }
        throw TemplateError(src.origin + ": undefined variable '" + miss + "'");
    }
    if (out.find_first_not_of(" \t\r\n") == std::string::npos)
        throw TemplateError(src.origin + ": the template renders to nothing");
    return out;
}

std::vector<std::string> Templates::foreign_templates() const {
    std::vector<std::string> out;
    if (m_dir.empty())
        return out;
    for (const char *name : keystone_template_names) {
        struct stat st {};
        const std::string jinja = m_dir + "/" + name;
        const std::string ours = jinja + suffix;
        if (::stat(jinja.c_str(), &st) == 0 && ::stat(ours.c_str(), &st) != 0)
            out.push_back(jinja);
    }
    return out;
}

} // namespace keystone
