// NIfTI-1/-2 reading and writing. The raw header is parsed and validated here, field by field
// at its offset (so byte-swapped files need no struct swapping); nifticlib is used only for
// the quaternion <-> matrix conversions. Voxels are read through zlib's inflate (GzReader, which
// reads plain files too) and written through its deflate (io/gzip_stream.h), in chunks so that a
// huge file never needs a second full copy.
#include "io/nifti.h"

#include <nifti/nifti1.h>
#include <nifti/nifti2.h>
#include <nifti/nifti2_io.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <type_traits>
#include <unordered_set>
#include <vector>

#include "io/csv.h"  // csv_number: every digit a value needs
#include "io/file_util.h"
#include "io/gzip_stream.h"
#include "io/json.h"
#include "io/orientation.h"
#include "kernels/common/device.h"  // host_memory_bytes, gib_text
#include "kernels/common/error.h"

static_assert(sizeof(nifti_1_header) == 348, "nifti_1_header must be 348 bytes");
static_assert(sizeof(nifti_2_header) == 540, "nifti_2_header must be 540 bytes");
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the writer assumes a little-endian host");

namespace iss {
namespace {

constexpr size_t chunk_bytes = size_t(16) << 20;

std::string human_bytes(int64_t n) {
    return cat(n, " bytes (", gib_text(double(n)), " GiB)");
}

// --- raw header fields -------------------------------------------------------------------------

void swap_bytes(unsigned char* p, size_t size) { std::reverse(p, p + size); }

inline uint16_t byte_reversed(uint16_t x) {
    return __builtin_bswap16(x);
}
inline uint32_t byte_reversed(uint32_t x) {
    return __builtin_bswap32(x);
}
inline uint64_t byte_reversed(uint64_t x) {
    return __builtin_bswap64(x);
}

// `count` values of type U at p (any alignment), each in the other byte order.
template <class U>
void swap_all(unsigned char* p, size_t count) {
    for (size_t v = 0; v < count; ++v) {
        U x;
        std::memcpy(&x, p + v * sizeof(U), sizeof(U));
        x = byte_reversed(x);
        std::memcpy(p + v * sizeof(U), &x, sizeof(U));
    }
}

// Every one of `count` values of `size` bytes at p, in the other byte order: one loop of
// bswaps for the usual sizes (the compiler vectorises it; MGH files are all big-endian).
void swap_each(unsigned char* p, size_t count, size_t size) {
    switch (size) {
        case 1: return;
        case 2: return swap_all<uint16_t>(p, count);
        case 4: return swap_all<uint32_t>(p, count);
        case 8: return swap_all<uint64_t>(p, count);
        default:
            for (size_t v = 0; v < count; ++v) swap_bytes(p + v * size, size);
    }
}

template <class T>
T field(const unsigned char* buf, size_t offset, bool swapped) {
    unsigned char bytes[sizeof(T)];
    std::memcpy(bytes, buf + offset, sizeof(T));
    if (swapped) swap_bytes(bytes, sizeof(T));
    T value;
    std::memcpy(&value, bytes, sizeof(T));
    return value;
}

// The header fields we use, widened to one form for both versions.
struct RawHeader {
    int version = 1;
    bool swapped = false;
    std::string magic;
    int64_t dim[8] = {};
    double pixdim[8] = {};
    int datatype = 0, bitpix = 0;
    double vox_offset = 0, scl_slope = 0, scl_inter = 0;
    int qform_code = 0, sform_code = 0, xyzt_units = 0, intent_code = 0;
    double quatern[3] = {}, qoffset[3] = {}, srow[3][4] = {};
    std::string descrip;
};

RawHeader decode_v1(const unsigned char* b, bool sw) {
    using H = nifti_1_header;
    RawHeader h;
    h.version = 1;
    h.swapped = sw;
    for (int i = 0; i < 8; ++i) {
        h.dim[i] = field<int16_t>(b, offsetof(H, dim) + 2 * i, sw);
        h.pixdim[i] = field<float>(b, offsetof(H, pixdim) + 4 * i, sw);
    }
    h.datatype = field<int16_t>(b, offsetof(H, datatype), sw);
    h.bitpix = field<int16_t>(b, offsetof(H, bitpix), sw);
    h.vox_offset = field<float>(b, offsetof(H, vox_offset), sw);
    h.scl_slope = field<float>(b, offsetof(H, scl_slope), sw);
    h.scl_inter = field<float>(b, offsetof(H, scl_inter), sw);
    h.qform_code = field<int16_t>(b, offsetof(H, qform_code), sw);
    h.sform_code = field<int16_t>(b, offsetof(H, sform_code), sw);
    h.xyzt_units = static_cast<unsigned char>(b[offsetof(H, xyzt_units)]);
    h.intent_code = field<int16_t>(b, offsetof(H, intent_code), sw);
    for (int i = 0; i < 3; ++i) {
        h.quatern[i] = field<float>(b, offsetof(H, quatern_b) + 4 * i, sw);
        h.qoffset[i] = field<float>(b, offsetof(H, qoffset_x) + 4 * i, sw);
    }
    for (int c = 0; c < 4; ++c) {
        h.srow[0][c] = field<float>(b, offsetof(H, srow_x) + 4 * c, sw);
        h.srow[1][c] = field<float>(b, offsetof(H, srow_y) + 4 * c, sw);
        h.srow[2][c] = field<float>(b, offsetof(H, srow_z) + 4 * c, sw);
    }
    h.magic.assign(reinterpret_cast<const char*>(b + offsetof(H, magic)), 4);
    const char* d = reinterpret_cast<const char*>(b + offsetof(H, descrip));
    h.descrip.assign(d, strnlen(d, 80));
    return h;
}

RawHeader decode_v2(const unsigned char* b, bool sw) {
    using H = nifti_2_header;
    RawHeader h;
    h.version = 2;
    h.swapped = sw;
    for (int i = 0; i < 8; ++i) {
        h.dim[i] = field<int64_t>(b, offsetof(H, dim) + 8 * i, sw);
        h.pixdim[i] = field<double>(b, offsetof(H, pixdim) + 8 * i, sw);
    }
    h.datatype = field<int16_t>(b, offsetof(H, datatype), sw);
    h.bitpix = field<int16_t>(b, offsetof(H, bitpix), sw);
    h.vox_offset = double(field<int64_t>(b, offsetof(H, vox_offset), sw));
    h.scl_slope = field<double>(b, offsetof(H, scl_slope), sw);
    h.scl_inter = field<double>(b, offsetof(H, scl_inter), sw);
    h.qform_code = field<int32_t>(b, offsetof(H, qform_code), sw);
    h.sform_code = field<int32_t>(b, offsetof(H, sform_code), sw);
    h.xyzt_units = field<int32_t>(b, offsetof(H, xyzt_units), sw);
    h.intent_code = field<int32_t>(b, offsetof(H, intent_code), sw);
    for (int i = 0; i < 3; ++i) {
        h.quatern[i] = field<double>(b, offsetof(H, quatern_b) + 8 * i, sw);
        h.qoffset[i] = field<double>(b, offsetof(H, qoffset_x) + 8 * i, sw);
    }
    for (int c = 0; c < 4; ++c) {
        h.srow[0][c] = field<double>(b, offsetof(H, srow_x) + 8 * c, sw);
        h.srow[1][c] = field<double>(b, offsetof(H, srow_y) + 8 * c, sw);
        h.srow[2][c] = field<double>(b, offsetof(H, srow_z) + 8 * c, sw);
    }
    h.magic.assign(reinterpret_cast<const char*>(b + offsetof(H, magic)), 8);
    const char* d = reinterpret_cast<const char*>(b + offsetof(H, descrip));
    h.descrip.assign(d, strnlen(d, 80));
    return h;
}

// --- datatypes --------------------------------------------------------------------------------

struct TypeInfo {
    int code;
    const char* name;
    int bitpix;
    bool supported;
    bool integer;
};

const TypeInfo type_table[] = {
    {NIFTI_TYPE_UINT8, "uint8", 8, true, true},          {NIFTI_TYPE_INT8, "int8", 8, true, true},
    {NIFTI_TYPE_INT16, "int16", 16, true, true},         {NIFTI_TYPE_UINT16, "uint16", 16, true, true},
    {NIFTI_TYPE_INT32, "int32", 32, true, true},         {NIFTI_TYPE_UINT32, "uint32", 32, true, true},
    {NIFTI_TYPE_INT64, "int64", 64, true, true},         {NIFTI_TYPE_UINT64, "uint64", 64, true, true},
    {NIFTI_TYPE_FLOAT32, "float32", 32, true, false},    {NIFTI_TYPE_FLOAT64, "float64", 64, true, false},
    {DT_BINARY, "binary", 1, false, false},              {NIFTI_TYPE_COMPLEX64, "complex64", 64, false, false},
    {NIFTI_TYPE_COMPLEX128, "complex128", 128, false, false},
    {NIFTI_TYPE_COMPLEX256, "complex256", 256, false, false},
    {NIFTI_TYPE_RGB24, "rgb24", 24, false, false},       {NIFTI_TYPE_RGBA32, "rgba32", 32, false, false},
    {NIFTI_TYPE_FLOAT128, "float128", 128, false, false},
};

const TypeInfo* find_type(int code) {
    for (const TypeInfo& t : type_table)
        if (t.code == code) return &t;
    return nullptr;
}

// Calls f(T{}) with the C++ type of a supported datatype.
template <class F>
void with_type(int datatype, F&& f) {
    switch (datatype) {
        case NIFTI_TYPE_UINT8: f(uint8_t{}); return;
        case NIFTI_TYPE_INT8: f(int8_t{}); return;
        case NIFTI_TYPE_INT16: f(int16_t{}); return;
        case NIFTI_TYPE_UINT16: f(uint16_t{}); return;
        case NIFTI_TYPE_INT32: f(int32_t{}); return;
        case NIFTI_TYPE_UINT32: f(uint32_t{}); return;
        case NIFTI_TYPE_INT64: f(int64_t{}); return;
        case NIFTI_TYPE_UINT64: f(uint64_t{}); return;
        case NIFTI_TYPE_FLOAT32: f(float{}); return;
        case NIFTI_TYPE_FLOAT64: f(double{}); return;
        default: throw Error(cat("datatype ", datatype, " reached the voxel reader unvalidated"));
    }
}

// --- files ------------------------------------------------------------------------------------

bool is_gzip(const std::string& path) {
    return file_prefix(path, 2) == "\x1f\x8b";
}

// A file opened for reading, plain or gzip-compressed (by its first bytes, whatever its name), closed
// on scope exit. A gzip file may hold several members (`cat a.gz b.gz`), read as one stream; bytes
// after the last member are ignored, as zlib's gzread and nibabel ignore them. Inflated here and
// not through gzread, so that the end of the stream is known: zlib checks a member's CRC-32 and
// length only when it reaches them, and gzread, stopped at the last voxel, never told a stream
// whose trailer was cut off (a download cut short) from a whole one.
class GzReader {
public:
    // `may_be_gzip`: false for a pair's raw .img whose voxels begin with the magic (data_is_gzip).
    explicit GzReader(const std::string& path, bool may_be_gzip = true) : path_(path), in_(size_t(1) << 18) {
        require_regular_file(path);  // names missing files and directories clearly
        file_.reset(std::fopen(path.c_str(), "rb"));
        ISS_INPUT(file_ != nullptr, path, ": cannot open: ", std::strerror(errno));
        refill();
        gzip_ = may_be_gzip && starts_a_member();
        if (gzip_) ISS_REQUIRE(inflateInit2(&z_, 15 + 16) == Z_OK, "zlib: inflateInit2 failed");  // gzip only
    }
    ~GzReader() {
        if (gzip_) inflateEnd(&z_);  // safe on a stream whose init failed (its state is null)
    }
    GzReader(const GzReader&) = delete;
    GzReader& operator=(const GzReader&) = delete;

    // Reads up to n bytes; returns how many were read (fewer only at the end of the data).
    size_t read_some(void* out, size_t n) {
        auto* const to = static_cast<unsigned char*>(out);
        size_t done = 0;
        while (done < n && !ended_) {
            if (begin_ == end_ && !refill()) {
                cut_short_ = gzip_;  // the input ran out inside a member
                ended_ = true;
                break;
            }
            const size_t want = std::min(n - done, size_t(1) << 30);
            if (!gzip_) {
                const size_t take = std::min(want, end_ - begin_);
                std::memcpy(to + done, in_.data() + begin_, take);
                begin_ += take, done += take;
                continue;
            }
            z_.next_in = in_.data() + begin_;
            z_.avail_in = uInt(end_ - begin_);
            z_.next_out = to + done;
            z_.avail_out = uInt(want);
            const int rc = inflate(&z_, Z_NO_FLUSH);
            begin_ = size_t(z_.next_in - in_.data());
            const size_t before = done;
            done = size_t(z_.next_out - to);
            at_member_end_ = at_member_end_ && done == before;
            if (rc == Z_STREAM_END) {  // its CRC-32 and length checked: another member, or the end
                at_member_end_ = true;
                if (stop_at_member_end_) {  // the member holding the data's end: all check_stream_end reads
                    ended_ = true;
                    break;
                }
                ended_ = !starts_a_member();
                if (!ended_) inflateReset(&z_);
            } else if (rc != Z_OK && rc != Z_BUF_ERROR) {  // Z_BUF_ERROR: more input needed (above)
                throw InputError(cat(path_, ": cannot read: ", z_.msg ? z_.msg : "not a gzip stream zlib reads",
                                     " (corrupt gzip stream?)"));
            }
        }
        return done;
    }

    // Skips n bytes; returns how many were skipped.
    int64_t skip(int64_t n) {
        std::vector<unsigned char> scratch(size_t(std::min<int64_t>(n, 1 << 16)));
        int64_t done = 0;
        while (done < n) {
            const size_t want = size_t(std::min<int64_t>(n - done, int64_t(scratch.size())));
            const size_t got = read_some(scratch.data(), want);
            done += int64_t(got);
            if (got < want) break;
        }
        return done;
    }

    // Reads on past the data to the end of the gzip member holding its last byte, where zlib
    // checks the member's CRC-32 and length: a member without its end is refused (every voxel may
    // have come, but nothing says they are right; nibabel reads it). Members after it are not
    // read (a stray partial one, as gzread leaves it). Bytes inflated past the data (none in a
    // file we or nibabel write) are read up to 16 MiB, beyond which the check is left.
    void check_stream_end() {
        // The data ended with its member (that member checked): a member after it is not the data's.
        if (!gzip_ || at_member_end_) return;
        std::vector<unsigned char> scratch(size_t(1) << 16);
        stop_at_member_end_ = true;
        for (int64_t left = int64_t(1) << 24; left > 0 && !ended_;)
            left -= int64_t(read_some(scratch.data(), std::min<size_t>(scratch.size(), size_t(left))));
        ISS_INPUT(!cut_short_, path_, ": its gzip stream is cut short: it ends before its check (the CRC-32 of its ",
                  "data), so the file is incomplete or damaged (gzip -t tests it)");
    }

    // Whether the input ended inside a gzip member (what was read came, the rest did not).
    bool cut_short() const { return cut_short_; }

private:
    // Moves the unread bytes to the front and reads more behind them; whether any came.
    bool refill() {
        std::memmove(in_.data(), in_.data() + begin_, end_ - begin_);
        end_ -= begin_, begin_ = 0;
        const size_t got = std::fread(in_.data() + end_, 1, in_.size() - end_, file_.get());
        if (got == 0 && std::ferror(file_.get())) throw Error(cat(path_, ": cannot read: ", std::strerror(errno)));
        end_ += got;
        return got > 0;
    }
    // Whether the unread bytes begin with a gzip member's magic (read to have two, where there are).
    bool starts_a_member() {
        if (end_ - begin_ < 2) refill();
        return end_ - begin_ >= 2 && in_[begin_] == 0x1f && in_[begin_ + 1] == 0x8b;
    }

    std::string path_;
    // Closed even where a check in the constructor throws (no destructor runs then).
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> file_{nullptr, &std::fclose};
    std::vector<unsigned char> in_;  // read, [begin_, end_) not yet used
    size_t begin_ = 0, end_ = 0;
    bool gzip_ = false;
    z_stream z_{};
    bool ended_ = false;      // no more data: the last member's end, or the input's
    bool cut_short_ = false;  // the input ended inside a member
    bool at_member_end_ = false;       // the last byte inflated ended a member (checked)
    bool stop_at_member_end_ = false;  // check_stream_end's: no member after the data's is read
};

bool is_pair_image_name(const std::string& path) {
    return ends_with_ignoring_case(path, ".img") || ends_with_ignoring_case(path, ".img.gz");
}

// The data file of a header-only pair: the first of pair_data_files that exists.
std::string image_file_for(const std::string& path) {
    const std::vector<std::string> candidates = pair_data_files(path);
    struct stat st;
    for (const std::string& file : candidates)
        if (::stat(file.c_str(), &st) == 0) return file;
    throw InputError(
        cat(path, ": header-only NIfTI (magic ni1/ni2) but its data file ", candidates.front(), " is missing"));
}

// --- affine -----------------------------------------------------------------------------------

Mat4 from_dmat44(const nifti_dmat44& d) {
    Mat4 m;
    for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 4; ++c) m.m[r][c] = d.m[r][c];
    return m;
}

// Millimetres per unit of a header's spatial unit (the low 3 bits of xyzt_units); unknown counts
// as mm, as every reader takes it.
double mm_per_spatial_unit(int xyzt_units) {
    switch (xyzt_units & 0x07) {
        case NIFTI_UNITS_METER: return 1000.0;
        case NIFTI_UNITS_MICRON: return 0.001;
        default: return 1.0;
    }
}

// What makes a stored qform unusable ("" when it is a rotation with a finite offset and a qfac
// of 1 or -1, or one that every reader takes for 1).
std::string qform_problem(const RawHeader& raw) {
    // The standard allows 1 and -1. Readers take other values otherwise: nifti_clib any negative
    // one as -1, nibabel everything but -1 as 1, so the two see mirror images.
    if (raw.pixdim[0] < 0 && raw.pixdim[0] != -1)
        return cat("pixdim[0] (the qform's qfac) is ", raw.pixdim[0],
                   ", neither 1 nor -1, so whether the qform mirrors the image is unknown (readers disagree: ",
                   "nifti_clib reads -1, nibabel 1); write the file again with pixdim[0] 1 or -1");
    for (int i = 0; i < 3; ++i)
        if (!std::isfinite(raw.quatern[i]) || !std::isfinite(raw.qoffset[i]))
            return "qform quaternion or offset is not finite";
    const double qsum =
        raw.quatern[0] * raw.quatern[0] + raw.quatern[1] * raw.quatern[1] + raw.quatern[2] * raw.quatern[2];
    if (qsum <= 1.0 + 1e-5) return "";
    return cat("qform quaternion (b, c, d) has norm ", std::sqrt(qsum), " > 1, not a rotation");
}

// h.affine (from h.affine_source) finite and regular, whichever header it came from.
void require_regular_affine(const VolumeHeader& h, const std::string& path) {
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 4; ++c)
            ISS_INPUT(std::isfinite(h.affine.m[r][c]), path, ": ", h.affine_source, " affine has a non-finite entry");
    // Relative to the columns' lengths: a 100 um scan in metres has a determinant of 1e-12 (mm are
    // applied later) and is no less regular than one in mm.
    const double lengths = h.affine.column_norm(0) * h.affine.column_norm(1) * h.affine.column_norm(2);
    ISS_INPUT(lengths > 0 && std::fabs(h.affine.determinant3()) > 1e-9 * lengths, path, ": ", h.affine_source,
              " affine is singular (a voxel axis has no extent in world space)");
}

// The qform's affine (qform_problem(raw) empty), with the voxel size h.pixdim holds.
Mat4 qform_affine(const RawHeader& raw, const VolumeHeader& h) {
    const double qfac = raw.pixdim[0] < 0 ? -1.0 : 1.0;
    return from_dmat44(nifti_quatern_to_dmat44(raw.quatern[0], raw.quatern[1], raw.quatern[2], raw.qoffset[0],
                                               raw.qoffset[1], raw.qoffset[2], h.pixdim[1], h.pixdim[2], h.pixdim[3],
                                               qfac));
}

// Standard precedence (nifti1.h): sform when its code > 0, else qform, else pixdim scaling.
void set_affine(const RawHeader& raw, const std::string& path, VolumeHeader& h) {
    if (raw.sform_code > 0) {
        Mat4 a;
        for (int r = 0; r < 3; ++r)
            for (int c = 0; c < 4; ++c) a.m[r][c] = raw.srow[r][c];
        h.affine = a;
        h.affine_source = "sform";
    } else if (raw.qform_code > 0) {
        const std::string problem = qform_problem(raw);
        ISS_INPUT(problem.empty(), path, ": ", problem);
        h.affine = qform_affine(raw, h);
        h.affine_source = "qform";
    } else {
        // NIfTI's method 1. Left and right are then a guess, and a guess others make otherwise:
        // said, since lateralised labels depend on it.
        h.affine = Mat4::scaling(h.pixdim[1], h.pixdim[2], h.pixdim[3]);
        h.affine_source = "pixdim";
        warning(cat(path, ": no qform or sform: its orientation is unknown, read as RAS (NIfTI's method 1; nibabel, ",
                    "and so SynthSeg, take such a file as LAS): check left and right"));
    }
    require_regular_affine(h, path);
}

// --- header validation ------------------------------------------------------------------------

// The labels of a posteriors file's frames as write_posteriors records them: a comment
// extension holding a JSON object with this one key (other tools' comments are left alone).
constexpr int32_t frame_labels_ecode = NIFTI_ECODE_COMMENT;
constexpr char frame_labels_key[] = "infant_synthseg_frame_labels";

// A record of ours, checked as any input: one distinct int32 label per frame. InputError naming
// the file otherwise (a record that no longer fits the file is refused, not ignored).
std::vector<int32_t> parse_frame_labels(const std::string& text, const VolumeHeader& h, const std::string& path) {
    const std::string where = cat(path, ": its extension recording the frames' labels");
    const nlohmann::json j = parse_json(text, where);
    ISS_INPUT(j.is_object() && j.size() == 1 && j.contains(frame_labels_key) && j[frame_labels_key].is_array(), where,
              " is not {\"", frame_labels_key, "\": [labels]}");
    const nlohmann::json& list = j[frame_labels_key];
    ISS_INPUT(int64_t(list.size()) == h.frames(), where, " lists ", list.size(), " labels for ", h.frames(), " frames");
    std::vector<int32_t> labels;
    std::unordered_set<int32_t> seen;
    for (const nlohmann::json& v : list) {
        // An unsigned value past int64 would wrap in get<int64_t>(): compared as unsigned.
        const bool fits = v.is_number_unsigned()  ? v.get<uint64_t>() <= uint64_t(INT32_MAX)
                          : v.is_number_integer() ? v.get<int64_t>() >= INT32_MIN && v.get<int64_t>() <= INT32_MAX
                                                  : false;
        ISS_INPUT(fits, where, " holds ", v.is_number() ? v.dump() : std::string(v.type_name()),
                  ", not an integer label");
        const int32_t label = int32_t(v.get<int64_t>());
        ISS_INPUT(seen.insert(label).second, where, " lists label ", label, " twice");
        labels.push_back(label);
    }
    return labels;
}

// Whether a comment extension's text is meant as our record: a JSON object naming our key
// (another tool's comment that mentions it in passing is left alone).
bool is_frame_labels_record(const std::string& text) {
    const size_t first = text.find_first_not_of(" \t\r\n");
    return first != std::string::npos && text[first] == '{' &&
           text.find(cat("\"", frame_labels_key, "\"")) != std::string::npos;
}

// Extensions (after the 4-byte extension flag): each esize (a multiple of 16, its 8-byte head
// included), ecode, data; a single file's end where its voxels start, a pair's .hdr holds them to
// its end. One that runs into the voxel data or past the file, or a malformed one, gets a
// warning: the data is still read from vox_offset, as other readers do. Our record of the
// frames' labels goes into h.frame_labels.
void read_extensions(const std::string& path, VolumeHeader& h, size_t header_size, bool swapped) {
    constexpr int64_t kMaxScan = int64_t(16) << 20;
    const int64_t limit = h.single_file ? std::min<int64_t>(h.vox_offset, kMaxScan) : kMaxScan;
    if (limit <= int64_t(header_size) + 4) return;
    // Read in pieces: a pair's header file is usually 352 bytes, and its size is not known
    // before inflating a .hdr.gz.
    std::vector<unsigned char> bytes;
    GzReader in(path);
    while (int64_t(bytes.size()) < limit) {
        const size_t had = bytes.size();
        bytes.resize(size_t(std::min<int64_t>(limit, int64_t(had) + (int64_t(1) << 16))));
        const size_t got = in.read_some(bytes.data() + had, bytes.size() - had);
        bytes.resize(had + got);
        if (got == 0) break;
    }
    if (!h.single_file) in.check_stream_end();  // a pair's .hdr.gz, read to its end here
    const int64_t got = int64_t(bytes.size());
    if (got < int64_t(header_size) + 4 || bytes[header_size] == 0) return;  // no extensions
    const int64_t end = h.single_file ? h.vox_offset : got;
    int64_t pos = int64_t(header_size) + 4;
    while (pos + 8 <= got) {
        const int32_t esize = field<int32_t>(bytes.data(), size_t(pos), swapped);
        if (esize < 16 || esize % 16 != 0) {
            warning(cat(path, ": malformed extension at byte ", pos, " (esize ", esize, "); ignoring extensions"));
            return;
        }
        if (pos + esize > end) {
            warning(h.single_file
                        ? cat(path, ": the extension at byte ", pos, " (", esize, " bytes) runs past vox_offset ",
                              h.vox_offset, " into the voxel data; reading the data from vox_offset")
                        : cat(path, ": the extension at byte ", pos, " (", esize,
                              " bytes) runs past the end of the file; ignoring it"));
            return;
        }
        if (pos + esize > got) {  // past the bytes scanned
            warning(cat(path, ": extensions past the first ", kMaxScan >> 20, " MB of the file are not read"));
            return;
        }
        if (field<int32_t>(bytes.data(), size_t(pos) + 4, swapped) == frame_labels_ecode) {
            // The text up to its NUL padding.
            const char* data = reinterpret_cast<const char*>(bytes.data()) + pos + 8;
            const std::string text(data, strnlen(data, size_t(esize) - 8));
            if (is_frame_labels_record(text)) {
                // A record that does not fit is the posteriors readers' to refuse: this file may
                // be read as something else (a segmentation saved with a posteriors' header).
                try {
                    ISS_INPUT(h.frame_labels.empty() && h.frame_labels_problem.empty(), path,
                              ": two extensions record the frames' labels");
                    h.frame_labels = parse_frame_labels(text, h, path);
                } catch (const InputError& e) {
                    h.frame_labels.clear();
                    h.frame_labels_problem = e.what();
                }
            }
        }
        pos += esize;
    }
}

// Refuses dims past the voxel count or data size a volume may have, without overflow (every
// factor is checked against the limit before multiplying).
void require_bounded_size(const VolumeHeader& h, const std::string& path) {
    int64_t voxels = 1;
    for (int i = 1; i <= h.dim[0]; ++i) {
        ISS_INPUT(h.dim[i] <= nifti_max_voxels && voxels <= nifti_max_voxels / h.dim[i], path,
                  ": dims ask for more than 2^31 voxels, the limit");
        voxels *= h.dim[i];
    }
    ISS_INPUT(h.data_bytes() <= nifti_max_bytes, path, ": dims ask for ", human_bytes(h.data_bytes()),
              " of voxel data, more than the limit of 8 GiB");
}

// Where the voxels start, for messages: a NIfTI header's vox_offset, or after MGH's header.
std::string data_start(const VolumeHeader& h) {
    return h.format == VolumeFormat::mgh ? cat("the ", h.vox_offset, "-byte MGH header")
                                         : cat("vox_offset ", h.vox_offset);
}

// The data must fit in its file (h.data_path, of `data_file_size` bytes). A gzip stream cannot
// expand more than 1032:1 (deflate's limit), so a tiny .gz that claims gigabytes is refused
// before anything is allocated.
// Whether a volume's data file is gzip-compressed: by its first bytes, but a pair's .img of
// exactly the raw size is raw (its voxels may begin with the magic: an int16 -29921 first; a good
// pair was refused as a corrupt gzip file). A .nii or .mgh header cannot begin so.
bool data_is_gzip(const VolumeHeader& h, int64_t data_file_size) {
    return is_gzip(h.data_path) && (h.single_file || data_file_size != h.vox_offset + h.data_bytes());
}

void require_data_in_file(const VolumeHeader& h, int64_t data_file_size) {
    const int64_t needed = h.vox_offset + h.data_bytes();
    if (data_is_gzip(h, data_file_size)) {
        ISS_INPUT(data_file_size >= needed / 1032, h.data_path, ": gzip file of ", data_file_size,
                  " bytes cannot hold the ", needed, " bytes the header describes (truncated?)");
    } else {
        ISS_INPUT(h.vox_offset <= data_file_size, h.data_path, ": ", data_start(h), " is past the end of the file (",
                  data_file_size, " bytes)");
        ISS_INPUT(needed <= data_file_size, h.data_path, ": truncated: the header needs ", needed, " bytes (",
                  data_start(h), " + ", h.data_bytes(), " of voxel data) but the file has ", data_file_size);
    }
}

// The header's version (NIfTI-1 or -2) and byte order, from sizeof_hdr: 348 or 540, read in
// either order. Anything else is refused; text (a CSV, a JSON file given as a volume) is said as
// such, as its first bytes read as a number told a newcomer nothing.
struct HeaderKind {
    int version;
    bool swapped;
};

HeaderKind header_kind(const unsigned char* buf, size_t got, const std::string& path) {
    const int32_t sizeof_hdr = field<int32_t>(buf, 0, false);
    const int32_t sizeof_swapped = field<int32_t>(buf, 0, true);
    if (sizeof_hdr == 348 || sizeof_hdr == 540) return {sizeof_hdr == 348 ? 1 : 2, false};
    if (sizeof_swapped == 348 || sizeof_swapped == 540) return {sizeof_swapped == 348 ? 1 : 2, true};
    std::string start;  // the first bytes, line breaks and tabs shown as spaces
    bool text = true;
    for (size_t i = 0; i < std::min<size_t>(got, 8); ++i) {
        const unsigned char c = buf[i];
        text = text && ((c >= 32 && c < 127) || c == '\t' || c == '\n' || c == '\r');
        start += c >= 32 ? char(c) : ' ';
    }
    throw InputError(cat(path, ": not a NIfTI file: ",
                         text ? cat("it starts with text ('", start, got > 8 ? "...'" : "'", "), not a binary header")
                              : cat("sizeof_hdr is ", sizeof_hdr, " (expected 348 or 540)"),
                         is_pair_image_name(path) ? "; a .img holds a header/image pair's voxels: give its .hdr" : ""));
}

// Whether the magic says a single file ("n+1\0", "n+2\0") or a header/image pair ("ni1\0",
// "ni2\0"); NIfTI-2's is followed by \r\n\032\n.
bool is_single_file(const RawHeader& raw, int version, size_t header_size, const std::string& path) {
    const std::string expect_single = version == 1 ? std::string("n+1\0", 4) : std::string("n+2\0", 4);
    const std::string expect_pair = version == 1 ? std::string("ni1\0", 4) : std::string("ni2\0", 4);
    const std::string magic4 = raw.magic.substr(0, 4);
    if (magic4 != expect_single && magic4 != expect_pair) {
        // An Analyze 7.5 header has the same size and no magic: it does not say which side is
        // left, so it is refused rather than guessed at.
        ISS_INPUT(version != 1 || magic4 != std::string(4, '\0'), path,
                  ": an Analyze 7.5 header (no NIfTI magic), which does not record left and right; "
                  "convert it to NIfTI with its orientation checked");
        std::string shown;
        for (char ch : magic4) shown += (ch >= 32 && ch < 127) ? ch : '?';
        throw InputError(cat(path, ": bad magic '", shown, "' (expected '", expect_single.substr(0, 3), "' or '",
                             expect_pair.substr(0, 3), "' for sizeof_hdr ", header_size,
                             "); Analyze 7.5 files are not supported"));
    }
    // Some writers leave the four bytes after a NIfTI-2 magic zero (nibabel reads those too).
    if (version == 2)
        ISS_INPUT(raw.magic.substr(4) == std::string("\r\n\032\n", 4) || raw.magic.substr(4) == std::string(4, '\0'),
                  path, ": NIfTI-2 magic signature is corrupted (file transferred in text mode?)");
    return magic4 == expect_single;
}

// dim[0] axes, each of at least one voxel; the axes past them 1.
void take_dims(const RawHeader& raw, const std::string& path, VolumeHeader& h) {
    ISS_INPUT(raw.dim[0] >= 1 && raw.dim[0] <= 7, path, ": dim[0] is ", raw.dim[0], " (expected 1 to 7)");
    h.dim[0] = raw.dim[0];
    for (int i = 1; i < 8; ++i) {
        if (i <= raw.dim[0]) {
            ISS_INPUT(raw.dim[i] >= 1, path, ": dim[", i, "] is ", raw.dim[i], " (every used dim must be >= 1)");
            h.dim[i] = raw.dim[i];
        } else {
            h.dim[i] = 1;
        }
    }
}

// A datatype we read, or the conversion that would make it one.
void take_datatype(const RawHeader& raw, const std::string& path, VolumeHeader& h) {
    const TypeInfo* type = find_type(raw.datatype);
    ISS_INPUT(type != nullptr, path, ": unknown datatype code ", raw.datatype);
    const bool colour = raw.datatype == NIFTI_TYPE_RGB24 || raw.datatype == NIFTI_TYPE_RGBA32;
    ISS_INPUT(type->supported, path, ": datatype ", type->name, " (code ", type->code, ") is not supported",
              colour                      ? ": a scan or label map holds one number a voxel (convert colour to grey)"
              : type->name[0] == 'c'      ? ": a scan or label map holds one real number a voxel (take the magnitude)"
              : raw.datatype == DT_BINARY ? ": store it as uint8"
                                          : ": store it as float64");
    // The datatype decides, as nibabel and nifti_clib read it; a disagreeing bitpix is a writer's
    // slip worth a word, not a reason to refuse the file.
    if (raw.bitpix != type->bitpix)
        warning(cat(path, ": bitpix is ", raw.bitpix, " but datatype ", type->name, " has ", type->bitpix,
                    " bits; reading by the datatype"));
    h.datatype = raw.datatype;
    h.bitpix = type->bitpix;
}

// Voxel size: zero, NaN or negative spacing has no meaning for a qform or a pixdim-only grid.
// An sform does not use it (MATLAB's NIfTI toolbox writes pixdim[1] = -1 for a left-right
// flip): returns true where the sform's column lengths are to replace it.
bool take_pixdim(const RawHeader& raw, const std::string& path, VolumeHeader& h) {
    h.pixdim[0] = raw.pixdim[0] < 0 ? -1.0 : 1.0;
    bool pixdim_from_sform = false;
    for (int i = 1; i < 8; ++i) {
        const double p = raw.pixdim[i];
        if (i <= 3 && i <= h.dim[0]) {
            const bool usable = std::isfinite(p) && p > 0;
            pixdim_from_sform |= !usable && raw.sform_code > 0;
            ISS_INPUT(usable || raw.sform_code > 0, path, ": voxel size pixdim[", i, "] is ", p,
                      " (must be finite and > 0)");
            h.pixdim[i] = p;
        } else {
            // Axes past dim[0] and time steps carry no geometry we rely on: 1 when unusable.
            h.pixdim[i] = (i <= 3 && !(std::isfinite(p) && p > 0)) ? 1.0 : p;
        }
    }
    return pixdim_from_sform;
}

// Where the data starts. A single file's vox_offset 0 leaves it unknown: readers disagree
// (nibabel reads from byte 0, nifti_clib from 348), so it is refused, saying so.
void take_vox_offset(const RawHeader& raw, size_t header_size, const std::string& path, VolumeHeader& h) {
    const int64_t min_offset = h.single_file ? int64_t(header_size) + 4 : 0;
    ISS_INPUT(!(h.single_file && raw.vox_offset == 0), path, ": vox_offset is 0, so where the voxel data starts is ",
              "unknown (readers disagree); write the file again with a tool that sets it (e.g. nibabel)");
    ISS_INPUT(std::isfinite(raw.vox_offset) && raw.vox_offset == std::floor(raw.vox_offset) &&
                  raw.vox_offset >= double(min_offset) && raw.vox_offset < 9.0e18,
              path, ": vox_offset is ", raw.vox_offset, " (expected an integer >= ", min_offset,
              h.single_file ? ", past the header and its extension flag)" : ")");
    h.vox_offset = int64_t(raw.vox_offset);
}

// The transform codes, the scaling (unscaled where the slope is not finite; a finite slope with
// an intercept that is not, as nibabel writes a header whose slope alone was set, with the
// intercept 0, as nifti_clib, and so FSL and AFNI, read it: unscaled, such a label map's labels
// were other structures) and the fields kept as they are.
void take_codes_and_scaling(const RawHeader& raw, const std::string& path, VolumeHeader& h) {
    ISS_INPUT(raw.qform_code >= 0 && raw.qform_code <= 5, path, ": qform_code is ", raw.qform_code,
              " (expected 0 to 5)");
    ISS_INPUT(raw.sform_code >= 0 && raw.sform_code <= 5, path, ": sform_code is ", raw.sform_code,
              " (expected 0 to 5)");
    h.qform_code = raw.qform_code;
    h.sform_code = raw.sform_code;
    if (!std::isfinite(raw.scl_slope)) {
        warning(cat(path, ": scl_slope ", raw.scl_slope, " is not finite; reading the data unscaled"));
    } else if (raw.scl_slope != 0) {
        h.scl_slope = raw.scl_slope;
        h.scl_inter = std::isfinite(raw.scl_inter) ? raw.scl_inter : 0;
        if (!std::isfinite(raw.scl_inter))
            warning(cat(path, ": scl_inter ", raw.scl_inter, " is not finite; reading the data as scl_slope ",
                        raw.scl_slope, " times each value, as FSL and AFNI read it (nibabel refuses the file)"));
    }
    h.xyzt_units = raw.xyzt_units;
    h.intent_code = raw.intent_code;
    h.descrip = raw.descrip;
    for (int i = 0; i < 3; ++i) {
        h.quatern[size_t(i)] = raw.quatern[i];
        h.qoffset[size_t(i)] = raw.qoffset[i];
    }
}

// Both transforms stated, in other voxel orders: the sform is read (as nibabel and SynthSeg read
// it), but a tool that reads the qform shows the image (and a segmentation written like it)
// turned or mirrored, left for right. Two transforms equal to a thousandth of a mm place it
// alike, whatever order names them (at exactly 45 degrees float noise picks one); both are still
// in the header's units here.
void warn_if_transforms_disagree(const RawHeader& raw, const std::string& path, const VolumeHeader& h) {
    if (raw.sform_code <= 0 || !h.qform_usable) return;
    const Mat4 q = qform_affine(raw, h);
    const std::string sform = orientation_code(h.affine), qform = orientation_code(q);
    if (sform != qform && !h.affine.approx_equal(q, 1e-3 / mm_per_spatial_unit(raw.xyzt_units)))
        warning(cat(path, ": its sform (", sform, ") and qform (", qform,
                    ") disagree on the voxel order; the sform is read, as nibabel does, but a tool that reads the "
                    "qform shows it as ",
                    qform, ": check which is right (left and right depend on it)"));
}

// Every grid is in mm: a header in metres or microns is converted (as ITK does; the writers
// convert back for an output made like it, so that it keeps the input's affine).
void convert_to_mm(VolumeHeader& h) {
    const double mm = mm_per_spatial_unit(h.xyzt_units);
    if (mm == 1) return;
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 4; ++c) h.affine.m[r][c] *= mm;
    for (int i = 1; i <= 3; ++i) h.pixdim[i] *= mm;
}

VolumeHeader parse_and_validate(const std::string& path) {
    const int64_t size = require_regular_file(path);
    ISS_INPUT(size > 0, path, ": file is empty");

    unsigned char buf[540] = {};
    size_t got;
    {
        // NIfTI-1's 348 bytes, then NIfTI-2's rest where sizeof_hdr says 540: no byte past the
        // header is read (a tiny file's stray gzip member after its data stays unread).
        GzReader in(path);
        got = in.read_some(buf, 348);
        if (got == 348 && (field<int32_t>(buf, 0, false) == 540 || field<int32_t>(buf, 0, true) == 540))
            got += in.read_some(buf + 348, sizeof buf - 348);
        ISS_INPUT(got >= 348 || !in.cut_short(), path, ": its gzip stream is cut short inside the header (", got,
                  " of its bytes came): the file is incomplete or damaged");
    }
    ISS_INPUT(got >= 4, path, ": too short to be a NIfTI file (", got, " bytes)");
    // Plain variables: the decode lambda below captures them (a structured binding cannot be,
    // before C++20, and clang refuses it).
    const HeaderKind kind = header_kind(buf, got, path);
    const int version = kind.version;
    bool swapped = kind.swapped;
    const size_t header_size = version == 1 ? 348 : 540;
    ISS_INPUT(got >= header_size, path, ": truncated header: ", got, " of ", header_size, " bytes");
    auto decode = [&](bool sw) { return version == 1 ? decode_v1(buf, sw) : decode_v2(buf, sw); };
    RawHeader raw = decode(swapped);
    // The byte order is the one in which dim[0] reads 1 to 7, as nifti_clib decides it: a writer
    // that stored sizeof_hdr alone in the other order has a readable header.
    if (raw.dim[0] < 1 || raw.dim[0] > 7) {
        const RawHeader other = decode(!swapped);
        if (other.dim[0] >= 1 && other.dim[0] <= 7) {
            swapped = !swapped;
            raw = other;
        }
    }

    VolumeHeader h;
    h.version = version;
    h.byte_swapped = swapped;
    h.single_file = is_single_file(raw, version, header_size, path);
    take_dims(raw, path, h);
    take_datatype(raw, path, h);
    require_bounded_size(h, path);
    const bool pixdim_from_sform = take_pixdim(raw, path, h);
    take_vox_offset(raw, header_size, path, h);
    take_codes_and_scaling(raw, path, h);
    set_affine(raw, path, h);
    h.qform_usable = raw.qform_code > 0 && !pixdim_from_sform && qform_problem(raw).empty();
    warn_if_transforms_disagree(raw, path, h);
    if (pixdim_from_sform) {
        warning(cat(path, ": voxel size pixdim[1..3] is ", raw.pixdim[1], " x ", raw.pixdim[2], " x ", raw.pixdim[3],
                    "; taking the sform's instead"));
        for (int i = 1; i <= 3; ++i) h.pixdim[i] = h.affine.column_norm(i - 1);
    }
    convert_to_mm(h);

    h.data_path = h.single_file ? path : image_file_for(path);
    require_data_in_file(h, h.single_file ? size : require_regular_file(h.data_path));
    read_extensions(path, h, header_size, swapped);
    return h;
}

// Where the MGH header keeps each field (big-endian), for the reader and the writer.
namespace mgh_at {
constexpr size_t version = 0, dims = 4, frames = 16, type = 20, good_ras = 28, voxel_size = 30, directions = 42,
                 centre = 78;
constexpr size_t read_bytes = 90;  // what the reader needs: the fields above
constexpr size_t data = 284;       // the voxels
}  // namespace mgh_at

// FreeSurfer's types, as nibabel reads and writes them, and the NIfTI datatype of each.
struct MghType {
    int32_t mgh;
    int nifti;
};
constexpr MghType mgh_types[] = {{0, NIFTI_TYPE_UINT8},
                                 {1, NIFTI_TYPE_INT32},
                                 {3, NIFTI_TYPE_FLOAT32},
                                 {4, NIFTI_TYPE_INT16},
                                 {10, NIFTI_TYPE_UINT16}};

// FreeSurfer's MGH format (.mgh, and .mgz: the same gzip-compressed), as nibabel's mghformat
// reads it: a big-endian header of 284 bytes (version 1, width, height, depth, frames, type, dof,
// goodRASFlag, the voxel size, the direction cosines of the three axes as rows, the world
// position of the volume's centre), then the voxels in NIfTI's order (x fastest, frames last),
// big-endian, then an optional footer that nothing here needs.
VolumeHeader parse_mgh(const std::string& path) {
    const int64_t size = require_regular_file(path);
    ISS_INPUT(size > 0, path, ": file is empty");
    unsigned char buf[mgh_at::read_bytes] = {};
    GzReader in(path);
    const size_t got = in.read_some(buf, sizeof buf);
    ISS_INPUT(got == mgh_at::read_bytes || !in.cut_short(), path, ": its gzip stream is cut short inside the header (",
              got, " of its bytes came): the file is incomplete or damaged");
    ISS_INPUT(got == mgh_at::read_bytes, path, ": too short to be an MGH file (", got, " bytes)");
    const int32_t version = field<int32_t>(buf, mgh_at::version, true);
    const int32_t sizeof_hdr = field<int32_t>(buf, 0, false);  // were it NIfTI
    ISS_INPUT(version == 1, path, ": not an MGH file: version is ", version, " (expected 1)",
              sizeof_hdr == 348 || sizeof_hdr == 540 ? "; it is a NIfTI file: name it .nii or .nii.gz" : "");

    VolumeHeader h;
    h.version = 0;
    h.format = VolumeFormat::mgh;
    h.byte_swapped = true;  // big-endian, on a little-endian host (static_assert above)
    const int32_t frames = field<int32_t>(buf, mgh_at::frames, true);
    h.dim[0] = frames > 1 ? 4 : 3;
    for (int i = 0; i < 4; ++i) {
        const int32_t d = field<int32_t>(buf, mgh_at::dims + size_t(4 * i), true);
        ISS_INPUT(d >= 1, path, ": MGH dimension ", i + 1, " is ", d, " (every dimension must be >= 1)");
        h.dim[size_t(i + 1)] = d;
    }
    for (int i = 5; i < 8; ++i) h.dim[size_t(i)] = 1;
    const int32_t type = field<int32_t>(buf, mgh_at::type, true);
    for (const MghType& t : mgh_types)
        if (type == t.mgh) h.datatype = t.nifti;
    ISS_INPUT(h.datatype != 0, path, ": MGH data type ", type,
              " is not one nibabel reads (0 uchar, 1 int, 3 float, 4 short, 10 ushort)");
    h.bitpix = find_type(h.datatype)->bitpix;
    require_bounded_size(h, path);

    // The grid. Without one (goodRASFlag 0; FreeSurfer reads the stored one only when it is
    // positive, nibabel when it is not 0) FreeSurfer assumes coronal slices (LIA) and nibabel, and
    // so SynthSeg's tools, other axes (LSP): refused rather than guessed.
    const int16_t good_ras = field<int16_t>(buf, mgh_at::good_ras, true);
    ISS_INPUT(good_ras > 0, path, ": MGH goodRASFlag is ", good_ras,
              ", so its orientation is not stored (FreeSurfer and nibabel assume different ones); give it one, "
              "e.g. with FreeSurfer's mri_convert --in_orientation");
    float delta[3], mdc[3][3], centre[3];
    for (int i = 0; i < 3; ++i) {
        delta[i] = field<float>(buf, mgh_at::voxel_size + size_t(4 * i), true);
        centre[i] = field<float>(buf, mgh_at::centre + size_t(4 * i), true);
        for (int j = 0; j < 3; ++j) mdc[i][j] = field<float>(buf, mgh_at::directions + size_t(12 * i + 4 * j), true);
        ISS_INPUT(std::isfinite(delta[i]) && delta[i] > 0, path, ": MGH voxel size ", i + 1, " is ", delta[i],
                  " (must be finite and > 0)");
    }
    // Column c of the affine is axis c's direction times its voxel size; the offset puts voxel
    // dims / 2 at the centre. Each entry rounded to float, as nibabel gives them (SynthSeg's
    // tools read its affine).
    h.pixdim.fill(1);
    for (int c = 0; c < 3; ++c) h.pixdim[size_t(c + 1)] = delta[c];
    for (int r = 0; r < 3; ++r) {
        double half_extent = 0;
        for (int c = 0; c < 3; ++c) {
            h.affine.m[r][c] = double(mdc[c][r] * delta[c]);
            half_extent += h.affine.m[r][c] * double(h.dim[size_t(c + 1)]);
        }
        h.affine.m[r][3] = double(float(double(centre[r]) - half_extent / 2));
    }
    h.affine_source = "MGH";
    require_regular_affine(h, path);
    // A NIfTI output made like it says the same: scanner coordinates, mm (as mri_convert writes).
    h.qform_code = h.sform_code = NIFTI_XFORM_SCANNER_ANAT;
    h.xyzt_units = NIFTI_UNITS_MM;
    h.vox_offset = int64_t(mgh_at::data);
    h.data_path = path;
    require_data_in_file(h, size);
    return h;
}

// Reads the voxels of a validated header, passing each one (native type) to store(index, v).
template <class Store>
void read_voxels(const VolumeHeader& h, Store&& store) {
    GzReader in(h.data_path, data_is_gzip(h, require_regular_file(h.data_path)));
    const int64_t skipped = in.skip(h.vox_offset);
    ISS_INPUT(skipped == h.vox_offset, h.data_path, ": ", data_start(h), " is past the end of the data (", skipped,
              " bytes)");
    const int64_t total = h.data_bytes();
    const size_t bpv = size_t(h.bitpix / 8);
    std::vector<unsigned char> chunk(std::min<size_t>(size_t(total), chunk_bytes / bpv * bpv));
    with_type(h.datatype, [&](auto zero) {
        using T = decltype(zero);
        int64_t done = 0;
        while (done < total) {
            const size_t want = size_t(std::min<int64_t>(total - done, int64_t(chunk.size())));
            const size_t got = in.read_some(chunk.data(), want);
            ISS_INPUT(got == want, h.data_path, ": truncated: ", total - done - int64_t(got), " of ", total,
                      " bytes of voxel data are missing");
            const int64_t first = done / int64_t(bpv);
            if (h.byte_swapped) swap_each(chunk.data(), want / bpv, bpv);
            for (size_t v = 0; v < want / bpv; ++v) {
                T value;
                std::memcpy(&value, chunk.data() + v * bpv, sizeof(T));
                store(first + int64_t(v), value);
            }
            done += int64_t(got);
        }
    });
    in.check_stream_end();
}

template <class T>
Volume<T> empty_volume(const VolumeHeader& h) {
    require_memory_for_volume(h, sizeof(T), host_memory_bytes());
    Volume<T> vol;
    vol.grid = h.grid();
    vol.frames = h.frames();
    vol.data.resize(size_t(h.voxels()));
    return vol;
}

// double to T; a float64 value beyond float's range becomes +-inf (a plain cast is undefined).
template <class T>
T narrow(double x) {
    if constexpr (std::is_same<T, float>::value) {
        constexpr double max = std::numeric_limits<float>::max();
        if (x > max) return std::numeric_limits<float>::infinity();
        if (x < -max) return -std::numeric_limits<float>::infinity();
    }
    return T(x);
}

template <class T>
Volume<T> read_scaled(const VolumeHeader& h) {
    Volume<T> vol = empty_volume<T>(h);
    const double slope = h.scl_slope, inter = h.scl_inter;
    const bool scaled = h.scaled();
    int64_t overflowed = 0;  // finite values that float cannot hold
    read_voxels(h, [&](int64_t i, auto v) {
        const double x = scaled ? double(v) * slope + inter : double(v);
        const T t = narrow<T>(x);
        overflowed += std::isfinite(x) && !std::isfinite(t);
        vol.data[size_t(i)] = t;
    });
    // Said here, where it happens: a later "NaN or infinite" alone would blame the file.
    if (overflowed > 0)
        warning(cat(h.path, ": ", overflowed, " voxel", overflowed > 1 ? "s lie" : " lies", " beyond float32's range (",
                    std::numeric_limits<float>::max(), ")", scaled ? " after scaling" : "", " and read as infinite"));
    return vol;
}

// The header, also to the caller when it asks for it.
VolumeHeader header_of(const std::string& path, VolumeHeader* header_out) {
    VolumeHeader h = read_volume_header(path);
    if (header_out) *header_out = h;
    return h;
}

// --- writing ----------------------------------------------------------------------------------

// How a .nii.gz is compressed. Float voxels (images, posteriors) are mostly mantissa bits that
// deflate's string search cannot shorten: level 1 with run-length matches only gives about the
// same size as level 6 (0.814 of the raw bytes against 0.809 for predict's posteriors, 0.865
// against 0.867 for a synthetic image) in a quarter of the time (docs/PERFORMANCE.md). Label
// maps are long runs, which level 6 packs into about 0.6 of level 1's size at tens of ms.
DeflateSettings deflate_settings_for(int datatype) {
    const TypeInfo* t = find_type(datatype);
    if (t && !t->integer) return {1, Z_RLE};
    return {6, Z_DEFAULT_STRATEGY};
}

// A NIfTI output (gzip-compressed for .nii.gz, on every thread: io/gzip_stream.h) through an
// OutputFile: a temporary name renamed into place by commit(), removed when destroyed
// uncommitted.
class GzWriter {
public:
    GzWriter(const std::string& path, int datatype)
        : output_(checked_name(path)), file_(output_.open_stream(), &std::fclose) {
        if (ends_with_ignoring_case(path, ".gz") || ends_with_ignoring_case(path, ".mgz"))
            gzip_.emplace(deflate_settings_for(datatype), [this](const void* data, size_t n) { put(data, n); });
    }

    void write(const void* data, size_t n) {
        if (gzip_)
            gzip_->write(data, n);
        else
            put(data, n);
    }
    void commit() {
        if (gzip_) gzip_->finish();
        const int flushed = std::fflush(file_.get());
        const int flush_error = errno;
        const int closed = std::fclose(file_.release());
        if (flushed != 0) throw_output_error(output_.path(), flush_error, "cannot finish writing");
        if (closed != 0) throw_output_error(output_.path(), errno, "cannot finish writing");
        output_.commit();
    }

private:
    static const std::string& checked_name(const std::string& path) {
        ISS_INPUT(is_output_volume_name(path), path, ": output must end in .nii, .nii.gz, .mgz or .mgh");
        return path;
    }
    void put(const void* data, size_t n) {
        if (n > 0 && std::fwrite(data, 1, n, file_.get()) != n)
            throw_output_error(output_.path(), errno, "cannot write");
    }

    OutputFile output_;  // first: its temporary is removed after the file is closed
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> file_;
    std::optional<ParallelGzip> gzip_;
};

bool is_rigid_with_scaling(const Mat4& a) {
    double col[3][3];
    for (int c = 0; c < 3; ++c) {
        const double n = a.column_norm(c);
        if (!(n > 0)) return false;
        for (int r = 0; r < 3; ++r) col[c][r] = a.m[r][c] / n;
    }
    for (int i = 0; i < 3; ++i)
        for (int j = i + 1; j < 3; ++j) {
            const double dot = col[i][0] * col[j][0] + col[i][1] * col[j][1] + col[i][2] * col[j][2];
            if (std::fabs(dot) > 1e-6) return false;
        }
    return true;
}

std::string output_description_text;

// The header values shared by both versions, before they are packed into a struct.
struct OutHeader {
    int64_t dim[8] = {};
    double pixdim[8] = {};
    int datatype = 0, bitpix = 0;
    int qform_code = 0, sform_code = 0, xyzt_units = NIFTI_UNITS_MM, intent_code = 0;
    double quatern[3] = {}, qoffset[3] = {}, srow[3][4] = {};
    double cal_min = 0, cal_max = 0;
    std::string descrip;
    std::string comment;  // written as a comment extension when not empty
};

// Whether an output on `grid` is on the grid of an input `like` that stated no transform
// (NIfTI's method 1: the voxel size alone): such an output states none either.
bool states_no_transform(const VolumeHeader* like, const Grid& grid) {
    return like && like->affine_source == "pixdim" && like->grid().same_as(grid);
}

OutHeader make_header(const Grid& grid, int64_t frames, int datatype, int bitpix, const VolumeHeader* like) {
    OutHeader o;
    o.descrip = !output_description_text.empty() ? output_description_text : like ? like->descrip : "";
    // In the units of the input it is made like (mm otherwise): the grid is in mm.
    Mat4 affine = grid.affine;
    if (like) {
        o.xyzt_units = like->xyzt_units;
        const double mm = mm_per_spatial_unit(like->xyzt_units);
        for (int r = 0; r < 3; ++r)
            for (int c = 0; c < 4; ++c) affine.m[r][c] /= mm;
    }
    o.dim[0] = frames > 1 ? 4 : 3;
    // A 2-D (or 1-D) input's single-volume outputs on its grid keep its number of dims, as
    // nibabel writes them: a tool comparing shapes sees (86, 94) for both, not (86, 94, 1).
    if (frames == 1 && like && like->dim[0] < 3 && like->grid().same_as(grid)) o.dim[0] = like->dim[0];
    for (int i = 0; i < 3; ++i) o.dim[i + 1] = grid.dim[i];
    o.dim[4] = frames;
    for (int i = 5; i < 8; ++i) o.dim[i] = 1;
    o.datatype = datatype;
    o.bitpix = bitpix;
    o.pixdim[0] = 1;
    for (int i = 0; i < 3; ++i) o.pixdim[i + 1] = affine.column_norm(i);
    // Several frames of ours are labels or channels, never time points: a 4-D input's time step
    // and unit would show the posteriors as a time series in a viewer.
    o.pixdim[4] = like && like->dim[0] >= 4 && frames == 1 ? like->pixdim[4] : 1.0;
    if (frames > 1) o.xyzt_units &= 0x07;  // the spatial unit alone
    for (int i = 5; i < 8; ++i) o.pixdim[i] = 1;
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 4; ++c) o.srow[r][c] = affine.m[r][c];
    // An output on its input's grid says where it is as the input said it, so that every reader
    // places the two alike: no transform when the input had none (readers then fall back on the
    // voxel size, each in its own way, the same for both), and the input's own qform.
    const bool input_grid = like && like->grid().same_as(grid);
    if (states_no_transform(like, grid)) {
        o.pixdim[0] = like->pixdim[0];
        return o;  // sform_code and qform_code 0
    }
    o.sform_code = like && like->sform_code > 0 ? like->sform_code : NIFTI_XFORM_ALIGNED_ANAT;
    if (input_grid && like->qform_usable) {
        o.qform_code = like->qform_code;
        o.pixdim[0] = like->pixdim[0];
        const double mm = mm_per_spatial_unit(like->xyzt_units);
        for (int i = 0; i < 3; ++i) {
            o.quatern[i] = like->quatern[size_t(i)];
            o.qoffset[i] = like->qoffset[size_t(i)];
            o.pixdim[i + 1] = like->pixdim[size_t(i + 1)] / mm;  // the qform's scaling
        }
    } else if (is_rigid_with_scaling(affine)) {
        nifti_dmat44 d;
        for (int r = 0; r < 4; ++r)
            for (int c = 0; c < 4; ++c) d.m[r][c] = affine.m[r][c];
        double dx, dy, dz, qfac;
        nifti_dmat44_to_quatern(d, &o.quatern[0], &o.quatern[1], &o.quatern[2], &o.qoffset[0], &o.qoffset[1],
                                &o.qoffset[2], &dx, &dy, &dz, &qfac);
        o.pixdim[0] = qfac;
        o.qform_code = like && like->qform_code > 0 ? like->qform_code : o.sform_code;
    }
    return o;
}

void write_header(GzWriter& out, const OutHeader& o, bool nifti2) {
    // The extension: esize (its 8-byte head and the text, NUL-padded to a multiple of 16), ecode.
    const char extension_flag[4] = {char(o.comment.empty() ? 0 : 1), 0, 0, 0};
    const int32_t esize = o.comment.empty() ? 0 : int32_t((8 + o.comment.size() + 1 + 15) / 16 * 16);
    if (!nifti2) {
        nifti_1_header h;
        std::memset(&h, 0, sizeof h);
        h.sizeof_hdr = 348;
        for (int i = 0; i < 8; ++i) {
            h.dim[i] = int16_t(o.dim[i]);
            h.pixdim[i] = float(o.pixdim[i]);
        }
        h.datatype = int16_t(o.datatype);
        h.bitpix = int16_t(o.bitpix);
        h.vox_offset = 352 + esize;
        h.scl_slope = 1;
        h.xyzt_units = char(o.xyzt_units);
        h.intent_code = int16_t(o.intent_code);
        h.cal_min = float(o.cal_min);
        h.cal_max = float(o.cal_max);
        h.qform_code = int16_t(o.qform_code);
        h.sform_code = int16_t(o.sform_code);
        h.quatern_b = float(o.quatern[0]);
        h.quatern_c = float(o.quatern[1]);
        h.quatern_d = float(o.quatern[2]);
        h.qoffset_x = float(o.qoffset[0]);
        h.qoffset_y = float(o.qoffset[1]);
        h.qoffset_z = float(o.qoffset[2]);
        for (int c = 0; c < 4; ++c) {
            h.srow_x[c] = float(o.srow[0][c]);
            h.srow_y[c] = float(o.srow[1][c]);
            h.srow_z[c] = float(o.srow[2][c]);
        }
        std::strncpy(h.descrip, o.descrip.c_str(), sizeof h.descrip - 1);
        std::memcpy(h.magic, "n+1\0", 4);
        out.write(&h, sizeof h);
    } else {
        nifti_2_header h;
        std::memset(&h, 0, sizeof h);
        h.sizeof_hdr = 540;
        std::memcpy(h.magic, "n+2\0\r\n\032\n", 8);
        for (int i = 0; i < 8; ++i) {
            h.dim[i] = o.dim[i];
            h.pixdim[i] = o.pixdim[i];
        }
        h.datatype = int16_t(o.datatype);
        h.bitpix = int16_t(o.bitpix);
        h.vox_offset = 544 + esize;
        h.scl_slope = 1;
        h.xyzt_units = o.xyzt_units;
        h.intent_code = o.intent_code;
        h.cal_min = o.cal_min;
        h.cal_max = o.cal_max;
        h.qform_code = o.qform_code;
        h.sform_code = o.sform_code;
        h.quatern_b = o.quatern[0];
        h.quatern_c = o.quatern[1];
        h.quatern_d = o.quatern[2];
        h.qoffset_x = o.qoffset[0];
        h.qoffset_y = o.qoffset[1];
        h.qoffset_z = o.qoffset[2];
        for (int c = 0; c < 4; ++c) {
            h.srow_x[c] = o.srow[0][c];
            h.srow_y[c] = o.srow[1][c];
            h.srow_z[c] = o.srow[2][c];
        }
        std::strncpy(h.descrip, o.descrip.c_str(), sizeof h.descrip - 1);
        out.write(&h, sizeof h);
    }
    out.write(extension_flag, sizeof extension_flag);
    if (esize > 0) {
        const int32_t head[2] = {esize, frame_labels_ecode};
        std::vector<char> data(size_t(esize) - sizeof head, '\0');
        std::memcpy(data.data(), o.comment.data(), o.comment.size());
        out.write(head, sizeof head);
        out.write(data.data(), data.size());
    }
}

template <class T>
void check_shape(const std::string& path, const Volume<T>& vol) {
    for (int i = 0; i < 3; ++i) ISS_INPUT(vol.grid.dim[i] >= 1, path, ": cannot write: dim ", i, " is ", vol.grid.dim[i]);
    ISS_INPUT(vol.frames >= 1, path, ": cannot write: ", vol.frames, " frames");
    ISS_INPUT(int64_t(vol.data.size()) == vol.grid.voxels() * vol.frames, path, ": cannot write: ", vol.data.size(),
              " values for ", vol.grid.voxels(), " voxels x ", vol.frames, " frames");
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 4; ++c)
            ISS_INPUT(std::isfinite(vol.grid.affine.m[r][c]), path, ": cannot write: the affine has a non-finite entry");
}

bool needs_nifti2(const Grid& grid, int64_t frames) {
    for (int i = 0; i < 3; ++i)
        if (grid.dim[i] > 32767) return true;
    return frames > 32767;
}

// FreeSurfer's MGH header (parse_mgh's fields) for a volume on `grid`, as nibabel writes one:
// each voxel axis's size is its column's length and its direction the column divided by it;
// the centre is the world position of voxel dims / 2. MGH has no units: the grid is in mm.
std::vector<unsigned char> mgh_header(const std::string& path, const Grid& grid, int64_t frames, int datatype) {
    std::vector<unsigned char> h(mgh_at::data, 0);
    auto put = [&](size_t at, auto value) {
        std::memcpy(&h[at], &value, sizeof value);
        swap_bytes(&h[at], sizeof value);  // big-endian
    };
    int32_t type = -1;
    for (const MghType& t : mgh_types)
        if (datatype == t.nifti) type = t.mgh;
    ISS_REQUIRE(type >= 0, "MGH: no type for NIfTI datatype ", datatype);
    ISS_INPUT(grid.dim[0] <= INT32_MAX && grid.dim[1] <= INT32_MAX && grid.dim[2] <= INT32_MAX && frames <= INT32_MAX,
              path, ": a volume of ", grid.dim[0], "x", grid.dim[1], "x", grid.dim[2], "x", frames,
              " does not fit MGH's 32-bit dimensions");
    put(mgh_at::version, int32_t(1));
    for (int a = 0; a < 3; ++a) put(mgh_at::dims + size_t(4 * a), int32_t(grid.dim[size_t(a)]));
    put(mgh_at::frames, int32_t(frames));
    put(mgh_at::type, type);
    put(mgh_at::good_ras, int16_t(1));
    for (int c = 0; c < 3; ++c) {
        const double length = grid.affine.column_norm(c);
        put(mgh_at::voxel_size + size_t(4 * c), float(length));
        for (int r = 0; r < 3; ++r)
            put(mgh_at::directions + size_t(12 * c + 4 * r), float(grid.affine.m[r][c] / length));
    }
    for (int r = 0; r < 3; ++r) {  // in nibabel's order: affine . (dims / 2, 1)
        double centre = 0;
        for (int c = 0; c < 3; ++c) centre += grid.affine.m[r][c] * (double(grid.dim[size_t(c)]) / 2);
        put(mgh_at::centre + size_t(4 * r), float(centre + grid.affine.m[r][3]));
    }
    return h;
}

// Writes `vol` converted to Out (an exact conversion the caller has checked): NIfTI, or MGH for
// a .mgz / .mgh name (big-endian voxels, then nibabel's footer of five zero floats: TR, flip
// angle, TE, TI, field of view).
template <class Out, class T>
void write_volume(const std::string& path, const Volume<T>& vol, int datatype, const VolumeHeader* like,
                  double cal_min = 0, double cal_max = 0, const std::string& comment = "") {
    check_shape(path, vol);
    const bool mgh = is_mgh_name(path);
    // A NIfTI output on such an input's grid states no transform, so that every reader places
    // the two alike; MGH always states one, and ours (NIfTI's method 1) is not nibabel's.
    ISS_INPUT(!(mgh && states_no_transform(like, vol.grid)), path, ": its input ", like ? like->path : std::string(),
              " stores no orientation (no qform or sform), "
              "which an MGH file cannot leave unstated: name the output .nii or .nii.gz");
    GzWriter out(path, datatype);
    if (mgh) {
        const std::vector<unsigned char> header = mgh_header(path, vol.grid, vol.frames, datatype);
        out.write(header.data(), header.size());
    } else {
        OutHeader o = make_header(vol.grid, vol.frames, datatype, int(sizeof(Out) * 8), like);
        o.cal_min = cal_min;
        o.cal_max = cal_max;
        o.comment = comment;
        write_header(out, o, needs_nifti2(vol.grid, vol.frames));
    }
    if (std::is_same<Out, T>::value && !mgh) {
        out.write(vol.data.data(), vol.data.size() * sizeof(T));
    } else {
        std::vector<Out> chunk;
        const size_t step = chunk_bytes / sizeof(Out);
        for (size_t first = 0; first < vol.data.size(); first += step) {
            const size_t n = std::min(step, vol.data.size() - first);
            chunk.assign(vol.data.begin() + first, vol.data.begin() + first + n);
            if (mgh) swap_each(reinterpret_cast<unsigned char*>(chunk.data()), n, sizeof(Out));
            out.write(chunk.data(), n * sizeof(Out));
        }
    }
    if (mgh) {
        const unsigned char footer[20] = {};
        out.write(footer, sizeof footer);
    }
    out.commit();
}

}  // namespace

// --- public -----------------------------------------------------------------------------------

int64_t VolumeHeader::voxels() const {
    int64_t n = 1;
    for (int i = 1; i < 8; ++i) n *= dim[i];
    return n;
}

int64_t VolumeHeader::frames() const {
    return dim[4] * dim[5] * dim[6] * dim[7];
}

bool VolumeHeader::integer_type() const {
    const TypeInfo* t = find_type(datatype);
    return t && t->integer;
}

std::string VolumeHeader::datatype_name() const {
    return nifti_datatype_name(datatype);
}

Grid VolumeHeader::grid() const {
    Grid g;
    g.dim = {dim[1], dim[2], dim[3]};
    g.affine = affine;
    return g;
}

std::string nifti_datatype_name(int datatype) {
    const TypeInfo* t = find_type(datatype);
    return t ? std::string(t->name) : cat("unknown(", datatype, ")");
}

VolumeHeader read_volume_header(const std::string& path) {
    VolumeHeader h = is_mgh_name(path) ? parse_mgh(path) : parse_and_validate(path);
    h.path = path;
    return h;
}

void require_memory_for_volume(const VolumeHeader& h, size_t element_bytes, size_t host_bytes) {
    const double bytes = double(h.voxels()) * double(element_bytes);
    ISS_INPUT(fits_in_memory(bytes, host_bytes), h.data_path, ": its ", h.voxels(), " voxels need ",
              human_bytes(int64_t(bytes)), " in memory, more than 80% of the ", gib_text(double(host_bytes)),
              " GiB this process may use");
}

Image read_image(const std::string& path, VolumeHeader* header) {
    return read_scaled<float>(header_of(path, header));
}
Image read_image(const VolumeHeader& header) {
    return read_scaled<float>(header);
}

Volume<double> read_image_f64(const std::string& path, VolumeHeader* header) {
    return read_scaled<double>(header_of(path, header));
}

LabelMap read_labels(const std::string& path, VolumeHeader* header) {
    return read_labels(header_of(path, header));
}

LabelMap read_labels(const VolumeHeader& h) {
    const std::string& path = h.path;
    LabelMap vol = empty_volume<int32_t>(h);
    const double slope = h.scl_slope, inter = h.scl_inter;
    const bool scaled = h.scaled();
    constexpr double lo = std::numeric_limits<int32_t>::min(), hi = std::numeric_limits<int32_t>::max();
    read_voxels(h, [&](int64_t i, auto v) {
        using T = decltype(v);
        if (!scaled && std::is_integral<T>::value) {
            // Exact path: compare as integers, never through double.
            const bool fits = std::is_signed<T>::value
                                  ? (int64_t(v) >= INT32_MIN && int64_t(v) <= INT32_MAX)
                                  : (uint64_t(v) <= uint64_t(INT32_MAX));
            ISS_INPUT(fits, path, ": label value ", +v, " at voxel ", voxel_text(vol.grid.dim, i),
                      " does not fit in int32");
            vol.data[size_t(i)] = int32_t(v);
            return;
        }
        const double x = scaled ? double(v) * slope + inter : double(v);
        ISS_INPUT(std::isfinite(x) && x == std::floor(x), path, ": label value ", csv_number(x), " at voxel ",
                  voxel_text(vol.grid.dim, i), " is not an integer", scaled ? " (after scaling)" : "",
                  ": a label map holds whole numbers (a scan given as a label map? a map of such values: round ",
                  "it, or store it as an integer type)");
        ISS_INPUT(x >= lo && x <= hi, path, ": label value ", x, " at voxel ", voxel_text(vol.grid.dim, i),
                  " does not fit in int32");
        vol.data[size_t(i)] = int32_t(x);
    });
    return vol;
}

void set_output_description(const std::string& text) {
    // Control characters escaped (a folder's name in it is anyone's), and cut at a character's
    // start within the field's 79 bytes: a cut UTF-8 character made nibabel's decode fail.
    std::string field = one_line(text);
    if (field.size() > 79) {
        size_t cut = 79;
        while (cut > 0 && (static_cast<unsigned char>(field[cut]) & 0xC0) == 0x80) --cut;
        field.resize(cut);
    }
    output_description_text = field;
}
const std::string& output_description() {
    return output_description_text;
}

void write_image(const std::string& path, const Image& image, const VolumeHeader* like) {
    write_volume<float>(path, image, NIFTI_TYPE_FLOAT32, like);
}

void write_labels(const std::string& path, const LabelMap& labels, const VolumeHeader* like) {
    int32_t lo = 0, hi = 0;
    if (!labels.data.empty()) {
        const auto mm = std::minmax_element(labels.data.begin(), labels.data.end());
        lo = *mm.first;
        hi = *mm.second;
    }
    if (lo >= 0 && hi <= 255)
        write_volume<uint8_t>(path, labels, NIFTI_TYPE_UINT8, like);
    else if (lo >= INT16_MIN && hi <= INT16_MAX)
        write_volume<int16_t>(path, labels, NIFTI_TYPE_INT16, like);
    else if (lo >= 0 && hi <= UINT16_MAX && !is_mgh_name(path))  // MGH's type 10 is newer than its readers
        write_volume<uint16_t>(path, labels, NIFTI_TYPE_UINT16, like);
    else
        write_volume<int32_t>(path, labels, NIFTI_TYPE_INT32, like);
}

void write_posteriors(const std::string& path, const Image& posteriors, const VolumeHeader* like,
                      const std::vector<int32_t>& frame_labels) {
    ISS_REQUIRE(frame_labels.empty() || int64_t(frame_labels.size()) == posteriors.frames, path, ": ",
                frame_labels.size(), " labels for ", posteriors.frames, " frames");
    std::string comment;
    if (!frame_labels.empty()) comment = nlohmann::json{{frame_labels_key, frame_labels}}.dump();
    // Display range 0..1 tells viewers these are probabilities.
    write_volume<float>(path, posteriors, NIFTI_TYPE_FLOAT32, like, 0.0, 1.0, comment);
}

}  // namespace iss
