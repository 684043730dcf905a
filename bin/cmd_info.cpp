// `infant-synthseg info FILE...`: the header, orientation, intensity range and (for
// integer-valued volumes) the label counts of each NIfTI file. A bad file prints one error
// line and the command goes on with the others, then exits 2.
#include <nifti/nifti1.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>

#include "bin/cli.h"
#include "bin/commands.h"
#include "io/nifti.h"
#include "io/orientation.h"
#include "kernels/common/error.h"
#include "post/prediction.h"

namespace iss::cli {
namespace {

const char* help_text =
    "usage: infant-synthseg info FILE...\n"
    "\n"
    "Prints, for each NIfTI file (.nii, .nii.gz, .hdr/.img) or MGH file (.mgz, .mgh): format,\n"
    "dims, voxel size (the affine's, with pixdim where it differs), datatype, scaling,\n"
    "orientation code, the voxel-to-world affine and where it comes from (sform, qform, pixdim\n"
    "or the MGH header), the frames' labels that posteriors written by predict, merge or clean\n"
    "record, the intensity range after scaling with the NaN count, and, when every value is\n"
    "an integer, the labels with their voxel counts (only their number when there are over\n"
    "1000: an integer scan rather than a label map).\n"
    "\n"
    "Exit status: 0 when every file was read, 2 when any file is bad (the others are still\n"
    "printed).\n";

void print_file(const std::string& path) {
    VolumeHeader h;
    const Volume<double> vol = read_image_f64(path, &h);

    std::printf("%s\n", path.c_str());
    if (h.format == VolumeFormat::mgh)
        std::printf("  format: MGH (FreeSurfer), big-endian\n");
    else
        std::printf("  format: NIfTI-%d, %s, %s\n", h.version, h.single_file ? "single file" : "header + .img",
                    h.byte_swapped ? "byte-swapped (big-endian)" : "native byte order");
    std::printf("  dims:");
    for (int i = 1; i <= h.dim[0]; ++i) std::printf("%s%lld", i == 1 ? " " : " x ", static_cast<long long>(h.dim[i]));
    const int unit = h.xyzt_units & 0x07;
    // The affine's column lengths: the voxel size every command works with. An sform may
    // disagree with pixdim (then pixdim is only a note).
    const std::array<double, 3> size = vol.grid.voxel_size();
    bool pixdim_differs = false;
    for (int d = 0; d < 3; ++d)
        pixdim_differs |= std::fabs(h.pixdim[size_t(d + 1)] - size[size_t(d)]) > 1e-4 * std::max(1.0, size[size_t(d)]);
    std::printf("\n  voxel size: %.7g x %.7g x %.7g mm%s%s\n", size[0], size[1], size[2],
                unit == NIFTI_UNITS_METER    ? " (the header's unit is metres)"
                : unit == NIFTI_UNITS_MICRON ? " (the header's unit is microns)"
                                             : "",
                pixdim_differs
                    ? cat(" (from the affine; ", h.format == VolumeFormat::mgh ? "the header's voxel size" : "pixdim",
                          " says ", h.pixdim[1], " x ", h.pixdim[2], " x ", h.pixdim[3], ")")
                          .c_str()
                    : "");
    std::printf("  datatype: %s\n", h.datatype_name().c_str());
    if (h.scaled())
        std::printf("  scaling: slope %.9g, inter %.9g\n", h.scl_slope, h.scl_inter);
    else
        std::printf("  scaling: none\n");
    std::printf("  orientation: %s\n", orientation_code(h.affine).c_str());
    if (h.format == VolumeFormat::mgh)
        std::printf("  affine source: the MGH header (axis directions, voxel size, centre)\n");
    else
        std::printf("  affine source: %s (qform_code %d, sform_code %d)\n", h.affine_source.c_str(), h.qform_code,
                    h.sform_code);
    if (!h.frame_labels.empty())
        std::printf("  frame labels: %s (recorded with the posteriors)\n",
                    clipped(label_list_text(h.frame_labels), 300).c_str());
    else if (!h.frame_labels_problem.empty())
        std::printf("  frame labels: unreadable record (%s)\n", one_line(h.frame_labels_problem).c_str());
    std::printf("  affine:\n");
    for (int r = 0; r < 4; ++r)
        std::printf("    %12.6f %12.6f %12.6f %12.6f\n", h.affine.m[r][0], h.affine.m[r][1], h.affine.m[r][2],
                    h.affine.m[r][3]);

    // Range over non-NaN values; labels while every value is an exact integer.
    double lo = INFINITY, hi = -INFINITY;
    long long nans = 0;
    bool integral = true;
    std::map<double, long long> counts;
    auto last = counts.end();
    for (const double v : vol.data) {
        if (std::isnan(v)) {
            ++nans;
            integral = false;
            continue;
        }
        lo = std::min(lo, v);
        hi = std::max(hi, v);
        if (!integral) continue;
        if (!(v == std::floor(v) && std::fabs(v) < 9007199254740992.0)) {
            integral = false;
            counts.clear();
            last = counts.end();
            continue;
        }
        // Label maps are long runs of one value: skip the tree lookup for a repeat.
        if (last == counts.end() || last->first != v) last = counts.emplace(v, 0).first;
        ++last->second;
    }
    if (nans == static_cast<long long>(vol.data.size()))
        std::printf("  range: all values are NaN\n");
    else
        std::printf("  range: min %.9g, max %.9g\n", lo, hi);
    if (nans > 0) std::printf("  NaN: %lld\n", nans);
    // An integer scan (most converted T1s are int16) has thousands of distinct values: a label
    // map has tens, and only those are listed.
    constexpr size_t max_listed = 1000;
    if (integral && counts.size() > max_listed) {
        std::printf("  labels: %zu distinct values (an integer image, not a label map?): not listed\n", counts.size());
    } else if (integral) {
        std::printf("  labels: %zu\n", counts.size());
        for (const auto& [value, count] : counts) std::printf("    %.0f %lld\n", value, count);
    }
}

}  // namespace

int cmd_info(int argc, char** argv) {
    const Args args("info", argc, argv, {}, {"--help"});
    if (args.flag("--help")) {
        std::fputs(help_text, stdout);
        return 0;
    }
    ISS_INPUT(!args.positional().empty(), "info: no input file (see 'infant-synthseg info --help')");
    int status = 0;
    for (const std::string& path : args.positional()) {
        try {
            print_file(path);
        } catch (const InputError& e) {
            std::fflush(stdout);
            std::fprintf(stderr, "infant-synthseg info: error: %s\n", one_line(e.what()).c_str());
            status = 2;
        }
        std::fflush(stdout);
    }
    return status;
}

}  // namespace iss::cli
