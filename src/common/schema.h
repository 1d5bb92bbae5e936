// Tables of typed, range-checked settings, read from JSON objects and from command-line text.
//
// One Schema describes one JSON object (a model config, a mixer's config block, the run options):
// each field has a key, a kind, a default, a range or a list of choices, and a help line. parse()
// refuses unknown keys, wrong types, out-of-range values and non-finite numbers with a one-line
// hippo::Error naming the source and the key, and returns the object with every default filled in,
// so what is saved is always complete and reloads to the same thing.
//
// parse_int_text / parse_number_text are the strict conversions of command-line text used
// everywhere a number arrives as text: decimal only (no hex, no octal, no "inf" or "nan"), the
// whole string, within int64 (or finite double), within the given range.
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace hippo {

// `what` names the value in errors ("option --steps", "ssm_cfg.d_state").
int64_t parse_int_text(const std::string& text, const std::string& what,
                       int64_t lo = std::numeric_limits<int64_t>::min(), int64_t hi = std::numeric_limits<int64_t>::max());
double parse_number_text(const std::string& text, const std::string& what, double lo = -std::numeric_limits<double>::max(),
                         double hi = std::numeric_limits<double>::max());

enum class FieldKind { integer, number, string, boolean };

struct Field {
    std::string key;
    FieldKind kind = FieldKind::integer;
    nlohmann::json def;                 // default; null: no default (the key may be absent, stays null)
    double lo = -std::numeric_limits<double>::max(), hi = std::numeric_limits<double>::max();
    std::vector<std::string> choices;   // strings: the allowed values (empty: any)
    std::string help;
    // Also accepted (legacy / sentinel): this exact value, outside the range (e.g. -1 = "default").
    nlohmann::json also;

    std::string range_text() const;  // "in [1, 4096]", "one of lin, inv", ...
};

class Schema {
public:
    Schema() = default;
    explicit Schema(std::string name) : name_(std::move(name)) {}

    Schema& integer(const std::string& key, nlohmann::json def, double lo, double hi, const std::string& help);
    Schema& number(const std::string& key, nlohmann::json def, double lo, double hi, const std::string& help);
    Schema& string(const std::string& key, nlohmann::json def, std::vector<std::string> choices, const std::string& help);
    Schema& boolean(const std::string& key, bool def, const std::string& help);
    // The last field added also accepts `v` (outside its range or choices).
    Schema& also(nlohmann::json v);

    // Checks `obj` (an object) and returns it with the defaults of absent keys filled in (fields
    // without a default stay absent). `where` prefixes every error ("cfg.json ssm_cfg").
    nlohmann::json parse(const nlohmann::json& obj, const std::string& where) const;
    // One value: checks kind, range and choices; `what` names it in the error.
    nlohmann::json check_value(const Field& f, const nlohmann::json& v, const std::string& what) const;
    // A value from command-line text, typed by the field (strict, see parse_int_text).
    nlohmann::json value_from_text(const Field& f, const std::string& text, const std::string& what) const;

    const Field* find(const std::string& key) const;
    const Field& at(const std::string& key) const;  // HIPPO_ASSERT that it exists
    const std::vector<Field>& fields() const { return fields_; }
    const std::string& name() const { return name_; }
    // The defaults of every field that has one.
    nlohmann::json defaults() const;

private:
    Schema& add(Field f);
    std::string name_;
    std::vector<Field> fields_;
};

// Parses JSON text, refusing a key given twice in one object (nlohmann keeps the last silently).
// `what` names the source in the error.
nlohmann::json parse_json_strict(const std::string& text, const std::string& what);

}  // namespace hippo
