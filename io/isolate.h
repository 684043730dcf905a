// Running a reader that we cannot make safe in a child process of its own.
//
// libhdf5 (1.10, the version Debian ships) trusts the files it reads: fuzzing found endless
// loops, reads past buffers, wild reads and a use after free inside it on damaged files, some
// of which no check of ours before the call can foresee. A Keras file is therefore read in a
// forked child: a crash or a hang there costs the child, and the command refuses the file with
// one line, exit 2. docs/RELIABILITY.md.
#pragma once

#include <functional>
#include <string>

namespace iss {

// Runs `work` in a forked child and returns the bytes it returned. An InputError or Error the
// child throws is rethrown here with its message. A child that dies (a signal, a sanitizer
// report) or runs past `timeout_seconds` is an InputError "`what`: ...". The child shares
// nothing back but those bytes; it must not use a GPU or threads of the parent.
std::string run_isolated(const std::function<std::string()>& work, unsigned timeout_seconds, const std::string& what);

}  // namespace iss
