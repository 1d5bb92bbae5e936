// A small long-option parser: --name value, --name=value and boolean --flag. Unknown options are
// errors (a typo must not silently change what runs).
#pragma once
#include <cfloat>
#include <climits>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace hippo {

class Args;
// --threads N (1..4096) when given: sets the thread count (common/runtime.h).
void apply_threads_option(const Args& args);

class Args {
public:
    // `flags` take no value; `options` take one. Anything else starting with "--" is an error.
    Args(int argc, char** argv, const std::set<std::string>& flags, const std::set<std::string>& options);
    bool has(const std::string& name) const { return values_.count(name) > 0; }
    std::string get(const std::string& name, const std::string& def = "") const;
    // Strict decimal text within [lo, hi] (common/schema.h parse_int_text): hex, trailing text,
    // overflow and out-of-range values are one-line errors naming the option.
    long long get_int(const std::string& name, long long def, long long lo = LLONG_MIN, long long hi = LLONG_MAX) const;
    // Finite decimal numbers within [lo, hi] ("inf", "nan", "0x10" are refused).
    double get_double(const std::string& name, double def, double lo = -DBL_MAX, double hi = DBL_MAX) const;
    std::vector<long long> get_int_list(const std::string& name, const std::vector<long long>& def, long long lo = LLONG_MIN,
                                        long long hi = LLONG_MAX) const;
    // "a,b,c" -> {"a", "b", "c"}; `def` split the same way when the option is absent.
    std::vector<std::string> get_list(const std::string& name, const std::string& def) const;
    const std::vector<std::string>& positional() const { return positional_; }

private:
    std::string command_;
    std::map<std::string, std::string> values_;
    std::vector<std::string> positional_;
};

}  // namespace hippo
