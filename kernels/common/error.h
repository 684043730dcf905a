// Errors: every failed check throws, naming the statement or the input and what was wrong.
//
// iss::InputError is for bad user input (a file, a flag, a value): the command line prints its
// message on one line and exits with status 2. iss::Error is for everything else (a failed
// library call, a broken invariant): exit status 1.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace iss {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};

class InputError : public Error {
public:
    explicit InputError(const std::string& what) : Error(what) {}
};

// Throws iss::Error "<library> error in `<statement>` at <file>:<line>: <message>".
[[noreturn]] void throw_call_error(const char* library, const char* statement, const char* file, int line,
                                   const std::string& message);

// A message as one line of text: names taken from a file (a layer, a header's text) or a path may
// hold line breaks, other control characters (C1, Unicode's line separators and direction
// overrides too) or bytes that are not UTF-8 (a damaged file's), which are shown escaped (\x0a,
// \xe9); other well-formed UTF-8 (a file's Unicode name) is kept as it is.
std::string one_line(const std::string& message);

// A name or value from a file, cut for a message: its first `max` bytes and "..." when longer
// (a 1 MB layer name would otherwise be the whole message; one_line escapes what it holds).
std::string clipped(const std::string& text, size_t max = 100);

// A warning for the user: "warning: <message>" on one line of stderr (one_line). The fuzz
// targets switch them off while a reader runs (it warns on every odd file they try);
// set_warnings_enabled returns the previous setting, for the caller to put back.
void warning(const std::string& message);
bool set_warnings_enabled(bool enabled);

// Whether the environment variable `name` is set to anything but "" or "0" (the INFANT_* switches:
// INFANT_CUDA_SYNC, INFANT_CUDNN_LOG, INFANT_PLAN_LOG, INFANT_CUDA_GRAPH).
bool environment_flag(const char* name);

// Builds a message from stream pieces: iss::cat("dim ", 3, " is ", -1).
template <class... Parts>
std::string cat(const Parts&... parts) {
    std::ostringstream out;
    (out << ... << parts);
    return out.str();
}

// The first `shown` of `values`, comma-separated, then ", ..." where there are more: a message's
// list of what may be hundreds (an intensity image's values given as labels).
template <class Values>
std::string first_values(const Values& values, size_t shown) {
    std::string text;
    size_t n = 0;
    for (const auto& v : values) {
        if (n++ == shown) return text + ", ...";
        text += cat(n > 1 ? ", " : "", v);
    }
    return text;
}

}  // namespace iss

// Precondition check for launchers and parsers: ISS_REQUIRE(n > 0, "tensor 'x' is empty").
#define ISS_REQUIRE(cond, ...)                                                        \
    do {                                                                              \
        if (!(cond)) throw ::iss::Error(::iss::cat("requirement failed: ", __VA_ARGS__)); \
    } while (0)

// Bad-input check: throws InputError with the message (which must name the input).
#define ISS_INPUT(cond, ...)                                          \
    do {                                                              \
        if (!(cond)) throw ::iss::InputError(::iss::cat(__VA_ARGS__)); \
    } while (0)
