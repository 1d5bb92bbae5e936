#include "common/schema.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <set>

#include "common/check.h"

namespace hippo {

using json = nlohmann::json;

namespace {

// Decimal digits with an optional sign, nothing else.
bool plain_integer_text(const std::string& s) {
    size_t i = (!s.empty() && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
    if (i == s.size()) return false;
    for (; i < s.size(); i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

// Decimal number text: digits, one '.', an exponent; no hex, inf or nan.
bool plain_number_text(const std::string& s) {
    if (s.empty()) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '-' || c == '+')) return false;
    return true;
}

std::string num_text(double v) {
    if (v == std::floor(v) && std::fabs(v) < 1e15) return strf("%lld", (long long)v);
    return strf("%g", v);
}

}  // namespace

int64_t parse_int_text(const std::string& text, const std::string& what, int64_t lo, int64_t hi) {
    HIPPO_CHECK(plain_integer_text(text), "%s expects a decimal integer, got '%s'", what.c_str(), text.c_str());
    errno = 0;
    char* end = nullptr;
    long long v = std::strtoll(text.c_str(), &end, 10);
    HIPPO_CHECK(errno != ERANGE && end && *end == '\0', "%s: '%s' is out of range (an integer in [%lld, %lld])", what.c_str(),
                text.c_str(), (long long)lo, (long long)hi);
    HIPPO_CHECK(v >= lo && v <= hi, "%s: %lld is out of range (an integer in [%lld, %lld])", what.c_str(), v, (long long)lo,
                (long long)hi);
    return v;
}

double parse_number_text(const std::string& text, const std::string& what, double lo, double hi) {
    HIPPO_CHECK(plain_number_text(text), "%s expects a decimal number, got '%s'", what.c_str(), text.c_str());
    errno = 0;
    char* end = nullptr;
    double v = std::strtod(text.c_str(), &end);
    HIPPO_CHECK(end && *end == '\0', "%s expects a decimal number, got '%s'", what.c_str(), text.c_str());
    HIPPO_CHECK(std::isfinite(v) && errno != ERANGE, "%s: '%s' is out of range", what.c_str(), text.c_str());
    HIPPO_CHECK(v >= lo && v <= hi, "%s: %g is out of range (a number in [%s, %s])", what.c_str(), v, num_text(lo).c_str(),
                num_text(hi).c_str());
    return v;
}

std::string Field::range_text() const {
    std::string r;
    switch (kind) {
        case FieldKind::integer:
            r = strf("an integer in [%s, %s]", num_text(lo).c_str(), num_text(hi).c_str());
            break;
        case FieldKind::number: r = strf("a number in [%s, %s]", num_text(lo).c_str(), num_text(hi).c_str()); break;
        case FieldKind::boolean: r = "true or false"; break;
        case FieldKind::string:
            if (choices.empty()) return "a string";
            r = "one of ";
            for (size_t i = 0; i < choices.size(); i++) r += (i ? ", " : "") + (choices[i].empty() ? "\"\"" : choices[i]);
            break;
    }
    if (!also.is_null()) r += " (or " + also.dump() + ")";
    return r;
}

Schema& Schema::add(Field f) {
    HIPPO_ASSERT(!find(f.key), "field %s twice", f.key.c_str());
    fields_.push_back(std::move(f));
    return *this;
}

Schema& Schema::integer(const std::string& key, json def, double lo, double hi, const std::string& help) {
    return add(Field{key, FieldKind::integer, std::move(def), lo, hi, {}, help, nullptr});
}
Schema& Schema::number(const std::string& key, json def, double lo, double hi, const std::string& help) {
    return add(Field{key, FieldKind::number, std::move(def), lo, hi, {}, help, nullptr});
}
Schema& Schema::string(const std::string& key, json def, std::vector<std::string> choices, const std::string& help) {
    return add(Field{key, FieldKind::string, std::move(def), 0, 0, std::move(choices), help, nullptr});
}
Schema& Schema::boolean(const std::string& key, bool def, const std::string& help) {
    return add(Field{key, FieldKind::boolean, def, 0, 0, {}, help, nullptr});
}
Schema& Schema::also(json v) {
    HIPPO_ASSERT(!fields_.empty());
    fields_.back().also = std::move(v);
    return *this;
}

const Field* Schema::find(const std::string& key) const {
    for (const Field& f : fields_)
        if (f.key == key) return &f;
    return nullptr;
}

const Field& Schema::at(const std::string& key) const {
    const Field* f = find(key);
    HIPPO_ASSERT(f, "no field '%s' in %s", key.c_str(), name_.c_str());
    return *f;
}

json Schema::defaults() const {
    json j = json::object();
    for (const Field& f : fields_)
        if (!f.def.is_null()) j[f.key] = f.def;
    return j;
}

json Schema::check_value(const Field& f, const json& v, const std::string& what) const {
    if (!f.also.is_null() && v == f.also) return v;
    const std::string got = v.dump();
    switch (f.kind) {
        case FieldKind::integer: {
            // 3.0 is not an integer here: a config is written by people, and a float where a
            // count belongs is a mistake worth naming.
            HIPPO_CHECK(v.is_number_integer(), "%s must be an integer, got %s", what.c_str(), got.c_str());
            const double d = v.is_number_unsigned() ? double(v.get<uint64_t>()) : double(v.get<int64_t>());
            HIPPO_CHECK(!v.is_number_unsigned() || v.get<uint64_t>() <= uint64_t(std::numeric_limits<int64_t>::max()),
                        "%s: %s is out of range (%s)", what.c_str(), got.c_str(), f.range_text().c_str());
            HIPPO_CHECK(d >= f.lo && d <= f.hi, "%s: %s is out of range (%s)", what.c_str(), got.c_str(), f.range_text().c_str());
            return json(v.get<int64_t>());
        }
        case FieldKind::number: {
            HIPPO_CHECK(v.is_number(), "%s must be a number, got %s", what.c_str(), got.c_str());
            const double d = v.get<double>();
            HIPPO_CHECK(std::isfinite(d), "%s must be finite, got %s", what.c_str(), got.c_str());
            HIPPO_CHECK(d >= f.lo && d <= f.hi, "%s: %s is out of range (%s)", what.c_str(), got.c_str(), f.range_text().c_str());
            return json(d);
        }
        case FieldKind::boolean:
            HIPPO_CHECK(v.is_boolean(), "%s must be true or false, got %s", what.c_str(), got.c_str());
            return v;
        case FieldKind::string: {
            HIPPO_CHECK(v.is_string(), "%s must be a string, got %s", what.c_str(), got.c_str());
            const std::string s = v.get<std::string>();
            if (!f.choices.empty()) {
                bool ok = false;
                for (const std::string& c : f.choices) ok = ok || c == s;
                HIPPO_CHECK(ok, "%s must be %s, got '%s'", what.c_str(), f.range_text().c_str(), s.c_str());
            }
            return v;
        }
    }
    return v;
}

json Schema::value_from_text(const Field& f, const std::string& text, const std::string& what) const {
    switch (f.kind) {
        case FieldKind::integer: {
            const double lo = std::max(f.lo, -9.2e18), hi = std::min(f.hi, 9.2e18);
            return check_value(f, json(parse_int_text(text, what, int64_t(lo), int64_t(hi))), what);
        }
        case FieldKind::number: return check_value(f, json(parse_number_text(text, what, f.lo, f.hi)), what);
        case FieldKind::boolean:
            HIPPO_CHECK(text == "true" || text == "false" || text == "1" || text == "0", "%s expects true or false, got '%s'",
                        what.c_str(), text.c_str());
            return json(text == "true" || text == "1");
        case FieldKind::string: return check_value(f, json(text), what);
    }
    return json(text);
}

json Schema::parse(const json& obj, const std::string& where) const {
    HIPPO_CHECK(obj.is_object(), "%s: expected a JSON object, got %s", where.c_str(), obj.dump().c_str());
    json out = json::object();
    for (auto it = obj.begin(); it != obj.end(); ++it) {
        const Field* f = find(it.key());
        HIPPO_CHECK(f, "%s: unknown key '%s'", where.c_str(), it.key().c_str());
        if (it.value().is_null() && f->def.is_null()) continue;  // "unset"
        out[it.key()] = check_value(*f, it.value().is_null() ? f->def : it.value(),
                                    strf("%s: '%s'", where.c_str(), it.key().c_str()));
    }
    for (const Field& f : fields_)
        if (!out.contains(f.key) && !f.def.is_null()) out[f.key] = f.def;
    return out;
}

json parse_json_strict(const std::string& text, const std::string& what) {
    // One set of keys per open object; a key seen twice in the same object is an error.
    std::vector<std::set<std::string>> open;
    std::string dup;
    auto cb = [&](int /*depth*/, json::parse_event_t ev, json& parsed) {
        switch (ev) {
            case json::parse_event_t::object_start: open.emplace_back(); break;
            case json::parse_event_t::object_end: open.pop_back(); break;
            case json::parse_event_t::key:
                if (!open.empty() && !open.back().insert(parsed.get<std::string>()).second && dup.empty())
                    dup = parsed.get<std::string>();
                break;
            default: break;
        }
        return true;
    };
    json j;
    try {
        j = json::parse(text, cb);
    } catch (const json::exception& e) {
        throw Error(strf("%s is not valid JSON: %s", what.c_str(), e.what()));
    }
    HIPPO_CHECK(dup.empty(), "%s: key '%s' is given twice in one object", what.c_str(), dup.c_str());
    return j;
}

}  // namespace hippo
