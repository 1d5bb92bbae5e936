// A restricted Python pickle reader: just enough of the pickle machine (protocols 2-4) to read the
// state dicts that torch.save writes. NOTHING in a pickle is ever executed or imported:
//  - GLOBAL / STACK_GLOBAL only produce a Global value naming module and attribute;
//  - REDUCE interprets an allow-list of callables (torch._utils._rebuild_tensor_v2,
//    torch._utils._rebuild_parameter[_with_state], collections.OrderedDict); any other call, and
//    NEWOBJ / BUILD / INST / OBJ, yields an opaque Object that records callable and arguments and is
//    otherwise inert (hyper-parameters, optimizer state and callbacks in Lightning files end up as
//    such objects or as plain containers, and are skipped by the importer);
//  - BINPERSID accepts only torch's storage ids ('storage', torch.<T>Storage, key, location, numel).
// Values live in an arena owned by the Unpickler (reference cycles are harmless). Malformed or
// truncated input, stack underflow, a bad memo index, an unsupported opcode: hippo::Error naming
// the source and the byte offset.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace hippo::pickle {

enum class Kind : uint8_t { None, Bool, Int, Float, Str, Bytes, Tuple, List, Dict, Set, Global, Object, Storage, Tensor };

struct Value {
    Kind kind = Kind::None;
    bool b = false;
    int64_t i = 0;
    double f = 0;
    std::string s;     // Str, Bytes; Global: module; Storage: element type ("Float", "Half", ...)
    std::string name;  // Global: attribute; Storage: archive key
    std::vector<Value*> items;                        // Tuple, List, Set; Object: appended items
    std::vector<std::pair<Value*, Value*>> dict;      // Dict (insertion order); Object: set items
    Value* callable = nullptr;                        // Object: the class or function
    Value* args = nullptr;                            // Object: its arguments; BUILD state ignored
    // Storage: numel elements; Tensor: view of `storage`.
    Value* storage = nullptr;
    int64_t numel = 0, offset = 0;
    std::vector<int64_t> shape, stride;

    bool is(Kind k) const { return kind == k; }
    // For Dict: the value of a string key, or nullptr.
    const Value* get(const std::string& key) const;
};

class Unpickler {
public:
    Unpickler(std::span<const uint8_t> data, std::string what);
    // Runs the machine to STOP and returns the top value (owned by this Unpickler).
    const Value* load();

private:
    Value* make(Kind k);
    Value* pop();
    Value* top();
    std::vector<Value*> pop_mark();
    uint64_t read_uint(size_t n);
    std::string_view read_bytes(uint64_t n);
    std::string_view read_line();
    Value* reduce(Value* callable, Value* args);
    Value* persistent(Value* pid);
    [[noreturn]] void fail(const std::string& msg) const;

    std::span<const uint8_t> data_;
    std::string what_;
    size_t pos_ = 0, op_pos_ = 0;
    std::vector<std::unique_ptr<Value>> arena_;
    std::vector<Value*> stack_;
    std::vector<size_t> marks_;
    std::vector<Value*> memo_;  // dense: indices beyond size() are filled with nullptr
};

// Short description of a value for error messages ("dict", "torch.FloatStorage", ...).
std::string describe(const Value* v);

}  // namespace hippo::pickle
