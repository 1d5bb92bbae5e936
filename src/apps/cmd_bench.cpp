#include <cstdio>
#include <functional>
#include <map>

#include "apps/args.h"
#include "apps/commands.h"
#include "bench/bench_attention.h"
#include "bench/bench_core.h"
#include "bench/bench_dist.h"
#include "bench/bench_elementwise.h"
#include "bench/bench_fft.h"
#include "bench/bench_generate.h"
#include "bench/bench_mixers.h"
#include "bench/bench_norm.h"
#include "bench/bench_ssm.h"
#include "bench/bench_train.h"
#include "common/bench.h"
#include "common/check.h"
#include "common/runtime.h"
#include "models/mixer.h"

namespace hippo {

namespace {

std::vector<BenchRecord> peaks() {
    std::vector<BenchRecord> r{bench_peak_fma()};
    for (auto& b : bench_peak_bandwidth()) r.push_back(b);
    return r;
}

std::vector<int> fft_sizes(const Args& args) {
    std::vector<int> out;
    for (long long v : args.get_int_list("fft-log2", {11, 12, 13, 14, 15, 16, 17}, 1, 26)) out.push_back(int(v));
    return out;
}

void append(std::vector<BenchRecord>& dst, const std::vector<BenchRecord>& src) {
    dst.insert(dst.end(), src.begin(), src.end());
}

}  // namespace

int cmd_bench(int argc, char** argv) {
    Args args(argc, argv, {"help", "json", "all-backends", "quick", "zero1", "no-overlap"}, {"threads", "batch", "steps", "bucket-mb", "fft-log2", "L", "channels", "chunk", "d-model", "layers", "vocab", "models", "mixers", "kernel-L", "prompts", "batches", "gen", "contexts", "decode-weights"});
    const char* usage =
        "usage: hippo bench NAME [--json] [--threads N]\n"
        "  core         machine peaks (peak.fma, peak.bandwidth), GEMM, FFT (with FFTW side by side),\n"
        "               elementwise and normalisation kernels\n"
        "  peak         FMA peak and memory bandwidth only\n"
        "  gemm         GEMM on the 125M-layer shapes; --all-backends adds the built-in GEMM, BLIS and\n"
        "               oneDNN when their shared libraries are installed\n"
        "  fft          real FFT, hippo vs FFTW (--fft-log2 11,12,...)\n"
        "  elementwise  elementwise kernels, GB/s\n"
        "  norm         layer norm, RMS norm, softmax, cross-entropy, GB/s\n"
        "  fftconv      the H3 long convolution: fused, unfused, direct, FFTW, state passing\n"
        "               (--L 1024,4096,16384,65536,1048576 --channels 768 --chunk 8192)\n"
        "  h3           the whole H3 mixer, forward and forward+backward (--L 2048 --d-model 768)\n"
        "  ssm          every sequence mixer built from its config defaults, forward and forward+backward\n"
        "               at B = 1 (--mixers h3,s4d,gss,dss,dlr,s4,mega,mega-chunk,attention --L 1048576 --d-model 256);\n"
        "               quadratic ones above 64K tokens are reported as skipped, with the reason; first the\n"
        "               S4 kernel generation alone at H = 256, N = 64 (--kernel-L 16384; scripts/bench_torch.py\n"
        "               s4kernel times the official PyTorch code on the same sizes)\n"
        "  attention    tiled / materialised / decode / block-sparse / linear attention (--L ...)\n"
        "  generate     decoding throughput, hybrid H3 vs Transformer (125M shapes, random weights)\n"
        "               (--prompts 128,512,1536,4096 --batches 1,8 --gen 128 --contexts 128,8192\n"
        "               --decode-weights fp32,bf16,int8: each record once per weight format;\n"
        "               --d-model 768 --layers 12 --vocab 50257: other shapes, 12 heads)\n"
        "  train        LM training steps with AdamW, tokens/s and time inside GEMMs\n"
        "               (--models h3,hybrid,transformer --L 2048 --d-model 768 --layers 12 --vocab 50257)\n"
        "  allreduce    (under mpirun -np K) all-reduce and reduce-scatter+all-gather bandwidth, results checked\n"
        "               (--quick: sizes up to 1 MiB)\n"
        "  dp-step      (under mpirun -np K) a data-parallel LM training step split into compute, communication\n"
        "               and update, plus the expected scaling to 8 and 64 machines (--models h3 --batch 16\n"
        "               --L 256 --d-model 256 --layers 4 --vocab 256 --steps 10 --bucket-mb 8 [--zero1] [--no-overlap])\n"
        "Output: a table, or with --json a JSON array of records {name, shape fields, pass, ms, runs, ...}.\n";
    if (args.has("help") || args.positional().empty()) {
        std::fputs(usage, args.has("help") ? stdout : stderr);
        return args.has("help") ? 0 : 2;
    }
    apply_threads_option(args);
    const std::string& name = args.positional()[0];
    std::vector<BenchRecord> recs;
    if (name == "core") {
        append(recs, peaks());
        append(recs, bench_gemm(args.has("all-backends")));
        append(recs, bench_fft(fft_sizes(args)));
        append(recs, bench_elementwise());
        append(recs, bench_norm());
    } else if (name == "peak") {
        append(recs, peaks());
    } else if (name == "gemm") {
        append(recs, bench_gemm(args.has("all-backends")));
    } else if (name == "fft") {
        append(recs, bench_fft(fft_sizes(args)));
    } else if (name == "elementwise") {
        append(recs, bench_elementwise());
    } else if (name == "norm") {
        append(recs, bench_norm());
    } else if (name == "fftconv") {
        append(recs, bench_fftconv(args.get_int_list("L", {1024, 4096, 16384, 65536, 1048576}, 1, 1LL << 30),
                                   args.get_int("channels", 768, 1, 1LL << 30), args.get_int("chunk", 8192, 1, 1LL << 30)));
    } else if (name == "attention") {
        append(recs, bench_attention(args.get_int_list("L", {1024, 2048, 4096, 16384, 65536}, 1, 1LL << 30)));
    } else if (name == "generate") {
        GenerateShape shape;
        shape.d_model = args.get_int("d-model", shape.d_model, 1, 1LL << 30);
        shape.n_layer = args.get_int("layers", shape.n_layer, 1, 1LL << 30);
        shape.vocab = args.get_int("vocab", shape.vocab, 1, 1LL << 30);
        append(recs, bench_generate(args.get_int_list("prompts", {128, 512, 1536, 4096}, 1, 1LL << 30), args.get_int_list("batches", {1, 8}, 1, 1LL << 30),
                                    args.get_int("gen", 128, 1, 1LL << 30), args.get_int_list("contexts", {128, 8192}, 1, 1LL << 30),
                                    args.get_list("decode-weights", "fp32,bf16,int8"), shape));
    } else if (name == "train") {
        append(recs, bench_train(args.get_list("models", "h3,hybrid,transformer"), args.get_int("L", 2048, 1, 1LL << 30), args.get_int("d-model", 768, 1, 1LL << 30),
                                 args.get_int("layers", 12, 1, 1LL << 30), args.get_int("vocab", 50257, 1, 1LL << 30)));
    } else if (name == "allreduce") {
        append(recs, bench_allreduce(args.has("quick")));
    } else if (name == "dp-step") {
        append(recs, bench_dp_step(args.get("models", "h3"), args.get_int("batch", 16, 1, 1LL << 30), args.get_int("L", 256, 1, 1LL << 30),
                                   args.get_int("d-model", 256, 1, 1LL << 30), args.get_int("layers", 4, 1, 1LL << 30), args.get_int("vocab", 256, 1, 1LL << 30),
                                   args.has("zero1"), !args.has("no-overlap"), int(args.get_int("steps", 10, 1, 1LL << 30)),
                                   args.get_double("bucket-mb", 8, 1e-3, 65536)));
    } else if (name == "ssm") {
        std::vector<std::string> mixers = args.get_list("mixers", "h3,s4d,gss,dss,dlr,s4,mega,mega-chunk,attention");
        for (const std::string& m : mixers) find_mixer(m == "mega-chunk" ? "mega" : m);  // fail before any work
        append(recs, bench_s4_kernel(256, 64, args.get_int("kernel-L", 16384, 1, 1LL << 24)));
        append(recs, bench_mixers(mixers, args.get_int_list("L", {1048576}, 1, 1LL << 30),
                                  args.get_int("d-model", 256, 1, 1LL << 30)));
    } else if (name == "h3") {
        append(recs, bench_h3(args.get_int_list("L", {2048}, 1, 1LL << 30), args.get_int("d-model", 768, 1, 1LL << 30)));
    } else {
        throw Error(strf("unknown benchmark '%s' (see 'hippo bench --help')", name.c_str()));
    }
    // Under mpirun only rank 0 has records (the distributed benchmarks); the others print nothing.
    if (!recs.empty() || (name != "allreduce" && name != "dp-step")) print_records(recs, args.has("json"));
    return 0;
}

}  // namespace hippo
