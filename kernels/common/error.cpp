#include "kernels/common/error.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace iss {
namespace {
std::atomic<bool> warnings_enabled{true};
}

std::string one_line(const std::string& message) {
    std::string out;
    for (const char ch : message) {
        const unsigned char c = static_cast<unsigned char>(ch);
        if (c >= 0x20 && c != 0x7f) {
            out += ch;
            continue;
        }
        char escaped[8];
        std::snprintf(escaped, sizeof escaped, "\\x%02x", c);
        out += escaped;
    }
    return out;
}

void warning(const std::string& message) {
    if (warnings_enabled.load()) std::fprintf(stderr, "warning: %s\n", one_line(message).c_str());
}

bool set_warnings_enabled(bool enabled) { return warnings_enabled.exchange(enabled); }

bool environment_flag(const char* name) {
    const char* v = std::getenv(name);
    return v && *v && *v != '0';
}

void throw_call_error(const char* library, const char* statement, const char* file, int line,
                      const std::string& message) {
    throw Error(cat(library, " error in `", statement, "` at ", file, ":", line, ": ", message));
}

}  // namespace iss
