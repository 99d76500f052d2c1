// lmf/lmf.hpp — the umbrella header: everything CPU-side. (The CUDA backend is <lmf/cuda.cuh>,
// the libtorch module <lmf/torch.hpp>: each included on its own.)
//
//   #include <lmf/lmf.hpp>
//   lmf::LMFLoss<float> loss(counts);
//   float L = loss.value_and_gradient(logits, labels, grad);
#pragma once

#include <lmf/config.hpp>
#include <lmf/errors.hpp>
#include <lmf/isa.hpp>
#include <lmf/class_stats.hpp>
#include <lmf/spec.hpp>
#include <lmf/view.hpp>
#include <lmf/plan.hpp>
#include <lmf/loss.hpp>
#include <lmf/losses.hpp>
#include <lmf/sigmoid_focal.hpp>
