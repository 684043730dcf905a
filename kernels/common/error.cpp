#include "kernels/common/error.h"

#include <algorithm>
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

// Whether the well-formed character of `length` bytes at s[i] is one that breaks a line or steers
// a terminal or the text's direction: the C1 controls (U+0080 to U+009F, CSI among them), the
// line and paragraph separators U+2028 and U+2029, the bidirectional overrides and isolates.
bool controlling(const std::string& s, size_t i, size_t length) {
    const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
    if (length == 2) return b(0) == 0xc2 && b(1) <= 0x9f;
    if (length != 3 || b(0) != 0xe2) return false;
    return (b(1) == 0x80 && b(2) >= 0xa8 && b(2) <= 0xae) || (b(1) == 0x81 && b(2) >= 0xa6 && b(2) <= 0xa9);
}

}  // namespace

std::string one_line(const std::string& message) {
    std::string out;
    for (size_t i = 0; i < message.size();) {
        const unsigned char c = static_cast<unsigned char>(message[i]);
        const size_t length = utf8_length(message, i);
        // Text, a file's Unicode name too; not what would end the line or steer the terminal.
        if ((length > 1 && !controlling(message, i, length)) || (length == 1 && c >= 0x20 && c != 0x7f)) {
            out.append(message, i, length);
            i += length;
            continue;
        }
        for (size_t k = 0; k < std::max<size_t>(length, 1); ++k) {  // each byte of it
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\x%02x", static_cast<unsigned char>(message[i + k]));
            out += escaped;
        }
        i += std::max<size_t>(length, 1);
    }
    return out;
}

std::string clipped(const std::string& text, size_t max) {
    return text.size() > max ? text.substr(0, max) + "..." : text;
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
