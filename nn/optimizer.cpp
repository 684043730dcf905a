#include "nn/optimizer.h"

namespace iss {

void Adam::reset(ParamStore& params) {
    params.zero_moments();
    steps_ = 0;
}

void Adam::step(ParamStore& params) {
    ++steps_;
    adam_step(params.context(), config_, steps_, params.values(), params.grads(), params.adam_m(), params.adam_v(),
              params.trainable_span());
}

}  // namespace iss
