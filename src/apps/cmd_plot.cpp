// hippo plot: loss (and validation accuracy) curves of one or more runs, from RUN_DIR/metrics.jsonl,
// as a hand-written SVG (no dependency).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/args.h"
#include "apps/commands.h"
#include "common/check.h"
#include "io/file.h"

namespace hippo {

namespace {

struct Series {
    std::vector<double> x, y;
};

struct Run {
    std::string name;
    Series loss, loss_smooth, val_loss, val_acc;
};

Run read_run(const std::string& dir, int64_t smooth) {
    namespace fs = std::filesystem;
    std::string path = (fs::path(dir) / "metrics.jsonl").string();
    std::ifstream f(path);
    HIPPO_CHECK(f.good(), "plot: cannot open '%s'", path.c_str());
    Run r;
    r.name = fs::path(dir).lexically_normal().filename().string();
    if (r.name.empty()) r.name = fs::path(dir).lexically_normal().parent_path().filename().string();
    std::string line;
    while (std::getline(f, line)) {
        if (line.empty()) continue;
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(line);
        } catch (const nlohmann::json::exception&) {
            throw Error(strf("plot: '%s' has a malformed line: %s", path.c_str(), line.substr(0, 80).c_str()));
        }
        double s = j.value("step", 0.0);
        auto add = [&](Series& se, const char* key) {
            if (j.contains(key) && j[key].is_number() && std::isfinite(j[key].get<double>())) {
                se.x.push_back(s);
                se.y.push_back(j[key].get<double>());
            }
        };
        add(r.loss, "loss");
        add(r.val_loss, "val_loss");
        add(r.val_acc, "val_acc");
    }
    // Moving average of the training loss.
    if (smooth < 1) smooth = std::max<int64_t>(1, int64_t(r.loss.x.size()) / 50);
    double acc = 0;
    for (size_t i = 0; i < r.loss.y.size(); i++) {
        acc += r.loss.y[i];
        if (i >= size_t(smooth)) acc -= r.loss.y[i - size_t(smooth)];
        size_t n = std::min(i + 1, size_t(smooth));
        r.loss_smooth.x.push_back(r.loss.x[i]);
        r.loss_smooth.y.push_back(acc / double(n));
    }
    return r;
}

const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"};

std::string num(double v) {
    if (v == 0) return "0";
    double a = std::fabs(v);
    if (a >= 1e4 || a < 1e-2) return strf("%.0e", v);
    if (a >= 100) return strf("%.0f", v);
    if (a >= 10) return strf("%.1f", v);
    return strf("%.2f", v);
}

// One panel: axes, ticks, polylines (solid) and markers (eval points).
void panel(std::string& svg, double x0, double y0, double w, double h, const std::string& title,
           const std::vector<std::pair<const Series*, int>>& lines, const std::vector<std::pair<const Series*, int>>& points,
           bool log_y) {
    double xmin = 1e300, xmax = -1e300, ymin = 1e300, ymax = -1e300;
    auto tf = [&](double y) { return log_y ? std::log10(std::max(y, 1e-12)) : y; };
    for (auto* set : {&lines, &points})
        for (auto& [s, c] : *set)
            for (size_t i = 0; i < s->x.size(); i++) {
                xmin = std::min(xmin, s->x[i]);
                xmax = std::max(xmax, s->x[i]);
                ymin = std::min(ymin, tf(s->y[i]));
                ymax = std::max(ymax, tf(s->y[i]));
            }
    if (xmin > xmax) {
        xmin = 0, xmax = 1, ymin = 0, ymax = 1;
    }
    if (xmax == xmin) xmax = xmin + 1;
    if (ymax == ymin) ymax = ymin + 1;
    double pad = 0.05 * (ymax - ymin);
    ymin -= pad;
    ymax += pad;
    const double L = x0 + 60, R = x0 + w - 10, T = y0 + 30, B = y0 + h - 40;
    auto X = [&](double x) { return L + (x - xmin) / (xmax - xmin) * (R - L); };
    auto Y = [&](double y) { return B - (tf(y) - ymin) / (ymax - ymin) * (B - T); };
    svg += strf("<text x=\"%.1f\" y=\"%.1f\" font-size=\"14\" text-anchor=\"middle\">%s</text>\n", (L + R) / 2, y0 + 18,
                title.c_str());
    svg += strf("<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#444\"/>\n", L, T, R - L, B - T);
    for (int i = 0; i <= 5; i++) {
        double xv = xmin + (xmax - xmin) * i / 5, yv = ymin + (ymax - ymin) * i / 5;
        double px = L + (R - L) * i / 5, py = B - (B - T) * i / 5;
        double ylab = log_y ? std::pow(10.0, yv) : yv;
        svg += strf("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", px, T, px, B);
        svg += strf("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, py, R, py);
        svg += strf("<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">%s</text>\n", px, B + 15, num(xv).c_str());
        svg += strf("<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%s</text>\n", L - 4, py + 4, num(ylab).c_str());
    }
    svg += strf("<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">step</text>\n", (L + R) / 2, B + 32);
    for (auto& [s, c] : lines) {
        if (s->x.empty()) continue;
        std::string pts;
        size_t stride = std::max<size_t>(1, s->x.size() / 2000);
        for (size_t i = 0; i < s->x.size(); i += stride) pts += strf("%.1f,%.1f ", X(s->x[i]), Y(s->y[i]));
        svg += strf("<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"%s\"/>\n", kColors[c % 8], pts.c_str());
    }
    for (auto& [s, c] : points) {
        std::string pts;
        for (size_t i = 0; i < s->x.size(); i++) pts += strf("%.1f,%.1f ", X(s->x[i]), Y(s->y[i]));
        if (s->x.size() > 1)
            svg += strf("<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" stroke-dasharray=\"5,3\" points=\"%s\"/>\n",
                        kColors[c % 8], pts.c_str());
        for (size_t i = 0; i < s->x.size(); i++)
            svg += strf("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", X(s->x[i]), Y(s->y[i]), kColors[c % 8]);
    }
}

std::string escape(const std::string& s) {
    std::string o;
    for (char c : s) {
        if (c == '<') o += "&lt;";
        else if (c == '>') o += "&gt;";
        else if (c == '&') o += "&amp;";
        else o += c;
    }
    return o;
}

}  // namespace

int cmd_plot(int argc, char** argv) {
    Args args(argc, argv, {"help", "log"}, {"out", "smooth", "title"});
    const char* usage =
        "usage: hippo plot RUN_DIR [RUN_DIR...] --out curves.svg [--smooth N] [--log] [--title T]\n"
        "  Training loss (moving average over N steps, default 2% of the run) as solid lines, validation loss\n"
        "  as dashed lines with markers, and validation accuracy in a second panel when the runs have it.\n"
        "  --log: logarithmic loss axis.\n";
    if (args.has("help")) {
        std::fputs(usage, stdout);
        return 0;
    }
    HIPPO_CHECK(!args.positional().empty(), "plot: no run directories (see 'hippo plot --help')");
    HIPPO_CHECK(args.has("out"), "plot: --out FILE.svg is required");
    std::vector<Run> runs;
    for (const auto& d : args.positional()) runs.push_back(read_run(d, args.get_int("smooth", 0, 0, 1 << 20)));
    bool has_acc = false;
    for (auto& r : runs) has_acc |= !r.val_acc.x.empty();
    const double W = 900, PH = 380;
    const double H = PH * (has_acc ? 2 : 1) + 30 + 22.0 * double(runs.size());
    std::string svg = strf("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                           "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H);
    std::vector<std::pair<const Series*, int>> lines, points, acc;
    for (size_t i = 0; i < runs.size(); i++) {
        lines.emplace_back(&runs[i].loss_smooth, int(i));
        points.emplace_back(&runs[i].val_loss, int(i));
        acc.emplace_back(&runs[i].val_acc, int(i));
    }
    panel(svg, 0, 0, W, PH, escape(args.get("title", "loss (solid: train, dashed: validation)")), lines, points, args.has("log"));
    if (has_acc) panel(svg, 0, PH, W, PH, "validation accuracy", {}, acc, false);
    double ly = PH * (has_acc ? 2 : 1) + 20;
    for (size_t i = 0; i < runs.size(); i++) {
        svg += strf("<rect x=\"70\" y=\"%.1f\" width=\"18\" height=\"4\" fill=\"%s\"/>\n", ly + 22.0 * double(i) - 4, kColors[i % 8]);
        std::string label = runs[i].name;
        if (!runs[i].val_loss.y.empty()) label += strf("  (last val loss %.4f", runs[i].val_loss.y.back());
        if (!runs[i].val_acc.y.empty()) label += strf(", acc %.3f", runs[i].val_acc.y.back());
        if (!runs[i].val_loss.y.empty()) label += ")";
        svg += strf("<text x=\"95\" y=\"%.1f\" font-size=\"12\">%s</text>\n", ly + 22.0 * double(i), escape(label).c_str());
    }
    svg += "</svg>\n";
    for (const auto& d : args.positional())
        for (const char* f : {"metrics.jsonl", "checkpoint/config.json"})
            check_output_is_not_input(args.get("out"), (std::filesystem::path(d) / f).string(), "plot --out");
    write_file_atomic(args.get("out"), svg.data(), svg.size());
    std::fprintf(stderr, "wrote %s (%zu runs)\n", args.get("out").c_str(), runs.size());
    return 0;
}

}  // namespace hippo
