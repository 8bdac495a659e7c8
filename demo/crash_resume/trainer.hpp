#pragma once
// The training run: the same in the trainer child and in the in-process reference. And the
// trainer child around it (`ckpt_crash_resume --train DIR --status-fd N [--go-fd N]`), which
// reports on a pipe (pipe_protocol.hpp).

#include "common.hpp"
#include "config.hpp"
#include "listener.hpp"

#include <ckpt/ckpt.hpp>
#include <ckpt/nn.hpp>

namespace demo {

using state_type = ckpt::nn::train_state<float>;

/// Trains to c.steps in `dir`, resuming from the newest good checkpoint there; the final state
/// is always saved. `arm` is called once the loop starts (the reporting backend waits for it).
state_type train(const fs::path& dir, const config& c, listener& out, ckpt::io::backend* io,
                 void (*arm)(bool) = nullptr);

/// The trainer child: trains in `dir`, reporting on `status_fd` (and, when `go_fd` >= 0, waiting
/// on it before each file-system call of a save). Returns the exit status: 0, or 1 on an error.
int run_trainer(const fs::path& dir, const config& c, int status_fd, int go_fd);

} // namespace demo
