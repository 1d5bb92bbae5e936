#include "train/trainer.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <csignal>
#include <cstring>
#include <thread>

#include "autograd/ops.h"
#include "common/runtime.h"
#include "data/synthetic.h"
#include "dist/comm.h"
#include "train/grad_sync.h"
#include "io/file.h"
#include "nn/checkpoint.h"
#include "nn/optim.h"
#include "nn/schedule.h"

namespace hippo {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string checkpoint_dir_of(const std::string& run_dir) {
    if (fs::exists(fs::path(run_dir) / kModelFile)) return run_dir;
    return (fs::path(run_dir) / "checkpoint").string();
}

nlohmann::json load_config_on_root(const std::string& ckpt_dir) {
    Comm& comm = Comm::world();
    std::string text;
    if (comm.is_root()) text = load_config(ckpt_dir).dump();
    return json::parse(comm.broadcast_string(text, 0, "checkpoint config"));
}

EvalResult evaluate(const Model& model, const DataSource& data, const std::string& split, int64_t batch,
                    int64_t seq_len, int64_t max_batches, Comm* comm) {
    NoGradGuard no_grad;
    HIPPO_CHECK(batch >= 1, "evaluate: batch must be >= 1, got %lld", (long long)batch);
    const int64_t L = data.fixed_seq_len() > 0 ? data.fixed_seq_len() : seq_len;
    HIPPO_CHECK(L >= 1, "evaluate: seq_len must be >= 1, got %lld", (long long)L);
    std::vector<Batch> batches = data.eval_batches(split, batch, L, max_batches);
    const int rank = comm ? comm->rank() : 0, ranks = comm ? comm->size() : 1;
    double loss_sum = 0;
    int64_t correct = 0, count = 0;
    for (size_t bi = size_t(rank); bi < batches.size(); bi += size_t(ranks)) {
        BatchResult r = model.run_batch(batches[bi], 0, 0, true);
        loss_sum += r.loss_sum;
        correct += r.correct;
        count += r.count;
    }
    if (comm && comm->distributed()) {
        double sums[3] = {loss_sum, double(correct), double(count)};
        comm->allreduce_sum(sums, 3, "evaluation sums");
        loss_sum = sums[0];
        correct = int64_t(sums[1]);
        count = int64_t(sums[2]);
    }
    EvalResult r;
    r.batches = int64_t(batches.size());
    r.tokens = count;
    if (count > 0) {
        r.loss = loss_sum / double(count);
        r.accuracy = double(correct) / double(count);
        r.perplexity = std::exp(r.loss);
    }
    return r;
}

namespace {

std::string fmt_duration(double s) {
    if (!std::isfinite(s) || s < 0) return "?";
    long t = long(s + 0.5);
    if (t >= 3600) return strf("%ldh%02ldm", t / 3600, (t / 60) % 60);
    if (t >= 60) return strf("%ldm%02lds", t / 60, t % 60);
    return strf("%lds", t);
}

class Progress {
public:
    Progress(int64_t total, int64_t log_every, bool quiet)
        : total_(total), log_every_(log_every), quiet_(quiet) {
        const char* ci = std::getenv("CI");
        tty_ = !quiet && isatty(2) && !(ci && *ci);
    }
    void update(int64_t step, double loss, double lr, double tok_s, double eta) {
        if (quiet_) return;
        if (tty_) {
            const int width = 24;
            int filled = int(double(width) * double(step) / double(std::max<int64_t>(1, total_)));
            std::string bar(size_t(filled), '#');
            bar.resize(size_t(width), '.');
            std::fprintf(stderr, "\r[%s] %lld/%lld loss %.4f lr %.2e %.0f tok/s ETA %s   ", bar.c_str(), (long long)step,
                         (long long)total_, loss, lr, tok_s, fmt_duration(eta).c_str());
            std::fflush(stderr);
            dirty_ = true;
        } else if (step % log_every_ == 0 || step == total_) {
            std::fprintf(stderr, "step %lld/%lld loss %.4f lr %.3e tok/s %.0f eta %s\n", (long long)step, (long long)total_,
                         loss, lr, tok_s, fmt_duration(eta).c_str());
        }
    }
    void line(const std::string& s) {
        if (quiet_) return;
        if (dirty_) std::fputc('\n', stderr);
        dirty_ = false;
        std::fprintf(stderr, "%s\n", s.c_str());
    }
    void finish() {
        if (dirty_) std::fputc('\n', stderr);
        dirty_ = false;
    }

private:
    int64_t total_, log_every_;
    bool quiet_, tty_ = false, dirty_ = false;
};

// Keeps the rows of metrics.jsonl with step <= last_step (resume).
void truncate_metrics(const std::string& path, int64_t last_step) {
    std::ifstream f(path);
    if (!f.good()) return;
    std::string line, kept;
    while (std::getline(f, line)) {
        if (line.empty()) continue;
        try {
            json j = json::parse(line);
            if (j.value("step", int64_t(0)) <= last_step) kept += line + "\n";
        } catch (const json::exception&) {
        }
    }
    f.close();
    write_file_atomic(path, kept.data(), kept.size());
}

// The training log reaches the disk before the checkpoint that it must cover.
void sync_file(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

// An exclusive lock on RUN_DIR/.lock for the life of the training: a second training into the same
// run directory is refused instead of interleaving its log and checkpoints with this one's.
class RunDirLock {
public:
    explicit RunDirLock(const std::string& dir) {
        const std::string path = (fs::path(dir) / ".lock").string();
        fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        HIPPO_CHECK(fd_ >= 0, "train: cannot create '%s': %s", path.c_str(), std::strerror(errno));
        if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
            ::close(fd_);
            fd_ = -1;
            throw Error(strf("train: another training is using run directory '%s' (it holds %s)", dir.c_str(), path.c_str()));
        }
    }
    ~RunDirLock() {
        if (fd_ >= 0) ::close(fd_);  // releases the lock
    }
    RunDirLock(const RunDirLock&) = delete;
    RunDirLock& operator=(const RunDirLock&) = delete;

private:
    int fd_ = -1;
};

bool all_finite(const Module& m) {
    for (const Tensor& p : m.parameters()) {
        const float* d = p.data();
        for (int64_t i = 0; i < p.numel(); i++)
            if (!std::isfinite(d[i])) return false;
    }
    return true;
}

// 64-bit FNV-1a over the bits of every parameter: replicas of a data-parallel job must agree.
uint64_t parameter_checksum(const Module& m) {
    uint64_t h = 1469598103934665603ull;
    for (const Tensor& p : m.parameters()) {
        const uint32_t* d = reinterpret_cast<const uint32_t*>(p.data());
        for (int64_t i = 0; i < p.numel(); i++) h = (h ^ d[i]) * 1099511628211ull;
    }
    return h;
}

// Rank 0's model, optimizer state and loop state to every rank (resume).
void broadcast_train_state(Comm& comm, Module& model, Optimizer& optim, int64_t& step, Rng& dropout_rng,
                           DataSource& data) {
    if (!comm.distributed()) return;
    for (Tensor& p : model.parameters()) comm.broadcast(p.data(), p.numel() * int64_t(sizeof(float)), 0, "parameters");
    for (Tensor& b : optim.state_buffers()) comm.broadcast(b.data(), b.numel() * int64_t(sizeof(float)), 0, "optimizer state");
    int64_t counts[2] = {step, optim.step_count()};
    comm.broadcast(counts, sizeof counts, 0, "step");
    step = counts[0];
    optim.set_step_count(counts[1]);
    Rng::State rs = dropout_rng.state();
    comm.broadcast(&rs, sizeof rs, 0, "dropout RNG");
    dropout_rng.set_state(rs);
    std::vector<int64_t> ds = data.state();
    int64_t n = int64_t(ds.size());
    comm.broadcast(&n, sizeof n, 0, "data position");
    ds.resize(size_t(n));
    comm.broadcast(ds.data(), n * int64_t(sizeof(int64_t)), 0, "data position");
    data.set_state(ds);
}

// "RANK:STEP:KIND" (TrainOptions::inject_fault).
struct FaultPlan {
    int rank = -1;
    int64_t step = -1;
    std::string kind;
};

FaultPlan parse_fault(const std::string& spec) {
    FaultPlan f;
    if (spec.empty()) return f;
    const size_t a = spec.find(':'), b = spec.find(':', a == std::string::npos ? a : a + 1);
    HIPPO_CHECK(a != std::string::npos && b != std::string::npos, "--inject-fault: expected RANK:STEP:KIND, got '%s'",
                spec.c_str());
    f.rank = std::atoi(spec.substr(0, a).c_str());
    f.step = std::atoll(spec.substr(a + 1, b - a - 1).c_str());
    f.kind = spec.substr(b + 1);
    HIPPO_CHECK(f.kind == "exit" || f.kind == "kill" || f.kind == "hang",
                "--inject-fault: KIND must be exit, kill or hang, got '%s'", f.kind.c_str());
    return f;
}

void inject_fault(const FaultPlan& f) {
    std::fprintf(stderr, "hippo: injected fault: rank %d %s at step %lld\n", f.rank, f.kind.c_str(), (long long)f.step);
    std::fflush(stderr);
    if (f.kind == "exit") std::_Exit(3);
    if (f.kind == "kill") std::raise(SIGKILL);
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}

}  // namespace

TrainResult train(const ModelConfig& model_config_in, const TrainOptions& opt_in) {
    TrainOptions o = opt_in;
    Comm& comm = Comm::world();
    const bool root = comm.is_root();
    if (o.dist_timeout > 0) comm.set_timeout(o.dist_timeout);
    if (!root) o.quiet = true;
    HIPPO_CHECK(!o.out_dir.empty(), "train: no run directory (--out)");
    if (o.threads > 0) {
        set_num_threads(o.threads);
    } else if (comm.distributed()) {
        // Ranks sharing a machine share its cores.
        const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
        const int per_host = local ? std::max(1, std::atoi(local)) : 1;
        set_num_threads(std::max(1, physical_cores() / per_host));
    }
    const FaultPlan fault = parse_fault(o.inject_fault);
    const std::string ckpt_dir = (fs::path(o.out_dir) / "checkpoint").string();
    const std::string metrics_path = (fs::path(o.out_dir) / "metrics.jsonl").string();

    std::unique_ptr<RunDirLock> lock;
    if (root) {
        if (o.resume) {
            HIPPO_CHECK(fs::is_directory(o.out_dir), "train --resume: '%s' is not a run directory", o.out_dir.c_str());
        } else {
            HIPPO_CHECK(!fs::exists(o.out_dir) || fs::is_directory(o.out_dir), "train: '%s' exists and is not a directory",
                        o.out_dir.c_str());
            fs::create_directories(o.out_dir);
        }
        lock = std::make_unique<RunDirLock>(o.out_dir);
        if (!o.resume && !o.overwrite)
            HIPPO_CHECK(!fs::exists(fs::path(ckpt_dir)) && !fs::exists(fs::path(metrics_path)),
                        "train: '%s' already holds a run (checkpoint/ or metrics.jsonl); continue it with --resume or "
                        "replace it with --overwrite",
                        o.out_dir.c_str());
        remove_stale_checkpoint_temps(ckpt_dir);
    }
    ModelConfig cfg = model_config_in;
    json saved;
    if (o.resume) {
        if (root)
            HIPPO_CHECK(fs::exists(fs::path(ckpt_dir) / kModelFile),
                        "train --resume: no checkpoint in '%s' (expected %s/%s)", o.out_dir.c_str(), ckpt_dir.c_str(),
                        kModelFile);
        saved = load_config_on_root(ckpt_dir);
        cfg = parse_model_config(saved.at("model"), ckpt_dir + "/config.json model");
        if (o.data.empty()) o.data = saved.value("data", std::string());
        HIPPO_CHECK(o.data == saved.value("data", std::string()),
                    "train --resume: data '%s' differs from the checkpoint's '%s'", o.data.c_str(),
                    saved.value("data", std::string()).c_str());
        o.seed = saved.value("seed", uint64_t(0));
        if (saved.contains("train") && saved["train"].contains("tokenizer")) o.tokenizer = saved["train"]["tokenizer"];
    }
    HIPPO_CHECK(!o.data.empty(), "train: no data source (--data)");
    HIPPO_CHECK(o.steps > 0 && o.batch > 0, "train: steps and batch must be positive");
    HIPPO_CHECK(o.batch >= comm.size(), "train: the global batch (%lld) must have at least one row per rank (%d ranks)",
                (long long)o.batch, comm.size());
    if (o.dropout >= 0) {
        HIPPO_CHECK(o.dropout < 1, "train: dropout must be in [0, 1)");
        cfg.embed_dropout = cfg.resid_dropout = o.dropout;
    }
    if (o.min_lr < 0) o.min_lr = 0.1 * o.lr;
    if (o.warmup < 0) o.warmup = o.steps / 10;
    if (o.ssm_lr < 0) o.ssm_lr = std::min(1e-3, o.lr);
    if (o.log_every <= 0) o.log_every = std::max<int64_t>(1, o.steps / 20);

    std::unique_ptr<DataSource> data = make_data_source(o.data, o.seed, o.tokenizer);
    if (cfg.vocab_from_data) {
        cfg.vocab_size = data->vocab_size();
        cfg.vocab_from_data = false;
    }
    HIPPO_CHECK(cfg.vocab_size >= data->vocab_size(),
                "model vocab_size %lld is smaller than the data's vocabulary %lld (%s)", (long long)cfg.vocab_size,
                (long long)data->vocab_size(), o.data.c_str());
    const int64_t L = data->fixed_seq_len() > 0 ? data->fixed_seq_len() : o.seq_len;
    HIPPO_CHECK(L > 0, "train: seq_len must be positive");
    if (cfg.max_position_embeddings > 0)
        HIPPO_CHECK(L <= cfg.max_position_embeddings, "train: seq_len %lld exceeds max_position_embeddings %lld",
                    (long long)L, (long long)cfg.max_position_embeddings);

    json config_json{{"model", cfg.to_json()}, {"train", o.to_json()}, {"data", o.data}, {"seed", o.seed}};
    // Every rank must run the same thing: same binary version, config, options and data.
    comm.check_same("the run configuration (hippo version, model, train options, data, seed)",
                    std::string(HIPPO_VERSION) + " " + config_json.dump() + " " + data->describe());

    std::unique_ptr<Model> model_ptr = make_model(cfg, splitmix64(o.seed ^ 0x1A17ull), 16);
    Model& model = *model_ptr;
    // Parameter groups, as the layers tagged them.
    NamedTensors ssm, decay, no_decay;
    const NamedTensors named = model.named_parameters();
    const std::vector<ParamTag> tags = model.parameter_groups();
    for (size_t i = 0; i < named.size(); i++) {
        const auto& [name, p] = named[i];
        if (!p.requires_grad()) continue;
        if (tags[i] == ParamTag::ssm) ssm.emplace_back(name, p);
        else if (p.ndim() >= 2) decay.emplace_back(name, p);
        else no_decay.emplace_back(name, p);
    }
    std::vector<ParamGroup> groups;
    if (!decay.empty()) groups.push_back({decay, 1.0, float(o.weight_decay)});
    if (!no_decay.empty()) groups.push_back({no_decay, 1.0, 0.0f});
    if (!ssm.empty()) groups.push_back({ssm, o.lr > 0 ? o.ssm_lr / o.lr : 0.0, 0.0f});
    AdamWOptions aopt;
    aopt.lr = o.lr;
    aopt.beta1 = o.beta1;
    aopt.beta2 = o.beta2;
    aopt.weight_decay = float(o.weight_decay);
    AdamW optim(groups, aopt);
    LrSchedule sched = LrSchedule::parse(o.schedule, o.lr, o.warmup, o.steps, o.min_lr);

    Rng dropout_rng(splitmix64(o.seed ^ 0xD50Bull));
    int64_t step = 0;
    if (o.resume) {
        if (root) {
            TrainState st;
            load_checkpoint(ckpt_dir, model, &optim, &st);
            step = st.step;
            dropout_rng.set_state(st.rng("dropout"));
            auto it = st.data_position.find("train");
            HIPPO_CHECK(it != st.data_position.end(), "checkpoint '%s' has no data position", ckpt_dir.c_str());
            data->set_state(it->second);
            truncate_metrics(metrics_path, step);
        }
        broadcast_train_state(comm, model, optim, step, dropout_rng, *data);
    } else if (root) {
        // --overwrite: the old run goes as a whole (now that the config, data and model are known to be
        // good), so its checkpoint never sits beside the new run's log.
        fs::remove_all(ckpt_dir);
        std::ofstream(metrics_path, std::ios::trunc);
    }
    const double full_state_bytes = double(optim.total_size()) * 2 * sizeof(float);
    GradSyncOptions sopt;
    sopt.zero1 = o.zero1;
    sopt.overlap = o.overlap;
    sopt.bucket_bytes = int64_t(o.bucket_mb * double(1 << 20));
    GradSync sync(comm, optim, sopt);

    // This rank's rows of every global batch.
    const int64_t row0 = o.batch * comm.rank() / comm.size(), row1 = o.batch * (comm.rank() + 1) / comm.size();

    Progress progress(o.steps, o.log_every, o.quiet);
    std::string dist_line;
    if (comm.distributed())
        dist_line = strf("\ndata parallel: %d ranks, %lld-%lld rows each, %d threads per rank, %s; optimizer state %.1f MiB "
                         "per rank (%s of %.1f MiB)",
                         comm.size(), (long long)(o.batch / comm.size()), (long long)((o.batch + comm.size() - 1) / comm.size()),
                         num_threads(),
                         o.zero1 ? "ZeRO-1 (sharded optimizer state)"
                                 : (o.overlap ? strf("bucketed all-reduce (%.0f MiB) overlapped with backward", o.bucket_mb).c_str()
                                              : "one all-reduce after backward"),
                         double(sync.state_bytes()) / (1 << 20), o.zero1 ? strf("1/%d", comm.size()).c_str() : "all",
                         full_state_bytes / (1 << 20));
    progress.line(model.summary() + strf("data: %s\n", data->describe().c_str()) +
                  strf("train: %lld steps, batch %lld x %lld tokens, %s, ssm_lr %g, wd %g, clip %g, seed %llu, threads %d%s",
                       (long long)o.steps, (long long)o.batch, (long long)L, sched.str().c_str(), o.ssm_lr, o.weight_decay,
                       o.clip, (unsigned long long)o.seed, num_threads(),
                       o.resume ? strf(", resuming at step %lld", (long long)step).c_str() : "") +
                  dist_line);

    std::ofstream metrics;
    if (root) metrics.open(metrics_path, std::ios::app);
    int64_t last_saved = o.resume ? step : -1;
    auto save = [&](int64_t at) {
        HIPPO_CHECK(all_finite(model),
                    "step %lld: parameters are not finite; stopping without saving (last good checkpoint: %s)",
                    (long long)at, last_saved >= 0 ? strf("%s at step %lld", ckpt_dir.c_str(), (long long)last_saved).c_str() : "none");
        comm.check_same(strf("the parameters at step %lld (replicas diverged)", (long long)at),
                        strf("%016llx", (unsigned long long)parameter_checksum(model)));
        sync.gather_state();
        if (root) {
            metrics.flush();
            sync_file(metrics_path);
            TrainState st;
            st.step = at;
            st.rngs["dropout"] = dropout_rng.state();
            st.data_position["train"] = data->state();
            st.metadata["data"] = o.data;
            save_checkpoint(ckpt_dir, model, config_json, &optim, &st);
        }
        sync.reshard();
        comm.barrier("checkpoint");  // no rank runs ahead of a checkpoint that is not on disk yet
        last_saved = at;
    };
    TrainResult res;
    res.ranks = comm.size();
    res.optimizer_state_bytes = sync.state_bytes();
    auto run_eval = [&](int64_t at) {
        model.eval();
        EvalResult e = evaluate(model, *data, "val", o.batch, L, o.eval_batches, &comm);
        model.train();
        if (root) {
            metrics << json{{"step", at}, {"val_loss", e.loss}, {"val_acc", e.accuracy}, {"val_ppl", e.perplexity}}.dump()
                    << "\n";
            metrics.flush();
        }
        progress.line(strf("step %lld: val loss %.4f acc %.4f ppl %.3f", (long long)at, e.loss, e.accuracy, e.perplexity));
        res.last_eval = e;
        res.evaluated = true;
    };

    model.train();
    const double t_start = now_seconds();
    double train_time = 0;
    int64_t run_steps = 0;
    double ema_tok_s = 0;
    const int64_t end = o.stop_after > 0 ? std::min(o.steps, step + o.stop_after) : o.steps;
    while (step < end) {
        if (step + 1 == fault.step && comm.rank() == fault.rank) inject_fault(fault);
        const double t0 = now_seconds();
        const double lr = sched.lr_at(step);
        optim.set_lr(lr);
        Batch b = data->next_train_rows(o.batch, L, row0, row1);
        const uint64_t dseed = dropout_rng.next_u64();
        optim.zero_grad();
        BatchResult br = model.run_batch(b, dseed, row0, false);
        Tensor loss = br.loss;
        // The global batch's mean loss = sum over ranks of (rank's mean) * (rank's targets / all targets).
        const int64_t n_local = br.count;
        double sums[2] = {br.loss_sum, double(n_local)};
        comm.allreduce_sum(sums, 2, "loss");
        double lv = sums[1] > 0 ? sums[0] / sums[1] : std::nan("");
        if (step == o.inject_nan_step) lv = std::nan("");
        auto stop = [&](const char* what, double v) {
            progress.finish();
            // Every rank sees the same reduced value and stops here together.
            throw CollectiveError(strf("step %lld: %s is %g (lr %g); stopping without saving. Last good checkpoint: %s",
                                       (long long)(step + 1), what, v, lr,
                                       last_saved >= 0 ? strf("%s (step %lld)", ckpt_dir.c_str(), (long long)last_saved).c_str()
                                                       : "none"));
        };
        if (!std::isfinite(lv)) stop("the training loss", lv);
        if (n_local > 0) {
            const double share = double(n_local) / sums[1];
            Tensor scaled = share == 1.0 ? loss : mul_scalar(loss, float(share));
            scaled.backward(Tensor::ones(scaled.shape()), sync.hooks());
        }
        sync.reduce_gradients();
        double gnorm = sync.clip_grad_norm(o.clip);
        if (!std::isfinite(gnorm)) stop("the gradient norm", gnorm);
        sync.step();
        step++;
        run_steps++;
        res.losses.push_back(lv);
        const double dt = now_seconds() - t0;
        train_time += dt;
        const double tok_s = double(o.batch * L) / std::max(dt, 1e-9);
        ema_tok_s = run_steps == 1 ? tok_s : 0.9 * ema_tok_s + 0.1 * tok_s;
        if (root)
            metrics << json{{"step", step}, {"loss", lv}, {"lr", lr}, {"gnorm", gnorm}, {"tok_s", tok_s},
                            {"elapsed_s", now_seconds() - t_start}}.dump()
                    << "\n";
        const double eta = (train_time / double(run_steps)) * double(o.steps - step);
        progress.update(step, lv, lr, ema_tok_s, eta);
        const bool last = step == end;
        if ((o.eval_every > 0 && step % o.eval_every == 0) || step == o.steps) run_eval(step);
        if ((o.save_every > 0 && step % o.save_every == 0) || last) save(step);
    }
    if (root) metrics.flush();
    progress.finish();
    res.step = step;
    res.steps_per_s = train_time > 0 ? double(run_steps) / train_time : 0;
    res.tokens_per_s = res.steps_per_s * double(o.batch * L);
    res.comm_s = sync.stats().comm_s;
    progress.line(strf("done: %lld steps in %s (%.2f steps/s, %.0f tok/s)%s; checkpoint %s", (long long)run_steps,
                       fmt_duration(now_seconds() - t_start).c_str(), res.steps_per_s, res.tokens_per_s,
                       comm.distributed() ? strf(", %.2f s waiting on gradient collectives", res.comm_s).c_str() : "",
                       ckpt_dir.c_str()));
    return res;
}

}  // namespace hippo
