#ifndef CKPT_CKPT_HPP
#define CKPT_CKPT_HPP

/// ckpt: exact, safe, fast checkpoints of training state for C++20.
/// Include this header; it brings save/load/inspect, asynchronous save, the manager, the Eigen
/// and <random> support, the built-in nn, and the cereal support for the standard containers a
/// training state usually holds.

#include <ckpt/async.hpp>
#include <ckpt/checkpoint.hpp>
#include <ckpt/concepts.hpp>
#include <ckpt/error.hpp>
#include <ckpt/format/dtype.hpp>
#include <ckpt/format/limits.hpp>
#include <ckpt/format/manifest.hpp>
#include <ckpt/import.hpp>
#include <ckpt/io/backend.hpp>
#include <ckpt/manager.hpp>
#include <ckpt/metadata.hpp>
#include <ckpt/nn.hpp>
#include <ckpt/placement.hpp>
#include <ckpt/policy/retention.hpp>
#include <ckpt/policy/save_policy.hpp>
#include <ckpt/reader.hpp>
#include <ckpt/tensor.hpp>
#include <ckpt/types/containers.hpp>
#include <ckpt/types/eigen.hpp>
#include <ckpt/types/random.hpp>
#include <ckpt/version.hpp>

#include <cereal/types/array.hpp>
#include <cereal/types/map.hpp>
#include <cereal/types/optional.hpp>
#include <cereal/types/string.hpp>
#include <cereal/types/utility.hpp>
#include <cereal/types/vector.hpp>

#endif // CKPT_CKPT_HPP
