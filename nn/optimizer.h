// Adam over a ParamStore's flat buffers: one kernel launch per step (kernels/nn/adam.h). The
// step count is part of the optimizer state saved for resuming.
#pragma once

#include <cstdint>

#include "kernels/nn/adam.h"
#include "nn/params.h"

namespace iss {

class Adam {
public:
    explicit Adam(const AdamConfig& config = AdamConfig{}) : config_(config) {}

    // Applies one update from the gradients in `params` (after backward).
    void step(ParamStore& params);

    const AdamConfig& config() const { return config_; }
    AdamConfig& config() { return config_; }
    int64_t steps() const { return steps_; }
    // A fresh optimizer over the same weights: moments zero, the step count from 0.
    void reset(ParamStore& params);
    void set_steps(int64_t steps) { steps_ = steps; }

private:
    AdamConfig config_;
    int64_t steps_ = 0;
};

}  // namespace iss
