// The build's version: `git describe --always --dirty --tags` of the checkout it was built from
// (cmake/version.cmake), e.g. "3adb158" or "3adb158-dirty"; "unknown" outside a git checkout.
// `--version` prints it and every model.json records it, so that a segmentation can be traced
// to the code that made it.
#pragma once

namespace iss {

const char* build_version();

}  // namespace iss
