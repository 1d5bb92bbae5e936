#include "nn/checkpoint.h"

#include <signal.h>
#include <cmath>
#include <cstdlib>

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <set>

#include "io/file.h"
#include "io/safetensors.h"

namespace hippo {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kTrainStateFormat = "hippo-train-state";
constexpr const char* kTrainStateVersion = "1";

std::string shape_str(const std::vector<int64_t>& s) { return Shape(s).str(); }

// Deferred copies: loads validate everything first, then run these.
using Apply = std::vector<std::function<void()>>;

// Checks the tensors of `f` named in `expected` (name -> shape); queues copies into the targets.
void plan_f32(const SafetensorsFile& f, const NamedTensors& expected, Apply& apply) {
    for (const auto& [name, t] : expected) {
        const TensorInfo* info = f.find(name);
        HIPPO_CHECK(info, "checkpoint '%s': missing tensor '%s' (expected shape %s)", f.source().c_str(),
                    name.c_str(), t.shape().str().c_str());
        HIPPO_CHECK(info->shape == t.shape().vec(), "checkpoint '%s': tensor '%s' has shape %s, expected %s",
                    f.source().c_str(), name.c_str(), shape_str(info->shape).c_str(), t.shape().str().c_str());
        DType dt = info->dtype;
        HIPPO_CHECK(dt == DType::F32 || dt == DType::F16 || dt == DType::BF16 || dt == DType::F64,
                    "checkpoint '%s': tensor '%s' has dtype %s, expected a float type", f.source().c_str(),
                    name.c_str(), dtype_name(dt));
        HIPPO_CHECK(t.is_contiguous(), "checkpoint: target of '%s' is not contiguous", name.c_str());
        Tensor target = t;  // clang 14 cannot capture a structured binding in a lambda
        apply.push_back([&f, info, target] {
            f.read_f32(*info, target.data());
            // A NaN or Inf weight would only show later as a NaN loss or garbage text.
            const float* d = target.data();
            for (int64_t i = 0; i < target.numel(); i++)
                HIPPO_CHECK(std::isfinite(d[i]), "checkpoint '%s': tensor '%s' holds a non-finite value (%g at index %lld)",
                            f.source().c_str(), info->name.c_str(), double(d[i]), (long long)i);
        });
    }
}

void check_unknown(const SafetensorsFile& f, const std::set<std::string>& known, const char* hint) {
    for (const TensorInfo& info : f.tensors())
        HIPPO_CHECK(known.count(info.name), "checkpoint '%s': unexpected tensor '%s' (%s; load with strict=false to ignore it)",
                    f.source().c_str(), info.name.c_str(), hint);
}

void plan_weights(const SafetensorsFile& f, Module& model, bool strict, Apply& apply) {
    NamedTensors params = model.named_parameters();
    plan_f32(f, params, apply);
    if (strict) {
        std::set<std::string> known;
        for (auto& p : params) known.insert(p.first);
        check_unknown(f, known, "not a parameter of the model");
    }
}

// Reads an integer tensor of the given dtype and element count into `out` (unaligned-safe).
void read_words(const SafetensorsFile& f, const TensorInfo& info, DType dt, void* out) {
    HIPPO_CHECK(info.dtype == dt, "checkpoint '%s': tensor '%s' has dtype %s, expected %s", f.source().c_str(),
                info.name.c_str(), dtype_name(info.dtype), dtype_name(dt));
    std::memcpy(out, f.data(info), info.nbytes());
}

int64_t read_i64_scalar(const SafetensorsFile& f, const std::string& name) {
    const TensorInfo* info = f.find(name);
    HIPPO_CHECK(info, "checkpoint '%s': missing tensor '%s'", f.source().c_str(), name.c_str());
    HIPPO_CHECK(info->numel() == 1 && info->shape.size() <= 1, "checkpoint '%s': tensor '%s' has shape %s, expected a scalar",
                f.source().c_str(), name.c_str(), shape_str(info->shape).c_str());
    int64_t v;
    read_words(f, *info, DType::I64, &v);
    return v;
}

const std::string& meta(const SafetensorsFile& f, const std::string& key) {
    auto it = f.metadata().find(key);
    HIPPO_CHECK(it != f.metadata().end(), "checkpoint '%s': metadata has no '%s' (not a hippo training state?)",
                f.source().c_str(), key.c_str());
    return it->second;
}

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

void plan_train_state(const SafetensorsFile& f, Optimizer& opt, bool strict, TrainState& out, Apply& apply) {
    const std::string& format = meta(f, "format");
    HIPPO_CHECK(format == kTrainStateFormat, "checkpoint '%s': format is '%s', expected '%s'", f.source().c_str(),
                format.c_str(), kTrainStateFormat);
    const std::string& version = meta(f, "format_version");
    HIPPO_CHECK(version == kTrainStateVersion, "checkpoint '%s': unsupported format_version '%s' (this build reads '%s')",
                f.source().c_str(), version.c_str(), kTrainStateVersion);
    const std::string& oname = meta(f, "optimizer");
    HIPPO_CHECK(oname == opt.name(), "checkpoint '%s': saved with optimizer '%s', cannot load into '%s'",
                f.source().c_str(), oname.c_str(), opt.name().c_str());

    NamedTensors state = opt.state_tensors();
    plan_f32(f, state, apply);
    std::set<std::string> known{"step", "optimizer.step"};
    for (auto& s : state) known.insert(s.first);

    TrainState st;
    st.step = read_i64_scalar(f, "step");
    int64_t opt_step = read_i64_scalar(f, "optimizer.step");
    HIPPO_CHECK(st.step >= 0 && opt_step >= 0, "checkpoint '%s': negative step", f.source().c_str());
    for (const TensorInfo& info : f.tensors()) {
        if (starts_with(info.name, "rng.")) {
            HIPPO_CHECK(info.shape == std::vector<int64_t>{6}, "checkpoint '%s': tensor '%s' has shape %s, expected [6]",
                        f.source().c_str(), info.name.c_str(), shape_str(info.shape).c_str());
            uint64_t w[6];
            read_words(f, info, DType::U64, w);
            HIPPO_CHECK(w[5] <= 1, "checkpoint '%s': tensor '%s': bad has_spare word", f.source().c_str(), info.name.c_str());
            Rng::State rs{{w[0], w[1], w[2], w[3]}, std::bit_cast<double>(w[4]), w[5] == 1};
            st.rngs[info.name.substr(4)] = rs;
            known.insert(info.name);
        } else if (starts_with(info.name, "data.")) {
            HIPPO_CHECK(info.shape.size() == 1, "checkpoint '%s': tensor '%s' has shape %s, expected 1-D",
                        f.source().c_str(), info.name.c_str(), shape_str(info.shape).c_str());
            std::vector<int64_t> v(size_t(info.shape[0]));
            read_words(f, info, DType::I64, v.data());
            st.data_position[info.name.substr(5)] = std::move(v);
            known.insert(info.name);
        }
    }
    if (strict) check_unknown(f, known, "not part of this optimizer's state");
    for (const auto& [k, v] : f.metadata()) {
        if (starts_with(k, "user.")) st.metadata[k.substr(5)] = v;
        else if (starts_with(k, "optimizer.")) st.saved_hyperparameters[k.substr(10)] = v;
    }
    apply.push_back([&opt, opt_step] { opt.set_step_count(opt_step); });
    out = std::move(st);
}

}  // namespace

void remove_stale_checkpoint_temps(const std::string& dir) {
    const fs::path d(dir);
    const fs::path parent = d.parent_path().empty() ? fs::path(".") : d.parent_path();
    const std::string prefix = d.filename().string() + ".tmp.";
    std::error_code ec;
    for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.rfind(prefix, 0) != 0) continue;
        // <dir>.tmp.<pid>.<seq>: a save in progress in a live process other than this one is left alone.
        const long pid = std::atol(name.c_str() + prefix.size());
        if (pid > 0 && pid != long(::getpid()) && (::kill(pid_t(pid), 0) == 0 || errno == EPERM)) continue;
        std::error_code rm;
        fs::remove_all(it->path(), rm);
    }
}

namespace {

int fsync_dir(const std::string& dir) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno;
    int rc = ::fsync(fd) == 0 || errno == EINVAL || errno == ENOTSUP ? 0 : errno;
    ::close(fd);
    return rc;
}

std::string errstr(int e) { return std::strerror(e); }

std::atomic<uint64_t> g_seq{0};

}  // namespace

// ---------------------------------------------------------------------------------------------

const Rng::State& TrainState::rng(const std::string& name) const {
    auto it = rngs.find(name);
    HIPPO_CHECK(it != rngs.end(), "training state has no RNG named '%s'", name.c_str());
    return it->second;
}

void save_weights(const std::string& path, const Module& model) {
    SafetensorsWriter w;
    NamedTensors params = model.named_parameters();
    for (const auto& [name, t] : params) {
        HIPPO_CHECK(t.is_contiguous(), "save_weights: parameter '%s' is not contiguous", name.c_str());
        w.add_f32(name, t.shape().vec(), t.data());
    }
    w.set_metadata("format", "pt");
    w.write(path);
}

void load_weights(const std::string& path, Module& model, bool strict) {
    SafetensorsFile f = SafetensorsFile::open(path);
    Apply apply;
    plan_weights(f, model, strict, apply);
    NoGradGuard ng;
    for (auto& a : apply) a();
}

void save_train_state(const std::string& path, const Optimizer& opt, const TrainState& st) {
    SafetensorsWriter w;
    NamedTensors state = opt.state_tensors();
    for (const auto& [name, t] : state) w.add_f32(name, t.shape().vec(), t.data());
    const int64_t step = st.step, opt_step = opt.step_count();
    w.add("step", DType::I64, {}, &step, sizeof step);
    w.add("optimizer.step", DType::I64, {}, &opt_step, sizeof opt_step);
    std::vector<std::array<uint64_t, 6>> rng_words;  // kept alive until write()
    rng_words.reserve(st.rngs.size());
    for (const auto& [name, rs] : st.rngs) {
        rng_words.push_back({rs.s[0], rs.s[1], rs.s[2], rs.s[3], std::bit_cast<uint64_t>(rs.spare),
                             uint64_t(rs.has_spare ? 1 : 0)});
        w.add("rng." + name, DType::U64, {6}, rng_words.back().data(), 6 * sizeof(uint64_t));
    }
    for (const auto& [name, v] : st.data_position)
        w.add("data." + name, DType::I64, {int64_t(v.size())}, v.data(), v.size() * sizeof(int64_t));
    w.set_metadata("format", kTrainStateFormat);
    w.set_metadata("format_version", kTrainStateVersion);
    w.set_metadata("optimizer", opt.name());
    for (const auto& [k, v] : opt.hyperparameters()) w.set_metadata("optimizer." + k, v);
    for (const auto& [k, v] : st.metadata) w.set_metadata("user." + k, v);
    w.write(path);
}

TrainState load_train_state(const std::string& path, Optimizer& opt, bool strict) {
    SafetensorsFile f = SafetensorsFile::open(path);
    Apply apply;
    TrainState st;
    plan_train_state(f, opt, strict, st, apply);
    NoGradGuard ng;
    for (auto& a : apply) a();
    return st;
}

// ---------------------------------------------------------------------------------------------
// Directories

void save_checkpoint(const std::string& dir_in, const Module& model, const json& config, const Optimizer* opt,
                     const TrainState* st) {
    HIPPO_CHECK(!dir_in.empty(), "save_checkpoint: empty directory name");
    std::string dir = dir_in;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    std::error_code ec;
    if (fs::exists(dir, ec))
        HIPPO_CHECK(fs::is_directory(dir, ec), "save_checkpoint: '%s' exists and is not a directory", dir.c_str());

    std::string config_text;
    try {
        config_text = config.dump(2) + "\n";
    } catch (const json::exception& e) {
        throw Error(strf("save_checkpoint '%s': cannot serialise config: %s", dir.c_str(), e.what()));
    }

    std::string parent = fs::path(dir).parent_path().string();
    if (!parent.empty()) {
        fs::create_directories(parent, ec);
        HIPPO_CHECK(!ec, "save_checkpoint: cannot create '%s': %s", parent.c_str(), ec.message().c_str());
    }
    remove_stale_checkpoint_temps(dir);
    const std::string tmp = strf("%s.tmp.%ld.%llu", dir.c_str(), long(::getpid()), (unsigned long long)g_seq++);
    if (::mkdir(tmp.c_str(), 0755) != 0)
        throw Error(strf("save_checkpoint: cannot create '%s': %s", tmp.c_str(), errstr(errno).c_str()));
    try {
        save_weights(tmp + "/" + kModelFile, model);
        if (opt) save_train_state(tmp + "/" + kTrainStateFile, *opt, st ? *st : TrainState{});
        write_file_atomic(tmp + "/" + kConfigFile, config_text.data(), config_text.size());
        if (int e = fsync_dir(tmp)) throw Error(strf("save_checkpoint: fsync '%s': %s", tmp.c_str(), errstr(e).c_str()));

        if (!fs::exists(dir, ec)) {
            if (::rename(tmp.c_str(), dir.c_str()) != 0)
                throw Error(strf("save_checkpoint: cannot rename '%s' to '%s': %s", tmp.c_str(), dir.c_str(),
                                 errstr(errno).c_str()));
        } else if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) == 0) {
            fs::remove_all(tmp, ec);  // now holds the previous checkpoint
        } else {
            // No atomic exchange on this file system: move the old one aside first. A crash between
            // the two renames leaves the old checkpoint at `<dir>.old.*`, never a torn one.
            std::string old = strf("%s.old.%ld.%llu", dir.c_str(), long(::getpid()), (unsigned long long)g_seq++);
            if (::rename(dir.c_str(), old.c_str()) != 0)
                throw Error(strf("save_checkpoint: cannot move '%s' aside: %s", dir.c_str(), errstr(errno).c_str()));
            if (::rename(tmp.c_str(), dir.c_str()) != 0) {
                int e = errno;
                ::rename(old.c_str(), dir.c_str());
                throw Error(strf("save_checkpoint: cannot rename '%s' to '%s': %s", tmp.c_str(), dir.c_str(),
                                 errstr(e).c_str()));
            }
            fs::remove_all(old, ec);
        }
    } catch (...) {
        fs::remove_all(tmp, ec);
        throw;
    }
    if (int e = fsync_dir(parent.empty() ? "." : parent))
        throw Error(strf("save_checkpoint: fsync of the directory of '%s': %s", dir.c_str(), errstr(e).c_str()));
}

json load_config(const std::string& dir) {
    std::string path = dir + "/" + kConfigFile;
    std::vector<uint8_t> bytes = read_file(path);
    try {
        return json::parse(bytes.begin(), bytes.end());
    } catch (const json::exception& e) {
        throw Error(strf("config '%s': invalid JSON: %s", path.c_str(), e.what()));
    }
}

void load_checkpoint(const std::string& dir, Module& model, Optimizer* opt, TrainState* st, bool strict) {
    SafetensorsFile weights = SafetensorsFile::open(dir + "/" + kModelFile);
    Apply apply;
    plan_weights(weights, model, strict, apply);
    SafetensorsFile state;
    TrainState ts;
    if (opt) {
        state = SafetensorsFile::open(dir + "/" + kTrainStateFile);
        plan_train_state(state, *opt, strict, ts, apply);
    }
    NoGradGuard ng;
    for (auto& a : apply) a();
    if (st) *st = std::move(ts);
}

}  // namespace hippo
