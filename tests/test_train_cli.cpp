// The `train` command, run as a program on a newborn phantom with a tiny network (32^3 crops,
// 2 levels, 4 features): the files of the model directory and the log's rows, --resume
// continuing to the new --steps without touching the logged rows, SIGINT/SIGTERM ending with a
// checkpoint and exit 0 (and resume working after it), --help, and bad input: exit 2, one line
// naming the problem, and no model files where there were none.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "io/csv.h"
#include "io/nifti.h"
#include "io/safetensors.h"
#include "nn/checkpoint.h"
#include "synth/labels.h"
#include "synth/phantom.h"
#include "test_util.h"
#include "train/trainer.h"

namespace iss {
namespace {

namespace fs = std::filesystem;

using test::read_text;
using test::RunResult;
using test::shell_quote;

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

std::set<std::string> file_names(const fs::path& dir) {
    std::set<std::string> names;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return names;
    for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
    return names;
}

class TrainCli : public test::TempDirTest {
protected:
    static void SetUpTestSuite() {
        root_ = test::unique_temp_dir("train-cli");
        fs::create_directories(root_ / "maps");
        write_labels((root_ / "maps" / "phantom_2mo.nii.gz").string(), make_phantom(2, 1));
        // Held out: validation on the training maps is warned of.
        fs::create_directories(root_ / "held_out");
        write_labels((root_ / "held_out" / "phantom_2mo_b.nii.gz").string(), make_phantom(2, 2));
    }
    static void TearDownTestSuite() {
        std::error_code ec;
        fs::remove_all(root_, ec);
    }

    // The options of every run here, without --steps and --model-dir; `changed` gives some of them
    // other values (an option given twice with two values is refused).
    static std::vector<std::string> tiny_args(const std::map<std::string, std::string>& changed = {}) {
        const std::vector<std::pair<std::string, std::string>> options{
            {"--labels", (root_ / "maps").string()}, {"--shape", "32"}, {"--levels", "2"}, {"--features", "4"},
            {"--steps-per-epoch", "2"}, {"--lr", "1e-3"}, {"--seed", "5"}, {"--device", "cpu"}};
        std::vector<std::string> args;
        for (const auto& [name, value] : options) {
            const auto it = changed.find(name);
            args.push_back(name);
            args.push_back(it == changed.end() ? value : it->second);
        }
        return args;
    }
    static std::string joined(const std::vector<std::string>& args) {
        std::string s;
        for (const std::string& a : args) s += " " + shell_quote(a);
        return s;
    }
    // `environment`: assignments put before the command (e.g. "INFANT_FAULT_OUTPUT=2 ").
    static RunResult train(const std::string& args, const std::string& environment = "") {
        return test::run_command(environment + test::cli_path() + " train" + args);
    }
    RunResult train_tiny(const std::string& model_dir, int steps, const std::string& more = "",
                         const std::string& environment = "") const {
        return train(joined(tiny_args()) + " --model-dir " + shell_quote(model_dir) + " --steps " +
                         std::to_string(steps) + more,
                     environment);
    }
    // Every tensor of a model's weights file, by name.
    static std::map<std::string, std::vector<float>> weights_of(const fs::path& model_dir) {
        std::map<std::string, std::vector<float>> out;
        for (const SafeTensor& t : read_safetensors((model_dir / "model.safetensors").string()).tensors)
            out[t.name] = t.as_f32();
        return out;
    }

    // Exit 2, one line on stderr containing `fragment`, and `model_dir` as it was before.
    void expect_bad(const std::string& args, const std::string& fragment, const fs::path& model_dir) {
        SCOPED_TRACE(args);
        const std::set<std::string> before = file_names(model_dir);
        const bool existed = fs::exists(model_dir);
        const RunResult r = train(args);
        EXPECT_EQ(r.status, 2) << r.err;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
        EXPECT_NE(r.err.find(fragment), std::string::npos) << "expected '" << fragment << "' in: " << r.err;
        EXPECT_EQ(fs::exists(model_dir), existed);
        EXPECT_EQ(file_names(model_dir), before);
    }

    static fs::path root_;
};

fs::path TrainCli::root_;

// The log's data lines (the header dropped), as text.
std::vector<std::string> log_rows(const fs::path& model_dir) {
    std::vector<std::string> lines = lines_of(read_text(model_dir / "training_log.csv"));
    if (!lines.empty()) lines.erase(lines.begin());
    return lines;
}

int64_t optimizer_step(const fs::path& model_dir) {
    const SafetensorsFile f = read_safetensors((model_dir / "model.optimizer.safetensors").string());
    return std::stoll(f.metadata.at("step"));
}

TEST_F(TrainCli, TrainsWritesTheModelDirectoryAndResumes) {
    const fs::path model = dir_ / "model";
    const RunResult r = train_tiny(model.string(), 4);
    ASSERT_EQ(r.status, 0) << r.err;
    // Not a terminal: what it trains on, one line per checkpoint (steps 2 and 4), then the summary.
    const std::vector<std::string> out = lines_of(r.out);
    ASSERT_GE(out.size(), 4u) << r.out;
    EXPECT_EQ(out[0].rfind("training on 1 label map (stored RAS: 1), brought to RAS; voxel size 1 x 1 x 1 mm "
                           "(predict resamples scans outside this range); crops of 32x32x32 voxels",
                           0),
              0u)
        << out[0];
    EXPECT_EQ(out[1].rfind("step 2/4 loss ", 0), 0u) << out[1];
    EXPECT_NE(out[1].find("(mean of the epoch)"), std::string::npos) << out[1];
    EXPECT_NE(out[1].find("checkpoint saved"), std::string::npos) << out[1];
    EXPECT_EQ(out[2].rfind("step 4/4 loss ", 0), 0u) << out[2];
    EXPECT_NE(r.out.find("trained steps 1 to 4"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find((model / "loss.png").string()), std::string::npos) << "the summary names the curve";

    for (const char* f :
         {"model.safetensors", "model.json", "model.optimizer.safetensors", "training_log.csv", "loss.png"})
        EXPECT_TRUE(fs::is_regular_file(model / f)) << f;
    EXPECT_EQ(read_text(model / "loss.png").substr(0, 8), "\x89PNG\r\n\x1a\n");
    const nlohmann::json spec = nlohmann::json::parse(read_text(model / "model.json"));
    EXPECT_EQ(spec.dump().find("\"levels\":2") != std::string::npos, true) << spec.dump();
    EXPECT_EQ(spec["training"]["lr"].get<double>(), 0.001) << "the float's shortest form, as in the log";

    const CsvTable table = read_csv((model / "training_log.csv").string());
    EXPECT_EQ(table.columns, (std::vector<std::string>{"step", "loss", "loss_function", "lr", "seconds"}));
    ASSERT_EQ(table.rows.size(), 4u);
    for (size_t i = 0; i < 4; ++i) {
        EXPECT_EQ(table.rows[i][0], std::to_string(i + 1));
        const double loss = csv_to_number(table.rows[i][1], "loss");
        EXPECT_TRUE(loss > 0 && loss <= 1) << "soft Dice loss " << loss;
        EXPECT_EQ(table.rows[i][2], "soft_dice");
        EXPECT_EQ(table.rows[i][3], "0.001") << "the float's shortest form, not its double's";
    }
    EXPECT_EQ(optimizer_step(model), 4);

    // --resume continues to the new total; the rows already logged stay as they were.
    const std::vector<std::string> first_rows = log_rows(model);
    const RunResult more = train_tiny(model.string(), 6, " --resume");
    ASSERT_EQ(more.status, 0) << more.err;
    EXPECT_NE(more.out.find("resuming"), std::string::npos) << more.out;
    EXPECT_NE(more.out.find("trained steps 5 to 6"), std::string::npos) << more.out;
    const std::vector<std::string> rows = log_rows(model);
    ASSERT_EQ(rows.size(), 6u);
    EXPECT_EQ(std::vector<std::string>(rows.begin(), rows.begin() + 4), first_rows);
    EXPECT_EQ(optimizer_step(model), 6);
    EXPECT_EQ(more.err.find("not the label maps"), std::string::npos) << "the same maps: " << more.err;

    // A --shape past the map is clipped to it and rounded: the start line says the crop that
    // runs, as model.json records it (it said nothing).
    const fs::path big = dir_ / "big";
    const RunResult b =
        train(joined(tiny_args({{"--shape", "200"}})) + " --model-dir " + shell_quote(big.string()) + " --steps 1");
    ASSERT_EQ(b.status, 0) << b.err;
    const nlohmann::json crop = nlohmann::json::parse(read_text(big / "model.json"))["training"]["crop"];
    const std::string ran = cat(crop[0].get<int64_t>(), "x", crop[1].get<int64_t>(), "x", crop[2].get<int64_t>());
    EXPECT_NE(ran, "200x200x200");
    EXPECT_NE(b.out.find("; crops of " + ran + " voxels"), std::string::npos) << b.out;
    // A --config's shape_multiple gives way to the network's, said (it was replaced without a word).
    std::ofstream(dir_ / "multiple.json") << R"({"shape_multiple": 3})";
    const RunResult m =
        train_tiny((dir_ / "multiple").string(), 1, " --config " + shell_quote((dir_ / "multiple.json").string()));
    ASSERT_EQ(m.status, 0) << m.err;
    EXPECT_NE(m.err.find("multiple.json: shape_multiple 3 is ignored: the network's, 4 (2^2, --levels), is used"),
              std::string::npos)
        << m.err;

    // Other maps may continue a model, but the run is then not the uninterrupted one: said, and
    // kept in the history (it went on without a word).
    fs::create_directories(dir_ / "other_maps");
    write_labels((dir_ / "other_maps" / "phantom_6mo.nii.gz").string(), make_phantom(6, 1));
    const RunResult other = train(" --labels " + shell_quote((dir_ / "other_maps").string()) + " --model-dir " +
                                  shell_quote(model.string()) + " --steps 7 --device cpu --resume");
    ASSERT_EQ(other.status, 0) << other.err;
    EXPECT_NE(other.err.find("warning: train: --labels " + (dir_ / "other_maps").string() + ": not the label maps " +
                             (model / "model.json").string() +
                             " was trained on (1 then, 1 now, or their voxels or the order of their names differ): "
                             "from step 6 the samples are not the uninterrupted run's"),
              std::string::npos)
        << other.err;
    const nlohmann::json history = nlohmann::json::parse(read_text(model / "model.json"))["training"]["history"];
    ASSERT_EQ(history.size(), 2u) << history.dump();
    EXPECT_EQ(history[1]["from_step"], 6);
    EXPECT_NE(history[0]["maps_digest"], history[1]["maps_digest"]);
    // Where the first steps' maps were is kept too (only their count and digest were).
    EXPECT_EQ(history[0]["maps_path"], (root_ / "maps").string());
    EXPECT_EQ(history[1]["maps_path"], (dir_ / "other_maps").string());

    // Maps of other voxels: the start line gives the range predict goes by, the runs' before too
    // (it gave this run's alone).
    LabelMap fine = make_phantom(6, 1);
    fine.grid.affine = Mat4::scaling(0.8, 0.8, 0.8);
    fs::create_directories(dir_ / "fine_maps");
    write_labels((dir_ / "fine_maps" / "fine.nii.gz").string(), fine);
    const RunResult widened = train(" --labels " + shell_quote((dir_ / "fine_maps").string()) + " --model-dir " +
                                    shell_quote(model.string()) + " --steps 8 --device cpu --resume");
    ASSERT_EQ(widened.status, 0) << widened.err;
    EXPECT_NE(widened.out.find("voxel size 0.8 x 0.8 x 0.8 mm; with the runs it continues 0.8-1 x 0.8-1 x 0.8-1 mm "
                               "(predict resamples scans outside that range)"),
              std::string::npos)
        << widened.out;
}

// --resume with only the maps and the model directory goes on as the run was started: the
// architecture, seed, crop, epoch length, rate and --config's generator parameters come from
// model.json (the configuration file is gone by then), and the run is the uninterrupted one.
TEST_F(TrainCli, ResumeTakesWhatTheModelRecorded) {
    std::ofstream(dir_ / "blur.json") << R"({"blur_range": 1.5})";
    const std::string config = " --config " + shell_quote((dir_ / "blur.json").string());
    const fs::path straight = dir_ / "straight", resumed = dir_ / "resumed";
    ASSERT_EQ(train_tiny(straight.string(), 4, config).status, 0);
    ASSERT_EQ(train_tiny(resumed.string(), 2, config).status, 0);
    fs::remove(dir_ / "blur.json");
    const RunResult r = train(" --labels " + shell_quote((root_ / "maps").string()) + " --model-dir " +
                              shell_quote(resumed.string()) + " --steps 4 --device cpu --resume");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(weights_of(resumed) == weights_of(straight)) << "not the uninterrupted run";
    // What is given must still match: another seed or preset draws other samples.
    const std::string minimal = " --labels " + shell_quote((root_ / "maps").string()) + " --model-dir " +
                                shell_quote(resumed.string()) + " --steps 6 --device cpu --resume";
    expect_bad(minimal + " --seed 9", "was trained with seed 5", resumed);
    expect_bad(minimal + " --preset infant-t2", "this run asks for \"infant-t2\"", resumed);
    // A --config naming a preset is held to the model's record, not to a --preset nobody gave.
    std::ofstream(dir_ / "t2.json") << R"({"preset": "infant-t2", "blur_range": 1.5})";
    expect_bad(minimal + " --config " + shell_quote((dir_ / "t2.json").string()), "this run asks for \"infant-t2\"",
               resumed);
    std::ofstream(dir_ / "t1.json") << R"({"preset": "infant-t1", "blur_range": 1.5})";
    const RunResult named = train(minimal + " --config " + shell_quote((dir_ / "t1.json").string()));
    EXPECT_EQ(named.status, 0) << named.err;
    // The recorded preset given again continues the recorded generator (the preset's own
    // blur_range was held against the --config's and refused).
    const RunResult preset =
        train(" --labels " + shell_quote((root_ / "maps").string()) + " --model-dir " + shell_quote(resumed.string()) +
              " --steps 7 --device cpu --resume --preset infant-t1");
    EXPECT_EQ(preset.status, 0) << preset.err;

    // A configuration's crop need not be a cube: the recorded crop is taken as it is.
    std::ofstream(dir_ / "box.json") << R"({"output_shape": [32, 24, 32]})";
    const fs::path box = dir_ / "box";
    ASSERT_EQ(train(" --labels " + shell_quote((root_ / "maps").string()) + " --model-dir " + shell_quote(box.string()) +
                    " --steps 2 --steps-per-epoch 2 --levels 2 --features 4 --device cpu --config " +
                    shell_quote((dir_ / "box.json").string()))
                  .status,
              0);
    const RunResult boxed = train(" --labels " + shell_quote((root_ / "maps").string()) + " --model-dir " +
                                  shell_quote(box.string()) + " --steps 3 --device cpu --resume");
    EXPECT_EQ(boxed.status, 0) << boxed.err;
    // A --config naming another crop asks for it, as --shape does: refused (the recorded crop
    // replaced it without a word).
    std::ofstream(dir_ / "cube.json") << R"({"output_shape": [32, 32, 32]})";
    expect_bad(" --labels " + shell_quote((root_ / "maps").string()) + " --model-dir " + shell_quote(box.string()) +
                   " --steps 4 --device cpu --resume --config " + shell_quote((dir_ / "cube.json").string()),
               "was trained with crop [32,24,32], this run asks for [32,32,32]", box);
    // Without --steps, the total recorded (3, the last one asked for): no step is left to run.
    // (It went on to the default 900000.)
    const std::string log = test::read_text((box / "training_log.csv").string());
    const RunResult done = train(" --labels " + shell_quote((root_ / "maps").string()) + " --model-dir " +
                                 shell_quote(box.string()) + " --device cpu --resume");
    EXPECT_EQ(done.status, 0) << done.err;
    EXPECT_NE(done.out.find("is already at step 3: nothing to train"), std::string::npos) << done.out;
    EXPECT_EQ(done.out.find("900000"), std::string::npos) << done.out;
    EXPECT_EQ(test::read_text((box / "training_log.csv").string()), log) << "a step ran";
    // Nor is a change said that no step makes (one thread count of the two is not the record's).
    for (const char* threads : {"1", "2"}) {
        const RunResult idle = train(" --labels " + shell_quote((root_ / "maps").string()) + " --model-dir " +
                                     shell_quote(box.string()) + " --device cpu --resume --threads " + threads);
        EXPECT_EQ(idle.status, 0) << idle.err;
        EXPECT_EQ(idle.err.find("records the change"), std::string::npos) << idle.err;
    }
}

// Starts `args` directly (no shell in between, so a signal reaches it) with the default
// dispositions a shell gives a command, its stdout and stderr into the files.
pid_t start_process(std::vector<std::string> args, const std::string& out_file, const std::string& err_file) {
    const pid_t pid = ::fork();
    if (pid != 0) return pid;
    ::signal(SIGINT, SIG_DFL);  // the test runner's dispositions are not the user's
    ::signal(SIGTERM, SIG_DFL);
    if (!std::freopen(out_file.c_str(), "w", stdout) || !std::freopen(err_file.c_str(), "w", stderr)) ::_exit(127);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
}

// Whether `pid` ended by `deadline` (its wait status in `status`); killed otherwise.
bool exited_by(pid_t pid, std::chrono::steady_clock::time_point deadline, int& status) {
    while (::waitpid(pid, &status, WNOHANG) != pid) {
        if (std::chrono::steady_clock::now() > deadline) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
}

// `train` with `options` into `model` for far more steps than will run, started directly, and
// returned once stdout says a checkpoint is saved (or `deadline` passes).
pid_t start_until_a_checkpoint(const std::vector<std::string>& options, const fs::path& model,
                               const std::string& out_file, const std::string& err_file,
                               std::chrono::steady_clock::time_point deadline) {
    std::vector<std::string> args{test::cli_path(), "train"};
    args.insert(args.end(), options.begin(), options.end());
    args.insert(args.end(), {"--model-dir", model.string(), "--steps", "100000"});
    const pid_t pid = start_process(args, out_file, err_file);
    if (pid < 0) return pid;
    while (read_text(out_file).find("checkpoint saved") == std::string::npos &&
           std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return pid;
}

// Starts the binary directly (no shell in between, so the signal reaches it), waits for its
// first checkpoint, sends `sig` and expects a clean exit (128 + sig) with a checkpoint; then resumes.
// `repeated`: the signal is sent again every 5 ms until the run ends (as the kernel sends SIGXCPU
// past a soft CPU limit), and must have reached the running process more than once. `steps`:
// the run's --steps; `printed`: where given, the signal waits for this text on stdout instead.
void interrupt_and_resume(const fs::path& dir, const std::vector<std::string>& base, int sig, bool repeated = false,
                          const std::string& steps = "1000", const std::string& printed = "") {
    const fs::path model = dir / "model";
    std::vector<std::string> args{test::cli_path(), "train"};
    args.insert(args.end(), base.begin(), base.end());
    // Far more steps than will run (`base` has an epoch per step, so a checkpoint comes quickly).
    args.insert(args.end(), {"--model-dir", model.string(), "--steps", steps});
    const std::string out_file = (dir / "stdout.txt").string(), err_file = (dir / "stderr.txt").string();

    const pid_t pid = start_process(args, out_file, err_file);
    ASSERT_GE(pid, 0);

    // Wait for the first checkpoint, or the text (or an early exit).
    int status = 0;
    bool exited = false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    auto ready = [&] {
        return printed.empty() ? fs::exists(model / "model.json")
                               : read_text(out_file).find(printed) != std::string::npos;
    };
    while (!ready() && std::chrono::steady_clock::now() < deadline) {
        if (::waitpid(pid, &status, WNOHANG) == pid) {
            exited = true;
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (exited || !ready()) {
        if (!exited) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
        }
        FAIL() << "no checkpoint or '" << printed << "' within 60 s; stdout: " << read_text(out_file)
               << "; stderr: " << read_text(err_file);
    }
    ASSERT_EQ(::kill(pid, sig), 0);
    int sent_while_running = 1;
    const auto wait_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (::waitpid(pid, &status, WNOHANG) != pid) {
        if (std::chrono::steady_clock::now() > wait_deadline) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            FAIL() << "still running 60 s after the signal";
        }
        if (repeated && ::kill(pid, sig) == 0) ++sent_while_running;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (repeated) {
        EXPECT_GE(sent_while_running, 2) << "the run ended before the signal was repeated";
    }
    ASSERT_TRUE(WIFEXITED(status)) << "ended by a signal: " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    // 128 + the signal, as synth: the run did not reach --steps, and `train && predict` must stop.
    EXPECT_EQ(WEXITSTATUS(status), 128 + sig) << read_text(err_file);

    // "interrupted at step N: checkpoint saved in DIR", and the files agree on N.
    const std::string out = read_text(out_file);
    const size_t at = out.find("interrupted at step ");
    ASSERT_NE(at, std::string::npos) << out;
    const int64_t step = std::stoll(out.substr(at + 20));
    EXPECT_NE(out.find("checkpoint saved in " + model.string()), std::string::npos) << out;
    EXPECT_GE(step, 1);
    EXPECT_LT(step, 1000);
    EXPECT_EQ(optimizer_step(model), step);
    const std::vector<std::string> rows = log_rows(model);
    ASSERT_EQ(rows.size(), size_t(step));
    EXPECT_EQ(rows.back().substr(0, rows.back().find(',')), std::to_string(step));

    // Resume from the interruption to two steps further, an epoch a step.
    std::vector<std::string> resume_args;
    for (size_t i = 0; i < base.size(); ++i)
        if (base[i] == "--steps-per-epoch")
            ++i;
        else
            resume_args.push_back(base[i]);
    resume_args.insert(resume_args.end(), {"--model-dir", model.string(), "--steps", std::to_string(step + 2),
                                           "--steps-per-epoch", "1", "--resume"});
    std::string command = shell_quote(test::cli_path()) + " train";
    for (const std::string& a : resume_args) command += " " + shell_quote(a);
    const RunResult r = test::run_command(command);
    ASSERT_EQ(r.status, 0) << r.err;
    const std::vector<std::string> resumed = log_rows(model);
    ASSERT_EQ(resumed.size(), size_t(step + 2));
    EXPECT_EQ(std::vector<std::string>(resumed.begin(), resumed.begin() + step), rows);
}

// A model.json from before full_resolution_probability was recorded resumes where the random
// resolution is off (the parameter changes no draw) and is refused, saying why, where it is on
// (that build drew otherwise).
TEST_F(TrainCli, AModelRecordedBeforeFullResolutionProbabilityResumes) {
    const fs::path model = dir_ / "older";
    ASSERT_EQ(train_tiny(model.string(), 2).status, 0);
    const fs::path json = model / "model.json";
    auto record_as_older_build = [&](bool random_resolution) {
        nlohmann::json spec = nlohmann::json::parse(read_text(json));
        nlohmann::json& generator = spec["training"]["generator"];
        ASSERT_EQ(generator.erase("full_resolution_probability"), 1u);
        generator["randomise_resolution"] = random_resolution;
        test::write_edited_record(json, spec);
    };
    record_as_older_build(false);
    const RunResult r = train_tiny(model.string(), 3, " --resume");
    EXPECT_EQ(r.status, 0) << r.err;
    record_as_older_build(true);
    expect_bad(joined(tiny_args()) + " --model-dir " + shell_quote(model.string()) + " --steps 4 --resume",
               "was trained by an earlier build, whose random resolution drew otherwise", model);
}

// A resume without --labels reads the maps the record names (it was refused: "option --labels is
// required", though the run had been given them); maps no longer there, or a record from before
// the path, are refused naming what to give. The run goes on as the uninterrupted one.
TEST_F(TrainCli, AResumeWithoutLabelsReadsTheRecordedMaps) {
    const fs::path maps = dir_ / "own_maps", model = dir_ / "own";
    fs::create_directories(maps);
    fs::copy_file(root_ / "maps" / "phantom_2mo.nii.gz", maps / "phantom_2mo.nii.gz");
    const std::string given =
        joined(tiny_args({{"--labels", maps.string()}})) + " --model-dir " + shell_quote(model.string());
    ASSERT_EQ(train(given + " --steps 1").status, 0);
    EXPECT_EQ(nlohmann::json::parse(read_text(model / "model.json"))["training"]["maps_path"], maps.string());
    const RunResult info = test::run_command(test::cli_path() + " info " + shell_quote(model.string()));
    EXPECT_NE(info.out.find("  label maps: " + maps.string() + " (1 map, which --resume reads without --labels)\n"),
              std::string::npos)
        << info.out;
    // An export records the maps too, but is not resumed: no such promise.
    ASSERT_EQ(test::run_command(test::cli_path() + " export --model " + shell_quote(model.string()) + " --keras " +
                                shell_quote((dir_ / "own.h5").string()))
                  .status,
              0);
    const RunResult exported = test::run_command(test::cli_path() + " info " + shell_quote((dir_ / "own.h5").string()));
    EXPECT_NE(exported.out.find("  label maps: " + maps.string() + " (1 map)\n"), std::string::npos) << exported.out;
    const RunResult resumed = train(" --model-dir " + shell_quote(model.string()) + " --resume --steps 2");
    ASSERT_EQ(resumed.status, 0) << resumed.err;
    EXPECT_EQ(resumed.err, "") << "the same maps: nothing to warn of";
    ASSERT_EQ(train_tiny((dir_ / "straight").string(), 2).status, 0);
    EXPECT_TRUE(weights_of(model) == weights_of(dir_ / "straight")) << "not the uninterrupted run";

    fs::rename(maps, dir_ / "moved_maps");
    const std::string resume = " --model-dir " + shell_quote(model.string()) + " --resume --steps 3";
    expect_bad(resume,
               "model.json: the label maps it was trained on, " + maps.string() +
                   ", are not there (moved, or on another machine): give --labels",
               model);
    nlohmann::json older = nlohmann::json::parse(read_text(model / "model.json"));
    older["training"].erase("maps_path");
    test::write_edited_record(model / "model.json", older);
    expect_bad(resume,
               "model.json: records no label maps' path (written before 2026-12-07, or a name of bytes JSON "
               "cannot hold): give --labels",
               model);

    // A folder named in Latin-1 bytes, which JSON cannot hold: trained (an internal error wrote
    // the record), its path not recorded, so a resume asks for --labels.
    const fs::path latin1 = dir_ / "maps\xe9", latin1_model = dir_ / "latin1";
    fs::create_directories(latin1);
    fs::copy_file(root_ / "maps" / "phantom_2mo.nii.gz", latin1 / "phantom_2mo.nii.gz");
    const RunResult trained = train(joined(tiny_args({{"--labels", latin1.string()}})) + " --model-dir " +
                                    shell_quote(latin1_model.string()) + " --steps 1");
    ASSERT_EQ(trained.status, 0) << trained.err;
    EXPECT_FALSE(nlohmann::json::parse(read_text(latin1_model / "model.json"))["training"].contains("maps_path"));
    expect_bad(" --model-dir " + shell_quote(latin1_model.string()) + " --resume --steps 2",
               "records no label maps' path", latin1_model);
}

// Adam's step count sets its bias corrections: one edited in the optimizer's metadata (which its
// data_crc32 does not cover) is refused, where the resume went on with every update changed.
TEST_F(TrainCli, AnEditedAdamStepIsRefused) {
    const fs::path model = dir_ / "adam";
    ASSERT_EQ(train_tiny(model.string(), 2).status, 0);
    const std::string optimizer = (model / "model.optimizer.safetensors").string();
    SafetensorsFile state = read_safetensors(optimizer);
    ASSERT_EQ(state.metadata.at("adam_step"), "2");
    state.metadata["adam_step"] = "1";
    write_safetensors(optimizer, state.tensors, state.metadata);
    expect_bad(joined(tiny_args()) + " --model-dir " + shell_quote(model.string()) + " --steps 3 --resume",
               "model.optimizer.safetensors: adam_step 1 where the checkpoint of step 2 has taken 2: the file is "
               "damaged or was edited",
               model);
}

// A model read while a train replaces its checkpoint (an evaluation polling a live run): the
// weights of one step beside the description of the step before are read again until the
// description comes (predict failed 3 times in 120 polls, blaming the user); two files that stay
// apart are refused, naming both steps.
TEST_F(TrainCli, AModelReadWhileItsCheckpointIsReplacedIsReadAgain) {
    const fs::path model = dir_ / "live";
    ASSERT_EQ(train_tiny(model.string(), 1).status, 0);
    const std::string first = read_text(model / "model.json");
    fs::copy_file(model / "model.safetensors", dir_ / "first.safetensors");
    ASSERT_EQ(train_tiny(model.string(), 2, " --resume").status, 0);
    const std::string second = read_text(model / "model.json");
    fs::copy_file(model / "model.safetensors", dir_ / "second.safetensors");
    const std::string info = test::cli_path() + " info " + shell_quote(model.string());

    std::ofstream(model / "model.json") << first;
    const RunResult apart = test::run_command(info);
    EXPECT_EQ(apart.status, 2);
    EXPECT_NE(apart.err.find("model.safetensors: its weights are of step 2 (run "), std::string::npos) << apart.err;
    EXPECT_NE(apart.err.find("model.json describes step 1 (run "), std::string::npos) << apart.err;

    // The description of step 2 arrives 0.3 s into the read, as train's rename brings it.
    std::thread train_renames([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        std::ofstream(model / "model.json.next") << second;
        fs::rename(model / "model.json.next", model / "model.json");
    });
    const RunResult read_again = test::run_command(info);
    train_renames.join();
    EXPECT_EQ(read_again.status, 0) << read_again.err;
    EXPECT_NE(read_again.out.find("step 2"), std::string::npos) << read_again.out;
    // The description ahead of the weights read: the weights are read again once they come.
    fs::copy_file(dir_ / "first.safetensors", model / "model.safetensors", fs::copy_options::overwrite_existing);
    std::thread weights_arrive([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        fs::copy_file(dir_ / "second.safetensors", model / "next.safetensors");
        fs::rename(model / "next.safetensors", model / "model.safetensors");
    });
    const RunResult weights_again = test::run_command(info);
    weights_arrive.join();
    EXPECT_EQ(weights_again.status, 0) << weights_again.err << weights_again.out;
}

// A parameter a record lacks (its build had none) is its preset's, as that build drew: a --config
// that changes it is refused like any other change (it was dropped from the comparison, and the
// record then named the new value as if the run had always used it).
TEST_F(TrainCli, AParameterARecordLacksIsItsPresetsOnResume) {
    const fs::path model = dir_ / "lacks";
    ASSERT_EQ(train_tiny(model.string(), 2).status, 0);
    const fs::path json = model / "model.json";
    nlohmann::json spec = nlohmann::json::parse(read_text(json));
    const nlohmann::json preset_value = spec["training"]["generator"]["gamma_std"];
    ASSERT_EQ(spec["training"]["generator"].erase("gamma_std"), 1u);
    test::write_edited_record(json, spec);
    nlohmann::json changed = spec["training"]["generator"];
    changed["gamma_std"] = 2.0;
    std::ofstream(dir_ / "changed.json") << changed.dump();
    expect_bad(joined(tiny_args()) + " --model-dir " + shell_quote(model.string()) + " --steps 3 --resume --config " +
                   shell_quote((dir_ / "changed.json").string()),
               "the generator parameter 'gamma_std' " + preset_value.dump() + ", this run's is 2", model);
    const RunResult r = train_tiny(model.string(), 3, " --resume");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(nlohmann::json::parse(read_text(json))["training"]["generator"]["gamma_std"], preset_value);
}

// A model.json from before resolution_unit, trained with the random resolution on, counted its
// bounds in the maps' voxels: a resume goes on so (and records it), and a --config that would
// now count mm is refused, naming the parameter.
TEST_F(TrainCli, AModelRecordedBeforeResolutionUnitResumesInVoxels) {
    const fs::path model = dir_ / "voxels";
    const fs::path config = dir_ / "random_resolution.json";
    std::ofstream(config) << R"({"randomise_resolution": true})";
    const std::string with_config = " --config " + shell_quote(config.string());
    ASSERT_EQ(train_tiny(model.string(), 2, with_config).status, 0);
    const fs::path json = model / "model.json";
    nlohmann::json spec = nlohmann::json::parse(read_text(json));
    EXPECT_EQ(spec["training"]["generator"]["resolution_unit"], "mm");
    ASSERT_EQ(spec["training"]["generator"].erase("resolution_unit"), 1u);
    test::write_edited_record(json, spec);

    const RunResult r = train_tiny(model.string(), 3, " --resume");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("was written before resolution_unit: its random resolution's bounds count the maps' voxels, "
                         "and the run goes on so"),
              std::string::npos)
        << r.err;
    EXPECT_EQ(nlohmann::json::parse(read_text(json))["training"]["generator"]["resolution_unit"], "voxel");
    expect_bad(
        joined(tiny_args()) + " --model-dir " + shell_quote(model.string()) + " --steps 4 --resume" + with_config,
        "the generator parameter 'resolution_unit' \"voxel\", this run's is \"mm\"", model);
}

// model.json records the validation: a resume given its maps again, or none where the recorded
// ones still are, validates as recorded (the interval and sample count); one whose maps moved or
// with another set says validation.csv's rows stop or change. (A resume dropped the validation
// without a word, and one with the maps but the default sample count appended rows of another
// set; one without --validation-labels stopped it, where `--resume` alone is to go on.)
TEST_F(TrainCli, AResumeValidatesAsRecorded) {
    const fs::path model = dir_ / "validated";
    const fs::path held_out = dir_ / "held_copy";
    fs::create_directories(held_out);
    fs::copy_file(root_ / "held_out" / "phantom_2mo_b.nii.gz", held_out / "phantom_2mo_b.nii.gz");
    const std::string maps = shell_quote(held_out.string());
    ASSERT_EQ(
        train_tiny(model.string(), 2, " --validation-labels " + maps + " --validate-every 1 --validation-samples 2")
            .status,
        0);
    // Inside a model's kept-weights folder: refused (a model was trained among its kept weights).
    expect_bad(joined(tiny_args()) + " --steps 1 --model-dir " + shell_quote((model / "weights").string()),
               "error: --model-dir " + (model / "weights").string() + " is the folder of the weights the model in " +
                   model.string() + " keeps: choose another",
               model / "weights");
    const nlohmann::json recorded = nlohmann::json::parse(read_text(model / "model.json"))["training"]["validation"];
    EXPECT_EQ(recorded["every"], 1);
    EXPECT_EQ(recorded["samples"], 2);
    EXPECT_EQ(recorded["maps"], 1);
    EXPECT_EQ(recorded["maps_path"], held_out.string());
    const std::string first_rows = read_text(model / "validation.csv");
    // The training maps as the validation's: said.
    const RunResult trained_on = train_tiny((dir_ / "not_held_out").string(), 1,
                                            " --validation-labels " + shell_quote((root_ / "maps").string()));
    ASSERT_EQ(trained_on.status, 0) << trained_on.err;
    EXPECT_NE(
        trained_on.err.find("warning: train: the validation map (" + (root_ / "maps" / "phantom_2mo.nii.gz").string() +
                            ") is a training map too, the same labels on the same grid: its Dice is not that "
                            "of maps held out"),
        std::string::npos)
        << trained_on.err;

    const RunResult same = train_tiny(model.string(), 3, " --resume --validation-labels " + maps);
    ASSERT_EQ(same.status, 0) << same.err;
    EXPECT_EQ(same.err.find("validation"), std::string::npos) << same.err;
    const std::vector<std::string> rows = lines_of(read_text(model / "validation.csv"));
    ASSERT_EQ(rows.size(), 4u) << "a row a step: 1, 2, then 3";
    // The set validated again: a model trained on it to step 3, measured as before.
    EXPECT_EQ(read_text(model / "validation.csv").rfind(first_rows, 0), 0u);
    EXPECT_EQ(nlohmann::json::parse(read_text(model / "model.json"))["training"]["validation"], recorded);

    const RunResult other =
        train_tiny(model.string(), 4, " --resume --validation-labels " + maps + " --validation-samples 3");
    ASSERT_EQ(other.status, 0) << other.err;
    EXPECT_NE(other.err.find("warning: train: --validation-samples 3: " + (model / "model.json").string() +
                             " was validated on 2 samples: validation.csv's rows after step 3 measure another set"),
              std::string::npos)
        << other.err;
    // The history says from which step the other set was validated.
    const nlohmann::json history = nlohmann::json::parse(read_text(model / "model.json"))["training"]["history"];
    ASSERT_EQ(history.size(), 2u) << history.dump();
    EXPECT_EQ(history[0]["validation"]["samples"], 2);
    EXPECT_EQ(history[1]["from_step"], 3);
    EXPECT_EQ(history[1]["validation"]["samples"], 3);

    // Without --validation-labels: the recorded maps, where they are.
    const RunResult none = train_tiny(model.string(), 5, " --resume");
    ASSERT_EQ(none.status, 0) << none.err;
    EXPECT_EQ(none.err.find("validation"), std::string::npos) << none.err;
    EXPECT_EQ(lines_of(read_text(model / "validation.csv")).size(), 6u) << "rows at steps 1 to 5";
    // Moved away: the table ends at step 5, said.
    fs::rename(held_out, dir_ / "held_moved");
    const RunResult moved = train_tiny(model.string(), 6, " --resume");
    ASSERT_EQ(moved.status, 0) << moved.err;
    EXPECT_NE(
        moved.err.find("was validated every 1 steps; this run validates on none (the maps it records cannot be used: " +
                       held_out.string() + ": cannot open"),
        std::string::npos)
        << moved.err;
    EXPECT_NE(moved.err.find("), so validation.csv and loss.png's Dice stop at step 5"), std::string::npos)
        << moved.err;
    fs::rename(dir_ / "held_moved", held_out);
    // The record kept through those runs: given the maps again, the validation goes on as before.
    EXPECT_EQ(nlohmann::json::parse(read_text(model / "model.json"))["training"]["validation"]["samples"], 3);
    const RunResult again = train_tiny(model.string(), 7, " --resume --validation-labels " + maps);
    ASSERT_EQ(again.status, 0) << again.err;
    EXPECT_EQ(again.err.find("validation"), std::string::npos) << again.err;
    EXPECT_EQ(lines_of(read_text(model / "validation.csv")).size(), 7u) << "rows at steps 1 to 5, then 7";
    EXPECT_EQ(nlohmann::json::parse(read_text(model / "model.json"))["training"]["history"].size(), 2u)
        << "runs without the maps, and the set again, change nothing the history keeps";

    // A record or a table not of this model is refused before a step runs (a table of other
    // columns failed at the next checkpoint, the step lost; odd records were taken as none).
    const std::string resume = joined(tiny_args()) + " --model-dir " + shell_quote(model.string()) +
                               " --steps 8 --resume --validation-labels " + maps;
    const std::string table = read_text(model / "validation.csv");
    std::ofstream(model / "validation.csv") << "step,mean_dice,dice_0\n1,0.5,1\n";
    expect_bad(resume, "validation.csv: 3 columns, where the model's validation table has 36", model);
    std::ofstream(model / "validation.csv") << table;
    const std::string json = read_text(model / "model.json");
    nlohmann::json odd = nlohmann::json::parse(json);
    odd["training"]["validation"]["every"] = 1.5;
    test::write_edited_record(model / "model.json", odd);
    expect_bad(resume, "field 'training.validation' must hold 'every' (steps, at least 1) and 'samples'", model);
    std::ofstream(model / "model.json") << json;

    // A table removed by hand: its rows are lost, said (the next table held the new rows alone, unsaid).
    fs::remove(model / "validation.csv");
    const RunResult lost = train_tiny(model.string(), 8, " --resume --validation-labels " + maps);
    ASSERT_EQ(lost.status, 0) << lost.err;
    EXPECT_NE(lost.err.find("validation.csv is missing, though the model was validated every 1 steps: its rows up to "
                            "step 7 are lost"),
              std::string::npos)
        << lost.err;
}

// The deepest level's bound counts the levels the run has: on a resume giving --features alone,
// the record's (it counted the default 5, and refused a model of 520 features and 1 level).
TEST_F(TrainCli, AResumeGivingFeaturesAloneKeepsTheRecordedLevels) {
    const fs::path model = dir_ / "wide";
    const std::string args = " --labels " + shell_quote((root_ / "maps").string()) + " --model-dir " +
                             shell_quote(model.string()) + " --shape 8 --levels 1 --features 520 --device cpu";
    ASSERT_EQ(train(args + " --steps 1").status, 0);
    const RunResult r = train(" --labels " + shell_quote((root_ / "maps").string()) + " --model-dir " +
                              shell_quote(model.string()) + " --features 520 --resume --steps 2");
    EXPECT_EQ(r.status, 0) << r.err;
}

// A recorded option is read as the command line reads it, or refused naming the field: a batch
// of 2^32 + 1 was read as 1 (and refused as "this run asks for 1"), a negative rate skipped for
// the default, a weighted-L2 count of another type dropped (the resume went on to the Dice).
TEST_F(TrainCli, AResumeRefusesARecordOfOddOptions) {
    const fs::path model = dir_ / "odd";
    ASSERT_EQ(train_tiny(model.string(), 1).status, 0);
    const std::string resume = joined(tiny_args()) + " --model-dir " + shell_quote(model.string()) + " --resume";
    const std::string json = read_text(model / "model.json");
    const std::vector<std::tuple<const char*, nlohmann::json, std::string>> odd{
        {"batch", 4294967297ll, "field 'training.batch' must be an integer from 1 to 64, got 4294967297"},
        {"lr", -1, "field 'training.lr' must be a positive number from 1.17549e-38"},
        {"wl2_epochs", "3", "field 'training.wl2_epochs' must be an integer from 0 to"},
        {"steps", 0, "field 'training.steps' must be an integer from 1 to"},
        {"crop", {0, 32, 32}, "field 'training.crop' must be three voxel counts (1 to 4096), got [0,32,32]"},
        {"precision", 16, "field 'training.precision' must be fp32 or bf16"},
        {"seed", -5, "field 'training.seed' must be an integer from 0 to 2^64 - 1, got -5"},
        {"generator", "infant", "field 'training.generator' must be an object of generator parameters"}};
    for (const auto& [key, value, fragment] : odd) {
        nlohmann::json record = nlohmann::json::parse(json);
        record["training"][key] = value;
        test::write_edited_record(model / "model.json", record);
        expect_bad(resume + " --steps 2", fragment, model);
    }
    // An imported model's record: said so, in one line (it warned of an older model's gaps twice,
    // then blamed a run killed while writing its first checkpoint).
    nlohmann::json imported = nlohmann::json::parse(json);
    imported["training"] = {{"imported_from", "T1.h5"}, {"keras_layout", "whole model"}};
    test::write_edited_record(model / "model.json", imported);
    expect_bad(resume + " --steps 2",
               "model.json: imported from \"T1.h5\", not trained here: there is no training "
               "state to resume",
               model);
    // An older record's gaps are warned of only once the run is not refused (expect_bad: one line).
    nlohmann::json older = nlohmann::json::parse(json);
    older["training"].erase("steps");
    older["training"].erase("generator");
    test::write_edited_record(model / "model.json", older);
    expect_bad(resume + " --batch 2", "was trained with batch 1, this run asks for 2", model);
    std::ofstream(model / "model.json") << json;
    EXPECT_EQ(train(resume + " --steps 2").status, 0) << "the record as written resumes";
    // Nor before the refusal of a checkpoint past --steps, nor on a run with nothing to train.
    nlohmann::json older_at_2 = nlohmann::json::parse(read_text(model / "model.json"));
    older_at_2["training"].erase("steps");
    older_at_2["training"].erase("generator");
    test::write_edited_record(model / "model.json", older_at_2);
    expect_bad(resume + " --steps 1", "the checkpoint is at step 2, past --steps 1", model);
    const RunResult idle = train(resume + " --steps 2");
    EXPECT_EQ(idle.status, 0) << idle.err;
    EXPECT_EQ(idle.err, "") << "nothing to train: nothing to warn of";
}

// model.json records whether the outputs mirror as a flip mirrors the structures (predict's flip
// averaging); a model of one hemisphere does not, and train says so.
TEST_F(TrainCli, TheRecordSaysWhetherTheOutputsMirror) {
    ASSERT_EQ(train_tiny((dir_ / "both").string(), 1).status, 0);
    EXPECT_EQ(nlohmann::json::parse(read_text(dir_ / "both" / "model.json"))["preprocessing"]["flip_averaging"], true);
    std::ofstream(dir_ / "left.json") << R"({"segmentation_labels": [0, 2, 3, 4, 17]})";
    const RunResult left =
        train_tiny((dir_ / "left").string(), 1, " --config " + shell_quote((dir_ / "left.json").string()));
    ASSERT_EQ(left.status, 0) << left.err;
    EXPECT_NE(left.err.find("warning: train: generation label 2 is learned as 2, so its mirror image (41) should be "
                            "learned as 2 (2 has no twin among the outputs), but is learned as 0: the outputs do not "
                            "swap as a left/right flip swaps the structures, so predict segments with this model "
                            "without averaging a scan with its mirror image"),
              std::string::npos)
        << left.err;
    EXPECT_EQ(nlohmann::json::parse(read_text(dir_ / "left" / "model.json"))["preprocessing"]["flip_averaging"], false);
    // info says where a model's generator departs from its preset (both said "preset infant-t1").
    const RunResult both = test::run_command(test::cli_path() + " info " + shell_quote((dir_ / "both").string()));
    EXPECT_NE(both.out.find("  generator: preset infant-t1's parameters\n"), std::string::npos) << both.out;
    const RunResult left_info = test::run_command(test::cli_path() + " info " + shell_quote((dir_ / "left").string()));
    EXPECT_NE(left_info.out.find("  generator: preset infant-t1's but 1 parameter: segmentation_labels (5 values)\n"),
              std::string::npos)
        << left_info.out;
}

// A lab's 9-tissue protocol numbered 1 to 8 without flips: every label one side's as FreeSurfer
// numbers them, all named in one warning (the first alone was named, so a run at a time).
TEST_F(TrainCli, EveryOneSidedLabelIsNamedAtOnce) {
    LabelMap map = read_labels((root_ / "maps" / "phantom_2mo.nii.gz").string());
    for (int32_t& v : map.data) v = v == 0 ? 0 : v == 2 || v == 41 ? 2 : v == 3 || v == 42 ? 3 : 5;
    fs::create_directories(dir_ / "tissues");
    write_labels((dir_ / "tissues" / "m.nii.gz").string(), map);
    std::ofstream(dir_ / "tissues.json") << R"({"generation_labels": [0, 2, 3, 5], "segmentation_labels": [0, 2, 3, 5],
        "flip_probability": 0, "prior_means": [], "prior_stds": [], "fused_classes": []})";
    const RunResult r = train(joined(tiny_args({{"--labels", (dir_ / "tissues").string()}})) + " --model-dir " +
                              shell_quote((dir_ / "model").string()) + " --config " +
                              shell_quote((dir_ / "tissues.json").string()) + " --steps 1");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("warning: train: generation labels 2, 3, 5 are one side's as FreeSurfer numbers labels and "
                         "their twins are not generation labels (another atlas's labels of no side: lr_twins [[2, 2], "
                         "...] says so)"),
              std::string::npos)
        << r.err;
}

// Labels numbered otherwise than FreeSurfer's: a model records the sides its configuration
// declared (lr_twins), for predict's mirror averaging; a label of no known side records none (its
// mirror image could be another label's), and says so.
TEST_F(TrainCli, TheRecordKeepsTheDeclaredTwins) {
    LabelMap map = read_labels((root_ / "maps" / "phantom_2mo.nii.gz").string());
    for (int32_t& v : map.data) v = v == 3 ? 5003 : v == 42 ? 5042 : v;  // cortex: an atlas's own numbers
    fs::create_directories(dir_ / "atlas");
    write_labels((dir_ / "atlas" / "m.nii.gz").string(), map);
    std::vector<int32_t> generation = labels::generation_labels(), segmentation = labels::segmentation_labels();
    for (std::vector<int32_t>* list : {&generation, &segmentation})
        for (int32_t& v : *list) v = v == 3 ? 5003 : v == 42 ? 5042 : v;
    nlohmann::json config = {{"generation_labels", generation},
                             {"segmentation_labels", segmentation},
                             {"prior_means", nlohmann::json::array()},
                             {"prior_stds", nlohmann::json::array()}};
    const auto run = [&](const std::string& name) {
        std::ofstream(dir_ / (name + ".json")) << config.dump();
        return train(joined(tiny_args({{"--labels", (dir_ / "atlas").string()}})) + " --model-dir " +
                     shell_quote((dir_ / name).string()) + " --steps 1 --config " +
                     shell_quote((dir_ / (name + ".json")).string()));
    };
    const RunResult undeclared = run("undeclared");
    ASSERT_EQ(undeclared.status, 0) << undeclared.err;
    EXPECT_NE(undeclared.err.find("warning: train: generation label 5003 is in none of FreeSurfer's classes and "
                                  "lr_twins does not declare its side: the outputs do not swap"),
              std::string::npos)
        << undeclared.err;
    nlohmann::json record = nlohmann::json::parse(read_text(dir_ / "undeclared" / "model.json"))["preprocessing"];
    EXPECT_EQ(record["flip_averaging"], false);
    EXPECT_FALSE(record.contains("lr_twins"));

    config["lr_twins"] = {{5003, 5042}};
    const RunResult declared = run("declared");
    ASSERT_EQ(declared.status, 0) << declared.err;
    EXPECT_EQ(declared.err, "");
    record = nlohmann::json::parse(read_text(dir_ / "declared" / "model.json"))["preprocessing"];
    EXPECT_EQ(record["flip_averaging"], true);
    EXPECT_EQ(record["lr_twins"], nlohmann::json({{5003, 5042}}));
    const Preprocessing read =
        parse_preprocessing(load_model_spec((dir_ / "declared" / "model.safetensors").string()), "model.json");
    EXPECT_EQ(read.lr_twins, (std::vector<std::vector<int32_t>>{{5003, 5042}}));
    const RunResult info = test::run_command(test::cli_path() + " info " + shell_quote((dir_ / "declared").string()));
    EXPECT_NE(info.out.find("  declared sides (lr_twins): 5003/5042\n"), std::string::npos) << info.out;
    // A record whose pairs do not swap back is refused by what reads it (predict, info).
    fs::create_directories(dir_ / "edited");
    for (const char* name : {"model.safetensors", "model.json"})
        fs::copy_file(dir_ / "declared" / name, dir_ / "edited" / name);
    nlohmann::json edited = nlohmann::json::parse(read_text(dir_ / "edited" / "model.json"));
    edited["preprocessing"]["lr_twins"] = {{2, 2}};
    test::write_edited_record(dir_ / "edited" / "model.json", edited);
    const RunResult refused = test::run_command(test::cli_path() + " info " + shell_quote((dir_ / "edited").string()));
    EXPECT_EQ(refused.status, 2);
    EXPECT_NE(refused.err.find("preprocessing.lr_twins: label 41's twin is 2, whose twin is 2"), std::string::npos)
        << refused.err;
    // A record from before lr_twins, of a label no class holds with flips on (a flip kept it as
    // one on neither side): resumed as it began, its label declared so.
    config["lr_twins"] = {{5003, 5003}, {5042, 5042}};
    config["flip_probability"] = 0.5;
    ASSERT_EQ(run("flipped").status, 0);
    nlohmann::json older = nlohmann::json::parse(read_text(dir_ / "flipped" / "model.json"));
    older["training"]["generator"].erase("lr_twins");
    test::write_edited_record(dir_ / "flipped" / "model.json", older);
    const RunResult resumed = train(" --model-dir " + shell_quote((dir_ / "flipped").string()) + " --labels " +
                                    shell_quote((dir_ / "atlas").string()) + " --steps 2 --device cpu --resume");
    EXPECT_EQ(resumed.status, 0) << resumed.err;
    // The record as predict reads it pairs 5003's output with 5042's (Predictor's twin channels
    // are these positions; its mirror averaging itself is held by the CUDA/CPU predict tests).
    const std::vector<int> twins = labels::twin_positions(segmentation, read.lr_twins);
    EXPECT_EQ(segmentation[size_t(twins[size_t(labels::index_of(segmentation, 5003))])], 5042);
}

// A resume without --shape asks for the recorded crop: maps too small for it are refused with
// what they give (the refusal said the run "asks for" the smaller crop, which nobody asked for).
TEST_F(TrainCli, AResumeOnMapsTooSmallForTheRecordedCropSaysSo) {
    const fs::path model = dir_ / "cropped";
    ASSERT_EQ(
        train(joined(tiny_args({{"--shape", "64"}})) + " --model-dir " + shell_quote(model.string()) + " --steps 1")
            .status,
        0);
    Grid g;
    g.dim = {40, 40, 40};
    LabelMap small(g);
    for (int64_t k = 10; k < 30; ++k)
        for (int64_t j = 10; j < 30; ++j)
            for (int64_t i = 10; i < 30; ++i) small.at(i, j, k) = i < 20 ? 2 : 41;
    fs::create_directories(dir_ / "small_maps");
    write_labels((dir_ / "small_maps" / "small.nii.gz").string(), small);
    expect_bad(" --labels " + shell_quote((dir_ / "small_maps").string()) + " --model-dir " +
                   shell_quote(model.string()) + " --steps 2 --device cpu --resume",
               "the model was trained on crops of 64x64x64 voxels, which these maps cannot hold (the smallest gives "
               "40x40x40)",
               model);
}

// A batch's Dice is the mean of its samples' (SynthSeg's); records from before pooled them. A
// resume of such a record with batches of several says the loss changed; of batch 1, nothing.
TEST_F(TrainCli, AResumeOfARecordThatPooledTheBatchsDiceIsTold) {
    for (const int batch : {2, 1}) {
        const fs::path model = dir_ / ("pooled" + std::to_string(batch));
        const std::string batch_option = " --batch " + std::to_string(batch);
        ASSERT_EQ(train_tiny(model.string(), 2, batch_option).status, 0);
        const fs::path json = model / "model.json";
        nlohmann::json spec = nlohmann::json::parse(read_text(json));
        EXPECT_EQ(spec["training"]["dice"], "the mean of each sample's per-label Dice");
        ASSERT_EQ(spec["training"].erase("dice"), 1u);
        test::write_edited_record(json, spec);
        const RunResult r = train_tiny(model.string(), 3, " --resume");
        ASSERT_EQ(r.status, 0) << r.err;
        const bool told = r.err.find(
                              "was trained with \"the per-label Dice of the batch's pooled sums\"; this build "
                              "averages each sample's Dice, as SynthSeg: from step 2 the loss") != std::string::npos;
        EXPECT_EQ(told, batch == 2) << r.err;
        const nlohmann::json training = nlohmann::json::parse(read_text(json))["training"];
        EXPECT_EQ(training["dice"], "the mean of each sample's per-label Dice") << "recorded since";
        // The change is in the history, the steps before with the Dice they had.
        EXPECT_EQ(training.contains("history"), batch == 2) << training.dump();
        if (batch == 2) {
            EXPECT_EQ(training["history"][0]["dice"], "the per-label Dice of the batch's pooled sums");
            EXPECT_EQ(training["history"][1]["from_step"], 2);
        }
    }
}

// model.json records what decides the order of the network's sums (threads, oneDNN's
// instruction set, or the GPU): a resume on another says that the weights no longer repeat the
// uninterrupted run's bit for bit, and the history keeps the change. (The thread count was
// neither recorded nor compared: a resume with another OMP_NUM_THREADS drifted without a word.)
TEST_F(TrainCli, TheArithmeticIsRecordedAndAResumeOnAnotherIsTold) {
    const fs::path model = dir_ / "arithmetic";
    const fs::path json = model / "model.json";
    ASSERT_EQ(train_tiny(model.string(), 2, " --threads 1").status, 0);
    const std::string recorded = nlohmann::json::parse(read_text(json))["training"]["arithmetic"];
    EXPECT_EQ(recorded.rfind("cpu, 1 thread, oneDNN ", 0), 0u) << recorded;

    const RunResult same = train_tiny(model.string(), 3, " --threads 1 --resume");
    ASSERT_EQ(same.status, 0) << same.err;
    EXPECT_EQ(same.err.find("another order"), std::string::npos) << same.err;
    EXPECT_FALSE(nlohmann::json::parse(read_text(json))["training"].contains("history"));

    // As if trained on another machine.
    nlohmann::json spec = nlohmann::json::parse(read_text(json));
    spec["training"]["arithmetic"] = "cpu, 64 threads, oneDNN AVX2";
    test::write_edited_record(json, spec);
    const RunResult other = train_tiny(model.string(), 4, " --threads 1 --resume");
    ASSERT_EQ(other.status, 0) << other.err;
    EXPECT_NE(other.err.find("warning: train: " + json.string() +
                             " was trained on \"cpu, 64 threads, oneDNN AVX2\", "
                             "this run is on \"" +
                             recorded +
                             "\": the network's sums run in another order, so from "
                             "step 3 the weights do not repeat the uninterrupted run's bit for bit"),
              std::string::npos)
        << other.err;
    const nlohmann::json history = nlohmann::json::parse(read_text(json))["training"]["history"];
    ASSERT_EQ(history.size(), 2u) << history.dump();
    EXPECT_EQ(history[0]["arithmetic"], "cpu, 64 threads, oneDNN AVX2");
    EXPECT_EQ(history[1]["from_step"], 3);
    EXPECT_EQ(history[1]["arithmetic"], recorded);
}

// A checkpoint is one unit. Its files are one OutputSet: each written under a temporary name, then
// all moved into place. Failing each write and each move in turn (INFANT_FAULT_OUTPUT=k: the k-th
// file this run moves, as a full disk would) leaves the previous checkpoint whole, and a resume
// repeats the uninterrupted run exactly. (Written one after another, a failure between two files
// left a directory that resume refused as a mixture, and lost the good checkpoint before it.)
TEST_F(TrainCli, ACheckpointIsOneUnit) {
    ASSERT_EQ(train_tiny((dir_ / "straight").string(), 4).status, 0);
    const auto straight = weights_of(dir_ / "straight");
    // 5 files per checkpoint here, each moved twice: by its writer, then by the set. Where no
    // hard link can be made (INFANT_NO_HARD_LINKS) the earlier files are moved aside instead.
    const int moves_per_checkpoint = 10;
    for (const char* links : {"", "INFANT_NO_HARD_LINKS=1 "}) {
        for (int k = 1; k <= moves_per_checkpoint + 1; ++k) {
            SCOPED_TRACE(links + std::string("fault at move ") + std::to_string(k));
            const fs::path model = dir_ / ("faulty" + std::string(*links ? "_aside" : "") + std::to_string(k));
            ASSERT_EQ(train_tiny(model.string(), 2).status, 0);
            const std::string fault = links + std::string("INFANT_FAULT_OUTPUT=") + std::to_string(k) + " ";
            const RunResult faulty = train_tiny(model.string(), 4, " --resume", fault);
            EXPECT_EQ(faulty.status, k <= moves_per_checkpoint ? 1 : 0) << faulty.err;
            if (k <= moves_per_checkpoint) {
                EXPECT_NE(faulty.err.find("fault injected"), std::string::npos) << faulty.err;
            }
            const RunResult again = train_tiny(model.string(), 4, " --resume");
            EXPECT_EQ(again.status, 0) << again.err;
            EXPECT_TRUE(weights_of(model) == straight) << "resumed to other weights than the uninterrupted run";
        }
    }

    // An optimizer file copied in from another run with the same step: refused.
    ASSERT_EQ(train_tiny((dir_ / "a").string(), 2).status, 0);
    ASSERT_EQ(train_tiny((dir_ / "b").string(), 2).status, 0);
    fs::copy_file(dir_ / "b" / "model.optimizer.safetensors", dir_ / "a" / "model.optimizer.safetensors",
                  fs::copy_options::overwrite_existing);
    const RunResult mixed = train_tiny((dir_ / "a").string(), 4, " --resume");
    EXPECT_EQ(mixed.status, 2) << mixed.err;
    EXPECT_NE(mixed.err.find("the checkpoint's files disagree"), std::string::npos) << mixed.err;
}

// A run killed while its checkpoint's files moved (SIGKILL: no handler) left some files new, some
// old, and the old ones' copies kept aside (NAME.tmp-PID-replaced). --resume puts those back and
// continues the previous checkpoint exactly; it used to delete them and refuse the mixture. Killed
// while the kept copies were being removed, the new checkpoint is whole: the rest of them go.
TEST_F(TrainCli, AResumePutsBackACheckpointAKilledRunWasReplacing) {
    ASSERT_EQ(train_tiny((dir_ / "straight").string(), 4).status, 0);
    const auto straight = weights_of(dir_ / "straight");
    const fs::path before = dir_ / "before", after = dir_ / "after", mixed = dir_ / "mixed";
    ASSERT_EQ(train_tiny(before.string(), 2).status, 0);
    fs::copy(before, after, fs::copy_options::recursive);
    ASSERT_EQ(train_tiny(after.string(), 4, " --resume").status, 0);
    // Killed after moving the weights and model.json of the step-4 checkpoint into place.
    fs::copy(before, mixed, fs::copy_options::recursive);
    for (const char* name : {"model.safetensors", "model.json"}) {
        fs::rename(mixed / name, mixed / (std::string(name) + ".tmp-999-replaced"));
        fs::copy_file(after / name, mixed / name);
    }
    const RunResult resumed = train_tiny(mixed.string(), 4, " --resume");
    ASSERT_EQ(resumed.status, 0) << resumed.err;
    EXPECT_NE(resumed.err.find("put back 2 files of the checkpoint before"), std::string::npos) << resumed.err;
    EXPECT_TRUE(weights_of(mixed) == straight) << "resumed to other weights than the uninterrupted run";
    EXPECT_FALSE(fs::exists(mixed / "model.safetensors.tmp-999-replaced"));
    // Killed after the weights' copy was linked, before the new weights moved in (hard links):
    // the copy is the file itself and goes; so does a writer's temporary inside the set's.
    const fs::path linked = dir_ / "linked";
    fs::copy(before, linked, fs::copy_options::recursive);
    fs::create_hard_link(linked / "model.safetensors", linked / "model.safetensors.tmp-999-replaced");
    std::ofstream(linked / "model.safetensors.tmp-999.safetensors.tmp-999") << "half";
    const RunResult relinked = train_tiny(linked.string(), 4, " --resume");
    ASSERT_EQ(relinked.status, 0) << relinked.err;
    EXPECT_EQ(relinked.err.find("put back"), std::string::npos) << relinked.err;
    EXPECT_TRUE(weights_of(linked) == straight);
    EXPECT_EQ(file_names(linked).count("model.safetensors.tmp-999-replaced"), 0u);
    EXPECT_EQ(file_names(linked).count("model.safetensors.tmp-999.safetensors.tmp-999"), 0u);
    // Killed after every file moved and the weights' kept copy was removed: the step-4 one stands.
    std::ofstream(after / "training_log.csv.tmp-999-replaced") << "step,loss\n";
    const RunResult whole = train_tiny(after.string(), 4, " --resume");
    ASSERT_EQ(whole.status, 0) << whole.err;
    EXPECT_NE(whole.out.find("already at step 4"), std::string::npos) << whole.out;
    EXPECT_FALSE(fs::exists(after / "training_log.csv.tmp-999-replaced"));
}

// A new run that fails before its first whole checkpoint takes back the directory it made, with
// the checkpoint's pieces and its lock (a full disk at the first checkpoint used to leave a
// directory that would not resume and made the next run ask for --resume). Once a checkpoint is
// whole, a later failure keeps it.
TEST_F(TrainCli, AFailedFirstCheckpointLeavesNoModelDirectory) {
    const fs::path parent = dir_ / "new", model = parent / "model";
    for (int k = 1; k <= 10; ++k) {  // 5 files, each moved twice
        SCOPED_TRACE("fault at move " + std::to_string(k));
        const RunResult r = train_tiny(model.string(), 2, "", "INFANT_FAULT_OUTPUT=" + std::to_string(k) + " ");
        EXPECT_EQ(r.status, 1) << r.err;
        EXPECT_FALSE(fs::exists(parent)) << "left: " << file_names(model).size() << " files";
        EXPECT_NE(r.err.find(": no checkpoint was written before, so the run leaves no model\n"), std::string::npos)
            << r.err;
    }
    const RunResult later = train_tiny(model.string(), 4, "", "INFANT_FAULT_OUTPUT=11 ");  // the second checkpoint's
    EXPECT_EQ(later.status, 1) << later.err;
    // What a user may do next, said (a full disk said "No space left on device" alone).
    EXPECT_NE(later.err.find(": the checkpoint of step 2 is intact, and --resume continues from it (steps 3 to 4 are "
                             "lost)\n"),
              std::string::npos)
        << later.err;
    const RunResult resumed = train_tiny(model.string(), 4, " --resume");
    EXPECT_EQ(resumed.status, 0) << "the first checkpoint stays: " << resumed.err;
}

// A loss that is no longer finite stops training with exit 1 naming the step; the last good
// checkpoint stays (--lr 1e30 used to train on to NaN weights and exit 0).
TEST_F(TrainCli, ADivergedRunStopsAndKeepsTheLastCheckpoint) {
    const fs::path model = dir_ / "diverging";
    ASSERT_EQ(train_tiny(model.string(), 2).status, 0);
    const auto good = weights_of(model);
    const RunResult r =
        train(joined(tiny_args({{"--lr", "1e30"}})) + " --model-dir " + shell_quote(model.string()) +
              " --steps 8 --resume");
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_NE(r.err.find("training diverged at step "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("; the checkpoint of step 2 in " + model.string() + " is kept: --resume with a smaller --lr"),
              std::string::npos)
        << r.err;
    const auto kept = weights_of(model);
    for (const auto& [name, values] : kept)
        for (float v : values) ASSERT_TRUE(std::isfinite(v)) << name;
    EXPECT_EQ(train_tiny(model.string(), 2, " --resume").status, 0) << "the checkpoint left is usable";
    // Before a first checkpoint there is none to keep (the message said there was, and the
    // directory it named was gone).
    const fs::path fresh = dir_ / "diverging_fresh";
    const RunResult first = train(joined(tiny_args({{"--lr", "1e30"}, {"--steps-per-epoch", "4"}})) + " --model-dir " +
                                  shell_quote(fresh.string()) + " --steps 8");
    EXPECT_EQ(first.status, 1) << first.err;
    EXPECT_NE(first.err.find("no checkpoint was written yet. Try a smaller --lr"), std::string::npos) << first.err;
    EXPECT_FALSE(fs::exists(fresh));
}

// A second signal ends a run at once, as documented; it ended it without a word, where a user
// needs to know what stays. SIGTERM, then SIGINT 50 ms later, within a step of a larger crop: two
// of one kind may arrive as one, and two sent at once are both handled as the first.
TEST_F(TrainCli, ASecondSignalSaysWhichCheckpointStays) {
    const fs::path model = dir_ / "model";
    const std::string out_file = (dir_ / "stdout.txt").string(), err_file = (dir_ / "stderr.txt").string();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    const pid_t pid = start_until_a_checkpoint(tiny_args({{"--steps-per-epoch", "2"}, {"--shape", "64"}}), model,
                                               out_file, err_file, deadline);
    ASSERT_GE(pid, 0);
    ASSERT_EQ(::kill(pid, SIGTERM), 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_EQ(::kill(pid, SIGINT), 0);
    int status = 0;
    ASSERT_TRUE(exited_by(pid, deadline, status)) << "still training 60 s on";
    const std::string err = read_text(err_file);
    if (WIFEXITED(status)) GTEST_SKIP() << "the run checkpointed and exited before the second signal: " << err;
    ASSERT_TRUE(WIFSIGNALED(status));
    EXPECT_EQ(WTERMSIG(status), SIGINT);
    const std::string said = "infant-synthseg train: ended at once by a second signal: the last checkpoint, of step ";
    const size_t at = err.find(said);
    ASSERT_NE(at, std::string::npos) << err;
    const int64_t step = std::stoll(err.substr(at + said.size()));
    EXPECT_EQ(optimizer_step(model), step) << err;
    EXPECT_NE(err.find(", stays in " + model.string() + " (continue with --resume)\n"), std::string::npos) << err;

    // One signal that ends the run at once (a closed pipe's SIGPIPE) is no second signal.
    const std::string piped_out = (dir_ / "piped.out").string(), piped_err = (dir_ / "piped.err").string();
    const auto piped_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    const pid_t piped = start_until_a_checkpoint(tiny_args({{"--steps-per-epoch", "2"}}), dir_ / "piped", piped_out,
                                                 piped_err, piped_deadline);
    ASSERT_GE(piped, 0);
    const bool saved = read_text(piped_out).find("checkpoint saved") != std::string::npos;
    ::kill(piped, SIGPIPE);  // before any assertion: a run left going would load the machine
    ASSERT_TRUE(exited_by(piped, piped_deadline, status)) << "still training 60 s on";
    ASSERT_TRUE(saved) << "no checkpoint within 60 s: " << read_text(piped_err);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGPIPE) << status;
    EXPECT_EQ(read_text(piped_err).find("second signal"), std::string::npos) << read_text(piped_err);
}

// A model directory moved away while a run holds it, and another made under its name (by a newer
// run, which locks it): the first run wrote its next checkpoint into the newer one, overwriting
// that run's model, and both exited 0. It now stops there, exit 1, writing nothing.
TEST_F(TrainCli, AModelDirectoryMovedWhileTrainingTakesNoLaterCheckpointUnderItsName) {
    const fs::path model = dir_ / "model", moved = dir_ / "moved";
    const std::string out_file = (dir_ / "stdout.txt").string(), err_file = (dir_ / "stderr.txt").string();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    // Moved between checkpoints: once the first is said to be saved, four steps from the next.
    const pid_t pid =
        start_until_a_checkpoint(tiny_args({{"--steps-per-epoch", "4"}}), model, out_file, err_file, deadline);
    ASSERT_GE(pid, 0);
    fs::rename(model, moved);
    fs::create_directories(model);
    std::ofstream(model / "newer.txt") << "another run's";
    int status = 0;
    ASSERT_TRUE(exited_by(pid, deadline, status)) << "still training 60 s on";
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 1) << read_text(err_file);
    EXPECT_NE(read_text(err_file).find(model.string() + ": moved or removed while this run held it (" +
                                       (model / ".train.lock").string() + " is gone): the checkpoint of step "),
              std::string::npos)
        << read_text(err_file);
    EXPECT_EQ(file_names(model), std::set<std::string>{"newer.txt"}) << "written into the newer directory";
    EXPECT_TRUE(fs::exists(moved / "model.safetensors"));

    // Moved before its first checkpoint, while the run still owned what it made: its failure took
    // back the newer directory, with that run's lock and model, as its own.
    const fs::path early = dir_ / "early", early_moved = dir_ / "early_moved";
    std::vector<std::string> args{test::cli_path(), "train"};
    // 20 steps to the first checkpoint: 50 took over 60 s in an ASan build on a loaded 2-core machine.
    for (const std::string& a : tiny_args({{"--steps-per-epoch", "20"}})) args.push_back(a);
    args.insert(args.end(), {"--model-dir", early.string(), "--steps", "100000"});
    const pid_t second = start_process(args, out_file, err_file);
    ASSERT_GE(second, 0);
    const auto second_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (!fs::exists(early / ".train.lock") && std::chrono::steady_clock::now() < second_deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    // Past its check for a model there, which follows the lock (moved before it, the run refuses
    // the newer one's model, exit 2), and long before the 20 steps of its first checkpoint.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    fs::rename(early, early_moved);
    fs::create_directories(early);
    for (const char* name : {".train.lock", "model.json", "model.safetensors"}) std::ofstream(early / name) << "newer";
    ASSERT_TRUE(exited_by(second, second_deadline, status)) << "still training 120 s on";
    EXPECT_EQ(WEXITSTATUS(status), 1) << read_text(err_file);
    EXPECT_NE(read_text(err_file).find("the checkpoint of step 20 is not written (none was)"), std::string::npos)
        << read_text(err_file);
    EXPECT_EQ(file_names(early), (std::set<std::string>{".train.lock", "model.json", "model.safetensors"}))
        << "the newer directory's files were taken back";
}

// A stop asked while a checkpoint is written (here as its last file commits) has that checkpoint:
// the run trained one step more and wrote a second, which a full-size model's 160 MB made long
// in a scheduler's grace period.
TEST_F(TrainCli, AStopDuringACheckpointEndsTheRunThere) {
    const fs::path model = dir_ / "model";
    const RunResult r =
        train_tiny(model.string(), 100, "", "INFANT_SIGNAL_AT=" + shell_quote((model / "loss.png").string()) + " ");
    ASSERT_EQ(r.status, 128 + SIGTERM) << r.err;
    EXPECT_NE(r.out.find("interrupted at step 2: checkpoint saved"), std::string::npos) << r.out;
    EXPECT_EQ(log_rows(model).size(), 2u);
}

TEST_F(TrainCli, SigintFinishesTheStepSavesAndExits130) {
    interrupt_and_resume(dir_, tiny_args({{"--steps-per-epoch", "1"}}), SIGINT);
}

TEST_F(TrainCli, SigtermDoesTheSame) {
    interrupt_and_resume(dir_, tiny_args({{"--steps-per-epoch", "1"}}), SIGTERM);
}

// A batch scheduler's warning before its time limit (Slurm's --signal=USR1@300): it ended the run
// without a checkpoint.
TEST_F(TrainCli, Sigusr1DoesTheSame) {
    interrupt_and_resume(dir_, tiny_args({{"--steps-per-epoch", "1"}}), SIGUSR1);
}

// A time limit's warning (Grid Engine's s_cpu, a soft ulimit -t) is SIGXCPU, which the kernel
// then sends again every CPU second: the repeats are no second request, and the run still saves.
// It ended the run without a checkpoint.
TEST_F(TrainCli, ARepeatedSigxcpuDoesTheSame) {
    interrupt_and_resume(dir_, tiny_args({{"--steps-per-epoch", "1"}}), SIGXCPU, true);
}

// A log (stdout not a terminal) whose first checkpoint is over a minute away hears of the first
// step at once: it heard nothing until step 3000, 13 hours into a CPU run of the defaults.
TEST_F(TrainCli, ALogHearsOfTheFirstStepWhenTheFirstCheckpointIsFarOff) {
    interrupt_and_resume(dir_, tiny_args({{"--steps-per-epoch", "10000000"}}), SIGINT, false, "10000000",
                         "step 1/10000000  loss ");
}

// A run killed during its first checkpoint leaves pieces without model.json, which neither a
// resume ("no model.json to resume") nor a new run ("pass --resume") took, and neither said what
// to do: both now name the pieces and say to remove them.
TEST_F(TrainCli, PiecesOfAFirstCheckpointAreNamed) {
    const fs::path pieces = dir_ / "pieces";
    fs::create_directories(pieces);
    std::ofstream(pieces / "model.safetensors") << "half";
    std::ofstream(pieces / "training_log.csv") << "step,loss\n";
    const std::string to_pieces = joined(tiny_args()) + " --model-dir " + shell_quote(pieces.string()) + " --steps 2";
    expect_bad(to_pieces,
               ": already holds model.safetensors, training_log.csv, not a whole checkpoint (a run killed during its "
               "first checkpoint",
               pieces);
    // Weights with their record but no training state (an imported model) predict: not pieces to
    // remove.
    const fs::path imported = dir_ / "imported";
    ASSERT_EQ(train_tiny(imported.string(), 1).status, 0);
    fs::remove(imported / "model.optimizer.safetensors");
    expect_bad(joined(tiny_args()) + " --model-dir " + shell_quote(imported.string()) + " --steps 2",
               "without its training state: it predicts, but a run cannot continue it; choose another --model-dir",
               imported);
    // A resume locks the directory first (it may have to put back a checkpoint a killed run was
    // replacing), so its lock file stays.
    std::ofstream(pieces / ".train.lock");
    expect_bad(to_pieces + " --resume",
               ": --resume, but there is no model.json to resume; it holds model.safetensors, training_log.csv (a run "
               "killed during its first checkpoint leaves such pieces, or they were kept by hand): remove them",
               pieces);
}

// A new model in a folder where a killed run left a kept copy (NAME.tmp-PID-replaced): the copy
// belongs to no checkpoint of it and goes (a later --resume put it back over the new weights).
// A first checkpoint killed before its log moved says the log is missing (it said the log ended
// at step 0).
TEST_F(TrainCli, ANewModelRemovesAKilledRunsLeftovers) {
    const fs::path model = dir_ / "leftovers";
    fs::create_directories(model);
    std::ofstream(model / "model.safetensors.tmp-999-replaced") << "stale";
    const RunResult r = train_tiny(model.string(), 2);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("removed 1 temporary file a killed run left"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(model / "model.safetensors.tmp-999-replaced"));
    const RunResult more = train_tiny(model.string(), 3, " --resume");
    EXPECT_EQ(more.status, 0) << more.err;

    fs::remove(model / "training_log.csv");
    expect_bad(joined(tiny_args()) + " --model-dir " + shell_quote(model.string()) + " --steps 4 --resume",
               (model / "training_log.csv").string() + ": missing, but the checkpoint is at step 3", model);
}

// A training log with a row repeated or missing (an edit) was resumed, and its bad rows carried
// into the new log: refused, naming the row.
TEST_F(TrainCli, ALogWithAStepRepeatedOrMissingIsRefused) {
    const fs::path model = dir_ / "edited";
    ASSERT_EQ(train_tiny(model.string(), 3).status, 0);
    const fs::path log = model / "training_log.csv";
    const std::vector<std::string> lines = lines_of(read_text(log));  // the header, then steps 1 to 3
    ASSERT_EQ(lines.size(), 4u);
    auto resume_with = [&](const std::vector<std::string>& rows, const std::string& fragment) {
        std::ofstream out(log);
        for (const std::string& row : rows) out << row << "\n";
        out.close();
        expect_bad(joined(tiny_args()) + " --model-dir " + shell_quote(model.string()) + " --steps 4 --resume",
                   log.string() + fragment, model);
    };
    resume_with({lines[0], lines[1], lines[2], lines[2], lines[3]},
                " line 4: step 2 follows step 2 (rows repeated or missing)");
    resume_with({lines[0], lines[1], lines[3]}, " line 3: step 3 follows step 1 (rows repeated or missing)");
    resume_with({lines[0], lines[2], lines[3]}, " line 2: step 2 comes first");
    // A field that is no number, named by its line (a log of 900,000 rows).
    std::string bad_loss = lines[2];
    bad_loss.replace(bad_loss.find(',') + 1, bad_loss.find(',', bad_loss.find(',') + 1) - bad_loss.find(',') - 1,
                     "abc");
    resume_with({lines[0], lines[1], bad_loss, lines[3]}, " line 3: 'abc' is not a number");
    std::ofstream out(log);
    for (const std::string& row : lines) out << row << "\n";
    out.close();
    const RunResult r = train_tiny(model.string(), 4, " --resume");
    EXPECT_EQ(r.status, 0) << "the log as written: " << r.err;

    // The validation table's rows ascend.
    const fs::path validated = dir_ / "validated-edit";
    const std::string maps = shell_quote((root_ / "held_out").string());
    ASSERT_EQ(train_tiny(validated.string(), 3, " --validation-labels " + maps + " --validate-every 1").status, 0);
    const fs::path table = validated / "validation.csv";
    const std::vector<std::string> rows = lines_of(read_text(table));  // the header, then steps 1 to 3
    ASSERT_EQ(rows.size(), 4u);
    std::ofstream(table) << rows[0] << "\n" << rows[1] << "\n" << rows[2] << "\n" << rows[2] << "\n" << rows[3] << "\n";
    expect_bad(joined(tiny_args()) + " --model-dir " + shell_quote(validated.string()) + " --steps 4 --resume",
               table.string() + " line 4: step 2 follows step 2 (rows repeated or out of order)", validated);
}

// A validation begun on a resume, and another interval, are in the history from the step they
// took effect (a validation added kept no history, and training.validation read as if every step
// had been validated); a changed --validate-every is said, as another sample count is.
TEST_F(TrainCli, AValidationAddedOrChangedOnResumeIsInTheHistory) {
    const fs::path model = dir_ / "validated-later";
    const std::string maps = shell_quote((root_ / "held_out").string());
    ASSERT_EQ(train_tiny(model.string(), 1).status, 0);
    const RunResult added =
        train_tiny(model.string(), 2, " --resume --validation-labels " + maps + " --validate-every 1");
    ASSERT_EQ(added.status, 0) << added.err;
    nlohmann::json history = nlohmann::json::parse(read_text(model / "model.json"))["training"]["history"];
    ASSERT_EQ(history.size(), 2u) << history.dump();
    EXPECT_TRUE(history[0]["validation"].is_null()) << history.dump();
    EXPECT_EQ(history[1]["from_step"], 1);
    EXPECT_EQ(history[1]["validation"]["every"], 1);

    const RunResult wider =
        train_tiny(model.string(), 4, " --resume --validation-labels " + maps + " --validate-every 2");
    ASSERT_EQ(wider.status, 0) << wider.err;
    EXPECT_NE(wider.err.find("warning: train: --validate-every 2: " + (model / "model.json").string() +
                             " was validated every 1 steps; validation.csv's rows after step 2 come every 2"),
              std::string::npos)
        << wider.err;
    history = nlohmann::json::parse(read_text(model / "model.json"))["training"]["history"];
    ASSERT_EQ(history.size(), 3u) << history.dump();
    EXPECT_EQ(history[2]["from_step"], 2);
    EXPECT_EQ(history[2]["validation"]["every"], 2);
    EXPECT_EQ(lines_of(read_text(model / "validation.csv")).size(), 3u) << "rows at steps 2 and 4";
    // info says what each resume changed, from its step.
    const RunResult info = test::run_command(test::cli_path() + " info " + shell_quote(model.string()));
    ASSERT_EQ(info.status, 0) << info.err;
    EXPECT_NE(info.out.find("  from step 1: validation {\"every\":1,"), std::string::npos) << info.out;
    EXPECT_NE(info.out.find("  from step 2: validation {\"every\":2,"), std::string::npos) << info.out;
}

// The summary's loss is of the last step's loss function: a weighted L2 of ~25 averaged with
// Dice losses (at most 1) printed a "loss 15.5" of neither.
TEST_F(TrainCli, TheSummarysLossIsOfOneLossFunction) {
    const RunResult l2 = train_tiny((dir_ / "l2").string(), 3, " --wl2-epochs 2");
    ASSERT_EQ(l2.status, 0) << l2.err;
    EXPECT_NE(l2.out.find("samples/s); weighted-L2 loss "), std::string::npos) << l2.out;
    const RunResult dice = train_tiny((dir_ / "dice").string(), 5, " --wl2-epochs 2");
    ASSERT_EQ(dice.status, 0) << dice.err;
    const size_t at = dice.out.find("samples/s); loss ");
    ASSERT_NE(at, std::string::npos) << dice.out;
    EXPECT_LE(std::stod(dice.out.substr(at + 17)), 1.0) << dice.out;
    EXPECT_NE(dice.out.find("(the last step)"), std::string::npos) << "step 5 alone is a Dice step: " << dice.out;
}

// A resume whose epoch length changes the weighted-L2 steps (--wl2-epochs x --steps-per-epoch)
// is refused in the options' own numbers, naming the epochs that keep them with the new length:
// it said "this run asks for 1" of an option not given.
TEST_F(TrainCli, AnEpochLengthThatChangesTheWeightedL2StepsIsRefusedSayingWhatKeepsThem) {
    const fs::path model = dir_ / "wl2";
    ASSERT_EQ(train_tiny(model.string(), 3, " --wl2-epochs 1").status, 0);  // epochs of 2 steps
    expect_bad(joined(tiny_args({{"--steps-per-epoch", "1"}})) + " --model-dir " + shell_quote(model.string()) +
                   " --steps 4 --resume",
               ": was trained with the weighted-L2 loss for its first 2 steps (--wl2-epochs 1 x --steps-per-epoch "
               "2); this run's --wl2-epochs 1 x --steps-per-epoch 1 makes 1: a resumed run must train as the run it "
               "continues (give --wl2-epochs 1 --steps-per-epoch 2, or --wl2-epochs 2 with this epoch length, or "
               "start a new --model-dir)",
               model);
    const RunResult r = train(joined(tiny_args({{"--steps-per-epoch", "1"}})) + " --model-dir " +
                              shell_quote(model.string()) + " --steps 4 --resume --wl2-epochs 2");
    EXPECT_EQ(r.status, 0) << r.err;
}

// --keep-every K keeps every K-th epoch's weights beside the checkpoint (SPEC 5's checkpoint an
// epoch; each checkpoint replaced the last, so no earlier epoch could be gone back to): the
// weights of the uninterrupted run at that step, and a resume goes on keeping them.
TEST_F(TrainCli, KeepEveryKeepsThoseEpochsWeights) {
    const fs::path model = dir_ / "kept", straight = dir_ / "straight";
    const RunResult r = train_tiny(model.string(), 5, " --keep-every 1");  // epochs of 2 steps
    ASSERT_EQ(r.status, 0) << r.err;
    const fs::path kept = model / kept_weights_folder;
    EXPECT_EQ(file_names(kept), (std::set<std::string>{"step_0000002.json", "step_0000002.safetensors",
                                                       "step_0000004.json", "step_0000004.safetensors"}))
        << "the last step, mid-epoch, is the model's alone";
    ASSERT_EQ(train_tiny(straight.string(), 4).status, 0);
    std::map<std::string, std::vector<float>> kept_at_4;
    for (const SafeTensor& t : read_safetensors((kept / "step_0000004.safetensors").string()).tensors)
        kept_at_4[t.name] = t.as_f32();
    EXPECT_EQ(weights_of(straight), kept_at_4) << "not the weights of step 4";
    EXPECT_EQ(nlohmann::json::parse(read_text(kept / "step_0000004.json"))["training"]["keep_every"], 1);

    const RunResult more = train_tiny(model.string(), 8, " --resume");
    ASSERT_EQ(more.status, 0) << more.err;
    EXPECT_TRUE(fs::exists(kept / "step_0000006.safetensors") && fs::exists(kept / "step_0000008.json"))
        << "the recorded --keep-every goes on";
    // A description of another checkpoint beside the weights was read as theirs.
    fs::copy_file(kept / "step_0000002.json", kept / "step_0000004.json", fs::copy_options::overwrite_existing);
    const RunResult mixed =
        test::run_command(test::cli_path() + " info " + shell_quote((kept / "step_0000004.safetensors").string()));
    EXPECT_EQ(mixed.status, 2);
    EXPECT_NE(mixed.err.find("step_0000004.safetensors: its weights are of step 4"), std::string::npos) << mixed.err;
    const RunResult exported = test::run_command(test::cli_path() + " export --model " +
                                                 shell_quote((kept / "step_0000004.safetensors").string()) +
                                                 " --keras " + shell_quote((dir_ / "mixed.h5").string()));
    EXPECT_EQ(exported.status, 2) << "export took them too";
    EXPECT_FALSE(fs::exists(dir_ / "mixed.h5"));
    // A resume removes kept weights past its checkpoint: a killed run's, whose checkpoint went back.
    fs::copy_file(kept / "step_0000002.json", kept / "step_0000099.json");
    const RunResult past = train_tiny(model.string(), 9, " --resume");
    ASSERT_EQ(past.status, 0) << past.err;
    EXPECT_NE(past.err.find("removed 1 kept file of steps past the checkpoint of step 8 (step_0000099.json)"),
              std::string::npos)
        << past.err;
    EXPECT_FALSE(fs::exists(kept / "step_0000099.json"));
    // A new run where another's weights are kept would mix the two (and replace those of its steps).
    const fs::path other = dir_ / "other";
    fs::create_directories(other / kept_weights_folder);
    fs::copy_file(kept / "step_0000002.json", other / kept_weights_folder / "step_0000002.json");
    expect_bad(joined(tiny_args()) + " --model-dir " + shell_quote(other.string()) + " --steps 2 --keep-every 1",
               ": already holds weights/, another run's kept weights", other);
    // A killed run's temporary there is no weights: removed, said.
    fs::remove(other / kept_weights_folder / "step_0000002.json");
    std::ofstream(other / kept_weights_folder / "step_0000002.safetensors.tmp-999-replaced") << "stale";
    const RunResult fresh = train_tiny(other.string(), 2, " --keep-every 1");
    ASSERT_EQ(fresh.status, 0) << fresh.err;
    EXPECT_NE(fresh.err.find("removed 1 temporary file a killed run left"), std::string::npos) << fresh.err;
    EXPECT_EQ(file_names(other / kept_weights_folder),
              (std::set<std::string>{"step_0000002.json", "step_0000002.safetensors"}));
    // A file where the weights go is refused before a step, not an epoch later (exit 1).
    const fs::path blocked = dir_ / "blocked";
    fs::create_directories(blocked);
    std::ofstream(blocked / kept_weights_folder) << "a file";
    expect_bad(joined(tiny_args()) + " --model-dir " + shell_quote(blocked.string()) + " --steps 2 --keep-every 1",
               (blocked / kept_weights_folder).string() + ": not a folder, where --keep-every keeps weights", blocked);
    expect_bad(
        joined(tiny_args()) + " --model-dir " + shell_quote(model.string()) + " --steps 9 --resume --keep-every -1",
        "error: --keep-every must be >= 0 (0: the latest checkpoint alone), got -1", model);
}

// info describes a model (its directory, its model.json, a kept weights file) as predict reads
// it: it said of a model directory "is a directory, not a volume file", and of model.json "not a
// NIfTI file", so a model's labels, training and progress were read from its JSON by hand.
TEST_F(TrainCli, InfoDescribesAModelAndItsProgress) {
    const fs::path model = dir_ / "described";
    const std::string maps = shell_quote((root_ / "held_out").string());
    ASSERT_EQ(train_tiny(model.string(), 3, " --keep-every 1 --validation-labels " + maps).status, 0);
    const RunResult r = test::run_command(test::cli_path() + " info " + shell_quote(model.string()));
    ASSERT_EQ(r.status, 0) << r.err;
    for (const std::string& line :
         {model.string() + "\n  format: an infant-synthseg model (",
          std::string("  network: 3-D U-Net, 2 levels, 4 features at the first (doubling a level), 2 convolutions a "
                      "level, kernel 3; 1 input channel\n"),
          std::string("  frame: RAS; padded to a multiple of 4; flip averaging: yes\n"),
          std::string("  training: step 3 of 3 (preset infant-t1, crop 32 x 32 x 32, batch 1, lr 0.001, seed 5, fp32, "
                      "2 steps an epoch, weights kept every 1 epoch)\n"),
          std::string("  last logged loss: "), std::string(" (soft_dice, step 3)\n"),
          std::string("  last validation: mean Dice "), std::string(" at step 3\n"),  // an epoch's end, the last step
          std::string("  kept weights: 1 (weights/step_0000002.safetensors)\n"),
          std::string("  record: checked against its record_crc32\n")})
        EXPECT_NE(r.out.find(line), std::string::npos) << line << " in " << r.out;
    // Exported, it is described by its own record: how it was trained, not "imported from" the
    // file info reads.
    const std::string keras = (dir_ / "described.keras").string();
    ASSERT_EQ(test::run_command(test::cli_path() + " export --model " + shell_quote(model.string()) + " --keras " +
                                shell_quote(keras))
                  .status,
              0);
    const RunResult exported = test::run_command(test::cli_path() + " info " + shell_quote(keras));
    ASSERT_EQ(exported.status, 0) << exported.err;
    EXPECT_NE(exported.out.find("  training: step 3 of 3 (preset infant-t1, crop 32 x 32 x 32, "), std::string::npos)
        << exported.out;
    EXPECT_EQ(exported.out.find("imported from"), std::string::npos) << exported.out;
    // The network's count, as the weights hold it (the record's was printed, and an edit of it too).
    const nlohmann::json counts = nlohmann::json::parse(read_text(model / "model.json"))["parameters"];
    EXPECT_NE(r.out.find("  parameters: " + counts["trainable"].dump() + " trainable\n"), std::string::npos) << r.out;
    const RunResult kept = test::run_command(test::cli_path() + " info " +
                                             shell_quote((model / kept_weights_folder / "step_0000002.json").string()));
    ASSERT_EQ(kept.status, 0) << kept.err;
    EXPECT_NE(kept.out.find("  training: step 2 of 3 "), std::string::npos) << kept.out;
    EXPECT_EQ(kept.out.find("last logged loss"), std::string::npos) << "a kept file has no logs";
    // Read whole, as predict reads it: a damaged weights file is refused, not described.
    const fs::path weights = model / kept_weights_folder / "step_0000002.safetensors";
    std::string bytes = read_text(weights);
    bytes[bytes.size() - 5] ^= 0x01;
    std::ofstream(weights, std::ios::binary) << bytes;
    const RunResult damaged = test::run_command(test::cli_path() + " info " + shell_quote(weights.string()));
    EXPECT_EQ(damaged.status, 2);
    EXPECT_NE(damaged.err.find("its data does not match the checksum it was written with"), std::string::npos)
        << damaged.err;
    // What is no model of ours is said as what it is, not as a file it does not name.
    for (const auto& [given, said] : std::vector<std::pair<std::string, std::string>>{
             {(model / "model.optimizer.safetensors").string(), ": Adam's state, for train --resume, not a model"},
             {(model / kept_weights_folder).string(), ": a folder of kept weights (train --keep-every)"},
             {(root_ / "empty").string(), ": no model.safetensors in it"}}) {
        fs::create_directories(root_ / "empty");
        const RunResult r2 = test::run_command(test::cli_path() + " info " + shell_quote(given));
        EXPECT_EQ(r2.status, 2) << given;
        EXPECT_NE(r2.err.find(given + said), std::string::npos) << r2.err;
    }
    // A folder of label maps and no model: each map described.
    const RunResult of_maps = test::run_command(test::cli_path() + " info " + shell_quote((root_ / "maps").string()));
    EXPECT_EQ(of_maps.status, 0) << of_maps.err;
    EXPECT_NE(of_maps.out.find("  labels: "), std::string::npos) << of_maps.out;
}

// Segmentation labels no map holds are outputs learned only as absent: said (a label absent from
// every map trained without a word). A newborn's map has no cerebellar white matter (7, 46).
TEST_F(TrainCli, ASegmentationLabelNoMapHoldsIsWarnedOf) {
    fs::create_directories(dir_ / "newborn");
    write_labels((dir_ / "newborn" / "0mo.nii.gz").string(), make_phantom(0, 1));
    const std::string labels = (dir_ / "newborn").string();
    const RunResult r = train(joined(tiny_args({{"--labels", labels}})) + " --model-dir " +
                              shell_quote((dir_ / "m").string()) + " --steps 1");
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err, "warning: train: --labels " + labels +
                         ": no map holds segmentation labels 7, 46 (or a generation label learned as them): the "
                         "network learns them only as absent; add maps that hold them unless no subject of these "
                         "ages does\n");
}

TEST_F(TrainCli, HelpDescribesTheOptionsAndFiles) {
    const RunResult r = train(" --help");
    ASSERT_EQ(r.status, 0) << r.err;
    for (const char* s : {"--labels",
                          "--model-dir",
                          "--preset",
                          "--config",
                          "--steps ",
                          "--steps-per-epoch",
                          "--lr",
                          "--batch",
                          "--shape",
                          "--levels",
                          "--features",
                          "--wl2-epochs",
                          "--keep-every",
                          "--resume",
                          "--seed",
                          "--device",
                          "--validation-labels",
                          "--validate-every",
                          "--validation-samples",
                          "model.safetensors",
                          "model.json",
                          "model.optimizer.safetensors",
                          "training_log.csv",
                          "loss.png",
                          "SIGINT",
                          "default 900000",
                          "default 3000",
                          "default 1e-4",
                          "default 24"})
        EXPECT_NE(r.out.find(s), std::string::npos) << s;
    const RunResult top = test::run_command(test::cli_path() + " --help");
    EXPECT_NE(top.out.find("  train "), std::string::npos) << "listed in the command table";
}

TEST_F(TrainCli, BadInputIsRefusedBeforeAnyStep) {
    const std::string tiny = joined(tiny_args());
    const fs::path fresh = dir_ / "fresh";
    const std::string to_fresh = " --model-dir " + shell_quote(fresh.string());

    fs::create_directories(dir_ / "empty");
    expect_bad(" --labels " + shell_quote((dir_ / "empty").string()) + to_fresh + " --steps 2", "no volume files",
               fresh);

    LabelMap bad = make_phantom(0, 2);
    bad.data[bad.data.size() / 2] = 99;
    fs::create_directories(dir_ / "bad_maps");
    write_labels((dir_ / "bad_maps" / "bad.nii.gz").string(), bad);
    expect_bad(" --labels " + shell_quote((dir_ / "bad_maps").string()) + to_fresh + " --steps 2 --shape 32",
               "label value 99", fresh);

    expect_bad(tiny + to_fresh + " --steps 0", "--steps", fresh);
    expect_bad(tiny + to_fresh + " --steps 2 --batch 0", "--batch", fresh);
    expect_bad(tiny + to_fresh + " --steps 2 --threads 0", "error: --threads must be at least 1, got 0", fresh);
    expect_bad(tiny + to_fresh + " --steps 2 --frobnicate 3", "unknown option --frobnicate (see 'infant-synthseg train",
               fresh);
    // A slip near a known option is told it (no suggestion above: none is near).
    expect_bad(tiny + to_fresh + " --step 2", "unknown option --step (did you mean --steps?)", fresh);
    expect_bad(tiny + to_fresh + " --lab x", "unknown option --lab (did you mean --labels?)", fresh);  // not --lr
    expect_bad(tiny + to_fresh + " --pre x", "unknown option --pre (did you mean --precision or --preset?)", fresh);
    expect_bad(tiny + to_fresh + " --h", "unknown option --h (did you mean --help?)", fresh);
    expect_bad(joined(tiny_args({{"--lr", "fast"}})) + to_fresh + " --steps 2", "option --lr expects a number", fresh);
    for (const char* lr : {"1e300", "1e-50"})  // positive, but Adam's float would hold infinity or 0
        expect_bad(joined(tiny_args({{"--lr", lr}})) + to_fresh + " --steps 2",
                   std::string("--lr must be a positive number from 1.17549e-38 to 3.40282e+38 (a float's), got ") + lr,
                   fresh);
    expect_bad(tiny + to_fresh + " --steps 2 --preset ''", "option --preset has an empty value", fresh);
    expect_bad(joined(tiny_args({{"--levels", "9"}})) + to_fresh + " --steps 2", "--levels must be", fresh);
    // A U-Net that predict and --resume could not read is not trained (up to 4096 features were).
    expect_bad(joined(tiny_args({{"--features", "1025"}})) + to_fresh + " --steps 2", "--features must be 1 to 1024",
               fresh);
    expect_bad(joined(tiny_args({{"--features", "1024"}, {"--levels", "5"}})) + to_fresh + " --steps 2",
               "error: a U-Net of 1024 features and 5 levels (16384 features at its deepest level) is larger than "
               "supported (8192): lower --features or --levels",
               fresh);
    expect_bad(tiny + to_fresh + " --steps 2 --seed 6", "--seed given twice (5, then 6)", fresh);
    expect_bad(tiny + to_fresh + " --steps 2 --validate-every 5", "--validation-labels", fresh);
    expect_bad(tiny + to_fresh + " --steps 2 --resume", "no model.json", fresh);
    expect_bad(tiny + " --steps 2", "--model-dir is required", fresh);
    // More memory than any machine has (terabytes): refused before the first step, not killed in it.
    expect_bad(joined(tiny_args({{"--features", "1024"}, {"--shape", "4096"}})) + to_fresh + " --steps 2 --batch 64",
               "lower --batch, the crop (--shape) or --features", fresh);
#if !defined(__SANITIZE_ADDRESS__)  // AddressSanitizer reserves terabytes of address space
    // What the process may use is its address-space limit too, and the estimate counts what a
    // run holds beside its step (the program, the generator, a checkpoint): a tiny run under
    // 250 MB is refused, where it was killed at its first allocation past the limit.
    const RunResult limited = train(tiny + to_fresh + " --steps 2", "ulimit -v 256000 && ");
    EXPECT_EQ(limited.status, 2) << limited.err;
    EXPECT_NE(limited.err.find(" GiB with the generator and a checkpoint (the step "), std::string::npos)
        << limited.err;
    EXPECT_NE(limited.err.find(" GiB this process may use"), std::string::npos) << limited.err;
    EXPECT_FALSE(fs::exists(fresh));
#endif

    // An existing model: another architecture, or no --resume, leaves it untouched.
    const fs::path existing = dir_ / "existing";
    ASSERT_EQ(train_tiny(existing.string(), 1).status, 0);
    const std::string weights = read_text(existing / "model.safetensors");
    const std::string to_existing = " --model-dir " + shell_quote(existing.string());
    expect_bad(joined(tiny_args({{"--features", "6"}})) + to_existing + " --steps 3 --resume", "different architecture",
               existing);
    expect_bad(tiny + to_existing + " --steps 3", "already holds a model (model.safetensors, model.json,", existing);
    EXPECT_TRUE(read_text(existing / "model.safetensors") == weights);
    // Without model.json, the weights alone (kept by hand) or an earlier run's log still count.
    for (const char* kept : {"model.safetensors", "validation.csv"}) {
        const fs::path part = dir_ / (std::string("part_") + kept);
        fs::create_directories(part);
        std::ofstream(part / kept) << "kept";
        expect_bad(tiny + " --model-dir " + shell_quote(part.string()) + " --steps 3",
                   std::string("already holds ") + kept + ", not a whole checkpoint", part);
        EXPECT_EQ(read_text(part / kept), "kept");
    }
}

// model.json's written_by names the last build that wrote it; each run's build is in the record,
// and a resume by another build is said and kept in the history (a resume or an export erased
// the build that trained it).
TEST_F(TrainCli, AResumeByAnotherBuildIsSaidAndRecorded) {
    const fs::path model = dir_ / "built";
    ASSERT_EQ(train_tiny(model.string(), 1).status, 0);
    nlohmann::json record = nlohmann::json::parse(read_text(model / "model.json"));
    const nlohmann::json this_build = record["training"]["build"];
    ASSERT_TRUE(this_build.is_string()) << record["training"].dump();
    EXPECT_EQ(this_build.get<std::string>().rfind("infant-synthseg ", 0), 0u);
    record["training"]["build"] = "infant-synthseg 0000000";
    test::write_edited_record(model / "model.json", record);
    const RunResult resumed = train_tiny(model.string(), 2, " --resume");
    ASSERT_EQ(resumed.status, 0) << resumed.err;
    EXPECT_NE(resumed.err.find("was trained by \"infant-synthseg 0000000\", this run by " + this_build.dump()),
              std::string::npos)
        << resumed.err;
    const nlohmann::json history = nlohmann::json::parse(read_text(model / "model.json"))["training"]["history"];
    ASSERT_EQ(history.size(), 2u) << history.dump();
    EXPECT_EQ(history[0]["build"], "infant-synthseg 0000000");
    EXPECT_EQ(history[1]["build"], this_build);

    // A record from before training.build: its written_by is the build that trained it.
    const fs::path older = dir_ / "built_before";
    ASSERT_EQ(train_tiny(older.string(), 1).status, 0);
    nlohmann::json before = nlohmann::json::parse(read_text(older / "model.json"));
    before["training"].erase("build");
    before["written_by"] = "infant-synthseg 1111111";
    test::write_edited_record(older / "model.json", before);
    const RunResult upgraded = train_tiny(older.string(), 2, " --resume");
    ASSERT_EQ(upgraded.status, 0) << upgraded.err;
    EXPECT_NE(upgraded.err.find("was trained by \"infant-synthseg 1111111\""), std::string::npos) << upgraded.err;
    EXPECT_EQ(nlohmann::json::parse(read_text(older / "model.json"))["training"]["history"][0]["build"],
              "infant-synthseg 1111111");
}

// A resume validates on the maps its record names unless told not to; a map there that cannot be
// read says where it came from; a record from before maps_path resumed on the same maps records
// no change.
TEST_F(TrainCli, AResumeMayLeaveTheRecordedValidationOut) {
    const fs::path model = dir_ / "validated_once";
    const fs::path held = dir_ / "held_here";
    fs::create_directories(held);
    fs::copy_file(root_ / "held_out" / "phantom_2mo_b.nii.gz", held / "b.nii.gz");
    const std::string maps = shell_quote(held.string());
    ASSERT_EQ(train_tiny(model.string(), 2, " --validation-labels " + maps + " --validate-every 1").status, 0);
    const RunResult left_out = train_tiny(model.string(), 3, " --resume --no-validation");
    ASSERT_EQ(left_out.status, 0) << left_out.err;
    EXPECT_NE(left_out.err.find("this run validates on none (--no-validation), so validation.csv and loss.png's Dice "
                                "stop at step 2"),
              std::string::npos)
        << left_out.err;
    expect_bad(joined(tiny_args()) + " --model-dir " + shell_quote(model.string()) + " --steps 4 --resume " +
                   "--no-validation --validation-labels " + maps,
               "--no-validation is for a --resume", model);
    const RunResult recorded = train_tiny(model.string(), 4, " --resume");
    ASSERT_EQ(recorded.status, 0) << recorded.err;
    EXPECT_NE(recorded.out.find(", validating on the maps it records (" + held.string() + ")"), std::string::npos)
        << recorded.out;
    EXPECT_EQ(lines_of(read_text(model / "validation.csv")).size(), 4u) << "rows at steps 1, 2 and 4";
    // A file there that is no label map: named, with where it came from and the way round it.
    std::ofstream(held / "notes.nii") << "not a volume";
    const RunResult broken = train_tiny(model.string(), 5, " --resume");
    EXPECT_EQ(broken.status, 2) << broken.err;
    EXPECT_NE(broken.err.find("records; --no-validation resumes without validating)"), std::string::npos) << broken.err;
    fs::remove(held / "notes.nii");
    // An older record (no maps_path) resumed on its maps: no change for the history.
    nlohmann::json older = nlohmann::json::parse(read_text(model / "model.json"));
    older["training"]["validation"].erase("maps_path");
    older["training"].erase("history");
    test::write_edited_record(model / "model.json", older);
    const RunResult same = train_tiny(model.string(), 5, " --resume --validation-labels " + maps);
    ASSERT_EQ(same.status, 0) << same.err;
    EXPECT_FALSE(nlohmann::json::parse(read_text(model / "model.json"))["training"].contains("history"));
}

// Standard output closed at the start (`>&-`): the lock file took its descriptor and every
// progress line, and a second run said "process ?".
TEST_F(TrainCli, AClosedStandardOutputIsNoFilesDescriptor) {
    const fs::path model = dir_ / "closed";
    const RunResult r = train_tiny(model.string(), 2, " >&-");
    ASSERT_EQ(r.status, 0) << r.err;
    const std::string lock = read_text(model / ".train.lock");
    EXPECT_EQ(lock.find_first_not_of("0123456789\n"), std::string::npos) << lock;
}

}  // namespace
}  // namespace iss
