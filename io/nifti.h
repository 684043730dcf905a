// NIfTI-1 and NIfTI-2 images in and out: .nii, .nii.gz, and .hdr/.img pairs (read only); and
// FreeSurfer's .mgz / .mgh, in and out, whose voxels lie as NIfTI's do.
//
// Reading validates the raw header ourselves before anything is allocated (nifticlib decodes
// but does not validate: it repairs negative dims, reads bad magic as Analyze, and allocates
// from the header's dims), then reads the voxels with zlib in chunks. Every bad input is one
// iss::InputError naming the file. Writing goes to "<path>.tmp-<pid>" and is renamed at the
// end, so a failed write leaves nothing behind.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "io/volume.h"

namespace iss {

// What a header may ask for, checked before any allocation: 2^31 voxels and 8 GiB of data.
constexpr int64_t nifti_max_voxels = int64_t(1) << 31;
constexpr int64_t nifti_max_bytes = int64_t(8) << 30;

// Which kind of file a header came from.
enum class VolumeFormat { nifti, mgh };

// The header of a volume file: NIfTI-1 or -2, or FreeSurfer's MGH (whose fields are given here as
// the NIfTI header that describes the same voxels and grid would hold them).

struct VolumeHeader {
    VolumeFormat format = VolumeFormat::nifti;
    int version = 1;            // 1 or 2 (0 for MGH)
    bool single_file = true;    // n+1 / n+2 (.nii) rather than ni1 / ni2 (.hdr + .img)
    bool byte_swapped = false;  // stored in the other byte order than this machine's
    std::string path;           // the file the header was read from (for messages)
    std::string data_path;      // the file that holds the voxels (the .img for a pair)
    std::array<int64_t, 8> dim{};      // dim[0] = number of dims; dims past dim[0] read as 1
    std::array<double, 8> pixdim{};    // pixdim[0] is qfac (+1 or -1)
    int datatype = 0;
    int bitpix = 0;
    // The scaling that is applied: slope 1 / inter 0 when the header has none (slope 0) or an
    // invalid one (NaN or infinite: a warning is printed, as nibabel does).
    double scl_slope = 1, scl_inter = 0;
    int qform_code = 0, sform_code = 0;
    // The qform as stored, when it is a usable one: an output written on this file's grid keeps
    // it unchanged, so that a reader preferring the qform places the output where it places the
    // input even when the file's qform and sform disagree.
    bool qform_usable = false;
    std::array<double, 3> quatern{}, qoffset{};
    Mat4 affine;                // voxel (i, j, k) to world (x, y, z) in mm
    std::string affine_source;  // "sform", "qform" or "pixdim"
    int64_t vox_offset = 0;
    int xyzt_units = 0;
    int intent_code = 0;
    std::string descrip;
    // The labels of the frames, in frame order, where the file records them (posteriors we wrote
    // as NIfTI: write_posteriors); empty otherwise. A record that does not fit the file (a count
    // other than the frames', a repeated label, broken JSON, two records) leaves them empty and
    // says why in frame_labels_problem, for a reader of posteriors to refuse; other readers do
    // not need the labels.
    std::vector<int32_t> frame_labels;
    std::string frame_labels_problem;

    bool scaled() const { return scl_slope != 1 || scl_inter != 0; }
    int64_t voxels() const;           // product of dims 1..7
    int64_t frames() const;           // product of dims 4..7
    int64_t data_bytes() const { return voxels() * (bitpix / 8); }
    bool integer_type() const;
    std::string datatype_name() const;
    Grid grid() const;                // dims 1..3 and the affine
};

// "uint8", "float32", ... or "unknown(<code>)".
std::string nifti_datatype_name(int datatype);

// Reads and validates a NIfTI header, or an MGH one for a .mgz / .mgh name (and checks that
// the data fits in the file).
VolumeHeader read_volume_header(const std::string& path);

// InputError naming the file when its voxels, `element_bytes` each as read, would take more than
// 80% of `host_bytes`: a gzip file of 1 MB can describe a 1024^3 volume, and the readers check
// this before they allocate (it was std::bad_alloc, exit 1, after many GB).
void require_memory_for_volume(const VolumeHeader& h, size_t element_bytes, size_t host_bytes);

// All frames, scaling applied. `header`, when given, receives the file's header.
Image read_image(const std::string& path, VolumeHeader* header = nullptr);
Volume<double> read_image_f64(const std::string& path, VolumeHeader* header = nullptr);
// Exact integers: a value that is not an integer or does not fit in int32 (after scaling) is
// an InputError naming the file and the value.
LabelMap read_labels(const std::string& path, VolumeHeader* header = nullptr);
// The same voxels from a header read_volume_header returned: a caller that checks the header
// first reads (and warns about) it once.
Image read_image(const VolumeHeader& header);
LabelMap read_labels(const VolumeHeader& header);

// What the NIfTI files this process writes say in their descrip field (80 bytes: control
// characters escaped, cut at a character within 79):
// what made them, e.g. "infant-synthseg 1a2b3c4 synth, preset infant-t1, seed 5". Set by main for
// the command, and made more precise by a command before it writes; empty: an output made like
// an input keeps the input's. Set before any writer runs (writers on other threads read it).
void set_output_description(const std::string& text);
const std::string& output_description();

// Writes NIfTI-1 (NIfTI-2 when a dim exceeds 32767), gzip-compressed when the path ends in
// .gz. The affine goes into the sform and, when it is a rotation with scaling, the qform too.
// `like` (optional) lends units and the xform codes of an input, and its descrip where no
// output_description is set. A path ending in .mgz
// (gzip-compressed) or .mgh is written as FreeSurfer's MGH, as nibabel writes it; on the grid of
// an input with no qform or sform that is an InputError (MGH cannot leave the affine unstated).
void write_image(const std::string& path, const Image& image, const VolumeHeader* like = nullptr);
// Stored as the smallest of uint8, int16, uint16 (NIfTI only), int32 that holds every value.
void write_labels(const std::string& path, const LabelMap& labels, const VolumeHeader* like = nullptr);
// One frame per class (float32, 4-D). `frame_labels` (one per frame, or none) are recorded in a
// NIfTI comment extension, {"infant_synthseg_frame_labels": [...]}, which the reader returns as
// VolumeHeader::frame_labels; an MGH file has no place for them and records nothing.
void write_posteriors(const std::string& path, const Image& posteriors, const VolumeHeader* like = nullptr,
                      const std::vector<int32_t>& frame_labels = {});

}  // namespace iss
