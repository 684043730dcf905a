#include "io/isolate.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "kernels/common/error.h"

namespace iss {
namespace {

// What the child sends: one tag byte, then the result or the error's message.
constexpr char kResult = 'R', kInputError = 'I', kError = 'E';

// Writes everything; false when the pipe is gone (the parent stopped reading).
bool write_all(int fd, const char* data, size_t size) {
    while (size > 0) {
        const ssize_t n = ::write(fd, data, size);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        data += n;
        size -= size_t(n);
    }
    return true;
}

[[noreturn]] void child(int fd, const std::function<std::string()>& work, unsigned timeout_seconds) {
    // The default action of SIGALRM ends the child; a handler inherited from the parent (a
    // fuzzer's watchdog) must not run here.
    std::signal(SIGALRM, SIG_DFL);
    ::alarm(timeout_seconds);
    std::string message;
    try {
        message = kResult + work();
    } catch (const InputError& e) {
        message = kInputError + std::string(e.what());
    } catch (const std::exception& e) {
        message = kError + std::string(e.what());
    } catch (...) {
        message = kError + std::string("unknown exception");
    }
    // _exit: none of the parent's atexit work (flushing its streams, leak checks) runs twice.
    ::_exit(write_all(fd, message.data(), message.size()) ? 0 : 1);
}

}  // namespace

std::string run_isolated(const std::function<std::string()>& work, unsigned timeout_seconds, const std::string& what) {
    int fds[2];
    if (::pipe(fds) != 0) throw Error(cat(what, ": cannot create a pipe: ", std::strerror(errno)));
    const pid_t pid = ::fork();
    if (pid < 0) {
        const int e = errno;
        ::close(fds[0]);
        ::close(fds[1]);
        throw Error(cat(what, ": cannot start a reader process: ", std::strerror(e)));
    }
    if (pid == 0) {
        ::close(fds[0]);
        child(fds[1], work, timeout_seconds);
    }
    ::close(fds[1]);
    std::string received;
    char buffer[1 << 16];
    for (;;) {
        const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        received.append(buffer, size_t(n));
    }
    ::close(fds[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    const bool finished = WIFEXITED(status) && WEXITSTATUS(status) == 0 && !received.empty();
    if (!finished) {
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
            throw InputError(cat(what, ": reading it took more than ", timeout_seconds, " s (a damaged file?)"));
        throw InputError(cat(what, ": the HDF5 library failed on it (",
                             WIFSIGNALED(status) ? cat("signal ", WTERMSIG(status)) : cat("exit ", WEXITSTATUS(status)),
                             "): a damaged file"));
    }
    const char tag = received[0];
    received.erase(0, 1);
    if (tag == kInputError) throw InputError(received);
    if (tag == kError) throw Error(received);
    if (tag != kResult) throw InputError(cat(what, ": the HDF5 library failed on it (garbled result): a damaged file"));
    return received;
}

}  // namespace iss
