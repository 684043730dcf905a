// Small file helpers shared by the writers: outputs go to a temporary name beside the target
// and are renamed only when complete, so a failed write never leaves a partial file.
#pragma once

#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace iss {

// An output file written under a temporary name beside its target and renamed into place by
// commit(); destroyed uncommitted, it removes the temporary file, so a failed write leaves
// nothing behind. Nothing is ever renamed over what is not a regular file:
//   - a symbolic link is followed: the file it points to is replaced, the link stays;
//   - a target that exists and is not a regular file (a device such as /dev/null, a FIFO) is
//     written directly, never replaced.
// Temporary names are registered while they exist, so that a command stopped by a signal
// removes them (install_output_cleanup_on_signals).
// Errors name the file the user asked for: a path that cannot be created (no such directory, no
// permission, read-only file system) is an InputError (exit 2); a failure while writing or
// renaming (disk full, I/O error) is an iss::Error (exit 1), with the system's reason.
class OutputFile {
public:
    // `suffix` is appended to the temporary name (writers that pick gzip from the ending).
    explicit OutputFile(const std::string& path, const std::string& suffix = "");
    ~OutputFile();
    OutputFile(const OutputFile&) = delete;
    OutputFile& operator=(const OutputFile&) = delete;

    const std::string& path() const { return path_; }              // as the user named it
    const std::string& write_path() const { return write_path_; }  // where the bytes go
    const std::string& target() const { return target_; }          // what commit() replaces
    // A device or FIFO, written in place. Not a descriptor of this process (/dev/stdout,
    // /dev/fd/N): that is written to a temporary file, then copied to it by commit().
    bool direct() const { return direct_; }
    // The stream to write the bytes to, which the caller closes (once): the temporary file, made
    // by the constructor as a new file (nothing planted at its name, a link or another run's file,
    // is followed or truncated), or the device or FIFO written in place.
    std::FILE* open_stream();
    // The permission bits the file gets when commit() replaces one (by default those of the
    // target there then); for a set that has moved the target aside before.
    void keep_mode(unsigned mode) { kept_mode_ = int(mode & 0777); }
    void commit();
    // Removes what was written (uncommitted); no-op once committed or in direct mode.
    void discard() noexcept;

private:
    std::string path_, target_, write_path_;
    bool direct_ = false, done_ = false;
    int kept_mode_ = -1;   // keep_mode's bits, -1: the target's
    int slot_ = -1;        // in the registry of temporaries
    int descriptor_ = -1;  // the descriptor the path names, or -1
    int temporary_fd_ = -1;  // the temporary file, until open_stream() takes it

    void close_temporary_descriptor() noexcept;
};

// Throws for a failed output operation on `path` with errno `err`: InputError when the path
// cannot be created (ENOENT, ENOTDIR, EACCES, EPERM, EROFS, EISDIR, ENAMETOOLONG, ELOOP),
// iss::Error otherwise ("<path>: <what>: <reason>").
[[noreturn]] void throw_output_error(const std::string& path, int err, const std::string& what);

// A file's or folder's (device, inode), to tell what a name holds now from what it held: {0, 0}
// where the name holds nothing.
using FileId = std::pair<uint64_t, uint64_t>;
FileId file_id(const std::string& path) noexcept;

// Takes back an output this command committed, when a later output of the same set failed (all
// or nothing): the file a link led to is removed, never the link itself, and a target that is
// not a regular file (a device, a FIFO: OutputFile wrote it directly) is left alone.
// With `identity` (as the file was moved in): only while the path still names that file (its
// folder moved away and another made under its name holds another's file).
void remove_committed_output(const std::string& path, const FileId* identity = nullptr) noexcept;

// An advisory lock (flock) on DIR/NAME, created when missing, held until destruction or the
// process's end (a killed process releases it): for a directory two runs must not write at
// once. The holder writes its pid into the file. InputError naming the directory and the
// holder's pid when another process holds it.
class DirectoryLock {
public:
    // The InputError the constructor throws where another process holds DIR/NAME now, without
    // taking the lock or making the file: for a check that must come before the lock is taken.
    static void require_not_held(const std::string& dir, const std::string& name, const std::string& what);

    DirectoryLock(const std::string& dir, const std::string& name, const std::string& what);
    ~DirectoryLock();
    DirectoryLock(const DirectoryLock&) = delete;
    DirectoryLock& operator=(const DirectoryLock&) = delete;

    // Error unless DIR/NAME is still the file this lock holds: a directory moved or removed while
    // a run holds it would otherwise take the run's later writes under its old name, into
    // whatever directory has that name now (another run's, locked by that run).
    void require_in_place() const;

private:
    std::string dir_, path_;
    int fd_ = -1;
};

// A folder that runs of one kind may write side by side, and runs of another kind may not: a run
// holds DIR/<prefix><key>.lock shared, its `key` naming what it writes (synth's samples: one
// configuration, seed and label maps write sample N the same, so --first ranges may run at once),
// and finds every other key's lock free, or is refused (InputError "DIR: `refusal` (lock NAME)").
// Its lock file is removed when no run of its kind holds it any more.
class SharedFolderLock {
public:
    SharedFolderLock(const std::string& dir, const std::string& prefix, const std::string& key,
                     const std::string& refusal);
    ~SharedFolderLock();
    SharedFolderLock(const SharedFolderLock&) = delete;
    SharedFolderLock& operator=(const SharedFolderLock&) = delete;

private:
    void release() noexcept;

    std::string path_;
    int fd_ = -1;
    int slot_ = -1;  // in the registry a signal's cleanup reads
};

// The outputs of one piece of work, all or nothing. write() runs a writer on a temporary name
// beside each output (an OutputFile keeping the output's ending, from which writers pick gzip);
// commit() then moves them all into place. When a move fails, or the set is destroyed before
// commit() (the command failed), every output it has moved is taken back: a file it replaced
// is put back (kept meanwhile under a second name, a hard link), a new one removed
// (remove_committed_output); its temporaries are removed. A long run commits as it goes with
// commit_so_far() (synth's samples, pair by pair), still all or nothing until commit().
// A failure's message names the output as the user named it, not its temporary.
class OutputSet {
public:
    OutputSet() = default;
    ~OutputSet();
    OutputSet(const OutputSet&) = delete;
    OutputSet& operator=(const OutputSet&) = delete;

    // `write` is given the path to write to. An empty `path` (an optional output not asked
    // for) is skipped.
    void write(const std::string& path, const std::function<void(const std::string&)>& write);
    // Moves the outputs written so far into place; they are still taken back if the set is
    // destroyed before commit() (a failure), but a signal from now on takes back only the moves
    // in progress (synth's samples done stay, each pair whole).
    void commit_so_far();
    // Moves the rest into place and keeps every output of the set; a signal during the moves
    // takes the whole set back.
    void commit();

private:
    // Moves the pending outputs into place, each new one registered for the signal handler
    // until keep_on_signal() or release().
    void move_pending();
    struct Moved {
        std::string path;      // as the user named it
        std::string target;    // the file it replaced or created
        std::string previous;  // the replaced file's content, kept here until commit(); "" if new
        int slot = -1;         // `previous` in the signal's registry of kept copies
        bool without_slot = false;  // that registry was full: a signal then puts nothing back
        int new_slot = -1;          // a new output (no earlier file) in the signal's registry of them
        bool new_without_slot = false;  // that registry was full: a signal then removes none
        // The file as it was moved in (device, inode): taken back only while its name still
        // names it. (0, 0): not known, taken back by name.
        FileId identity{0, 0};
    };
    static void release(Moved& m) noexcept;
    static void keep_on_signal(Moved& m) noexcept;
    // The moves done so far stay on a signal: kept copies removed, new files kept.
    void keep_moved_on_signal() noexcept;
    std::vector<std::unique_ptr<OutputFile>> pending_;
    std::vector<Moved> moved_;
    size_t kept_through_ = 0;  // moved_[0, kept_through_) stay on a signal already
    bool done_ = false;
};

// SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2, SIGALRM, SIGXCPU and SIGVTALRM
// remove every registered temporary output, put back the earlier files the sets in progress had
// replaced, remove the new ones they had moved into place (those their names still hold) and the
// folders the command made that are empty then, as a failure does, then end the process as the
// signal would. A signal that was ignored stays ignored (nohup). Commands that stop at a safe point
// (train, synth) install their own handlers over it for the stop signals (install_stop_handlers,
// bin/cli.h) once their inputs are read. The one signal's handler alone (async-signal-safe: a stop handler installs
// it for the next signal).
void install_output_cleanup_on_signals();
void install_output_cleanup_on_signal(int signal);
// A line the handler above writes to stderr before it ends the process, once
// arm_signal_farewell has run: what the run leaves (train's checkpoint, synth's samples, a
// predict folder's scans; each ended without a word). train and synth arm it from their stop
// handler, so that the second signal says it; predict on a folder arms it at once, its first
// signal being the one that ends it. Set from one thread; none by default. arm_signal_farewell
// is async-signal-safe.
void set_signal_farewell(const std::string& line);
void arm_signal_farewell();

// Tests only: called with each point INFANT_SIGNAL_AT can name (file_util.cpp), before that hook's
// signal, to change the files at that moment; empty to stop.
void set_commit_point_hook_for_tests(std::function<void(const std::string&)> hook);

// For a command one of whose outputs is its standard output (`--out /dev/stdout`): from now on
// its report lines (printf) go to stderr, and an output naming standard output is written to the
// descriptor that was standard output, so that the data stays clean.
void route_reports_to_stderr();
// `path` names this process's standard output (/dev/stdout, /dev/fd/1, /proc/self/fd/1, or a
// link to one of them).
bool names_standard_output(const std::string& path);

// Our temporaries beside an output: "<target>.tmp-<pid><suffix>" (suffix: the ending a writer
// needs, or "-replaced" for an earlier file kept aside until its set is done); "<target>.tmp-
// <pid>.<attempt><suffix>" for a later attempt, where the name is taken (another container's
// run of the same pid, or a file planted there).
std::string temporary_name_for(const std::string& target, const std::string& suffix, int attempt = 0);
struct TemporaryName {
    std::string base;       // the output's name
    bool replaced = false;  // an earlier file kept aside, not one being written
};
// What a file name of that form says, or nothing for any other name.
std::optional<TemporaryName> temporary_name(const std::string& name);

// A binary output file written through OutputFile. Every write is checked; commit() closes and
// renames; destruction without commit() removes the temporary file.
class AtomicWriter {
public:
    explicit AtomicWriter(const std::string& path);
    ~AtomicWriter();
    AtomicWriter(const AtomicWriter&) = delete;
    AtomicWriter& operator=(const AtomicWriter&) = delete;

    void write(const void* data, size_t bytes);
    void commit();

private:
    OutputFile output_;
    FILE* file_ = nullptr;
};

// A file a command names, with the option that named it (for messages).
struct NamedPath {
    std::string path;
    std::string option;  // e.g. "--o"
};

// Of the temporaries `names` other runs left (NAME.tmp-PID...: being written, or an earlier file
// kept aside): "N files other runs were writing or kept aside (first, ..., last): ..." and what
// to do with them. They are named, never removed: a process id cannot tell a killed run from one
// writing there now on another host or in another container.
std::string other_runs_temporaries_text(std::vector<std::string> names);
// Warns, as `command`, of the temporaries other runs left beside `outputs` (those of each output's
// own name; empty paths skipped): a run killed outright (the out-of-memory killer, SIGKILL)
// leaves them, a posteriors file's hundreds of MB, and a rerun wrote beside them unsaid.
void warn_of_temporaries_beside(const std::string& command, const std::vector<NamedPath>& outputs);

// Follows symbolic links (chains too, relative ones from their own directory) to the path that
// a write should replace; a dangling link gives the file it names. It stops at a descriptor's
// name (/dev/stdout, /proc/self/fd/N). `at_each_link`, when given, is called with each link
// before it is followed (a check may throw).
std::string resolve_links(const std::string& path,
                          const std::function<void(const std::filesystem::path& link)>& at_each_link = {});

// Checks one run's outputs before anything is computed or written (InputError, exit 2):
//   - no output is the same file as an input (through links, hard links and relative names);
//   - no two outputs are the same file;
//   - each output can be written: its directory exists and is writable (or, for a name in
//     `will_create`, an ancestor that exists is writable), and an existing target is not a
//     directory.
// Empty paths are skipped (an optional output not asked for). An input NIfTI pair's header
// (is_header_only_nifti) counts with its data file (pair_data_files). An existing output must
// not be a directory, a block device, a socket or a file with no write permission at all.
void check_outputs(const std::string& command, const std::vector<NamedPath>& inputs,
                   const std::vector<NamedPath>& outputs, const std::vector<std::string>& will_create = {});

// InputError naming `path` unless it is an existing regular file (or a link to one): a
// directory, a FIFO or a device would be read wrongly or block forever. Returns its size.
int64_t require_regular_file(const std::string& path);

// The first `count` bytes of a file: fewer when it is shorter, none when it cannot be read (for
// telling formats apart by their magic).
std::string file_prefix(const std::string& path, size_t count);

// The whole of a regular file (require_regular_file first); InputError naming `path` and the
// system's reason when it cannot be opened or read.
std::string read_text_file(const std::string& path);

bool ends_with(const std::string& text, const std::string& suffix);
// The same, with ASCII letters compared without case ("A.NII.GZ" ends with ".nii.gz").
bool ends_with_ignoring_case(const std::string& text, const std::string& suffix);

// The data files a header-only NIfTI (a pair's name.hdr, or a .nii of magic ni1/ni2) may have
// beside it, in the order a reader tries them: name.img, name.img.gz, then the upper-case
// endings name.IMG, name.IMG.gz, name.IMG.GZ (NAME.HDR with NAME.IMG, as some exports name them).
std::vector<std::string> pair_data_files(const std::string& header_path);
// Whether `path` is such a header: named .hdr (or .hdr.gz), or a .nii of magic ni1/ni2.
bool is_header_only_nifti(const std::string& path);

// FreeSurfer's .mgz or .mgh, in any case.
bool is_mgh_name(const std::string& path);
// A volume this program reads: .nii, .nii.gz (NIfTI), .hdr (a NIfTI pair's header, its voxels in
// the .img beside it), .mgz or .mgh (MGH), in any case (readers such as nibabel choose by the
// ending, and take SCAN.NII.GZ as scan.nii.gz).
bool is_volume_name(const std::string& path);
// A volume this program writes: the same but .hdr (pairs are read, never written).
bool is_output_volume_name(const std::string& path);
// An OutputFile's temporary of a volume output ("a.nii.gz.tmp-123.nii.gz", "a.mgz.tmp-9.mgz"),
// left by a killed run.
bool is_temporary_output(const std::string& name);
// A volume name's ending, in lower case: ".nii.gz", ".nii", ".hdr", ".mgz" or ".mgh" ("" for another).
std::string volume_ending(const std::string& path);
// A volume file's name without its folder and .nii / .nii.gz / .hdr / .mgz / .mgh in any case
// ("dir/sub01.nii.gz" -> "sub01").
std::string volume_stem(const std::string& path);
// `files` (volume files of `folder`) by subject, their volume_stem; InputError naming `folder` and
// two files of one subject (a.nii and a.nii.gz, a.nii.gz and a.mgz).
std::map<std::string, std::string> volume_files_by_subject(const std::string& folder,
                                                           const std::vector<std::string>& files);
// The same refusal for files of any folders: two of one subject in one folder.
void require_one_file_per_subject(const std::vector<std::string>& files);

// The volume files a path names: the file itself, or every *.nii / *.nii.gz / *.hdr / *.mgz /
// *.mgh in a directory but hidden ones (macOS's ._NAME copies), sorted by name. InputError naming the path
// when it does not exist or a directory has none.
// A killed run's temporary left out is said in a warning.
std::vector<std::string> volume_files(const std::string& path);

// The folders the files `outputs` name are in (those with a folder part, empty paths left out,
// and those mkdir -p would not make as written: through "..", or a broken link): what
// check_outputs is told the command makes, and OutputDirectories::make_for makes.
std::vector<std::string> folders_of(const std::vector<NamedPath>& outputs);

// The folders a command makes for its outputs (mkdir -p), taken back if the command fails: when
// an exception unwinds past this object, or take_back() says so, every folder it made is removed
// again, innermost first, if nothing but the command's own files (a lock) is in it. A failed run
// leaves no empty output tree behind; a run that succeeds keeps its folders, even empty ones.
class OutputDirectories {
public:
    OutputDirectories() = default;
    OutputDirectories(const OutputDirectories&) = delete;
    OutputDirectories& operator=(const OutputDirectories&) = delete;
    ~OutputDirectories();

    // InputError naming the directory when it cannot be made.
    void make(const std::string& dir);
    // A file the command writes into one of them that goes with the folder (a lock file, the
    // pieces of an unfinished set).
    void own_file(const std::string& path) { own_files_.push_back(path); }
    // The folder of each of `outputs` (folders_of): a file named in a missing folder is written
    // into it, as SynthSeg's commands do.
    void make_for(const std::vector<NamedPath>& outputs);
    // The folders stay from now on, whatever happens (a complete set of outputs is in them).
    void keep();
    // A command failing without an exception (predict, every scan of a folder refused): the
    // folders it made that hold nothing of its outputs are removed now.
    void take_back();

private:
    int exceptions_at_start_ = std::uncaught_exceptions();
    // Outermost first, each with its identity (device, inode): a folder moved away while the
    // command ran, and another made under its name, is not the one to take back. Each is in the
    // signal handler's registry too (`slot`, -1 when it was full), which removes it when empty.
    struct Made {
        std::string path;
        FileId id;
        int slot = -1;
    };
    std::vector<Made> made_;
    std::vector<std::string> own_files_;
};

}  // namespace iss
