#include "kernels/common/error.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace iss {
namespace {
std::atomic<bool> warnings_enabled{true};
}

void warning(const std::string& message) {
    if (warnings_enabled.load()) std::fprintf(stderr, "warning: %s\n", message.c_str());
}

void set_warnings_enabled(bool enabled) { warnings_enabled.store(enabled); }

bool environment_flag(const char* name) {
    const char* v = std::getenv(name);
    return v && *v && *v != '0';
}

void throw_call_error(const char* library, const char* statement, const char* file, int line,
                      const std::string& message) {
    throw Error(cat(library, " error in `", statement, "` at ", file, ":", line, ": ", message));
}

}  // namespace iss
