#include "apps/args.h"

#include <cstdlib>

#include "common/check.h"
#include "common/runtime.h"
#include "common/schema.h"

namespace hippo {

Args::Args(int argc, char** argv, const std::set<std::string>& flags, const std::set<std::string>& options) {
    command_ = argc > 0 ? argv[0] : "";
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a.rfind("--", 0) != 0 || a == "--") {
            positional_.push_back(a);
            continue;
        }
        std::string name = a.substr(2), value;
        bool has_value = false;
        if (auto eq = name.find('='); eq != std::string::npos) {
            value = name.substr(eq + 1);
            name = name.substr(0, eq);
            has_value = true;
        }
        if (flags.count(name)) {
            HIPPO_CHECK(!has_value, "option --%s takes no value", name.c_str());
            values_[name] = "1";
        } else if (options.count(name)) {
            if (!has_value) {
                HIPPO_CHECK(i + 1 < argc, "option --%s needs a value", name.c_str());
                value = argv[++i];
            }
            values_[name] = value;
        } else {
            throw Error(strf("unknown option --%s (see 'hippo %s --help')", name.c_str(), command_.c_str()));
        }
    }
}

void apply_threads_option(const Args& args) {
    if (args.has("threads")) set_num_threads(int(args.get_int("threads", 1, 1, 4096)));
}

std::string Args::get(const std::string& name, const std::string& def) const {
    auto it = values_.find(name);
    return it == values_.end() ? def : it->second;
}

static long long parse_int(const std::string& name, const std::string& s, long long lo = LLONG_MIN, long long hi = LLONG_MAX) {
    return parse_int_text(s, "option --" + name, lo, hi);
}

long long Args::get_int(const std::string& name, long long def, long long lo, long long hi) const {
    return has(name) ? parse_int(name, get(name), lo, hi) : def;
}

double Args::get_double(const std::string& name, double def, double lo, double hi) const {
    return has(name) ? parse_number_text(get(name), "option --" + name, lo, hi) : def;
}

std::vector<long long> Args::get_int_list(const std::string& name, const std::vector<long long>& def, long long lo,
                                         long long hi) const {
    if (!has(name)) return def;
    std::vector<long long> out;
    for (const std::string& item : get_list(name, "")) out.push_back(parse_int(name, item, lo, hi));
    return out;
}

std::vector<std::string> Args::get_list(const std::string& name, const std::string& def) const {
    const std::string s = has(name) ? get(name) : def;
    std::vector<std::string> out;
    for (size_t start = 0; start <= s.size();) {
        size_t comma = s.find(',', start);
        if (comma == std::string::npos) comma = s.size();
        out.push_back(s.substr(start, comma - start));
        start = comma + 1;
    }
    return out;
}

}  // namespace hippo
