#include "io/file_util.h"

#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>

#include "kernels/common/error.h"

namespace iss {

namespace {

// Registries of the files a signal must deal with, for its handler: fixed slots (no allocation
// in a handler). A slot is claimed first, then its paths copied, then marked ready: two threads
// never write one slot, and the handler reads only ready ones. A slot with a `restore` path holds
// an earlier file kept aside, which the handler moves back there; one without is removed. A slot
// may hold its file's (device, inode): the handler then acts on the path only while it names that
// file (its folder moved away, and another made under its name, holds another's). (The arrays are
// zero pages until used.)
template <int kSlots, bool kWithRestore>
struct SignalRegistry {
    static constexpr size_t kSlotBytes = 4096;
    // kRemove: a slot whose `restore` no longer counts: the handler removes its path.
    enum SlotState : int { kFree, kClaimed, kReady, kRemove };
    char path[kSlots][kSlotBytes];
    char restore[kWithRestore ? kSlots : 1][kWithRestore ? kSlotBytes : 1];
    FileId identity[kSlots];
    std::atomic<int> state[kSlots];

    // The slot, or -1 when every one is taken (the file is then left to the normal paths).
    // `id` {0, 0}: the path is acted on whatever it names.
    int claim(const std::string& file, const std::string& restore_to = "", FileId id = {0, 0}) {
        // Without restore paths, restore[0] holds one byte: only "" fits.
        if (file.size() >= kSlotBytes || restore_to.size() >= sizeof restore[0]) return -1;
        for (int i = 0; i < kSlots; ++i) {
            int expected = kFree;
            if (!state[i].compare_exchange_strong(expected, kClaimed, std::memory_order_acq_rel)) continue;
            std::memcpy(path[i], file.c_str(), file.size() + 1);
            if (kWithRestore) std::memcpy(restore[i], restore_to.c_str(), restore_to.size() + 1);
            identity[i] = id;
            state[i].store(kReady, std::memory_order_release);
            return i;
        }
        return -1;
    }
    void free(int slot) {
        if (slot >= 0) state[slot].store(kFree, std::memory_order_release);
    }
    void remove_on_signal(int slot) {
        if (slot >= 0) state[slot].store(kRemove, std::memory_order_release);
    }
    bool ready(int slot) const { return state[slot].load(std::memory_order_acquire) == kReady; }
    bool to_remove(int slot) const { return state[slot].load(std::memory_order_acquire) == kRemove; }
    // Whether the slot's path still names its file (always, for a slot without an identity).
    // Async-signal-safe.
    bool names_its_file(int slot) const {
        if (identity[slot].second == 0) return true;
        struct stat st {};
        return ::lstat(path[slot], &st) == 0 && uint64_t(st.st_dev) == identity[slot].first &&
               uint64_t(st.st_ino) == identity[slot].second;
    }
};

// Temporaries being written (a few per set at a time): a signal removes them. Their own
// registry, so that a long run's kept copies never leave one without a slot.
constexpr int kWritingSlots = 256;
SignalRegistry<kWritingSlots, false> temporaries;
// Earlier files kept aside while their set is in progress (kReady: a signal puts them back), or
// once the moves they belong to are done (kRemove: a signal removes them).
constexpr int kKeptSlots = 1024;
SignalRegistry<kKeptSlots, true> kept_copies;
// New outputs (no earlier file) that a set's commit is moving into place: a signal takes them
// back too, as a failure does, so that no half set is left. While one of them found no slot (a
// commit of more than 256 files at once), a signal keeps them all.
constexpr int kMovedSlots = 256;
SignalRegistry<kMovedSlots, false> moved_new_outputs;
std::atomic<int> moved_without_slot{0};
// Folders a command made (OutputDirectories), outermost first, until it keeps or takes them
// back: a signal removes those that are empty then, as a failure does.
constexpr int kFolderSlots = 64;
SignalRegistry<kFolderSlots, false> made_folders;
// While this is above 0, a signal puts no earlier file back and removes no new one: some kept
// aside found no slot, or a set is switching its files' slots (a commit done). Some files old
// and some new would be worse than all new with the old ones kept aside.
std::atomic<int> restore_blockers{0};
// Shared folder locks this process holds (SharedFolderLock) and their descriptors: a signal
// removes each one's file where no other run holds it, as its destructor does (a folder synth
// made was left holding its lock alone).
constexpr int kLockSlots = 16;
SignalRegistry<kLockSlots, false> shared_locks;
std::atomic<int> shared_lock_fd_plus_1[kLockSlots];  // 0 (as zero-initialised): none yet

int register_temporary(const std::string& path) {
    return temporaries.claim(path);
}

void unregister_temporary(int slot) {
    temporaries.free(slot);
}

// Puts an earlier file kept as `previous` back over `target`; when it was a second link to the
// target still in place (the rename is then a no-op), that link goes. Async-signal-safe.
void put_back_previous(const char* previous, const char* target) {
    if (::rename(previous, target) == 0) ::unlink(previous);
}

// The signals install_output_cleanup_on_signals handles (each ends the process by default).
constexpr int cleanup_signals[] = {SIGINT,  SIGTERM, SIGHUP,  SIGQUIT, SIGPIPE,
                                   SIGUSR1, SIGUSR2, SIGALRM, SIGXCPU, SIGVTALRM};

// Above 0 while a thread takes a failed set back: a signal another thread handles (an OpenMP
// worker's) waits until it is done, as the taking thread itself has the signals blocked.
std::atomic<int> taking_back{0};

// set_signal_farewell's message: two buffers, the one not in use rewritten and then published, so
// that a handler on another thread reads a whole message; said only once arm_signal_farewell has
// run (a stop signal's handler), so that a first SIGQUIT or SIGPIPE is not called a second signal.
char farewell_buffers[2][1024];
std::atomic<const char*> farewell{nullptr};
std::atomic<bool> farewell_armed{false};

extern "C" void remove_temporaries_and_die(int signal) {
    const timespec pause{0, 1000000};  // 1 ms
    while (taking_back.load() > 0) ::nanosleep(&pause, nullptr);
    const bool restore = restore_blockers.load() == 0;
    for (int i = 0; i < kWritingSlots; ++i)
        if (temporaries.ready(i)) ::unlink(temporaries.path[i]);
    for (int i = 0; i < kKeptSlots; ++i) {
        if (kept_copies.to_remove(i))
            ::unlink(kept_copies.path[i]);
        else if (restore && kept_copies.ready(i))
            put_back_previous(kept_copies.path[i], kept_copies.restore[i]);
    }
    if (restore && moved_without_slot.load() == 0)
        for (int i = 0; i < kMovedSlots; ++i)
            if (moved_new_outputs.ready(i) && moved_new_outputs.names_its_file(i)) ::unlink(moved_new_outputs.path[i]);
    for (int i = 0; i < kLockSlots; ++i) {
        const int fd = shared_lock_fd_plus_1[i].load() - 1;
        if (shared_locks.ready(i) && fd >= 0 && ::flock(fd, LOCK_EX | LOCK_NB) == 0) ::unlink(shared_locks.path[i]);
    }
    // Innermost first: a pass removes the folders that are empty by then, until one removes none.
    for (bool removed = true; removed;) {
        removed = false;
        for (int i = kFolderSlots - 1; i >= 0; --i)
            if (made_folders.ready(i) && made_folders.names_its_file(i) && ::rmdir(made_folders.path[i]) == 0)
                removed = true;
    }
    // Said once the files are in order: a stderr that blocks (a full pipe) keeps none of them.
    if (const char* text = farewell.load(); text && farewell_armed.load()) {
        const ssize_t written = ::write(STDERR_FILENO, text, std::strlen(text));
        (void)written;  // nothing to do about a stderr that cannot be written
    }
    // Ended by the signal itself, as without the handler: unblocked here, it is delivered at once.
    std::signal(signal, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, signal);
    ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
    std::raise(signal);
    ::_exit(128 + signal);  // PID 1 (a container without an init) ignores its own default signals
}

// The descriptor that "standard output" names for outputs: 1, or the copy of it kept by
// route_reports_to_stderr().
std::atomic<int> stdout_descriptor{STDOUT_FILENO};

// A disk or partition is never an output: written directly, as a character device is, it would
// lose its first blocks.
void require_not_block_device(const std::string& path, mode_t mode) {
    ISS_INPUT(!S_ISBLK(mode), path, ": is a block device (a disk or partition): refusing to write over it");
}

// The descriptor of this process that `p` names by itself (/dev/stdout, /dev/stderr, /dev/fd/N,
// /proc/self/fd/N, /proc/PID/fd/N), or -1. Its link leads to whatever the descriptor holds
// ("pipe:[123]", a file the shell opened for appending), which is no path to write.
int descriptor_number(const std::filesystem::path& p) {
    const std::string s = p.lexically_normal().string();
    if (s == "/dev/stdout") return STDOUT_FILENO;
    if (s == "/dev/stderr") return STDERR_FILENO;
    for (const std::string& prefix : {std::string("/dev/fd/"), std::string("/proc/self/fd/"),
                                      cat("/proc/", ::getpid(), "/fd/")}) {
        if (s.size() <= prefix.size() || s.compare(0, prefix.size(), prefix) != 0) continue;
        const std::string number = s.substr(prefix.size());
        const bool digits = std::all_of(number.begin(), number.end(), [](char c) { return c >= '0' && c <= '9'; });
        if (digits && number.size() <= 9) return std::stoi(number);
    }
    return -1;
}

// The same, where standard output is the descriptor route_reports_to_stderr() kept for it.
int descriptor_named(const std::filesystem::path& p) {
    const int n = descriptor_number(p);
    return n == STDOUT_FILENO ? stdout_descriptor.load() : n;
}

}  // namespace

std::string resolve_links(const std::string& path,
                          const std::function<void(const std::filesystem::path& link)>& at_each_link) {
    namespace fs = std::filesystem;
    fs::path p = path;
    std::error_code ec;
    for (int hops = 0; hops < 40 && descriptor_named(p) < 0 && fs::is_symlink(fs::symlink_status(p, ec)); ++hops) {
        if (at_each_link) at_each_link(p);
        const fs::path target = fs::read_symlink(p, ec);
        if (ec) break;
        p = target.is_absolute() ? target : p.parent_path() / target;
    }
    return p.string();
}

FileId file_id(const std::string& path) noexcept {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? FileId{uint64_t(st.st_dev), uint64_t(st.st_ino)} : FileId{0, 0};
}

void remove_committed_output(const std::string& path, const FileId* identity) noexcept {
    try {
        const std::string target = resolve_links(path);
        struct stat st;
        const bool same = !identity || identity->second == 0 || file_id(target) == *identity;
        if (same && ::lstat(target.c_str(), &st) == 0 && S_ISREG(st.st_mode)) ::unlink(target.c_str());
    } catch (...) {  // best effort: the failure being reported matters more
    }
}

[[noreturn]] void throw_output_error(const std::string& path, int err, const std::string& what) {
    const std::string message = cat(path, ": ", what, ": ", std::strerror(err));
    switch (err) {
        case ENOENT:
        case ENOTDIR:
        case EACCES:
        case EPERM:
        case EROFS:
        case EISDIR:
        case ENAMETOOLONG:
        case ELOOP: throw InputError(message);
        default: throw Error(message);
    }
}

namespace {

// The ending a temporary keeps: ".nii.gz" whole (in the name's case), else the last extension.
std::string output_suffix(const std::string& path) {
    if (ends_with_ignoring_case(path, ".nii.gz")) return path.substr(path.size() - 7);
    return std::filesystem::path(path).extension().string();
}

}  // namespace

// Testing hook: INFANT_NO_HARD_LINKS=1 makes every hard link fail, as on a file system without
// them or under fs.protected_hardlinks. Unset in normal use. Read each time: a test sets it for
// a part of its run.
static bool hard_links_refused() {
    return environment_flag("INFANT_NO_HARD_LINKS");  // as the other hooks: "0" or "" is off
}

// Tests only (set_commit_point_hook_for_tests): called at each point INFANT_SIGNAL_AT can name.
static std::function<void(const std::string&)>& point_hook_for_tests() {
    static std::function<void(const std::string&)> hook;
    return hook;
}

void set_commit_point_hook_for_tests(std::function<void(const std::string&)> hook) {
    point_hook_for_tests() = std::move(hook);
}

// Testing hook: INFANT_SIGNAL_AT=POINT sends this process SIGTERM at that point of a set's
// commit, as a signal that comes just then would: an output's path (before it moves into
// place), "removing-kept" (a committed set about to remove the earlier files kept aside) or
// "taking-back" (a failed set about to be taken back). Unset in normal use.
static void signal_for_tests(const std::string& point) {
    if (point_hook_for_tests()) point_hook_for_tests()(point);
    const char* at = std::getenv("INFANT_SIGNAL_AT");
    if (at && point == at) ::kill(::getpid(), SIGTERM);
}

// A kept-aside earlier file is settled (put back, or removed on commit): the signal handler no
// longer needs it.
void OutputSet::release(Moved& m) noexcept {
    kept_copies.free(m.slot);
    m.slot = -1;
    if (m.without_slot) restore_blockers.fetch_sub(1);
    m.without_slot = false;
    keep_on_signal(m);
}

// A new output moved in: a signal from now on leaves it (a failure still takes it back).
void OutputSet::keep_on_signal(Moved& m) noexcept {
    moved_new_outputs.free(m.new_slot);
    m.new_slot = -1;
    if (m.new_without_slot) moved_without_slot.fetch_sub(1);
    m.new_without_slot = false;
}

OutputSet::~OutputSet() {
    if (done_) return;
    pending_.clear();  // their temporaries removed
    // The set is taken back whole: a signal waits until it is (one between two files left a pair
    // half taken back, or removed a kept copy this loop was putting back).
    // Blocked here, and waited for where another thread handles one (taking_back).
    sigset_t cleanup, before;
    sigemptyset(&cleanup);
    for (const int signal : cleanup_signals) sigaddset(&cleanup, signal);
    ::pthread_sigmask(SIG_BLOCK, &cleanup, &before);
    taking_back.fetch_add(1);
    signal_for_tests("taking-back");
    for (auto it = moved_.rbegin(); it != moved_.rend(); ++it) {
        // Put back first, then unregistered: a signal in between finds nothing to move.
        if (it->previous.empty()) {
            remove_committed_output(it->path, &it->identity);
        } else {
            put_back_previous(it->previous.c_str(), it->target.c_str());
            // Said, beside the failure being reported: the set is then half new, half old.
            struct stat kept {};
            if (::lstat(it->previous.c_str(), &kept) == 0) try {
                    warning(cat(it->path, ": the earlier file could not be put back: it is kept as ", it->previous));
                } catch (...) {  // out of memory while a failure unwinds: the files matter more
                }
        }
        release(*it);
    }
    taking_back.fetch_sub(1);
    ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
}

void OutputSet::write(const std::string& path, const std::function<void(const std::string&)>& write) {
    ISS_REQUIRE(!done_, "output ", path, " written after its set was committed");
    if (path.empty()) return;
    auto out = std::make_unique<OutputFile>(path, output_suffix(path));
    try {
        // A device or FIFO is written in place: the writer is given the user's name, so that it
        // picks gzip from its ending and writes through the same link.
        write(out->direct() ? path : out->write_path());
    } catch (const Error& e) {
        std::string message = e.what();
        const std::string& temp = out->write_path();
        if (temp != path)
            for (size_t at = message.find(temp); at != std::string::npos; at = message.find(temp, at + path.size()))
                message.replace(at, temp.size(), path);
        if (dynamic_cast<const InputError*>(&e)) throw InputError(message);
        throw Error(message);
    }
    pending_.push_back(std::move(out));
}

void OutputSet::move_pending() {
    ISS_REQUIRE(!done_, "output set committed twice");
    // No allocation once a file has moved; grown geometrically, as synth commits sample by sample.
    if (moved_.capacity() < moved_.size() + pending_.size())
        moved_.reserve(std::max(moved_.size() + pending_.size(), 2 * moved_.capacity()));
    for (std::unique_ptr<OutputFile>& out : pending_) {
        Moved moved;
        moved.path = out->path();
        moved.target = out->target();
        // A regular file about to be replaced (an earlier run's output) stays under a second
        // name until the set is done, so that a failure or a signal can put it back: linked
        // there, or, where no hard link can be made (another user's file under
        // fs.protected_hardlinks, a file system without links), moved there. Registered first:
        // a signal before the link or move finds nothing to put back.
        struct stat info {};
        const bool existed = ::lstat(out->target().c_str(), &info) == 0;
        if (!out->direct() && !existed) {  // new: a signal from its move on takes it back
            // By its identity, which the move keeps: only while its name holds it.
            moved.new_slot = moved_new_outputs.claim(out->target(), "", file_id(out->write_path()));
            moved.new_without_slot = moved.new_slot < 0;
            if (moved.new_without_slot) moved_without_slot.fetch_add(1);
        }
        if (!out->direct() && existed && S_ISREG(info.st_mode)) {
            const std::string previous = temporary_name_for(out->target(), "-replaced");
            ::unlink(previous.c_str());  // a dead process's of our pid (containers): never put back
            moved.slot = kept_copies.claim(previous, out->target());
            moved.without_slot = moved.slot < 0;
            if (moved.without_slot) restore_blockers.fetch_add(1);
            const bool linked = !hard_links_refused() && ::link(out->target().c_str(), previous.c_str()) == 0;
            if (linked || ::rename(out->target().c_str(), previous.c_str()) == 0)
                moved.previous = previous;
            else
                release(moved);
            out->keep_mode(info.st_mode);  // the target may be gone from its name by the move
        }
        try {
            out->commit();
            moved.identity = file_id(moved.target);
        } catch (...) {  // not moved in: its earlier file goes back as it was
            if (!moved.previous.empty()) put_back_previous(moved.previous.c_str(), moved.target.c_str());
            release(moved);
            throw;  // the destructor takes back what was moved before
        }
        moved_.push_back(std::move(moved));  // reserved: no allocation, no throw
    }
    pending_.clear();
}

void OutputSet::keep_moved_on_signal() noexcept {
    // Switched for every file while no signal puts anything back or takes a new file away, so
    // that none sees half the set switched (a pair half taken back).
    restore_blockers.fetch_add(1);
    for (; kept_through_ < moved_.size(); ++kept_through_) {
        Moved& m = moved_[kept_through_];
        kept_copies.remove_on_signal(m.slot);
        keep_on_signal(m);
        // A copy that found no slot need not be put back any more: it no longer blocks the
        // others (it stays as NAME.tmp-PID-replaced if a signal comes).
        if (m.without_slot) restore_blockers.fetch_sub(1);
        m.without_slot = false;
    }
    restore_blockers.fetch_sub(1);
}

void OutputSet::commit_so_far() {
    move_pending();
    keep_moved_on_signal();
}

void OutputSet::commit() {
    move_pending();
    done_ = true;
    // Committed: from now on a signal keeps the new files and removes the earlier ones kept
    // aside (it left them, and died as if the command had failed).
    keep_moved_on_signal();
    signal_for_tests("removing-kept");
    for (Moved& m : moved_) {
        if (!m.previous.empty() && ::unlink(m.previous.c_str()) != 0 && errno != ENOENT) try {
                warning(cat(m.path, ": written; the earlier file it replaced could not be removed: ", m.previous, " (",
                            std::strerror(errno), ")"));
            } catch (...) {  // out of memory: the files are as they should be
            }
        release(m);
    }
}

void set_signal_farewell(const std::string& line) {
    char* buffer = farewell_buffers[farewell.load() == farewell_buffers[0] ? 1 : 0];
    const size_t size = std::min(line.size(), sizeof farewell_buffers[0] - 2);
    std::memcpy(buffer, line.data(), size);
    buffer[size] = '\n';
    buffer[size + 1] = '\0';
    farewell.store(buffer);
}

void arm_signal_farewell() {
    farewell_armed.store(true);
}

void install_output_cleanup_on_signal(int signal) {
    struct sigaction old {};
    // An ignored signal stays ignored (nohup ignores SIGHUP; a background job of a
    // non-interactive shell, SIGINT), as the one who started us meant.
    if (::sigaction(signal, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) return;
    struct sigaction action {};
    action.sa_handler = remove_temporaries_and_die;
    sigemptyset(&action.sa_mask);
    sigaction(signal, &action, nullptr);
}

void install_output_cleanup_on_signals() {
    // SIGPIPE: a reader of /dev/stdout that closed early (| head). SIGUSR1 and SIGUSR2: a batch
    // scheduler's warning before it kills a job (Slurm's --signal). SIGALRM, SIGXCPU, SIGVTALRM:
    // a time limit (timeout -s, ulimit -t). Each ends the process by default.
    for (const int signal : cleanup_signals) install_output_cleanup_on_signal(signal);
}

void route_reports_to_stderr() {
    std::fflush(stdout);
    const int kept = ::fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    if (kept < 0 || ::dup2(STDERR_FILENO, STDOUT_FILENO) < 0) return;  // reports stay where they were
    stdout_descriptor.store(kept);
}

bool names_standard_output(const std::string& path) {
    return descriptor_number(resolve_links(path)) == STDOUT_FILENO;
}

std::string temporary_name_for(const std::string& target, const std::string& suffix, int attempt) {
    return cat(target, ".tmp-", ::getpid(), attempt > 0 ? cat(".", attempt) : std::string(), suffix);
}

std::optional<TemporaryName> temporary_name(const std::string& name) {
    // The first ".tmp-": a writer's own temporary inside a set's is "<target>.tmp-P<ext>.tmp-P".
    const size_t at = name.find(".tmp-");
    if (at == std::string::npos || at == 0) return std::nullopt;
    size_t end = at + 5;
    while (end < name.size() && std::isdigit((unsigned char)name[end])) ++end;
    if (end == at + 5) return std::nullopt;
    const std::string rest = name.substr(end);
    const bool replaced = rest == "-replaced";
    if (!replaced && !rest.empty() && rest.front() != '.') return std::nullopt;
    return TemporaryName{name.substr(0, at), replaced};
}

std::string other_runs_temporaries_text(std::vector<std::string> names) {
    std::sort(names.begin(), names.end());
    const size_t n = names.size();
    return cat(n, " file", n > 1 ? "s" : "", " other runs were writing or kept aside (", n > 0 ? names.front() : "",
               n > 1 ? cat(n > 2 ? ", ..., " : ", ", names.back()) : "",
               "): a killed run's, or one writing there now; once no run writes there, remove them (an earlier file ",
               "kept aside, NAME.tmp-PID-replaced, is NAME as it was before that run: rename it elsewhere to keep it)");
}

void warn_of_temporaries_beside(const std::string& command, const std::vector<NamedPath>& outputs) {
    namespace fs = std::filesystem;
    std::map<std::string, std::set<std::string>> names_in;  // folder -> the outputs' names there
    for (const NamedPath& out : outputs)
        if (!out.path.empty()) {
            const fs::path p(out.path);
            names_in[p.parent_path().empty() ? "." : p.parent_path().string()].insert(p.filename().string());
        }
    for (const auto& [folder, names] : names_in) {
        std::vector<std::string> left;
        std::error_code ec;
        for (const fs::directory_entry& entry : fs::directory_iterator(folder, ec)) {
            const std::string name = entry.path().filename().string();
            const std::optional<TemporaryName> t = temporary_name(name);
            if (t && names.count(t->base)) left.push_back(name);
        }
        if (!left.empty()) warning(cat(command, ": ", folder, " holds ", other_runs_temporaries_text(left)));
    }
}

OutputFile::OutputFile(const std::string& path, const std::string& suffix) : path_(path) {
    target_ = resolve_links(path);
    descriptor_ = descriptor_named(target_);
    if (descriptor_ >= 0) {
        // Written to a temporary file, then copied to the descriptor by commit(): opening
        // /dev/stdout anew would truncate a file the shell opened for appending (>>). Made by
        // mkstemps (a new file of ours: no link planted in a shared /tmp is followed).
        std::error_code ec;
        const std::filesystem::path dir = std::filesystem::temp_directory_path(ec);
        const std::filesystem::path in = ec ? std::filesystem::path("/tmp") : dir;
        std::string name = (in / ("infant-synthseg-XXXXXX" + suffix)).string();
        temporary_fd_ = ::mkostemps(name.data(), int(suffix.size()), O_CLOEXEC);
        if (temporary_fd_ < 0) throw_output_error(path_, errno, cat("cannot make its temporary file in ", in.string()));
        write_path_ = name;
        slot_ = register_temporary(write_path_);
        return;
    }
    struct stat info {};
    direct_ = ::stat(target_.c_str(), &info) == 0 && !S_ISREG(info.st_mode);
    ISS_INPUT(!(direct_ && S_ISDIR(info.st_mode)), path_, ": is a directory, expected a file name");
    require_not_block_device(path_, direct_ ? info.st_mode : 0);
    if (direct_) {
        write_path_ = target_;
        return;
    }
    // Made here, exclusively and without following a link: a predictable name in a shared folder
    // must not let a link planted there make us write, or later chmod, the file it names. Made
    // and registered with this thread's cleanup signals blocked: one in between left it behind.
    sigset_t cleanup, before;
    sigemptyset(&cleanup);
    for (const int signal : cleanup_signals) sigaddset(&cleanup, signal);
    ::pthread_sigmask(SIG_BLOCK, &cleanup, &before);
    int error = 0;
    for (int attempt = 0; temporary_fd_ < 0 && error == 0; ++attempt) {
        write_path_ = temporary_name_for(target_, suffix, attempt);
        temporary_fd_ = ::open(write_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (temporary_fd_ < 0 && (errno != EEXIST || attempt == 99)) error = errno;
    }
    if (error == 0) slot_ = register_temporary(write_path_);
    ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
    if (error != 0) throw_output_error(path_, error, "cannot create");
}

OutputFile::~OutputFile() { discard(); }

std::FILE* OutputFile::open_stream() {
    ISS_REQUIRE(!done_, "output ", path_, " opened after it was committed");
    std::FILE* file = nullptr;
    if (temporary_fd_ >= 0) {
        file = ::fdopen(temporary_fd_, "wb");
        if (file) temporary_fd_ = -1;
    } else {
        file = std::fopen(write_path_.c_str(), "wb");  // a device or FIFO, written in place
    }
    if (!file) throw_output_error(path_, errno, "cannot write");
    return file;
}

// Appends the file's bytes to `descriptor` where it stands (a pipe, a terminal, a file opened
// with >>); 0 or the errno of the failure. A non-blocking descriptor is waited on.
static int copy_to_descriptor(const std::string& path, int descriptor) {
    const int in = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (in < 0) return errno;
    char buffer[1 << 16];
    int err = 0;
    while (err == 0) {
        const ssize_t got = ::read(in, buffer, sizeof buffer);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            err = got < 0 ? errno : 0;
            break;
        }
        for (ssize_t done = 0; done < got && err == 0;) {
            const ssize_t put = ::write(descriptor, buffer + done, size_t(got - done));
            if (put > 0) {
                done += put;
            } else if (put < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                pollfd wait{descriptor, POLLOUT, 0};
                ::poll(&wait, 1, -1);
            } else if (put == 0 || errno != EINTR) {
                err = put == 0 ? EIO : errno;
            }
        }
    }
    ::close(in);
    return err;
}

// Gives a written file the permission bits `mode` (none when negative: a warning names the
// output `name` where the file system refuses them) and flushes it to the disk, data and mode
// (fsync); 0 or the errno of the failure. Opened before the mode changes: a write-only mode
// (0200) still lets it be read for the sync.
static int finish_file(const std::string& path, int mode, const std::string& name) {
    // Not through a link: one swapped in for the temporary would take the chmod.
    int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == EACCES)
        fd = ::open(path.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC);  // a umask without read
    if (fd < 0) return errno;
    if (mode >= 0 && ::fchmod(fd, mode_t(mode)) != 0)
        warning(cat(name, ": cannot give it the permissions of the file it replaces (", std::strerror(errno),
                    "): it has this file system's"));
    const int err = ::fsync(fd) == 0 ? 0 : errno;
    ::close(fd);
    return err == EINVAL || err == EROFS ? 0 : err;  // a file system without fsync: nothing to flush
}

// Testing hook: INFANT_FAULT_OUTPUT=N makes the N-th commit of this process fail as a full disk
// would (the target keeps its old content), so that the tests can fail each write of a checkpoint
// in turn. Unset in normal use.
static bool injected_fault() {
    static const long fault_at = [] {
        const char* v = std::getenv("INFANT_FAULT_OUTPUT");
        return v ? std::strtol(v, nullptr, 10) : 0L;
    }();
    static std::atomic<long> commits{0};
    return fault_at > 0 && ++commits == fault_at;
}

void OutputFile::commit() {
    ISS_REQUIRE(!done_, "output ", path_, " committed twice");
    signal_for_tests(path_);
    if (injected_fault()) {
        discard();
        throw_output_error(path_, EIO, "cannot write (fault injected by INFANT_FAULT_OUTPUT)");
    }
    done_ = true;
    close_temporary_descriptor();
    if (descriptor_ >= 0) {  // the temporary stays registered while it is copied
        const int err = copy_to_descriptor(write_path_, descriptor_);
        ::unlink(write_path_.c_str());
        unregister_temporary(slot_);
        if (err != 0) throw_output_error(path_, err, "cannot write");
        return;
    }
    if (direct_) {
        unregister_temporary(slot_);
        return;
    }
    // The new file takes the permissions of the one it replaces (a segmentation made private
    // stays so), and is on the disk before its name is (a crash after the rename finds it whole).
    struct stat replaced {};
    int mode = kept_mode_;
    if (mode < 0 && ::stat(target_.c_str(), &replaced) == 0 && S_ISREG(replaced.st_mode))
        mode = int(replaced.st_mode & 0777);
    if (const int err = finish_file(write_path_, mode, path_); err != 0) {
        ::unlink(write_path_.c_str());
        unregister_temporary(slot_);
        throw_output_error(path_, err, "cannot write");
    }
    // Moved, then unregistered: a signal in between finds nothing left to remove.
    const bool moved = std::rename(write_path_.c_str(), target_.c_str()) == 0;
    const int err = errno;
    if (!moved) ::unlink(write_path_.c_str());
    unregister_temporary(slot_);
    if (!moved) throw_output_error(path_, err, "cannot move the finished file into place");
}

void OutputFile::close_temporary_descriptor() noexcept {
    if (temporary_fd_ >= 0) ::close(temporary_fd_);  // not taken: written by name (an OutputSet's writer)
    temporary_fd_ = -1;
}

void OutputFile::discard() noexcept {
    if (done_) return;
    done_ = true;
    close_temporary_descriptor();
    if (!direct_) ::unlink(write_path_.c_str());
    unregister_temporary(slot_);
}

AtomicWriter::AtomicWriter(const std::string& path) : output_(path), file_(output_.open_stream()) {}

AtomicWriter::~AtomicWriter() {
    if (file_) std::fclose(file_);
}

void AtomicWriter::write(const void* data, size_t bytes) {
    ISS_REQUIRE(file_, "write after commit to ", output_.path());
    if (bytes > 0 && std::fwrite(data, 1, bytes, file_) != bytes) throw_output_error(output_.path(), errno, "write failed");
}

void AtomicWriter::commit() {
    ISS_REQUIRE(file_, "commit twice to ", output_.path());
    const bool flushed = std::fflush(file_) == 0;
    const int saved_errno = errno;
    const bool closed = std::fclose(file_) == 0;
    file_ = nullptr;
    if (!flushed || !closed) throw_output_error(output_.path(), flushed ? errno : saved_errno, "write failed");
    output_.commit();
}

namespace {

// file_identity's key for an open descriptor (/dev/stdout): the (device, inode) it holds.
std::string descriptor_identity(int descriptor) {
    struct stat info {};
    if (::fstat(descriptor, &info) == 0) return cat("inode ", info.st_dev, ":", info.st_ino);
    return cat("descriptor ", descriptor);
}

// A key that is equal for two names of one file: (device, inode) when it exists, else the
// absolute, normalised name with existing links resolved.
std::string file_identity(const std::string& path) {
    if (const FileId id = file_id(path); id.second != 0) return cat("inode ", id.first, ":", id.second);
    std::error_code ec;
    // Absolute first: "s.nii.gz" and "./s.nii.gz" (neither there yet) are one file.
    const std::filesystem::path resolved =
        std::filesystem::weakly_canonical(std::filesystem::absolute(resolve_links(path), ec), ec);
    return "name " + (ec ? path : resolved.string());
}

// The nearest ancestor of `path` that exists (the path itself if it does).
std::filesystem::path existing_ancestor(std::filesystem::path p) {
    std::error_code ec;
    p = std::filesystem::absolute(p, ec);
    while (!p.empty() && !std::filesystem::exists(p, ec) && p.has_parent_path() && p != p.parent_path())
        p = p.parent_path();
    return p;
}

// An existing output another user owns: replaced only where this user could write it (as a shell's
// > would) and, in a folder with the sticky bit (/tmp's), only where the rename is allowed, which
// was found after the work, a whole run lost.
void require_replaceable(const std::string& command, const NamedPath& out, const std::string& target,
                         const std::string& dir, const struct stat& info, const char* mode) {
    struct stat folder {};
    const bool folder_known = ::stat(dir.c_str(), &folder) == 0;
    // The user's own file, or one in the user's own folder (which the user may remove anyway: a
    // container run as root left it), or root.
    if (info.st_uid == ::geteuid() || ::geteuid() == 0 || (folder_known && folder.st_uid == ::geteuid())) return;
    const struct passwd* owner = ::getpwuid(info.st_uid);
    const std::string whose = owner ? owner->pw_name : cat("uid ", info.st_uid);
    ISS_INPUT(::access(target.c_str(), W_OK) == 0, command, ": ", out.option, " ", out.path, " belongs to ", whose,
              " (mode ", mode, ") and this user cannot write it: not replaced; choose another name, or ask ", whose);
    ISS_INPUT(!folder_known || !(folder.st_mode & S_ISVTX), command, ": ", out.option, " ", out.path, " belongs to ",
              whose, ", in a folder where only a file's owner may replace it (sticky, as /tmp): not replaced; choose ",
              "another name, or ask ", whose);
}

// The kernel's fs.protected_symlinks rule for one of an output's links, which our own following
// of them (the target replaced, the link kept) bypassed: in a sticky folder all may write (/tmp),
// a link is followed only when this user or the folder's owner made it. Another user's link
// there, to a file of ours, had that file replaced by the output.
void require_followable_link(const std::string& command, const NamedPath& out, const std::filesystem::path& link) {
    struct stat made {
    }, folder{};
    const std::filesystem::path dir = link.parent_path().empty() ? std::filesystem::path(".") : link.parent_path();
    if (::lstat(link.c_str(), &made) != 0 || ::stat(dir.c_str(), &folder) != 0) return;
    const bool shared_sticky = (folder.st_mode & S_ISVTX) && (folder.st_mode & S_IWOTH);
    if (!shared_sticky || made.st_uid == ::geteuid() || made.st_uid == folder.st_uid) return;
    const struct passwd* maker = ::getpwuid(made.st_uid);
    throw InputError(cat(command, ": ", out.option, " ", out.path, ": ", link.string(), " is a link ",
                         maker ? maker->pw_name : cat("uid ", made.st_uid),
                         " made in a folder all may write (sticky, as /tmp): not followed, as the kernel follows ",
                         "none such; remove it, or choose another name"));
}

// A name the file system takes, whose temporaries it would not: NAME.tmp-PID.N.nii.gz, and inside
// it a writer's own (.tmp-PID.nii.gz again). Found after the work, it lost a whole run.
void require_room_for_temporaries(const std::string& command, const NamedPath& out, const std::string& target) {
    const std::string name = std::filesystem::path(target).filename().string();
    const std::string suffix = output_suffix(target);
    // The longest: a set's NAME.tmp-PID.N<ending>, then its writer's own .tmp-PID.N after it (a
    // pid of up to 7 digits, ".N" of a later attempt up to ".99": 37 bytes for .nii.gz).
    const size_t added = 2 * (std::strlen(".tmp-") + 7 + 3) + suffix.size();
    // The file system's own limit (255 on most; 143 on eCryptfs), where its folder tells it.
    const long limit = ::pathconf(existing_ancestor(std::filesystem::path(target).parent_path().empty()
                                                        ? std::filesystem::path(".")
                                                        : std::filesystem::path(target).parent_path())
                                      .c_str(),
                                  _PC_NAME_MAX);
    const size_t name_max = limit > 0 ? size_t(limit) : 255;
    // The whole path too (PATH_MAX, 4096 on Linux): a folder path near it failed after the work.
    ISS_INPUT(target.size() + added < PATH_MAX, command, ": ", out.option, " ", out.path, ": its path of ",
              target.size(), " bytes leaves no room for the temporary names it is written under (at most ",
              PATH_MAX - 1 - added, " bytes)");
    ISS_INPUT(name.size() + added <= name_max, command, ": ", out.option, " ", out.path, ": its name of ", name.size(),
              " bytes leaves no room for the temporary names it is written under (at most ",
              name_max > added ? name_max - added : 0, " bytes)");
}

}  // namespace

void check_outputs(const std::string& command, const std::vector<NamedPath>& inputs,
                   const std::vector<NamedPath>& outputs, const std::vector<std::string>& will_create) {
    namespace fs = std::filesystem;
    struct Seen {
        const NamedPath* named;
        bool input;
    };
    std::map<std::string, Seen> seen;  // by file identity (synth checks thousands of samples)
    std::deque<NamedPath> pair_data;   // a deque: `seen` points into it
    for (const NamedPath& in : inputs) {
        if (in.path.empty()) continue;
        seen.emplace(file_identity(in.path), Seen{&in, true});
        // A pair's voxels are read from its .img: overwriting that loses the input as surely.
        if (!is_header_only_nifti(in.path)) continue;
        std::error_code ec;
        for (const std::string& data : pair_data_files(in.path))
            if (fs::exists(data, ec)) {
                pair_data.push_back({cat(in.path, " (its data file ", data, ")"), in.option});
                seen.emplace(file_identity(data), Seen{&pair_data.back(), true});
            }
    }
    for (const NamedPath& out : outputs) {
        if (out.path.empty()) continue;
        const std::string file_name = fs::path(out.path).filename().string();
        ISS_INPUT(!file_name.empty() && file_name != "." && file_name != "..", command, ": ", out.option, " ", out.path,
                  ": expected a file name, not a folder");
        // Many tools read "-" as standard output: a file of that name was written instead.
        ISS_INPUT(out.path != "-", command, ": ", out.option,
                  " -: for standard output give /dev/stdout (a file named '-' as ./-)");
        const std::string target =
            resolve_links(out.path, [&](const fs::path& link) { require_followable_link(command, out, link); });
        const int descriptor = descriptor_named(target);
        const std::string id = descriptor >= 0 ? descriptor_identity(descriptor) : file_identity(out.path);
        const auto [at, fresh] = seen.emplace(id, Seen{&out, false});
        const Seen& other = at->second;
        if (!fresh)
            throw InputError(cat(command, ": ", out.option, " ", out.path, " is the same file as ",
                                 other.input ? "the input " : "the output ", other.named->option, " ",
                                 other.named->path, other.input ? ": it would be overwritten" : ""));
        // A descriptor (/dev/stdout) is open already: for writing, or the whole run would be
        // wasted on an output it cannot write.
        if (descriptor >= 0) {
            const int flags = ::fcntl(descriptor, F_GETFL);
            ISS_INPUT(flags >= 0 && (flags & O_ACCMODE) != O_RDONLY, command, ": ", out.option, " ", out.path,
                      ": descriptor ", descriptor_number(target),
                      flags < 0 ? " is not open" : " is open for reading only");
            continue;
        }
        // Writable: the resolved target's directory, or the nearest existing ancestor of a
        // directory the command will make.
        struct stat info {};
        const bool exists = ::stat(target.c_str(), &info) == 0;
        ISS_INPUT(!(exists && S_ISDIR(info.st_mode)), command, ": ", out.option, " ", out.path,
                  " is a directory, expected a file name");
        require_not_block_device(out.path, exists ? info.st_mode : 0);
        ISS_INPUT(!(exists && S_ISSOCK(info.st_mode)), command, ": ", out.option, " ", out.path,
                  " is a socket, expected a file name");
        // Made read-only by its owner, as a result to keep (root included, whom access() lets write).
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", unsigned(info.st_mode & 07777));
        ISS_INPUT(!(exists && S_ISREG(info.st_mode) && (info.st_mode & 0222) == 0), command, ": ", out.option, " ",
                  out.path, " is read-only (mode ", mode,
                  "): not replaced; make it writable or remove it to write it again");
        fs::path dir = fs::path(target).parent_path();
        if (dir.empty()) dir = ".";
        if (exists && S_ISREG(info.st_mode)) require_replaceable(command, out, target, dir.string(), info, mode);
        if (!exists || S_ISREG(info.st_mode)) require_room_for_temporaries(command, out, target);
        std::error_code ec;
        // "segs/" names the folder "segs" names (a path compares its trailing empty part).
        auto folder_named = [&](const fs::path& p) {
            const fs::path c = fs::weakly_canonical(p, ec);
            return c.has_filename() ? c : c.parent_path();
        };
        const bool created_later = std::any_of(will_create.begin(), will_create.end(), [&](const std::string& d) {
            return folder_named(d) == folder_named(dir);
        });
        if (exists && !S_ISREG(info.st_mode)) {
            ISS_INPUT(::access(target.c_str(), W_OK) == 0, command, ": ", out.option, " ", out.path,
                      ": cannot write: ", std::strerror(errno));
        } else {
            // The folder, or where it would be made: its nearest existing ancestor.
            const fs::path ancestor = existing_ancestor(dir);
            ISS_INPUT(fs::is_directory(ancestor, ec), command, ": ", out.option, " ", out.path, ": ", ancestor.string(),
                      " is not a directory");
            const bool there = fs::equivalent(ancestor, dir, ec);
            ISS_INPUT(there || created_later, command, ": ", out.option, " ", out.path, ": no such directory ",
                      dir.string());
            ISS_INPUT(::access(ancestor.c_str(), W_OK) == 0, command, ": ", out.option, " ", out.path,
                      there ? ": cannot write in " : ": cannot create its directory under ", ancestor.string(), ": ",
                      std::strerror(errno));
        }
    }
}

int64_t require_regular_file(const std::string& path) {
    struct stat info {};
    ISS_INPUT(::stat(path.c_str(), &info) == 0, path, ": cannot open: ", std::strerror(errno));
    ISS_INPUT(!S_ISDIR(info.st_mode), path, ": is a directory, expected a file");
    ISS_INPUT(S_ISREG(info.st_mode), path, ": is not a regular file (a FIFO or a device?), expected a file");
    return int64_t(info.st_size);
}

std::string read_text_file(const std::string& path) {
    require_regular_file(path);
    std::ifstream in(path, std::ios::binary);
    ISS_INPUT(in, path, ": cannot open: ", std::strerror(errno));
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ISS_INPUT(!in.bad(), path, ": read failed: ", std::strerror(errno));
    return text;
}

std::string file_prefix(const std::string& path, size_t count) {
    std::string bytes(count, '\0');
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return "";
    bytes.resize(std::fread(bytes.data(), 1, count, f));
    std::fclose(f);
    return bytes;
}

std::vector<std::string> volume_files(const std::string& path) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_directory(path, ec)) {
        require_regular_file(path);
        return {path};
    }
    std::vector<std::string> files;
    for (const fs::directory_entry& entry : fs::directory_iterator(path, ec)) {
        const std::string name = entry.path().filename().string();
        // Hidden files are not scans (macOS writes ._NAME beside every file it copies).
        if (name.front() == '.' || !is_volume_name(name) || !entry.is_regular_file(ec)) continue;
        if (is_temporary_output(name)) {  // a killed run's (SIGKILL): its name ends in .nii.gz too
            warning(cat(entry.path().string(), ": an unfinished output of a run that was killed: not read"));
            continue;
        }
        files.push_back(entry.path().string());
    }
    ISS_INPUT(!ec, path, ": cannot list: ", ec.message());
    ISS_INPUT(!files.empty(), path, ": no volume files (*.nii, *.nii.gz, *.hdr, *.mgz, *.mgh) in this directory");
    std::sort(files.begin(), files.end());
    return files;
}

// `path` without "." or ".." parts or a trailing slash, so that folder names compare equal.
static std::filesystem::path normal_path(const std::string& path) {
    std::filesystem::path p = std::filesystem::path(path).lexically_normal();
    return p.has_filename() ? p : p.parent_path();
}

// A folder that mkdir -p makes as written: ".." only at its start (../new is made where the
// kernel resolves it; newdir/.. would be made as "." and written through the missing newdir, and
// link/.. is the link target's parent, not the folder lexically_normal gives) and no broken link
// along it (its name exists, as nothing).
static bool makeable_as_written(const std::filesystem::path& folder) {
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::path prefix;
    bool at_start = true;  // only "/", "." and ".." so far
    for (const fs::path& part : folder) {
        if (part == "..") {
            if (!at_start) return false;
        } else if (part != "." && part != folder.root_directory() && !part.empty()) {
            at_start = false;
        }
        prefix /= part;
        if (fs::is_symlink(prefix, ec) && !fs::exists(prefix, ec)) return false;
    }
    return true;
}

void OutputDirectories::make(const std::string& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::is_directory(dir, ec)) return;
    ISS_INPUT(!fs::exists(dir, ec), dir, ": exists and is not a directory");
    // The levels that do not exist yet, outermost first, each made here: only those this
    // process's mkdir made are its to take back (another process may make one meanwhile).
    std::vector<fs::path> missing;
    for (fs::path p = normal_path(dir); p.has_filename() && !fs::exists(p, ec); p = p.parent_path())
        missing.insert(missing.begin(), p);
    for (const fs::path& p : missing) {
        const bool made = fs::create_directory(p, ec);
        // A full disk or an I/O error is no bad input (exit 1); a missing permission is.
        if (ec) throw_output_error(dir, ec.value(), "cannot create directory");
        if (!made) continue;
        const FileId id = file_id(p.string());
        made_.push_back({p.string(), id, made_folders.claim(p.string(), "", id)});
    }
    ISS_INPUT(fs::is_directory(dir, ec), dir, ": cannot create directory",
              makeable_as_written(dir) ? "" : ": a folder its '..' steps out of does not exist");
}

std::vector<std::string> folders_of(const std::vector<NamedPath>& outputs) {
    std::vector<std::string> folders;
    for (const NamedPath& out : outputs) {
        const std::filesystem::path folder = std::filesystem::path(out.path).parent_path();
        if (out.path.empty() || folder.empty() || !makeable_as_written(folder)) continue;  // check_outputs says
        if (std::find(folders.begin(), folders.end(), folder.string()) == folders.end())
            folders.push_back(folder.string());
    }
    return folders;
}

void OutputDirectories::make_for(const std::vector<NamedPath>& outputs) {
    for (const std::string& folder : folders_of(outputs)) make(folder);
}

OutputDirectories::~OutputDirectories() {
    if (std::uncaught_exceptions() > exceptions_at_start_)
        take_back();
    else
        keep();  // on success the folders stay
}

void OutputDirectories::keep() {
    for (const Made& made : made_) made_folders.free(made.slot);
    made_.clear();
}

void OutputDirectories::take_back() {
    namespace fs = std::filesystem;
    for (auto made = made_.rbegin(); made != made_.rend(); ++made) {
        const std::string* dir = &made->path;
        if (file_id(*dir) != made->id) continue;  // moved or removed since: its name holds another's
        std::vector<fs::path> own;  // the command's own files in this folder
        for (const std::string& file : own_files_)
            if (normal_path(file).parent_path() == fs::path(*dir)) own.push_back(normal_path(file).filename());
        // They go only with a folder that holds nothing else.
        std::error_code ec;
        bool only_own = true;
        fs::directory_iterator entry(*dir, ec);
        for (; !ec && entry != fs::directory_iterator(); entry.increment(ec))  // no throw here
            only_own = only_own && std::count(own.begin(), own.end(), entry->path().filename()) > 0;
        if (ec) continue;
        if (only_own)
            for (const fs::path& name : own) fs::remove(fs::path(*dir) / name, ec);
        fs::remove(*dir, ec);  // removes nothing unless empty
    }
    keep();  // what is left stays
}

namespace {

// The lock file `path` in `dir` (DirectoryLock's, SharedFolderLock's), made where missing: opened
// read-write, or read-only where it is another user's (locking needs no write access); never
// through a link, and only a regular file, as a lock file is written (a pid, a mode) and a link
// would make that write another file. Its descriptor, whether it is `writable`, and its `info`.
int open_lock_file(const std::string& path, const std::string& dir, bool& writable, struct stat& info) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0666);
    writable = fd >= 0;
    if (fd < 0 && errno == EACCES) fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    ISS_INPUT(fd >= 0 || errno != ELOOP, path, ": is a symbolic link, not a lock file: remove it once no run uses ",
              dir);
    if (fd < 0) throw_output_error(path, errno, "cannot open the lock file");
    if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
        ::close(fd);
        throw InputError(cat(path, ": is not a lock file (not a regular file): remove it once no run uses ", dir));
    }
    return fd;
}

// "DIR: WHAT (process PID, lock PATH)", the holder's id as its lock file `fd` says it.
std::string held_message(const std::string& dir, const std::string& what, int fd, const std::string& path) {
    char holder[32] = {};
    const ssize_t n = ::pread(fd, holder, sizeof holder - 1, 0);
    // A process id, or "?" (a lock not written: one of two names of a file holds the other's text).
    const bool pid = n > 0 && std::all_of(holder, holder + n, [](char c) { return c >= '0' && c <= '9'; });
    return cat(dir, ": ", what, " (process ", pid ? std::string(holder, size_t(n)) : "?", ", lock ", path, ")");
}

}  // namespace

DirectoryLock::DirectoryLock(const std::string& dir, const std::string& name, const std::string& what)
    : dir_(dir), path_((std::filesystem::path(dir) / name).string()) {
    const std::string& path = path_;
    bool writable = false;
    struct stat info {};
    fd_ = open_lock_file(path, dir, writable, info);  // the umask decides who shares it
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
        const int error = errno;
        // A file system without locks (NFS without lockd), or NFS's emulation refusing a file
        // opened read-only.
        if (error == ENOLCK || error == EOPNOTSUPP || (error == EBADF && !writable)) {
            warning(cat(dir, ": cannot be locked here (", std::strerror(error), "): make sure no other run uses it"));
            return;
        }
        const std::string message = error == EWOULDBLOCK ? held_message(dir, what, fd_, path) : "";
        ::close(fd_);
        fd_ = -1;
        if (error == EWOULDBLOCK) throw InputError(message);
        throw Error(cat(path, ": cannot lock: ", std::strerror(error)));
    }
    const std::string pid = std::to_string(::getpid());
    // Written only where the lock is a file of its own: a second name (cp -al of a model folder, or
    // one made on purpose) would have the other file truncated. It is locked all the same.
    if (writable && info.st_nlink == 1 &&
        (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != ssize_t(pid.size())))
        warning(cat(path, ": could not write this process's id into the lock file"));
}

void DirectoryLock::require_not_held(const std::string& dir, const std::string& name, const std::string& what) {
    const std::string path = (std::filesystem::path(dir) / name).string();
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    const bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    const std::string message = held ? held_message(dir, what, fd, path) : "";
    ::close(fd);  // releases a shared lock taken
    if (held) throw InputError(message);
}

DirectoryLock::~DirectoryLock() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the lock
}

void DirectoryLock::require_in_place() const {
    struct stat held {};
    if (fd_ < 0 || ::fstat(fd_, &held) != 0) return;  // nothing held to compare with
    const FileId named = file_id(path_);
    if (named == FileId{uint64_t(held.st_dev), uint64_t(held.st_ino)}) return;
    throw Error(cat(dir_, ": moved or removed while this run held it (", path_,
                    named.second != 0 ? " is another lock now" : " is gone", ")"));
}

SharedFolderLock::SharedFolderLock(const std::string& dir, const std::string& prefix, const std::string& key,
                                   const std::string& refusal)
    : path_((std::filesystem::path(dir) / cat(prefix, key, ".lock")).string()) {
    // Held on the file the name still holds: a run ending removes its kind's file, and one that
    // opened it just before would hold a lock nobody sees.
    for (;;) {
        bool writable = false;
        struct stat held {};
        fd_ = open_lock_file(path_, dir, writable, held);
        // Readable by every user whatever the umask: another user's run checks it (a 0600 lock was
        // skipped, and that run let in). Not through a second name: another file's mode would change.
        if (held.st_uid == ::geteuid() && held.st_nlink == 1) ::fchmod(fd_, 0644);
        // Not blocking: another run's check or end holds it exclusively for a moment only, and
        // anything longer (a process holding it on purpose) is said, not waited for without end.
        int locked = -1, error = 0;
        for (int tries = 0; tries < 200; ++tries) {  // 10 s in all
            locked = ::flock(fd_, LOCK_SH | LOCK_NB);
            error = locked == 0 ? 0 : errno;
            if (locked == 0 || error != EWOULDBLOCK) break;
            const timespec pause{0, 50000000};
            ::nanosleep(&pause, nullptr);
        }
        if (locked != 0) {
            ::close(fd_);
            fd_ = -1;
            if (error == ENOLCK || error == EOPNOTSUPP) {  // NFS without lockd
                warning(cat(dir, ": cannot be locked here (", std::strerror(error),
                            "): make sure no other run writes there"));
                return;
            }
            if (error == EWOULDBLOCK)
                throw InputError(cat(path_, ": held exclusively by another process for 10 s, as no run of ours ",
                                     "holds it: remove it once no run writes in ", dir));
            throw Error(cat(path_, ": cannot lock: ", std::strerror(error)));
        }
        if (file_id(path_) == FileId{uint64_t(held.st_dev), uint64_t(held.st_ino)}) break;
        ::close(fd_);
    }
    const int slot = shared_locks.claim(path_);
    if (slot >= 0) shared_lock_fd_plus_1[slot].store(fd_ + 1);
    slot_ = slot;
    const std::string own = std::filesystem::path(path_).filename().string();
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
        const std::string name = entry.path().filename().string();
        if (name == own || name.rfind(prefix, 0) != 0 || !ends_with(name, ".lock")) continue;
        const std::string other_path = entry.path().string();
        struct stat named {};
        if (::lstat(other_path.c_str(), &named) != 0 || !S_ISREG(named.st_mode))
            continue;  // a link, a folder: no lock of ours
        // Read-write where it may (NFS takes an exclusive lock on such a descriptor only).
        int other = ::open(other_path.c_str(), O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (other < 0 && errno == EACCES)
            other = ::open(other_path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (other < 0 && errno == ENOENT) continue;  // its run ended meanwhile
        if (other < 0) {
            const int error = errno;
            release();
            throw InputError(cat(other_path, ": another run's lock, which this user cannot check (",
                                 std::strerror(error), "): ask its owner, or remove it once no run writes there"));
        }
        struct stat info {};
        if (::fstat(other, &info) != 0 || !S_ISREG(info.st_mode)) {  // no lock of ours
            ::close(other);
            continue;
        }
        const bool locked = ::flock(other, LOCK_EX | LOCK_NB) == 0;
        const int error = errno;
        ::close(other);  // a lock taken here goes with it
        if (locked) continue;
        if (error != EWOULDBLOCK) {  // NFS's emulation, a file opened read-only: cannot tell
            warning(cat(other_path, ": cannot tell whether another run holds it (", std::strerror(error),
                        "): make sure no run of other samples writes in ", dir));
            continue;
        }
        release();
        throw InputError(cat(dir, ": ", refusal, " (lock ", other_path, ")"));
    }
}

SharedFolderLock::~SharedFolderLock() {
    release();
}

void SharedFolderLock::release() noexcept {
    if (fd_ < 0) return;
    if (slot_ >= 0) {
        shared_lock_fd_plus_1[slot_].store(0);
        shared_locks.free(slot_);
        slot_ = -1;
    }
    // The last of its kind removes the file (a run of its kind waiting for it checks the name again).
    if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) ::unlink(path_.c_str());
    ::close(fd_);
    fd_ = -1;
}

bool is_temporary_output(const std::string& name) {
    const std::optional<TemporaryName> t = temporary_name(name);
    return t && !t->replaced && is_volume_name(t->base);
}

bool is_mgh_name(const std::string& path) {
    const std::string ending = volume_ending(path);
    return ending == ".mgz" || ending == ".mgh";
}

bool is_volume_name(const std::string& path) {
    return !volume_ending(path).empty();
}

bool is_output_volume_name(const std::string& path) {
    return is_volume_name(path) && volume_ending(path) != ".hdr";
}

std::string volume_ending(const std::string& path) {
    for (const char* ext : {".nii.gz", ".nii", ".hdr", ".mgz", ".mgh"})
        if (ends_with_ignoring_case(path, ext)) return ext;
    return "";
}

std::string volume_stem(const std::string& path) {
    const std::string name = std::filesystem::path(path).filename().string();
    return name.substr(0, name.size() - volume_ending(name).size());
}

std::map<std::string, std::string> volume_files_by_subject(const std::string& folder,
                                                           const std::vector<std::string>& files) {
    std::map<std::string, std::string> by_subject;
    for (const std::string& f : files) {
        const auto [it, added] = by_subject.emplace(volume_stem(f), f);
        ISS_INPUT(added, folder, ": ", std::filesystem::path(it->second).filename().string(), " and ",
                  std::filesystem::path(f).filename().string(), " are one subject's: keep one");
    }
    return by_subject;
}

void require_one_file_per_subject(const std::vector<std::string>& files) {
    std::map<std::string, std::vector<std::string>> by_folder;
    for (const std::string& f : files) by_folder[std::filesystem::path(f).parent_path().string()].push_back(f);
    for (const auto& [folder, in_folder] : by_folder) volume_files_by_subject(folder, in_folder);
}

bool ends_with(const std::string& text, const std::string& suffix) {
    return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

bool is_header_only_nifti(const std::string& path) {
    if (ends_with_ignoring_case(path, ".hdr") || ends_with_ignoring_case(path, ".hdr.gz")) return true;
    if (!ends_with_ignoring_case(path, ".nii")) return false;  // a .nii.gz would need inflating: none seen
    struct stat info {};
    if (::stat(path.c_str(), &info) != 0 || !S_ISREG(info.st_mode)) return false;  // a FIFO is refused, not read
    const std::string head = file_prefix(path, 348);
    return (head.size() == 348 && head.compare(344, 4, std::string("ni1\0", 4)) == 0) ||
           (head.size() >= 8 && head.compare(4, 4, std::string("ni2\0", 4)) == 0);
}

std::vector<std::string> pair_data_files(const std::string& header_path) {
    std::string base = header_path;
    if (ends_with_ignoring_case(base, ".gz")) base.resize(base.size() - 3);
    for (const char* ext : {".hdr", ".nii", ".img"})
        if (ends_with_ignoring_case(base, ext)) {
            base.resize(base.size() - 4);
            break;
        }
    std::vector<std::string> files;
    for (const char* ext : {".img", ".img.gz", ".IMG", ".IMG.gz", ".IMG.GZ"}) files.push_back(base + ext);
    return files;
}

bool ends_with_ignoring_case(const std::string& text, const std::string& suffix) {
    if (text.size() < suffix.size()) return false;
    const size_t from = text.size() - suffix.size();
    for (size_t n = 0; n < suffix.size(); ++n)
        if (std::tolower((unsigned char)text[from + n]) != std::tolower((unsigned char)suffix[n])) return false;
    return true;
}

}  // namespace iss
