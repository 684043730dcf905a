// The published infant intensity priors as built-in preset data (see infant_priors.cpp).
#pragma once

#include <vector>

namespace iss::infant_priors {

// Two (2, 43) arrays in row-major order, indexed [row * 43 + generation index].
struct Priors {
    std::vector<double> means;  // row 0: mean of the class mean, row 1: its std
    std::vector<double> stds;   // row 0: mean of the class std, row 1: its std
};

Priors t1();
Priors t2();

}  // namespace iss::infant_priors
