#include "io/pickle.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/check.h"

namespace hippo::pickle {

namespace {
constexpr size_t kMaxMemo = size_t(1) << 24;
constexpr size_t kMaxStack = size_t(1) << 24;
// Objects a pickle may create. A state dict of the largest released H3 (2.7B) makes about 10^4;
// without a cap, 16 MB of nested one-element tuples would make 16 M objects (2.3 GB).
constexpr size_t kMaxValues = size_t(1) << 21;
}  // namespace

const Value* Value::get(const std::string& key) const {
    if (kind != Kind::Dict) return nullptr;
    for (auto& [k, v] : dict)
        if (k->kind == Kind::Str && k->s == key) return v;
    return nullptr;
}

std::string describe(const Value* v) {
    if (!v) return "null";
    switch (v->kind) {
        case Kind::None: return "None";
        case Kind::Bool: return "bool";
        case Kind::Int: return "int";
        case Kind::Float: return "float";
        case Kind::Str: return "str";
        case Kind::Bytes: return "bytes";
        case Kind::Tuple: return "tuple";
        case Kind::List: return "list";
        case Kind::Dict: return "dict";
        case Kind::Set: return "set";
        case Kind::Global: return v->s + "." + v->name;
        case Kind::Object: return "object of " + describe(v->callable);
        case Kind::Storage: return "torch." + v->s + "Storage";
        case Kind::Tensor: return "tensor";
    }
    return "?";
}

Unpickler::Unpickler(std::span<const uint8_t> data, std::string what) : data_(data), what_(std::move(what)) {}

void Unpickler::fail(const std::string& msg) const {
    throw Error(strf("%s: pickle: %s (at byte %zu)", what_.c_str(), msg.c_str(), op_pos_));
}

Value* Unpickler::make(Kind k) {
    if (arena_.size() >= kMaxValues) fail(strf("more than %zu objects: not a model checkpoint", kMaxValues));
    arena_.push_back(std::make_unique<Value>());
    arena_.back()->kind = k;
    return arena_.back().get();
}

Value* Unpickler::pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("stack underflow");
    Value* v = stack_.back();
    stack_.pop_back();
    return v;
}

Value* Unpickler::top() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("stack underflow");
    return stack_.back();
}

std::vector<Value*> Unpickler::pop_mark() {
    if (marks_.empty()) fail("no MARK on the stack");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Value*> items(stack_.begin() + ptrdiff_t(m), stack_.end());
    stack_.resize(m);
    return items;
}

uint64_t Unpickler::read_uint(size_t n) {
    if (data_.size() - pos_ < n) fail("truncated");
    uint64_t v = 0;
    for (size_t k = 0; k < n; k++) v |= uint64_t(data_[pos_ + k]) << (8 * k);
    pos_ += n;
    return v;
}

std::string_view Unpickler::read_bytes(uint64_t n) {
    if (data_.size() - pos_ < n) fail("truncated");
    std::string_view s(reinterpret_cast<const char*>(data_.data()) + pos_, size_t(n));
    pos_ += size_t(n);
    return s;
}

std::string_view Unpickler::read_line() {
    const uint8_t* b = data_.data() + pos_;
    const void* nl = std::memchr(b, '\n', data_.size() - pos_);
    if (!nl) fail("truncated (no newline)");
    size_t n = size_t(static_cast<const uint8_t*>(nl) - b);
    std::string_view s(reinterpret_cast<const char*>(b), n);
    pos_ += n + 1;
    return s;
}

// The allow-list. Anything else becomes an inert Object.
Value* Unpickler::reduce(Value* callable, Value* args) {
    if (callable->kind == Kind::Global) {
        const std::string &mod = callable->s, &name = callable->name;
        if (mod == "torch._utils" && name == "_rebuild_tensor_v2") {
            // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
            if (args->kind != Kind::Tuple || args->items.size() < 4) fail("_rebuild_tensor_v2: bad arguments");
            Value *st = args->items[0], *off = args->items[1], *size = args->items[2], *stride = args->items[3];
            if (st->kind != Kind::Storage || off->kind != Kind::Int || size->kind != Kind::Tuple ||
                stride->kind != Kind::Tuple || size->items.size() != stride->items.size() || size->items.size() > 64)
                fail("_rebuild_tensor_v2: expected (storage, offset, size, stride, ...), got (" + describe(st) + ", " +
                     describe(off) + ", " + describe(size) + ", " + describe(stride) + ")");
            Value* t = make(Kind::Tensor);
            t->storage = st;
            t->offset = off->i;
            for (size_t k = 0; k < size->items.size(); k++) {
                Value *a = size->items[k], *b = stride->items[k];
                if (a->kind != Kind::Int || b->kind != Kind::Int) fail("_rebuild_tensor_v2: size/stride must be ints");
                t->shape.push_back(a->i);
                t->stride.push_back(b->i);
            }
            return t;
        }
        if (mod == "torch._utils" && (name == "_rebuild_parameter" || name == "_rebuild_parameter_with_state")) {
            if (args->kind != Kind::Tuple || args->items.empty() || args->items[0]->kind != Kind::Tensor)
                fail(name + ": expected a tensor argument");
            return args->items[0];
        }
        if (mod == "collections" && name == "OrderedDict") {
            Value* d = make(Kind::Dict);
            if (args->kind == Kind::Tuple && args->items.size() == 1 && args->items[0]->kind == Kind::List) {
                for (Value* kv : args->items[0]->items) {
                    if (kv->kind != Kind::Tuple || kv->items.size() != 2) fail("OrderedDict: items must be pairs");
                    d->dict.emplace_back(kv->items[0], kv->items[1]);
                }
            }
            return d;
        }
    }
    Value* o = make(Kind::Object);
    o->callable = callable;
    o->args = args;
    return o;
}

Value* Unpickler::persistent(Value* pid) {
    // torch.save: ('storage', storage_type, key, location, numel)
    if (pid->kind != Kind::Tuple || pid->items.size() != 5 || pid->items[0]->kind != Kind::Str ||
        pid->items[0]->s != "storage")
        fail("unsupported persistent id (" + describe(pid) + "); only torch storages are accepted");
    Value *type = pid->items[1], *key = pid->items[2], *numel = pid->items[4];
    if (type->kind != Kind::Global || type->s != "torch" || type->name.size() <= 7 ||
        type->name.compare(type->name.size() - 7, 7, "Storage") != 0)
        fail("unsupported storage type " + describe(type));
    if (key->kind != Kind::Str || numel->kind != Kind::Int || numel->i < 0) fail("malformed storage id");
    Value* s = make(Kind::Storage);
    s->s = type->name.substr(0, type->name.size() - 7);
    s->name = key->s;
    s->numel = numel->i;
    return s;
}

const Value* Unpickler::load() {
    while (true) {
        if (pos_ >= data_.size()) {
            op_pos_ = pos_;
            fail("truncated (no STOP opcode)");
        }
        if (stack_.size() > kMaxStack) fail("stack too deep");
        op_pos_ = pos_;
        uint8_t op = data_[pos_++];
        switch (op) {
            case 0x80:  // PROTO
                if (read_uint(1) > 5) fail("unsupported protocol");
                break;
            case 0x95:  // FRAME (a hint only)
                read_uint(8);
                break;
            case '.': {  // STOP
                Value* v = pop();
                return v;
            }
            case '(':  // MARK
                marks_.push_back(stack_.size());
                break;
            case '0': pop(); break;  // POP
            case '1': pop_mark(); break;  // POP_MARK
            case '2': stack_.push_back(top()); break;  // DUP
            case 'N': stack_.push_back(make(Kind::None)); break;
            case 0x88:
            case 0x89: {
                Value* v = make(Kind::Bool);
                v->b = op == 0x88;
                stack_.push_back(v);
                break;
            }
            case 'J': {  // BININT
                Value* v = make(Kind::Int);
                v->i = int32_t(uint32_t(read_uint(4)));
                stack_.push_back(v);
                break;
            }
            case 'K':
            case 'M': {  // BININT1, BININT2
                Value* v = make(Kind::Int);
                v->i = int64_t(read_uint(op == 'K' ? 1 : 2));
                stack_.push_back(v);
                break;
            }
            case 0x8a:
            case 0x8b: {  // LONG1, LONG4: little-endian two's complement
                uint64_t n = read_uint(op == 0x8a ? 1 : 4);
                std::string_view b = read_bytes(n);
                if (n > 8) {
                    Value* o = make(Kind::Object);  // too big for int64: inert
                    o->callable = make(Kind::None);
                    stack_.push_back(o);
                    break;
                }
                uint64_t u = 0;
                for (size_t k = 0; k < n; k++) u |= uint64_t(uint8_t(b[k])) << (8 * k);
                if (n > 0 && n < 8 && (uint8_t(b[n - 1]) & 0x80)) u |= ~uint64_t(0) << (8 * n);
                Value* v = make(Kind::Int);
                v->i = int64_t(u);
                stack_.push_back(v);
                break;
            }
            case 'I':
            case 'L': {  // INT, LONG (text)
                std::string line(read_line());
                if (!line.empty() && line.back() == 'L') line.pop_back();
                Value* v;
                if (op == 'I' && (line == "01" || line == "00")) {
                    v = make(Kind::Bool);
                    v->b = line == "01";
                } else {
                    char* end = nullptr;
                    errno = 0;
                    long long x = std::strtoll(line.c_str(), &end, 10);
                    if (line.empty() || *end || errno) fail("bad integer literal");
                    v = make(Kind::Int);
                    v->i = x;
                }
                stack_.push_back(v);
                break;
            }
            case 'G': {  // BINFLOAT: big-endian double
                std::string_view b = read_bytes(8);
                uint64_t u = 0;
                for (int k = 0; k < 8; k++) u = (u << 8) | uint8_t(b[k]);
                Value* v = make(Kind::Float);
                std::memcpy(&v->f, &u, 8);
                stack_.push_back(v);
                break;
            }
            case 'F': {
                std::string line(read_line());
                char* end = nullptr;
                double x = std::strtod(line.c_str(), &end);
                if (line.empty() || *end) fail("bad float literal");
                Value* v = make(Kind::Float);
                v->f = x;
                stack_.push_back(v);
                break;
            }
            case 'X':
            case 0x8c:
            case 0x8d:  // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
            case 'B':
            case 'C':
            case 0x8e:  // BINBYTES, SHORT_BINBYTES, BINBYTES8
            case 'T':
            case 'U': {  // BINSTRING, SHORT_BINSTRING
                size_t w = (op == 0x8c || op == 'C' || op == 'U') ? 1 : (op == 0x8d || op == 0x8e) ? 8 : 4;
                uint64_t n = read_uint(w);
                Value* v = make((op == 'B' || op == 'C' || op == 0x8e) ? Kind::Bytes : Kind::Str);
                v->s = std::string(read_bytes(n));
                stack_.push_back(v);
                break;
            }
            case ')': stack_.push_back(make(Kind::Tuple)); break;
            case ']': stack_.push_back(make(Kind::List)); break;
            case '}': stack_.push_back(make(Kind::Dict)); break;
            case 0x8f: stack_.push_back(make(Kind::Set)); break;
            case 't':
            case 0x85:
            case 0x86:
            case 0x87:
            case 'l':
            case 0x91: {  // TUPLE, TUPLE1..3, LIST, FROZENSET
                std::vector<Value*> items;
                if (op == 't' || op == 'l' || op == 0x91) {
                    items = pop_mark();
                } else {
                    size_t n = op - 0x84;
                    items.resize(n);
                    for (size_t k = n; k-- > 0;) items[k] = pop();
                }
                Value* v = make(op == 'l' ? Kind::List : op == 0x91 ? Kind::Set : Kind::Tuple);
                v->items = std::move(items);
                stack_.push_back(v);
                break;
            }
            case 'd': {  // DICT
                std::vector<Value*> items = pop_mark();
                if (items.size() % 2) fail("DICT with an odd number of items");
                Value* v = make(Kind::Dict);
                for (size_t k = 0; k < items.size(); k += 2) v->dict.emplace_back(items[k], items[k + 1]);
                stack_.push_back(v);
                break;
            }
            case 'a':
            case 'e':
            case 0x90: {  // APPEND, APPENDS, ADDITEMS
                std::vector<Value*> items;
                if (op == 'a') items.push_back(pop());
                else items = pop_mark();
                Value* t = top();
                if (t->kind != Kind::List && t->kind != Kind::Set && t->kind != Kind::Object)
                    fail("APPEND to " + describe(t));
                t->items.insert(t->items.end(), items.begin(), items.end());
                break;
            }
            case 's':
            case 'u': {  // SETITEM, SETITEMS
                std::vector<Value*> items;
                if (op == 's') {
                    Value* v = pop();
                    items = {pop(), v};
                } else {
                    items = pop_mark();
                }
                if (items.size() % 2) fail("SETITEMS with an odd number of items");
                Value* t = top();
                if (t->kind != Kind::Dict && t->kind != Kind::Object) fail("SETITEM on " + describe(t));
                for (size_t k = 0; k < items.size(); k += 2) t->dict.emplace_back(items[k], items[k + 1]);
                break;
            }
            case 'c': {  // GLOBAL "module\nname\n"
                Value* g = make(Kind::Global);
                g->s = std::string(read_line());
                g->name = std::string(read_line());
                stack_.push_back(g);
                break;
            }
            case 0x93: {  // STACK_GLOBAL
                Value* name = pop();
                Value* mod = pop();
                if (mod->kind != Kind::Str || name->kind != Kind::Str) fail("STACK_GLOBAL needs two strings");
                Value* g = make(Kind::Global);
                g->s = mod->s;
                g->name = name->s;
                stack_.push_back(g);
                break;
            }
            case 'R': {  // REDUCE
                Value* args = pop();
                Value* callable = pop();
                stack_.push_back(reduce(callable, args));
                break;
            }
            case 0x81: {  // NEWOBJ
                Value* args = pop();
                Value* cls = pop();
                Value* o = make(Kind::Object);
                o->callable = cls;
                o->args = args;
                stack_.push_back(o);
                break;
            }
            case 0x92: {  // NEWOBJ_EX
                pop();  // kwargs
                Value* args = pop();
                Value* cls = pop();
                Value* o = make(Kind::Object);
                o->callable = cls;
                o->args = args;
                stack_.push_back(o);
                break;
            }
            case 'b': pop(); top(); break;  // BUILD: the state is ignored, nothing is set or called
            case 'i': {  // INST module\nname\n + marked args
                Value* g = make(Kind::Global);
                g->s = std::string(read_line());
                g->name = std::string(read_line());
                Value* args = make(Kind::Tuple);
                args->items = pop_mark();
                Value* o = make(Kind::Object);
                o->callable = g;
                o->args = args;
                stack_.push_back(o);
                break;
            }
            case 'o': {  // OBJ: marked (cls, args...)
                std::vector<Value*> items = pop_mark();
                if (items.empty()) fail("OBJ without a class");
                Value* args = make(Kind::Tuple);
                args->items.assign(items.begin() + 1, items.end());
                Value* o = make(Kind::Object);
                o->callable = items[0];
                o->args = args;
                stack_.push_back(o);
                break;
            }
            case 'Q': stack_.push_back(persistent(pop())); break;  // BINPERSID
            case 'q':
            case 'r':
            case 'p':
            case 0x94: {  // BINPUT, LONG_BINPUT, PUT, MEMOIZE
                uint64_t idx;
                if (op == 'q') idx = read_uint(1);
                else if (op == 'r') idx = read_uint(4);
                else if (op == 'p') {
                    std::string line(read_line());
                    char* end = nullptr;
                    idx = std::strtoull(line.c_str(), &end, 10);
                    if (line.empty() || *end) fail("bad PUT index");
                } else idx = memo_.size();
                if (idx >= kMaxMemo) fail("memo index too large");
                if (idx >= memo_.size()) memo_.resize(idx + 1, nullptr);
                memo_[idx] = top();
                break;
            }
            case 'h':
            case 'j':
            case 'g': {  // BINGET, LONG_BINGET, GET
                uint64_t idx;
                if (op == 'h') idx = read_uint(1);
                else if (op == 'j') idx = read_uint(4);
                else {
                    std::string line(read_line());
                    char* end = nullptr;
                    idx = std::strtoull(line.c_str(), &end, 10);
                    if (line.empty() || *end) fail("bad GET index");
                }
                if (idx >= memo_.size() || !memo_[idx]) fail(strf("memo index %llu not set", (unsigned long long)idx));
                stack_.push_back(memo_[idx]);
                break;
            }
            default: fail(strf("unsupported opcode 0x%02X", op));
        }
    }
}

}  // namespace hippo::pickle
