// `infant-synthseg phantom`: writes a procedural infant-like label map for an age (see
// synth/phantom.h), for trying the generator and the pipeline without real training maps.
#include <cmath>
#include <cstdio>

#include "bin/cli.h"
#include "bin/commands.h"
#include "io/file_util.h"
#include "io/nifti.h"
#include "io/orientation.h"
#include "kernels/common/error.h"
#include "post/prediction.h"  // require_volume_output
#include "synth/phantom.h"

namespace iss::cli {

namespace {

const char* usage =
    "usage: infant-synthseg phantom --age-months M --out FILE [--seed S] [--orientation CODE]\n"
    "\n"
    "Writes a procedural infant-like label map (generation labels, 1 mm, origin at the centre;\n"
    "about 150x170x140 voxels at 12 months, smaller when younger).\n"
    "  --age-months M      age in months, 0 to 24 (cerebellar white matter appears at 2)\n"
    "  --out FILE          output file (.nii, .nii.gz, .mgz or .mgh)\n"
    "  --seed S            non-negative integer; the same seed gives the same map (default 1)\n"
    "  --orientation CODE  the voxel order to store it in, e.g. LAS or LIA (default RAS): the\n"
    "                      same anatomy in world space, as scanners and other tools store maps\n";

}  // namespace

int cmd_phantom(int argc, char** argv) {
    const Args args("phantom", argc, argv, {"--age-months", "--out", "--seed", "--orientation"}, {"--help"});
    if (args.flag("--help")) {
        std::fputs(usage, stdout);
        return 0;
    }
    args.reject_positional();
    ISS_INPUT(args.has("--age-months"), "phantom: option --age-months is required");
    const double age = args.number("--age-months", 0.0);
    ISS_INPUT(age >= 0 && age <= 24, "phantom: --age-months ", args.get("--age-months", ""), " is outside [0, 24]");
    const std::string out = args.require("--out");
    const uint64_t seed = args.seed();

    const std::string orientation = args.get("--orientation", "RAS");
    require_orientation_code(orientation, "phantom: --orientation");
    require_volume_output(out, "--out");
    const std::vector<NamedPath> outputs{{out, "--out"}};
    check_outputs("phantom", {}, outputs, folders_of(outputs));  // it reads no input, but a read-only file stays

    warn_of_temporaries_beside("phantom", outputs);
    const LabelMap map = reorient(make_phantom(age, seed), orientation);
    set_output_description(cat(output_description(), ", age ", age, age == 1 ? " month" : " months", ", seed ", seed));
    OutputDirectories folders;
    folders.make_for(outputs);
    write_labels(out, map);
    std::printf("wrote %s: %lldx%lldx%lld voxels %s, age %g month%s, seed %lld\n", out.c_str(), (long long)map.nx(),
                (long long)map.ny(), (long long)map.nz(), orientation.c_str(), age, age == 1 ? "" : "s",
                (long long)seed);
    return 0;
}

}  // namespace iss::cli
