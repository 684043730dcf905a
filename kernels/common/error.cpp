#include "kernels/common/error.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>

namespace iss {
namespace {

std::atomic<bool> warnings_enabled{true};

// The length of the well-formed UTF-8 character at s[i] (1 to 4 bytes, no overlong forms, no
// surrogates, nothing past U+10FFFF), 0 where the bytes there are none.
size_t utf8_length(const std::string& s, size_t i) {
    const auto at = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u; };
    const auto follows = [&](size_t k, unsigned lo = 0x80, unsigned hi = 0xbf) { return at(k) >= lo && at(k) <= hi; };
    const unsigned c = at(0);
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) return follows(1) ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        const bool second = c == 0xe0 ? follows(1, 0xa0) : c == 0xed ? follows(1, 0x80, 0x9f) : follows(1);
        return second && follows(2) ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        const bool second = c == 0xf0 ? follows(1, 0x90) : c == 0xf4 ? follows(1, 0x80, 0x8f) : follows(1);
        return second && follows(2) && follows(3) ? 4 : 0;
    }
    return 0;
}

}  // namespace

std::string one_line(const std::string& message) {
    std::string out;
    for (size_t i = 0; i < message.size();) {
        const unsigned char c = static_cast<unsigned char>(message[i]);
        const size_t length = utf8_length(message, i);
        if (length > 1 || (length == 1 && c >= 0x20 && c != 0x7f)) {  // text, a file's Unicode name too
            out.append(message, i, length);
            i += length;
            continue;
        }
        char escaped[8];
        std::snprintf(escaped, sizeof escaped, "\\x%02x", c);
        out += escaped;
        ++i;
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
