// Command-line plumbing shared by the subcommands: a small option parser and the table of
// commands. Each subcommand lives in bin/cmd_<name>.cpp and registers itself in main.cpp.
#pragma once

#include <array>
#include <atomic>
#include <exception>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "post/prediction.h"
#include "predict/keras_model.h"

namespace iss::cli {

// Options are "--name value" or "--name=value"; flags are "--name"; everything else is
// positional. Unknown options are bad input (exit 2) naming the option, and so is an option
// given twice with two values, unless it is declared repeatable (predict's --i T1 --i T2).
class Args {
public:
    // `with_value`: options that take a value; `flags`: options that do not; `repeatable`: those
    // of `with_value` that may be given more than once (all() returns every value).
    Args(const std::string& command, int argc, char** argv, const std::set<std::string>& with_value,
         const std::set<std::string>& flags = {}, const std::set<std::string>& repeatable = {});

    bool has(const std::string& name) const { return values_.count(name) > 0; }
    bool flag(const std::string& name) const { return flags_.count(name) > 0; }
    std::string get(const std::string& name, const std::string& fallback) const;
    std::string require(const std::string& name) const;
    // Every value of a repeatable option, in order (empty when absent).
    std::vector<std::string> all(const std::string& name) const;
    long long integer(const std::string& name, long long fallback) const;
    // integer(), refused outside [low, high]: "<command>: NAME must be LOW to HIGH, got V" (checked
    // before a caller narrows it, so 2^32 + 1 is not taken for 1).
    long long integer_in(const std::string& name, long long fallback, long long low, long long high) const;
    double number(const std::string& name, double fallback) const;
    const std::vector<std::string>& positional() const { return positional_; }
    // InputError for a command that takes no positional argument and was given one.
    void reject_positional() const;
    // --seed: a non-negative integer, 1 when absent.
    uint64_t seed() const;
    // --preset: a preset's name, "" when absent (an empty value is refused, not taken for none).
    std::string preset() const;
    // --threads N: the CPU threads from now on (OpenMP's), at most 4 per hardware thread of the
    // machine (more: a warning); nothing when absent.
    void apply_threads() const;

private:
    std::string command_;
    std::map<std::string, std::vector<std::string>> values_;
    std::set<std::string> flags_;
    std::vector<std::string> positional_;
};

// The most CPU threads a command runs: 4 per hardware thread this process may use.
long long thread_limit();
// OpenMP's thread count (OMP_NUM_THREADS) at most thread_limit(), with a warning, as --threads
// is: Args' constructor calls it when the command line gives no --threads.
void limit_threads_to_machine();

// Before a volumes table (predict --vol, clean --vol) replaces `path`: a warning naming the
// subjects the table there held rows of and `table` has not. A loop over subjects with one --vol
// kept the last subject's row alone, without a word. Nothing where no volumes table is there.
// `advice` says what to do instead.
void warn_if_replacing_volumes(const std::string& command, const std::string& path, const CsvTable& table,
                               const std::string& advice);

// A table output (predict --vol, clean --vol, dice --out) replaces a file there only when it is
// such a table (a header "subject,...,total", or "subject,dice_..."), or empty: a typo's path to
// a study's spreadsheet replaced it without a word. InputError naming `option` otherwise.
enum class TableKind { volumes, dice };
void require_replaceable_table(const std::string& command, const std::string& option, const std::string& path,
                               TableKind kind);

// How to read a Keras file (import, and predict given one): --labels, --channel-order,
// --orientation and --voxel-size (checked to be a size in mm, 0 when not given).
KerasImportOptions keras_import_options(const Args& args);

// The label list `option` names (label_list_or_default), or none when it was not given.
std::optional<LabelList> given_label_list(const Args& args, const std::string& option);

// How a command's failure is said after "infant-synthseg CMD: ", and its exit status: 2 for the
// user's input (InputError), 1 for anything else (a full disk, out of memory, a broken
// invariant). `subject` (a folder's scan) is named in a failure that is not the input's, where
// its message does not name it (an allocation's names nothing).
struct Failure {
    std::string text;  // "error: ..." or "internal error: ..."
    int status;
};
Failure describe_failure(const std::exception& e, const std::string& command, const std::string& subject = "");

// SIGINT, SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 (a batch scheduler's warning), SIGXCPU, SIGALRM
// and SIGVTALRM (a time limit's) as a request to stop at the next safe point (train: after the
// step, with a checkpoint; synth: once the sample in hand is written). The first signal sets the
// flag; a second one (not a repeated SIGXCPU, which the kernel sends every CPU second past a
// soft limit) removes the temporary outputs being written, takes back the moves in progress
// (install_output_cleanup_on_signals), says what the run leaves where the command set it
// (set_signal_farewell) and ends the process as the signal would. A signal that was ignored when we
// started (a background job of a non-interactive shell) stays ignored, as the shell meant. Installed once the inputs
// are read: before, a signal simply ends the process.
void install_stop_handlers();
const std::atomic<bool>& stop_flag();
int stop_signal();  // the signal that asked to stop, 0 while none has
const char* signal_name(int signal);  // "SIGINT", "SIGTERM", ... for the stop signals, else "a signal"

// The names predict gives a folder's outputs for the scan NAME: NAME_synthseg.nii.gz (the
// segmentation), NAME_posteriors and NAME_resampled; dice pairs a folder of them with the scans.
inline constexpr std::array<const char*, 3> predict_output_suffixes = {"_synthseg", "_posteriors", "_resampled"};
// The index in predict_output_suffixes of the suffix a NIfTI file's name ends with before
// .nii / .nii.gz (0: a segmentation), or -1.
int predict_output_index(const std::string& file);
// Whether a file is a segmentation predict wrote into a folder (NAME_synthseg).
bool predicted_segmentation(const std::string& file);
// A segmentation's subject: its name without .nii / .nii.gz / .hdr / .mgz / .mgh and the _synthseg
// a predict folder adds ("sub01_synthseg.nii.gz" -> "sub01"), as predict's --vol names it (dice
// pairs by it; clean's --vol names its row so).
std::string subject_of(const std::string& prediction);

// Progress display shared by the long-running commands.
// A rate (samples per second) to one decimal, or two significant digits below 0.1 (a slow CPU
// run's 0.04, which read "0.0"); "<0.001" below that.
std::string rate_text(double per_second);
// "0:56" or "1:02:03" for a number of seconds (rounded).
std::string duration_text(double seconds);
// "=====>    ": `width` characters, filled to `fraction` (clamped to [0, 1]).
std::string progress_bar(double fraction, int width);

}  // namespace iss::cli
