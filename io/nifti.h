// TEMPORARY stand-in for the real io/nifti.h (being written in another worktree): only the one
// declaration the phantom command needs. Drop this file and io/nifti_stub.cpp on merge.
#pragma once

#include <string>

#include "io/volume.h"

namespace iss {
void write_labels(const std::string& path, const LabelMap& labels);
}  // namespace iss
