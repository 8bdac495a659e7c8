#include "plot.hpp"

#include "text.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

namespace demo {

// ---------------------------------------------------------------------------------------------
// loss.csv

void write_csv(const fs::path& path, const std::vector<const run_log*>& runs, const config& c,
               const kill_record& kill, const run_log& resumed) {
    std::ofstream f(path);
    f << "# ckpt crash-and-resume demo: MLP " << architecture(c) << " (ReLU), Adam lr " << c.lr
      << ", two spirals (" << 2 * c.per_class << " points, noise " << c.noise << "), batch "
      << c.batch << "\n"
      << "# run: interrupted = the trainer process that was killed, resumed = the process that\n"
      << "#      restarted from the newest good checkpoint, reference = the uninterrupted run\n"
      << "# Step rows: train_loss = that step's batch loss, val_loss = the validation loss when "
         "it\n"
      << "#      was evaluated at that step (every " << c.eval_every
      << " steps and at step 0), else empty; event empty.\n"
      << "# Event rows: train_loss and val_loss empty; event = save (detail: the rules that fired\n"
      << "#      and the file), crash (detail: where the SIGKILL landed), resume (detail: the "
         "file\n"
      << "#      resumed from), cleaned (detail: a dead save's temporary file removed at start).\n"
      << "run,step,train_loss,val_loss,event,detail\n";
    for (const run_log* r : runs) {
        for (const auto& row : r->rows) {
            f << r->name << ',' << row.step << ',' << (std::isnan(row.loss) ? "" : number(row.loss))
              << ',' << (row.val ? number(*row.val) : "") << ",,\n";
        }
        if (r == &resumed) {
            for (const auto& c2 : r->cleaned)
                f << r->name << ',' << r->resumed_from << ",,,cleaned," << c2 << '\n';
            f << r->name << ',' << r->resumed_from << ",,,resume," << r->resumed_file << '\n';
        }
        for (const auto& s : r->saves) {
            f << r->name << ',' << s.step << ",,,save,\"" << join(s.reasons, " + ") << " -> "
              << s.file << "\"\n";
        }
        if (r->name == "interrupted" && kill.save_committed) {
            f << r->name << ',' << kill.save_step << ",,,save,\"(interrupted by the SIGKILL after "
              << "its rename) -> " << checkpoint_prefix << "-"
              << format("%012lld", static_cast<long long>(kill.save_step)) << ".ckpt\"\n";
        }
        if (r->name == "interrupted" && kill.killed) {
            f << r->name << ',' << kill.last_step << ",,,crash,\"SIGKILL"
              << (kill.during_save ? " during the save of step " + std::to_string(kill.save_step) +
                                         " " + describe_kill(kill)
                                   : std::string(" between saves"))
              << "\"\n";
        }
    }
}

// ---------------------------------------------------------------------------------------------
// loss.svg: a self-made plot, no dependencies.

namespace {

std::string escape(std::string_view s) {
    std::string out;
    for (const char ch : s) {
        switch (ch) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        default: out += ch;
        }
    }
    return out;
}

std::string fixed1(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", v);
    return buf;
}

/// (step, mean training loss) over whole windows [k*w+1, (k+1)*w] the run trained completely.
std::vector<std::pair<double, double>> smoothed(const run_log& r, std::int64_t w) {
    std::vector<std::pair<double, double>> out;
    std::map<std::int64_t, std::pair<double, std::int64_t>> sums;
    for (const auto& row : r.rows) {
        if (row.step == 0) continue;
        auto& s = sums[(row.step - 1) / w];
        s.first += row.loss;
        s.second += 1;
    }
    for (const auto& [k, s] : sums) {
        if (s.second == w) {
            out.emplace_back(static_cast<double>((k + 1) * w), s.first / static_cast<double>(w));
        }
    }
    return out;
}

std::vector<std::pair<double, double>> validation_points(const run_log& r) {
    std::vector<std::pair<double, double>> out;
    for (const auto& row : r.rows) {
        if (row.val) out.emplace_back(static_cast<double>(row.step), *row.val);
    }
    return out;
}

struct plot_frame {
    double left, right, top, bottom;
    double x_max;
    double y_lo, y_hi; // log10
    [[nodiscard]] double x(double step) const { return left + (right - left) * step / x_max; }
    [[nodiscard]] double y(double v) const {
        return bottom - (bottom - top) * (std::log10(v) - y_lo) / (y_hi - y_lo);
    }
};

std::string polyline(const plot_frame& f, const std::vector<std::pair<double, double>>& pts,
                     const std::string& style) {
    std::string s = "<polyline fill=\"none\" " + style + " points=\"";
    for (const auto& [x, y] : pts) s += fixed1(f.x(x)) + "," + fixed1(f.y(y)) + " ";
    return s + "\"/>\n";
}

/// A save marker: circle for on_best, square for every_steps, diamond for both, ring for the
/// final save_now.
std::string marker(double cx, double cy, const std::vector<std::string>& reasons,
                   const std::string& colour) {
    bool best = false;
    bool every = false;
    bool final_save = false;
    for (const auto& r : reasons) {
        best = best || r.starts_with("on_best");
        every = every || r.starts_with("every_steps");
        final_save = final_save || r == "save_now";
    }
    const std::string x = fixed1(cx);
    const std::string y = fixed1(cy);
    const std::string fill = "fill=\"" + colour + "\" stroke=\"white\" stroke-width=\"1\"";
    if (best && every) {
        return "<path d=\"M" + x + "," + fixed1(cy - 6) + " l6,6 l-6,6 l-6,-6 z\" " + fill + "/>\n";
    }
    if (every) {
        return "<rect x=\"" + fixed1(cx - 4.5) + "\" y=\"" + fixed1(cy - 4.5) +
               "\" width=\"9\" height=\"9\" " + fill + "/>\n";
    }
    if (final_save && !best) {
        return "<circle cx=\"" + x + "\" cy=\"" + y + "\" r=\"5\" fill=\"white\" stroke=\"" +
               colour + "\" stroke-width=\"2.5\"/>\n";
    }
    return "<circle cx=\"" + x + "\" cy=\"" + y + "\" r=\"4.5\" " + fill + "/>\n";
}

/// Splits `text` into lines of at most `width` characters, at spaces.
std::vector<std::string> wrap(const std::string& text, std::size_t width) {
    std::vector<std::string> lines;
    std::string line;
    for (const auto& word : split(text, ' ')) {
        if (!line.empty() && line.size() + 1 + word.size() > width) {
            lines.push_back(line);
            line.clear();
        }
        line += (line.empty() ? "" : " ") + word;
    }
    if (!line.empty()) lines.push_back(line);
    return lines;
}

/// The highest and lowest pixel rows of a curve between two steps.
std::pair<double, double> extent(const plot_frame& f,
                                 const std::vector<std::pair<double, double>>& pts, double from,
                                 double to) {
    double top = f.bottom;
    double bottom = f.top;
    for (const auto& [x, y] : pts) {
        if (x < from || x > to) continue;
        top = std::min(top, f.y(y));
        bottom = std::max(bottom, f.y(y));
    }
    return {top, bottom};
}

} // namespace

void write_svg(const fs::path& path, const config& c, const run_log& reference,
               const run_log& interrupted, const run_log& resumed, const kill_record& kill,
               bool identical) {
    constexpr double width = 1000;
    constexpr double height = 760;
    const std::string ref_colour = "#4a90d9";
    const std::string first_colour = "#e8590c";
    const std::string second_colour = "#7b2cbf";
    const std::string crash_colour = "#d62728";
    const std::string resume_colour = "#2b8a3e";

    const auto ref_train = smoothed(reference, c.smooth);
    const auto ref_val = validation_points(reference);
    const auto a_train = smoothed(interrupted, c.smooth);
    const auto a_val = validation_points(interrupted);
    const auto b_train = smoothed(resumed, c.smooth);
    const auto b_val = validation_points(resumed);

    double lo = 1e300;
    double hi = -1e300;
    for (const auto* v : {&ref_train, &ref_val, &a_train, &a_val, &b_train, &b_val}) {
        for (const auto& [x, y] : *v) {
            if (y > 0 && std::isfinite(y)) {
                lo = std::min(lo, y);
                hi = std::max(hi, y);
            }
        }
    }
    if (lo > hi) {
        lo = 0.01;
        hi = 1;
    }
    const double pad = 0.06 * (std::log10(hi) - std::log10(lo));
    const plot_frame f{82,
                       width - 36,
                       118,
                       520,
                       static_cast<double>(c.steps),
                       std::log10(lo) - pad,
                       std::log10(hi) + pad};

    std::ostringstream s;
    s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" viewBox=\"0 0 " << width << ' ' << height
      << "\" font-family=\"system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";

    // Title and subtitle.
    s << "<text x=\"" << f.left << "\" y=\"34\" font-size=\"21\" font-weight=\"600\" fill=\"#222\">"
      << "Killed mid-run, resumed, " << (identical ? "bit-identical" : "NOT identical")
      << ": ckpt's crash-and-resume demo</text>\n"
      << "<text x=\"" << f.left << "\" y=\"58\" font-size=\"13.5\" fill=\"#555\">"
      << escape("MLP " + architecture(c) + " (ReLU), Adam lr " + format("%g", c.lr) + ", batch " +
                std::to_string(c.batch) + ", two spirals with noise " + format("%g", c.noise) +
                ". Cross-entropy loss against training step (log scale).")
      << "</text>\n";

    // Grid, ticks and labels.
    s << "<g font-size=\"12\" fill=\"#444\">\n";
    for (int d = static_cast<int>(std::floor(f.y_lo)); d <= static_cast<int>(std::ceil(f.y_hi));
         ++d) {
        for (const double m : {1.0, 2.0, 5.0}) {
            const double v = m * std::pow(10.0, d);
            if (std::log10(v) < f.y_lo || std::log10(v) > f.y_hi) continue;
            const double y = f.y(v);
            s << "<line x1=\"" << f.left << "\" x2=\"" << f.right << "\" y1=\"" << fixed1(y)
              << "\" y2=\"" << fixed1(y) << "\" stroke=\"" << (m == 1.0 ? "#d8d8d8" : "#eeeeee")
              << "\"/>\n<text x=\"" << f.left - 8 << "\" y=\"" << fixed1(y + 4)
              << "\" text-anchor=\"end\">" << format("%g", v) << "</text>\n";
        }
    }
    const double raw_step = static_cast<double>(c.steps) / 8.0;
    const double mag = std::pow(10.0, std::floor(std::log10(raw_step)));
    double tick = mag;
    for (const double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
        if (m * mag >= raw_step) {
            tick = m * mag;
            break;
        }
    }
    for (double t = 0; t <= static_cast<double>(c.steps) + 0.5; t += tick) {
        const double x = f.x(t);
        s << "<line x1=\"" << fixed1(x) << "\" x2=\"" << fixed1(x) << "\" y1=\"" << f.top
          << "\" y2=\"" << f.bottom << "\" stroke=\"#f0f0f0\"/>\n"
          << "<line x1=\"" << fixed1(x) << "\" x2=\"" << fixed1(x) << "\" y1=\"" << f.bottom
          << "\" y2=\"" << f.bottom + 5 << "\" stroke=\"#888\"/>\n"
          << "<text x=\"" << fixed1(x) << "\" y=\"" << f.bottom + 20 << "\" text-anchor=\"middle\">"
          << format("%.0f", t) << "</text>\n";
    }
    s << "<rect x=\"" << f.left << "\" y=\"" << f.top << "\" width=\"" << f.right - f.left
      << "\" height=\"" << f.bottom - f.top << "\" fill=\"none\" stroke=\"#888\"/>\n"
      << "<text x=\"" << (f.left + f.right) / 2 << "\" y=\"" << f.bottom + 40
      << "\" text-anchor=\"middle\" font-size=\"13\">training step</text>\n"
      << "<text transform=\"translate(24," << (f.top + f.bottom) / 2
      << ") rotate(-90)\" text-anchor=\"middle\" font-size=\"13\">loss (log scale)</text>\n"
      << "</g>\n";

    // The crash: the steps lost between the checkpoint resumed from and the kill.
    const double xr = f.x(static_cast<double>(resumed.resumed_from));
    const double xk = f.x(static_cast<double>(kill.last_step));
    s << "<rect x=\"" << fixed1(xr) << "\" y=\"" << f.top << "\" width=\""
      << fixed1(std::max(0.0, xk - xr)) << "\" height=\"" << f.bottom - f.top << "\" fill=\""
      << crash_colour << "\" fill-opacity=\"0.10\"/>\n"
      << "<line x1=\"" << fixed1(xr) << "\" x2=\"" << fixed1(xr) << "\" y1=\"" << f.top - 4
      << "\" y2=\"" << f.bottom << "\" stroke=\"" << resume_colour
      << "\" stroke-width=\"2\" stroke-dasharray=\"6,4\"/>\n"
      << "<line x1=\"" << fixed1(xk) << "\" x2=\"" << fixed1(xk) << "\" y1=\"" << f.top - 4
      << "\" y2=\"" << f.bottom << "\" stroke=\"" << crash_colour << "\" stroke-width=\"2\"/>\n";
    // Labels above the plot: the crash to the right of its line, the resume to the left of its.
    const std::int64_t lost = kill.last_step - resumed.resumed_from;
    s << "<g font-size=\"12.5\">\n"
      << "<text x=\"" << fixed1(xk + 6) << "\" y=\"" << f.top - 22 << "\" fill=\"" << crash_colour
      << "\" font-weight=\"600\">SIGKILL after step " << kill.last_step << "</text>\n"
      << "<text x=\"" << fixed1(xk + 6) << "\" y=\"" << f.top - 8 << "\" fill=\"" << crash_colour
      << "\">"
      << escape(kill.during_save ? "during the save of step " + std::to_string(kill.save_step)
                                 : std::string("between saves"))
      << "</text>\n"
      << "<text x=\"" << fixed1(xr - 6) << "\" y=\"" << f.top - 22 << "\" fill=\"" << resume_colour
      << "\" font-weight=\"600\" text-anchor=\"end\">resumed from step " << resumed.resumed_from
      << "</text>\n"
      << "<text x=\"" << fixed1(xr - 6) << "\" y=\"" << f.top - 8 << "\" fill=\"" << resume_colour
      << "\" text-anchor=\"end\">"
      << (lost == 0
              ? std::string("no step lost")
              : std::to_string(lost) + (lost == 1 ? " step" : " steps") + " lost, trained again")
      << "</text>\n</g>\n";

    // The runs: the reference wide and pale underneath, the two processes thin on top.
    const std::string wide = "stroke=\"" + ref_colour +
                             "\" stroke-opacity=\"0.35\" stroke-width=\"7\" "
                             "stroke-linejoin=\"round\" stroke-linecap=\"round\"";
    s << polyline(f, ref_train, wide) << polyline(f, ref_val, wide);
    for (const auto& [pts, colour, dashed] :
         {std::tuple{&a_train, first_colour, false}, std::tuple{&a_val, first_colour, true},
          std::tuple{&b_train, second_colour, false}, std::tuple{&b_val, second_colour, true}}) {
        s << polyline(f, *pts,
                      "stroke=\"" + colour + "\" stroke-width=\"1.6\" stroke-linejoin=\"round\"" +
                          (dashed ? " stroke-dasharray=\"5,3\"" : ""));
    }

    // Direct labels for the two quantities where the curves leave room: the validation loss
    // above its curve, the training loss below its, early in the plateau.
    {
        const std::string val_text =
            "validation loss (dashed), " + std::to_string(2 * c.per_class) + " held-out points";
        // (A fixed-width guess at the text's length: good enough to dodge the crash band.)
        const std::string train_text =
            "training loss, mean of " + std::to_string(c.smooth) + " steps";
        const auto steps_of = [&](const std::string& text) { // ~7 px a character at 12.5 px
            return 7.0 * static_cast<double>(text.size()) / (f.right - f.left) * f.x_max;
        };
        // The first place from a fifth of the way in whose text stays clear of the crash band.
        const auto place = [&](const std::string& text) {
            const double band_from = static_cast<double>(resumed.resumed_from) - 0.02 * f.x_max;
            const double band_to = static_cast<double>(kill.last_step) + 0.02 * f.x_max;
            for (double at = 0.2; at < 0.75; at += 0.02) {
                const double x0 = at * f.x_max;
                if (x0 + steps_of(text) < band_from || x0 > band_to) return x0;
            }
            return 0.2 * f.x_max;
        };
        const double val_at = place(val_text);
        const double train_at = place(train_text);
        const double val_top = extent(f, ref_val, val_at, val_at + steps_of(val_text)).first;
        const double train_bottom =
            extent(f, ref_train, train_at, train_at + steps_of(train_text)).second;
        s << "<g font-size=\"12.5\" fill=\"#333\">\n"
          << "<text x=\"" << fixed1(f.x(val_at)) << "\" y=\""
          << fixed1(std::max(val_top - 14, f.top + 14)) << "\">" << escape(val_text) << "</text>\n"
          << "<text x=\"" << fixed1(f.x(train_at)) << "\" y=\""
          << fixed1(std::min(train_bottom + 20, f.bottom - 6)) << "\">" << escape(train_text)
          << "</text>\n</g>\n";
    }

    // Saves: markers on the validation curve (the value the manager was given at that step).
    for (const auto& [log, colour] :
         {std::pair{&interrupted, first_colour}, std::pair{&resumed, second_colour}}) {
        for (const auto& sv : log->saves) {
            const double v = log->val_at(sv.step);
            if (!(v > 0)) continue;
            s << marker(f.x(static_cast<double>(sv.step)), f.y(v), sv.reasons, colour);
        }
    }
    const auto cross = [&](double cx, double cy) {
        return "<path d=\"M" + fixed1(cx - 6) + "," + fixed1(cy - 6) +
               " l12,12 m0,-12 l-12,12\" stroke=\"" + crash_colour +
               "\" stroke-width=\"3\" stroke-linecap=\"round\"/>\n";
    };
    if (kill.during_save) {
        const double v = interrupted.val_at(kill.save_step);
        if (v > 0) s << cross(f.x(static_cast<double>(kill.save_step)), f.y(v));
    }

    // Legend: two rows of three, under the axis title.
    {
        const double ly = f.bottom + 70;
        const double col = (f.right - f.left) / 3;
        std::size_t i = 0;
        s << "<g font-size=\"12.5\" fill=\"#222\">\n";
        const auto entry = [&](const std::string& swatch, const std::string& text) {
            const double x = f.left + col * static_cast<double>(i % 3);
            const double y = ly + 22 * static_cast<double>(i / 3);
            s << "<g transform=\"translate(" << fixed1(x) << "," << fixed1(y) << ")\">" << swatch
              << "<text x=\"40\" y=\"4.5\">" << escape(text) << "</text></g>\n";
            ++i;
        };
        const auto line_swatch = [](const std::string& style) {
            return "<line x1=\"2\" x2=\"32\" y1=\"0\" y2=\"0\" " + style + "/>";
        };
        entry(
            line_swatch("stroke=\"" + ref_colour + "\" stroke-opacity=\"0.35\" stroke-width=\"7\""),
            "uninterrupted reference run");
        entry(line_swatch("stroke=\"" + first_colour + "\" stroke-width=\"2\""),
              "killed run, process 1 (until SIGKILL)");
        entry(line_swatch("stroke=\"" + second_colour + "\" stroke-width=\"2\""),
              "killed run, process 2 (after resume)");
        entry(marker(9, 0, {"on_best"}, "#555") + marker(25, 0, {"every_steps"}, "#555"),
              "save: on_best / every_steps(" + std::to_string(c.save_every) + ")");
        bool final_save = false;
        for (const auto* log : {&interrupted, &resumed}) {
            for (const auto& sv : log->saves) {
                final_save = final_save || std::find(sv.reasons.begin(), sv.reasons.end(),
                                                     "save_now") != sv.reasons.end();
            }
        }
        if (final_save) {
            entry(marker(9, 0, {"every_steps", "on_best"}, "#555") +
                      marker(25, 0, {"save_now"}, "#555"),
                  "save: both rules / final save_now");
        } else {
            entry(marker(17, 0, {"every_steps", "on_best"}, "#555"), "save: both rules at once");
        }
        if (kill.during_save) entry(cross(17, 0), "the save the SIGKILL interrupted");
        s << "</g>\n";
    }

    // Caption.
    std::vector<std::string> caption =
        wrap("Process 1 was killed with SIGKILL after step " + std::to_string(kill.last_step) +
                 (kill.during_save
                      ? ", in the middle of the save of step " + std::to_string(kill.save_step) +
                            " (" + describe_kill(kill) + ")."
                      : ", between two saves.") +
                 " Process 2, started on the same folder, resumed from the newest good checkpoint "
                 "(step " +
                 std::to_string(resumed.resumed_from) + ") and finished" +
                 (lost == 0 ? std::string(": no step was lost.")
                            : ": " + std::to_string(lost) +
                                  (lost == 1 ? " step was" : " steps were") + " trained twice."),
             128);
    double cy = f.bottom + 134;
    s << "<g font-size=\"13\" fill=\"#333\">\n";
    for (const auto& l : caption) {
        s << "<text x=\"" << f.left << "\" y=\"" << cy << "\">" << escape(l) << "</text>\n";
        cy += 19;
    }
    s << "<text x=\"" << f.left << "\" y=\"" << cy << "\" font-weight=\"600\">"
      << escape(std::string("Final training state bit-identical to the uninterrupted run: ") +
                (identical ? "yes; the thin curves lie exactly on the wide one." : "NO."))
      << "</text>\n";
    cy += 21;
    for (const auto& l :
         wrap("Saved by ckpt::manager with every_steps(" + std::to_string(c.save_every) +
                  ") | on_best(\"val_loss\") and kept with keep_last(3) | keep_best(1, "
                  "\"val_loss\"); validation every " +
                  std::to_string(c.eval_every) + " steps. Every step's numbers: loss.csv.",
              140)) {
        s << "<text x=\"" << f.left << "\" y=\"" << cy << "\" fill=\"#666\" font-size=\"12\">"
          << escape(l) << "</text>\n";
        cy += 17;
    }
    s << "</g>\n</svg>\n";

    std::ofstream(path) << s.str();
}

} // namespace demo
