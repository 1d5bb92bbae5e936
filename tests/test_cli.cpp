// The train and eval commands as a user drives them: option parsing from the run-options table,
// resume semantics, run-directory safety and bad input (in-process; one-line errors).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "apps/commands.h"
#include "common/check.h"
#include "models/config.h"
#include "models/model.h"
#include "nn/checkpoint.h"

using namespace hippo;
namespace fs = std::filesystem;

namespace {

std::string tmp(const std::string& name) {
    fs::path p = fs::temp_directory_path() / ("hippo_cli_" + name);
    fs::remove_all(p);
    return p.string();
}

int run(std::vector<std::string> args) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    const std::string cmd = args[0];
    if (cmd == "train") return cmd_train(int(argv.size()), argv.data());
    if (cmd == "eval") return cmd_eval(int(argv.size()), argv.data());
    throw Error("test: unknown command " + cmd);
}

std::string error_of(std::vector<std::string> args) {
    try {
        run(std::move(args));
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

std::string tiny_config() {
    static const std::string path = [] {
        std::string p = tmp("cfg.json");
        std::ofstream(p) << R"({"model": {"d_model": 16, "n_layer": 1, "vocab_size": "data", "mixer": "h3",
                                          "ssm_cfg": {"d_state": 8}},
                                "train": {"batch": 4, "steps": 4, "eval_batches": 1}})";
        return p;
    }();
    return path;
}

std::vector<std::string> train_args(const std::string& out, std::vector<std::string> extra = {}) {
    std::vector<std::string> a{"train", "--model", tiny_config(), "--data", "assoc_recall", "--out", out, "--quiet",
                               "--threads", "1"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
}

}  // namespace

TEST(Cli, NumbersAreStrictAndRangeChecked) {
    const std::string out = tmp("numbers");
    struct Case {
        std::vector<std::string> extra;
        const char* want;
    };
    for (const Case& c : std::vector<Case>{
             {{"--steps", "99999999999999999999"}, "option --steps: '99999999999999999999' is out of range"},
             {{"--steps", "0"}, "option --steps: 0 is out of range"},
             {{"--lr", "0x10"}, "option --lr expects a decimal number, got '0x10'"},
             {{"--lr", "inf"}, "option --lr expects a decimal number"},
             {{"--clip", "nan"}, "option --clip expects a decimal number, got 'nan'"},
             {{"--clip", "-1"}, "option --clip: -1 is out of range"},
             {{"--dropout", "-1"}, "option --dropout: -1 is out of range"},
             {{"--ssm-lr", "-0.5"}, "option --ssm-lr: -0.5 is out of range"},
             {{"--warmup", "-1"}, "option --warmup: -1 is out of range"},
             {{"--seed", "-3"}, "option --seed: -3 is out of range"},
             {{"--batch", "1e3"}, "option --batch expects a decimal integer"},
             {{"--schedule", "cosin"}, "option --schedule must be one of cosine, linear, constant"},
             {{"--bogus", "1"}, "unknown option --bogus"},
         }) {
        const std::string e = error_of(train_args(out, c.extra));
        EXPECT_NE(e.find(c.want), std::string::npos) << c.extra[0] << ": " << e;
        EXPECT_EQ(e.find('\n'), std::string::npos);
    }
    EXPECT_FALSE(fs::exists(out)) << "a refused command writes nothing";
}

TEST(Cli, ResumeAppliesGivenOptionsAndKeepsTheRunsIdentity) {
    const std::string out = tmp("resume");
    ASSERT_EQ(run(train_args(out, {"--stop-after", "2"})), 0);
    // Options given with --resume replace the saved ones (beta1 was silently ignored before).
    ASSERT_EQ(run({"train", "--out", out, "--resume", "--beta1", "0.8", "--clip", "0.5", "--quiet", "--threads", "1"}), 0);
    nlohmann::json saved = load_config(out + "/checkpoint");
    EXPECT_DOUBLE_EQ(saved["train"]["beta1"].get<double>(), 0.8);
    EXPECT_DOUBLE_EQ(saved["train"]["clip"].get<double>(), 0.5);
    EXPECT_EQ(saved["train"]["steps"], 4);
    // The seed, data and tokenizer define the run: a different one is refused.
    EXPECT_NE(error_of({"train", "--out", out, "--resume", "--seed", "3"}).find("--seed 3 differs from the run's 0"),
              std::string::npos);
    EXPECT_NE(error_of({"train", "--out", out, "--resume", "--data", "induction_head"}).find("differs"), std::string::npos);
    EXPECT_EQ(error_of({"train", "--out", out, "--resume", "--seed", "0", "--steps", "5", "--quiet", "--threads", "1"}), "");
    EXPECT_NE(error_of({"train", "--out", out, "--resume", "--model", tiny_config()}).find("drop --model"), std::string::npos);
    fs::remove_all(out);
}

TEST(Cli, ExistingRunDirectoryNeedsResumeOrOverwrite) {
    const std::string out = tmp("existing");
    ASSERT_EQ(run(train_args(out)), 0);
    const auto size = fs::file_size(out + "/metrics.jsonl");
    const std::string e = error_of(train_args(out));
    EXPECT_NE(e.find("already holds a run"), std::string::npos) << e;
    EXPECT_EQ(fs::file_size(out + "/metrics.jsonl"), size) << "the refused run left the log alone";
    EXPECT_EQ(run(train_args(out, {"--overwrite"})), 0);
    fs::remove_all(out);
}

TEST(Cli, EvalRefusesBadSizes) {
    const std::string out = tmp("eval");
    ASSERT_EQ(run(train_args(out)), 0);
    EXPECT_NE(error_of({"eval", out, "--seq-len", "0"}).find("option --seq-len: 0 is out of range"), std::string::npos);
    EXPECT_NE(error_of({"eval", out, "--batch", "0"}).find("option --batch: 0 is out of range"), std::string::npos);
    EXPECT_NE(error_of({"eval", out, "--batch", "-1"}).find("option --batch: -1 is out of range"), std::string::npos);
    EXPECT_NE(error_of({"eval", out, "--threads", "-2"}).find("option --threads"), std::string::npos);
    EXPECT_NE(error_of({"eval", out, "--split", "train"}).find("--split must be test or val"), std::string::npos);
    fs::remove_all(out);
}

TEST(Cli, ConfigsAreCheckedBeforeAnythingIsBuilt) {
    const std::string dup = tmp("dup.json");
    std::ofstream(dup) << R"({"model": {"d_model": 16, "n_layer": 1, "n_layer": 2, "vocab_size": 20}})";
    EXPECT_NE(error_of({"train", "--model", dup, "--describe"}).find("'n_layer' is given twice"), std::string::npos);
    const std::string huge = tmp("huge.json");
    std::ofstream(huge) << R"({"model": {"d_model": 32, "n_layer": 1000000, "vocab_size": 20}})";
    const std::string e = error_of({"train", "--model", huge, "--describe"});
    EXPECT_NE(e.find("GiB, more than this machine's"), std::string::npos) << e;
    EXPECT_NE(error_of({"train", "--model", fs::temp_directory_path().string(), "--describe"}).find("not a regular file"),
              std::string::npos);
    EXPECT_NE(error_of({"train", "--model", "/dev/zero", "--describe"}).find("not a regular file"), std::string::npos);
    fs::remove(dup);
    fs::remove(huge);
}

TEST(Cli, RunDirectoryLockStaleTempsAndLogCoverage) {
    const std::string out = tmp("lock");
    fs::create_directories(out);
    {
        // Another training holds the run directory: this one is refused and writes nothing.
        const int fd = ::open((out + "/.lock").c_str(), O_RDWR | O_CREAT, 0644);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::flock(fd, LOCK_EX), 0);
        EXPECT_NE(error_of(train_args(out)).find("another training is using run directory"), std::string::npos);
        EXPECT_FALSE(fs::exists(out + "/metrics.jsonl"));
        ::close(fd);
    }
    // A save interrupted in a process that no longer runs left a temp directory: it is removed.
    const std::string stale = out + "/checkpoint.tmp.999999999.0";
    fs::create_directories(stale);
    std::ofstream(stale + "/model.safetensors") << "partial";
    ASSERT_EQ(run(train_args(out, {"--save-every", "1", "--stop-after", "3"})), 0);
    EXPECT_FALSE(fs::exists(stale));
    // The log on disk covers every step up to the checkpoint.
    std::ifstream log(out + "/metrics.jsonl");
    int64_t last = 0;
    for (std::string line; std::getline(log, line);) last = std::max<int64_t>(last, nlohmann::json::parse(line).value("step", 0));
    EXPECT_EQ(last, 3);
    fs::remove_all(out);
}

TEST(Cli, NonFiniteWeightsAreRefusedOnLoad) {
    const std::string out = tmp("nan_weights");
    ASSERT_EQ(run(train_args(out)), 0);
    const std::string ck = out + "/checkpoint";
    nlohmann::json cfg = load_config(ck);
    std::unique_ptr<Model> m = make_model(parse_model_config(cfg.at("model")), 0);
    load_checkpoint(ck, *m);
    m->named_parameters()[3].second.data()[1] = std::nanf("");
    save_checkpoint(ck, *m, cfg);
    const std::string e = error_of({"eval", out});
    EXPECT_NE(e.find("holds a non-finite value"), std::string::npos) << e;
    fs::remove_all(out);
}
