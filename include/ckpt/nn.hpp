#pragma once

/// The built-in reference user of ckpt: a small MLP, Adam and SGD, synthetic data sets, a
/// resumable sampler and a train_state whose checkpoints resume bit for bit.

#include <ckpt/nn/data.hpp>
#include <ckpt/nn/mlp.hpp>
#include <ckpt/nn/optim.hpp>
#include <ckpt/nn/train.hpp>
