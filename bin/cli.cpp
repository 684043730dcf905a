#include "bin/cli.h"

#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <new>
#include <thread>

#include "io/csv.h"
#include "io/file_util.h"
#include "kernels/common/error.h"

namespace iss::cli {

namespace {

// Edits (insertions, deletions, substitutions) from a to b.
size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            const size_t above = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diagonal = above;
        }
    }
    return row[b.size()];
}

// " (did you mean --steps?)" for an unknown option close to known ones, "" where none is: one
// edit away (--step); else the options it starts, up to three (--lab for --labels, --o for
// --o-seg and --o-post); else two edits away, one that starts the other first (--out for --o,
// not --post). A name of one or two letters (--h) is only ever the start of one.
std::string suggestion(const std::string& given, const std::set<std::string>& with_value,
                       const std::set<std::string>& flags) {
    std::vector<std::string> starting, within[3];  // within[d]: options d edits away, related first
    for (const std::set<std::string>* known : {&with_value, &flags})
        for (const std::string& option : *known) {
            const bool starts = option.compare(0, given.size(), given) == 0;
            if (starts) starting.push_back(option);
            const size_t d = edit_distance(given, option);
            if (d > 2) continue;
            const bool related = starts || given.compare(0, option.size(), option) == 0;
            within[d].insert(related ? within[d].begin() : within[d].end(), option);
        }
    std::vector<std::string> options;
    const bool short_name = given.size() <= 4;  // "--" and one or two letters
    if (!short_name && !within[1].empty())
        options = within[1];
    else if (!starting.empty() && starting.size() <= 3)
        options = starting;
    else if (!short_name && !within[2].empty())
        options = {within[2].front()};
    if (options.empty()) return "";
    std::string text;
    for (size_t i = 0; i < options.size(); ++i)
        text += cat(i == 0 ? "" : i + 1 == options.size() ? " or " : ", ", options[i]);
    return cat(" (did you mean ", text, "?)");
}

// A volumes table's header, as volumes_table writes it: `subject`, a column per label, `total`.
bool is_volumes_header(const std::vector<std::string>& columns) {
    return columns.size() >= 2 && columns.front() == "subject" && columns.back() == "total";
}

}  // namespace

Args::Args(const std::string& command, int argc, char** argv, const std::set<std::string>& with_value,
           const std::set<std::string>& flags, const std::set<std::string>& repeatable)
    : command_(command) {
    for (int i = 0; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg == "--") {  // the options' end, as getopt has it: the rest are names (a file "--x")
            positional_.insert(positional_.end(), argv + i + 1, argv + argc);
            break;
        }
        if (arg == "-h" && flags.count("--help")) {  // as the top level takes it
            flags_.insert("--help");
            continue;
        }
        if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
            positional_.push_back(arg);
            continue;
        }
        std::string value;
        bool inline_value = false;
        const size_t eq = arg.find('=');
        if (eq != std::string::npos) {
            value = arg.substr(eq + 1);
            arg = arg.substr(0, eq);
            inline_value = true;
        }
        if (flags.count(arg)) {
            ISS_INPUT(!inline_value, command_, ": option ", arg, " takes no value");
            flags_.insert(arg);
        } else if (with_value.count(arg)) {
            if (!inline_value) {
                ISS_INPUT(i + 1 < argc, command_, ": option ", arg, " needs a value");
                value = argv[++i];
                // "--model-dir $DIR --resume" with DIR unset: --resume was taken for the folder's
                // name, and a new model made in ./--resume, exit 0.
                const std::string next = value.substr(0, value.find('='));
                ISS_INPUT(!with_value.count(next) && !flags.count(next), command_, ": option ", arg,
                          " needs a value, but is followed by the option ", next,
                          " (an empty shell variable?); a value that begins with -- goes as ", arg, "=VALUE");
            }
            // An empty value names nothing: "--out ''" (an unset shell variable) was taken for an
            // output not asked for, or failed after the work.
            ISS_INPUT(!value.empty(), command_, ": option ", arg, " has an empty value");
            // A repeatable option collects its values. Any other given twice with two values is
            // refused: keeping the last, as argparse does, made "dice --gt a --gt pred" score a
            // prediction against itself without a word.
            std::vector<std::string>& given = values_[arg];
            if (!repeatable.count(arg) && !given.empty()) {
                ISS_INPUT(given.back() == value, command_, ": ", arg, " given twice (", given.back(), ", then ", value,
                          "): give it once");
                continue;
            }
            given.push_back(value);
        } else {
            throw InputError(cat(command_, ": unknown option ", arg, suggestion(arg, with_value, flags),
                                 " (see 'infant-synthseg ", command_, " --help')"));
        }
    }
    // Before any thread runs; a --threads given decides instead (apply_threads).
    if (!has("--threads")) limit_threads_to_machine();
}

std::string Args::get(const std::string& name, const std::string& fallback) const {
    const auto it = values_.find(name);
    return it == values_.end() ? fallback : it->second.back();
}

void warn_if_replacing_volumes(const std::string& command, const std::string& path, const CsvTable& table,
                               const std::string& advice) {
    std::error_code ec;
    if (path.empty() || !std::filesystem::is_regular_file(path, ec)) return;
    CsvTable held;
    try {
        held = read_csv(path);
    } catch (const Error&) {  // not a table (require_replaceable_table has refused what is not ours)
        return;
    }
    if (!is_volumes_header(held.columns)) return;
    std::set<std::string> kept;
    for (const std::vector<std::string>& row : table.rows) kept.insert(row.front());
    std::vector<std::string> lost;
    for (const std::vector<std::string>& row : held.rows)
        if (!kept.count(row.front())) lost.push_back(one_line(row.front()));
    if (lost.empty()) return;
    warning(cat(command, ": ", path, " held the volumes of ", lost.size(), " other subject", lost.size() > 1 ? "s" : "",
                " (", first_values(lost, 3), "), now replaced: ", advice));
}

void require_replaceable_table(const std::string& command, const std::string& option, const std::string& path,
                               TableKind kind) {
    std::error_code ec;
    if (path.empty() || !std::filesystem::is_regular_file(path, ec) || std::filesystem::file_size(path, ec) == 0)
        return;
    // The first line, of the file's first 64 KiB (a header of 300 labels is 2 KiB; a large file
    // without a newline is not read whole).
    std::ifstream in(path, std::ios::binary);
    std::string head(64 * 1024, '\0');
    in.read(head.data(), std::streamsize(head.size()));
    head.resize(size_t(in.gcount()));
    const size_t newline = head.find('\n');
    std::string header = head.substr(0, newline);
    if (!header.empty() && header.back() == '\r') header.pop_back();
    if (header.rfind("\xEF\xBB\xBF", 0) == 0) header.erase(0, 3);  // a spreadsheet's "CSV UTF-8" saves a BOM
    const bool blank = header.find_first_not_of(" \t") == std::string::npos;
    if (blank && (newline == std::string::npos || newline + 1 == head.size())) return;  // a blank line alone
    std::vector<std::string> columns;
    for (size_t start = 0;;) {
        const size_t comma = header.find(',', start);
        columns.push_back(header.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    // A Dice table of files holding no structure has the subject column alone.
    bool ours = kind == TableKind::volumes ? is_volumes_header(columns) : columns.front() == "subject";
    if (kind == TableKind::dice)
        for (size_t c = 1; c < columns.size(); ++c) ours = ours && columns[c].rfind("dice_", 0) == 0;
    ISS_INPUT(ours, command, ": ", option, " ", path, ": a file that is not ",
              kind == TableKind::volumes ? "a volumes table" : "a Dice table", " is there (its first line: '",
              one_line(header.substr(0, 60)), header.size() > 60 ? "...'" : "'",
              "), which this would replace: name another, or remove it first");
}

KerasImportOptions keras_import_options(const Args& args) {
    KerasImportOptions options;
    options.labels = args.get("--labels", "");
    options.channel_order = args.get("--channel-order", "");
    options.orientation = args.get("--orientation", "");
    options.voxel_size_mm = args.number("--voxel-size", 0);
    ISS_INPUT(!args.has("--voxel-size") || (options.voxel_size_mm >= 0.1 && options.voxel_size_mm <= 10),
              "--voxel-size must be a size in mm from 0.1 to 10, got ", args.get("--voxel-size", ""));
    return options;
}

std::optional<LabelList> given_label_list(const Args& args, const std::string& option) {
    if (!args.has(option)) return std::nullopt;
    const std::string text = args.get(option, "");
    return label_list_or_default(&text, option);
}

Failure describe_failure(const std::exception& e, const std::string& command, const std::string& subject) {
    const std::string message = one_line(e.what());
    if (dynamic_cast<const InputError*>(&e)) {
        // Messages that already start with the command's name ("train: option ...") keep it once.
        const std::string own = command + ": ";
        const bool named = message.compare(0, own.size(), own) == 0;
        return {"error: " + (named ? message.substr(own.size()) : message), 2};
    }
    // Not the user's input: a failed write (disk full), a library call, a broken invariant; the
    // subject (a folder's scan) named where the message does not (an allocation's names none).
    auto about = [&](const std::string& text) {
        return subject.empty() || text.find(subject) != std::string::npos ? text : cat(one_line(subject), ": ", text);
    };
    if (dynamic_cast<const Error*>(&e)) return {"error: " + about(message), 1};
    // Host memory: what() says only "std::bad_alloc".
    if (dynamic_cast<const std::bad_alloc*>(&e))
        return {"error: " + about("out of memory (the host's): this run needs more than this process may use (the "
                                  "machine's RAM, or a container's or ulimit's limit)"),
                1};
    return {cat("internal error", subject.empty() ? "" : " on " + one_line(subject), ": ", message), 1};
}

uint64_t Args::seed() const {
    const long long seed = integer("--seed", 1);
    ISS_INPUT(seed >= 0, command_, ": --seed must be a non-negative integer, got ", seed);
    return uint64_t(seed);
}

// The most threads a run may ask for: 4 per hardware thread. More than the machine runs at once
// only cost time and memory (100000 of them crashed the OpenMP runtime), but a few more let a
// training started on a larger machine go on, with its sums in the same order, on a smaller one.
long long thread_limit() {
    // The hardware threads this process may run on (a container's or a batch job's CPU set).
    cpu_set_t allowed;
    const long long hardware = ::sched_getaffinity(0, sizeof allowed, &allowed) == 0
                                   ? CPU_COUNT(&allowed)
                                   : (long long)std::max(1u, std::thread::hardware_concurrency());
    return 4 * std::max(1ll, hardware);
}

void Args::apply_threads() const {
    if (!has("--threads")) return;
    long long threads = integer("--threads", 0);
    ISS_INPUT(threads >= 1, command_, ": --threads must be at least 1, got ", threads);
    const long long limit = thread_limit();
    if (threads > limit) {
        warning(
            cat(command_, ": --threads ", threads, ": at most 4 per hardware thread of this machine; using ", limit));
        threads = limit;
    }
    omp_set_num_threads(int(threads));
}

void limit_threads_to_machine() {
    // OpenMP's runtime takes a value it cannot read ("", "0", "abc": an unset batch variable) for
    // all the hardware threads, with a line of its own that names neither the command nor what it
    // did: said by the command too.
    if (const char* given = std::getenv("OMP_NUM_THREADS")) {
        std::string text = given;
        text.erase(std::remove_if(text.begin(), text.end(), [](char c) { return std::isspace((unsigned char)c); }),
                   text.end());  // " 3" as OpenMP reads it
        // Counts per nesting level ("4,2"), each at least 1 ("01" and "+1" are 1), as OpenMP reads them.
        bool counts = !text.empty();
        for (size_t at = 0; counts && at <= text.size();) {
            const size_t comma = std::min(text.find(',', at), text.size());
            std::string count = text.substr(at, comma - at);
            if (!count.empty() && count[0] == '+') count.erase(0, 1);
            counts = !count.empty() && count.size() <= 9 &&
                     count.find_first_not_of("0123456789") == std::string::npos && std::stol(count) >= 1;
            at = comma + 1;
        }
        const int used = omp_get_max_threads();
        if (!counts)
            warning(cat("OMP_NUM_THREADS='", clipped(given, 40), "' is not a number of threads: ", used,
                        used == 1 ? " thread is" : " threads are", " used; --threads N sets them"));
    }
    const long long asked = omp_get_max_threads(), limit = thread_limit();
    if (asked <= limit) return;
    warning(cat("OMP_NUM_THREADS asks for ", asked, " threads: at most 4 per hardware thread of this machine; using ",
                limit));
    omp_set_num_threads(int(limit));
}

std::string Args::preset() const {
    return get("--preset", "");
}

void Args::reject_positional() const {
    ISS_INPUT(positional_.empty(), command_, ": unexpected argument '", positional_.front(), "' (see 'infant-synthseg ",
              command_, " --help')");
}

std::string Args::require(const std::string& name) const {
    const auto it = values_.find(name);
    ISS_INPUT(it != values_.end(), command_, ": option ", name, " is required");
    return it->second.back();
}

std::vector<std::string> Args::all(const std::string& name) const {
    const auto it = values_.find(name);
    return it == values_.end() ? std::vector<std::string>{} : it->second;
}

long long Args::integer_in(const std::string& name, long long fallback, long long low, long long high) const {
    const long long value = integer(name, fallback);
    ISS_INPUT(value >= low && value <= high, command_, ": ", name, " must be ", low, " to ", high, ", got ", value);
    return value;
}

long long Args::integer(const std::string& name, long long fallback) const {
    if (!has(name)) return fallback;
    const std::string text = get(name, "");
    char* end = nullptr;
    errno = 0;
    const long long value = std::strtoll(text.c_str(), &end, 10);
    // Digits and a sign only: strtoll also skips leading blanks (" 5"), which number() refuses.
    const bool digits = text.find_first_not_of("0123456789+-") == std::string::npos;
    ISS_INPUT(!text.empty() && digits && *end == '\0', command_, ": option ", name, " expects an integer, got '", text,
              "'");
    // An integer still, but past what 64 bits hold: said as such (it read "expects an integer").
    ISS_INPUT(errno == 0, command_, ": option ", name, " ", text, " is out of range (",
              value < 0 ? "the least is -2^63" : "the most is 2^63 - 1", ")");
    return value;
}

double Args::number(const std::string& name, double fallback) const {
    if (!has(name)) return fallback;
    const std::string text = get(name, "");
    char* end = nullptr;
    const double value = std::strtod(text.c_str(), &end);
    // Decimal only: strtod also reads hexadecimal ("0x3" as 3), which nobody means here.
    const bool decimal = text.find_first_not_of("0123456789+-.eE") == std::string::npos;
    ISS_INPUT(!text.empty() && decimal && *end == '\0' && std::isfinite(value), command_, ": option ", name,
              " expects a number, got '", text, "'");
    return value;
}

namespace {

// Set by the signal handler (a lock-free atomic is async-signal-safe to store to).
std::atomic<bool> stop_requested{false};
std::atomic<int> stop_signal_number{0};
static_assert(std::atomic<bool>::is_always_lock_free && std::atomic<int>::is_always_lock_free,
              "the signal handler needs lock-free flags");

// SIGHUP: the terminal or SSH session went away; SIGUSR1, SIGUSR2: a batch scheduler's warning
// before its time limit (Slurm's --signal); SIGXCPU, SIGALRM, SIGVTALRM: a time limit's warning
// (Grid Engine's s_cpu, a soft ulimit -t, timeout -s ALRM).
constexpr int stop_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGXCPU, SIGALRM, SIGVTALRM};

extern "C" void on_stop_signal(int signal) {
    int none = 0;
    stop_signal_number.compare_exchange_strong(none, signal);  // the first one is the one reported
    stop_requested.store(true);
    // The next one, of any of them: temporaries removed, then the default. Not SIGXCPU: past a
    // soft CPU limit the kernel sends it again every CPU second, which is no second request.
    for (int sig : stop_signals)
        if (sig != SIGXCPU) install_output_cleanup_on_signal(sig);
    arm_signal_farewell();  // whatever ends the process now comes second
}

}  // namespace

void install_stop_handlers() {
    for (int sig : stop_signals) {
        struct sigaction old {};
        if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        struct sigaction action {};
        action.sa_handler = on_stop_signal;
        sigemptyset(&action.sa_mask);  // the others wait while one re-arms them: a second one then ends it
        for (int other : stop_signals) sigaddset(&action.sa_mask, other);
        action.sa_flags = SA_RESTART;  // restart: the writes of a checkpoint are not cut short
        ::sigaction(sig, &action, nullptr);
    }
}

const std::atomic<bool>& stop_flag() { return stop_requested; }
int stop_signal() { return stop_signal_number.load(); }

const char* signal_name(int signal) {
    switch (signal) {
        case SIGINT: return "SIGINT";
        case SIGTERM: return "SIGTERM";
        case SIGHUP: return "SIGHUP";
        case SIGUSR1: return "SIGUSR1";
        case SIGUSR2: return "SIGUSR2";
        case SIGXCPU: return "SIGXCPU";
        case SIGALRM: return "SIGALRM";
        case SIGVTALRM: return "SIGVTALRM";
        default: return "a signal";
    }
}

int predict_output_index(const std::string& file) {
    const std::string stem = volume_stem(file);
    for (size_t i = 0; i < predict_output_suffixes.size(); ++i)
        if (ends_with_ignoring_case(stem, predict_output_suffixes[i])) return int(i);
    return -1;
}

bool predicted_segmentation(const std::string& file) {
    return predict_output_index(file) == 0;
}

std::string subject_of(const std::string& prediction) {
    const std::string stem = volume_stem(prediction);
    return predicted_segmentation(prediction) ? stem.substr(0, stem.size() - std::strlen(predict_output_suffixes[0]))
                                              : stem;
}

std::string rate_text(double per_second) {
    char text[32];
    if (per_second > 0 && per_second < 0.001) return "<0.001";
    std::snprintf(text, sizeof text, per_second >= 0.1 || per_second <= 0 ? "%.1f" : "%.2g", per_second);
    return text;
}

std::string duration_text(double seconds) {
    // Clamped where a cast would overflow (an ETA of 2^63 steps): a million hours reads as such.
    const long long s = (long long)(std::min(std::max(seconds, 0.0), 3.6e9) + 0.5);
    char text[32];
    if (s >= 3600)
        std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
    else
        std::snprintf(text, sizeof text, "%lld:%02lld", s / 60, s % 60);
    return text;
}

std::string progress_bar(double fraction, int width) {
    fraction = std::min(std::max(fraction, 0.0), 1.0);
    const int filled = int(double(width) * fraction);
    std::string bar(size_t(width), ' ');
    for (int c = 0; c < filled; ++c) bar[size_t(c)] = '=';
    if (filled < width) bar[size_t(filled)] = '>';
    return bar;
}

}  // namespace iss::cli
