#include "io/isolate.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>

#include "kernels/common/error.h"

namespace iss {
namespace {

// What the child sends: one tag byte, the size of what follows (8 bytes, native order), then the
// result or the error's message.
constexpr char kResult = 'R', kInputError = 'I', kError = 'E';
// What the parent accepts: a U-Net's tensors are bounded at 1 GB (nn/keras.cpp), its texts at a few MB.
constexpr uint64_t kMaxResult = uint64_t(2) << 30;

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
    char tag = kResult;
    std::string message;  // a result may be a model of tens of MB: written as it is, not copied
    try {
        message = work();
    } catch (const InputError& e) {
        tag = kInputError;
        message = e.what();
    } catch (const std::exception& e) {
        tag = kError;
        message = e.what();
    } catch (...) {
        tag = kError;
        message = "unknown exception";
    }
    const uint64_t size = message.size();
    const bool sent = write_all(fd, &tag, 1) && write_all(fd, reinterpret_cast<const char*>(&size), sizeof size) &&
                      write_all(fd, message.data(), message.size());
    // _exit: none of the parent's atexit work (flushing its streams, leak checks) runs twice.
    ::_exit(sent ? 0 : 1);
}

// Reads up to `size` bytes; fewer when the pipe ends first.
size_t read_all(int fd, char* data, size_t size) {
    size_t done = 0;
    while (done < size) {
        const ssize_t n = ::read(fd, data + done, size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += size_t(n);
    }
    return done;
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
#ifdef F_SETPIPE_SZ
    // A pipe of 1 MB rather than 64 KB: a model crosses it in fewer wake-ups (a hint the system
    // may refuse).
    ::fcntl(fds[0], F_SETPIPE_SZ, 1 << 20);
#endif
    // The tag and the size, then the message, read in place. A child that died part-way sends
    // less than it announced; one that died before announcing, nothing.
    char tag = 0;
    uint64_t size = 0;
    std::string received;
    bool whole = false;
    auto reap = [&] {
        ::close(fds[0]);  // a child still writing then ends on a broken pipe
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        return status;
    };
    try {
        whole = read_all(fds[0], &tag, 1) == 1 &&
                read_all(fds[0], reinterpret_cast<char*>(&size), sizeof size) == sizeof size && size <= kMaxResult;
        if (whole) {
            received.resize(size_t(size));
            whole = read_all(fds[0], received.data(), received.size()) == received.size();
        }
    } catch (...) {  // no memory for the result: the child is still reaped
        reap();
        throw;
    }
    const int status = reap();
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && !whole)
        throw InputError(cat(what, ": the HDF5 reader process sent a malformed result (a damaged file?)"));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
            throw InputError(cat(what, ": reading it took more than ", timeout_seconds, " s (a damaged file?)"));
        throw InputError(cat(what, ": the HDF5 library failed on it (",
                             WIFSIGNALED(status) ? cat("signal ", WTERMSIG(status)) : cat("exit ", WEXITSTATUS(status)),
                             "): a damaged file"));
    }
    if (tag == kInputError) throw InputError(received);
    if (tag == kError) throw Error(received);
    if (tag != kResult) throw InputError(cat(what, ": the HDF5 library failed on it (garbled result): a damaged file"));
    return received;
}

}  // namespace iss
