// infant-synthseg: one binary, one subcommand per job.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iterator>
#include <string>

#include "bin/cli.h"  // describe_failure
#include "bin/commands.h"
#include "io/file_util.h"
#include "io/nifti.h"  // set_output_description
#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/common/version.h"

namespace {

struct Command {
    const char* name;
    int (*run)(int argc, char** argv);
    const char* summary;
};

const Command commands[] = {
    {"clean", iss::cli::cmd_clean, "fold the infant extra labels and relabel small islands of a segmentation"},
    {"dice", iss::cli::cmd_dice, "Dice overlap per structure between segmentations and ground truth, as CSV"},
    {"export", iss::cli::cmd_export, "write a model as a Keras file (.h5 for SynthSeg's tools, .keras for Keras 3)"},
    {"import", iss::cli::cmd_import, "make a model directory from a published Keras model (SynthSeg, Infant-SynthSeg)"},
    {"info", iss::cli::cmd_info, "describe scans (header, orientation, labels), models, Keras and .npy files"},
    {"merge", iss::cli::cmd_merge, "merge the predictions of a T1 and a T2 image of one subject"},
    {"phantom", iss::cli::cmd_phantom, "write a procedural infant-like label map for a given age"},
    {"predict", iss::cli::cmd_predict, "segment scans with a trained model (segmentation, posteriors, volumes)"},
    {"priors", iss::cli::cmd_priors, "estimate intensity priors from real images and their label maps"},
    {"synth", iss::cli::cmd_synth, "generate synthetic training images and label maps from label maps"},
    {"train", iss::cli::cmd_train, "train a segmentation network on synthetic images made from label maps"},
};

const Command* command_named(const char* name) {
    for (const Command& c : commands)
        if (!std::strcmp(name, c.name)) return &c;
    return nullptr;
}

// One line, as for any other bad input: the commands' names and where they are described.
int unknown_command(const char* name) {
    std::string names;
    for (const Command& c : commands) names += iss::cat(names.empty() ? "" : ", ", c.name);
    std::fprintf(stderr, "infant-synthseg: unknown command '%s' (the commands: %s; see 'infant-synthseg --help')\n",
                 iss::one_line(name).c_str(), names.c_str());
    return 2;
}

void print_usage(FILE* out) {
    std::fprintf(out, "usage: infant-synthseg <command> [options]\n\ncommands:\n");
    for (const Command& c : commands) std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
    std::fprintf(out, "\n'infant-synthseg <command> --help' describes a command's options;\n"
                      "'infant-synthseg --version' the build, the CUDA libraries found and the GPUs.\n");
}

// What a bug report needs: the build, and what the machine lent it at run time.
int print_version() {
    std::printf("infant-synthseg %s (C++17%s)\n", iss::build_version(),
                iss::built_with_cuda() ? ", CUDA" : ", CPU only");
    const std::string extensions = iss::host_vector_extensions();
    if (!extensions.empty()) std::printf("host code built for: %s\n", extensions.c_str());
    std::printf("CPU network: %s\n", iss::onednn_version().c_str());
    if (!iss::built_with_cuda()) return 0;
    std::printf("%s\nCUDA devices: %d\n", iss::cuda_library_versions().c_str(), iss::cuda_device_count());
    return 0;
}

// A standard stream closed at the start (`>&-`, a daemon's) would be the next file opened: an
// output's temporary or the lock file would then receive the reports and warnings. Each is
// pointed at /dev/null instead, as a closed one loses what is written to it anyway. Returns
// whether standard output was closed.
bool open_closed_standard_streams() {
    bool output_closed = false;
    for (int fd = 0; fd <= 2; ++fd)
        if (::fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
            output_closed = output_closed || fd == 1;
            const int opened = ::open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
            if (opened != fd && opened >= 0) ::close(opened);  // another thread's; cannot be here
        }
    return output_closed;
}

// The argument that names standard output as an output (`dice --out /dev/stdout`, `--out=...`), or
// null: the data goes there, and the reports to stderr.
const char* standard_output_argument(int argc, char** argv) {
    for (int a = 2; a < argc; ++a) {
        const char* equals = argv[a][0] == '-' ? std::strchr(argv[a], '=') : nullptr;  // --out=VALUE
        if (iss::names_standard_output(equals ? equals + 1 : argv[a])) return argv[a];
    }
    return nullptr;
}

// Whether standard output is the command's result (info, --help, --version, --print-config, an
// output named /dev/stdout), not report lines beside the files it writes.
bool prints_its_result(const char* command, int argc, char** argv) {
    if (!command || !std::strcmp(command, "info") || standard_output_argument(argc, argv)) return true;
    for (int a = 2; a < argc; ++a)
        if (!std::strcmp(argv[a], "--help") || !std::strcmp(argv[a], "-h") || !std::strcmp(argv[a], "--print-config"))
            return true;
    return false;
}

// What was printed to standard output that could not be written (`> file` on a full disk, a
// pipe closed with SIGPIPE ignored): a result lost is exit 1 (`info > file` was an empty file and
// exit 0); report lines lost beside outputs written are a warning, the status kept.
int with_standard_output_written(const char* command, int status, bool result, bool closed) {
    // A closed one matters where a result was printed: a refusal has said its line already.
    if (std::fflush(stdout) == 0 && !std::ferror(stdout) && !(result && closed && status == 0)) return status;
    const std::string who = command ? iss::cat("infant-synthseg ", command) : std::string("infant-synthseg");
    const char* why = closed ? "closed (>&-)" : "a write to it failed (a closed pipe or a full disk?)";
    if (!result) {
        std::fprintf(stderr, "warning: %s: standard output: %s: its report lines are not all there\n",
                     command ? command : "infant-synthseg", why);
        return status;
    }
    std::fprintf(stderr, "%s: error: standard output: %s\n", who.c_str(), why);
    return status == 0 ? 1 : status;
}

// Relative names are resolved against the working directory; one removed under the process
// (`rm -r` of the folder a shell sits in) failed late and three different ways. Asked only where
// an argument may be a relative path: any but an option's name, a number, an absolute path, a
// label list ("0,2,41"), or the words some options take (a preset, a device, a precision, an
// orientation, a channel order, a label set): absolute paths alone and --help work there.
bool working_directory_missing_for(int argc, char** argv) {
    char buffer[4096];
    if (::getcwd(buffer, sizeof buffer) != nullptr || errno != ENOENT) return false;
    static const char* const words[] = {"infant-t1", "infant-t2", "synthseg", "infant",    "auto",
                                        "cpu",       "fp32",      "bf16",     "ascending", "freesurfer"};
    std::string option;  // the option whose value comes next
    for (int a = 2; a < argc; ++a) {
        std::string arg = argv[a];
        if (arg == "--help" || arg == "-h") return false;
        if (arg.compare(0, 2, "--") == 0) {
            const size_t equals = arg.find('=');
            option = arg.substr(0, equals);
            if (equals == std::string::npos) continue;
            arg = arg.substr(equals + 1);
        }
        char* end = nullptr;
        std::strtod(arg.c_str(), &end);
        const bool number = !arg.empty() && *end == '\0';
        const bool word = std::any_of(std::begin(words), std::end(words), [&](const char* w) { return arg == w; }) ||
                          arg.compare(0, 4, "cuda") == 0 || option == "--orientation";
        const bool label_list = !arg.empty() && arg.find_first_not_of("0123456789,") == std::string::npos;
        if (!arg.empty() && arg[0] != '/' && !number && !word && !label_list) return true;
        option.clear();
    }
    return false;
}

int run_command(const Command& c, int argc, char** argv) {
    // What every NIfTI file the command writes says made it (a command adds its particulars).
    iss::set_output_description(iss::cat("infant-synthseg ", iss::build_version(), " ", c.name));
    // An output to standard output (`dice --out /dev/stdout | ...`) keeps it for the data.
    if (standard_output_argument(argc, argv)) iss::route_reports_to_stderr();
    if (working_directory_missing_for(argc, argv)) {
        std::fprintf(stderr, "infant-synthseg %s: error: the working directory was removed: cd to one that exists\n",
                     c.name);
        return 2;
    }
    // A command ended by a signal (install_output_cleanup_on_signals lists them) leaves no
    // temporary file and no half set of outputs; train and synth stop at a safe point on
    // the stop signals instead (install_stop_handlers: the step and a checkpoint, the sample
    // in hand), installed once their inputs are read.
    iss::install_output_cleanup_on_signals();
    // Not for train: it runs for days, allocates its buffers once, and a heap that never
    // shrinks could only grow there.
    if (std::strcmp(c.name, "train") != 0) iss::keep_freed_host_memory();
    try {
        return c.run(argc - 2, argv + 2);
    } catch (const std::exception& e) {
        const iss::cli::Failure failure = iss::cli::describe_failure(e, c.name);
        std::fprintf(stderr, "infant-synthseg %s: %s\n", c.name, failure.text.c_str());
        return failure.status;
    }
}

int run(int argc, char** argv) {
    // "help CMD" is "CMD --help": the command's own text, from the command itself.
    if (argc == 3 && !std::strcmp(argv[1], "help")) {
        if (const Command* c = command_named(argv[2])) {
            char help_flag[] = "--help";
            char* help_argv[] = {help_flag, nullptr};
            return c->run(1, help_argv);
        }
        return unknown_command(argv[2]);
    }
    if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
        print_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!std::strcmp(argv[1], "--version")) return print_version();
    // A file size limit (ulimit -f) makes a write fail (exit 1 naming the file) instead of killing
    // the process with its temporaries left behind.
    std::signal(SIGXFSZ, SIG_IGN);
    if (const Command* c = command_named(argv[1])) return run_command(*c, argc, argv);
    return unknown_command(argv[1]);
}

}  // namespace

int main(int argc, char** argv) {
    const bool output_closed = open_closed_standard_streams();
    // Each report line ("in -> out", a training step) as it is printed, also into a file or a
    // pipe: a run killed part way then leaves in its log which subjects it finished.
    std::setvbuf(stdout, nullptr, _IOLBF, BUFSIZ);
    const bool help = argc >= 3 && !std::strcmp(argv[1], "help");  // "help CMD": CMD's text
    const Command* command = help ? command_named(argv[2]) : argc >= 2 ? command_named(argv[1]) : nullptr;
    const char* name = command ? command->name : nullptr;
    const bool result = help || prints_its_result(name, argc, argv);
    return with_standard_output_written(name, run(argc, argv), result, output_closed);
}
