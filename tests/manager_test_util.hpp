#pragma once
// What the manager tests share: a small state, a clock moved by hand, and step metadata.

#include "test_util.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <utility>

namespace test {

using time_point = std::chrono::system_clock::time_point;

inline constexpr double qnan = std::numeric_limits<double>::quiet_NaN();

struct train_state {
    Eigen::VectorXf weights = Eigen::VectorXf::LinSpaced(6, 0.0F, 5.0F);
    std::int64_t step = 0;
    template <class Archive>
    void serialize(Archive& ar) {
        ar(CEREAL_NVP(weights), CEREAL_NVP(step));
    }
};

/// A wall clock the test moves by hand: no sleeping.
struct fake_clock {
    time_point now = time_point(std::chrono::seconds(1'700'000'000));
    std::function<time_point()> fn() {
        return [this] { return now; };
    }
};

inline ckpt::manager_options with_clock(fake_clock& clock) {
    ckpt::manager_options o;
    o.clock = clock.fn();
    return o;
}

/// Metadata of a step with these metrics.
inline ckpt::metadata at(std::int64_t step, std::map<std::string, double> metrics = {}) {
    ckpt::metadata m;
    m.step = step;
    m.metrics = std::move(metrics);
    return m;
}

} // namespace test
