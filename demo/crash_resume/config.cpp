#include "config.hpp"

namespace demo {

ckpt::save_policy save_policy(const config& c) {
    return ckpt::every_steps(c.save_every) | ckpt::on_best("val_loss");
}
ckpt::retention retention() {
    return ckpt::keep_last(3) | ckpt::keep_best(1, "val_loss");
}

std::string architecture(const config& c) {
    return "2-" + std::to_string(c.hidden) + "-" + std::to_string(c.hidden) + "-2";
}

std::vector<std::string> config_flags(const config& c) {
    return {"--steps", std::to_string(c.steps), "--hidden", std::to_string(c.hidden)};
}

} // namespace demo
