#include "trainer.hpp"

#include "pipe_protocol.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <optional>

namespace demo {
namespace {

constexpr std::uint64_t data_seed = 1;
constexpr std::uint64_t validation_seed = 2;
constexpr std::uint64_t model_seed = 7;
constexpr std::uint64_t sampler_seed = 11;
constexpr std::uint64_t noise_seed = 13;

state_type fresh_state(const config& c, std::int64_t data_size) {
    state_type s;
    s.model =
        ckpt::nn::mlp<float>({2, c.hidden, c.hidden, 2}, ckpt::nn::activation::relu, model_seed);
    s.optimizer = ckpt::nn::adam<float>(s.model, {.lr = c.lr});
    s.sampler = ckpt::nn::sampler(data_size, c.batch, sampler_seed);
    s.rng.seed(noise_seed);
    return s;
}

reporting_backend* g_backend = nullptr;
void arm_backend(bool on) {
    if (g_backend != nullptr) g_backend->arm(on);
}

} // namespace

state_type train(const fs::path& dir, const config& c, listener& out, ckpt::io::backend* io,
                 void (*arm)(bool)) {
    const auto data = ckpt::nn::two_spirals<float>(c.per_class, c.noise, data_seed);
    const auto validation = ckpt::nn::two_spirals<float>(c.per_class, c.noise, validation_seed);
    state_type s = fresh_state(c, data.size());

    ckpt::manager_options options;
    options.prefix = checkpoint_prefix;
    options.backend = io;
    ckpt::manager m(dir, save_policy(c), retention(), options);

    double val_loss = 0;
    if (const auto meta = m.restore_latest(s)) {
        // The val loss a step passes is the latest evaluated one; the checkpoint has it.
        val_loss = meta->metrics.at("val_loss");
        out.restored(meta->step, m.path_of(meta->step).filename().string(), m.skipped(),
                     m.cleaned());
    } else {
        out.restored(0, "", m.skipped(), m.cleaned());
        val_loss = static_cast<double>(ckpt::nn::evaluate(s.model, validation));
        out.stepped(0, std::nan(""), val_loss);
    }

    if (arm != nullptr) arm(true);
    const auto started = clock_type::now();
    while (s.step < c.steps) {
        const double loss = static_cast<double>(ckpt::nn::train_step(s, data));
        std::optional<double> evaluated;
        if (s.step % c.eval_every == 0) {
            val_loss = static_cast<double>(ckpt::nn::evaluate(s.model, validation));
            evaluated = val_loss;
        }
        out.stepped(s.step, loss, evaluated);

        ckpt::metadata meta;
        meta.step = s.step;
        meta.epoch = s.epoch;
        meta.metrics = {{"val_loss", val_loss}, {"loss", loss}};
        ckpt::save_result r = m.step(s, meta);
        if (!r && s.step == c.steps) r = m.save_now(s, meta); // the final state, always
        if (r) {
            save_record rec{
                s.step, m.stats().last_save_seconds, r.reasons, r.path.filename().string(), {}};
            for (const auto& d : r.deleted) rec.deleted.push_back(d.filename().string());
            out.saved(rec);
        }
    }
    const double seconds = std::chrono::duration<double>(clock_type::now() - started).count();
    if (arm != nullptr) arm(false);
    const ckpt::manager_stats st = m.stats();
    out.finished({st.checkpoints_written, st.checkpoints_on_disk, st.bytes_on_disk,
                  st.total_save_seconds, seconds});
    return s;
}

int run_trainer(const fs::path& dir, const config& c, int status_fd, int go_fd) {
    pipe_listener out(status_fd);
    reporting_backend io(status_fd, go_fd);
    g_backend = &io;
    try {
        train(dir, c, out, &io, &arm_backend);
    } catch (const std::exception& e) {
        write_fully(status_fd, "E\t" + one_line(e.what()) + "\n");
        std::fprintf(stderr, "trainer: %s\n", e.what());
        return 1;
    }
    return 0;
}

} // namespace demo
