// TEMPORARY minimal NIfTI-1 writer so `infant-synthseg phantom` can be tried before the real
// io/nifti.cpp lands: uncompressed single-file .nii only, int16 labels (int32 when a value
// does not fit), sform from the affine, little-endian host assumed. Drop on merge.
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

#include "io/nifti.h"
#include "kernels/common/error.h"

namespace iss {
namespace {

template <class T>
void put(std::vector<unsigned char>& buf, size_t offset, T value) {
    std::memcpy(buf.data() + offset, &value, sizeof value);
}

}  // namespace

void write_labels(const std::string& path, const LabelMap& labels) {
    ISS_INPUT(path.size() > 4 && path.compare(path.size() - 4, 4, ".nii") == 0, "cannot write '", path,
              "': this temporary writer only writes uncompressed .nii files");
    ISS_REQUIRE(labels.data.size() == size_t(labels.grid.voxels() * labels.frames), "label map data size");
    bool fits_int16 = true;
    for (int32_t v : labels.data)
        if (v < std::numeric_limits<int16_t>::min() || v > std::numeric_limits<int16_t>::max()) fits_int16 = false;

    std::vector<unsigned char> header(352, 0);  // 348-byte header + 4-byte empty extension flag
    put<int32_t>(header, 0, 348);
    header[38] = 'r';
    const int16_t ndim = labels.frames > 1 ? 4 : 3;
    put<int16_t>(header, 40, ndim);
    for (int d = 0; d < 3; ++d) put<int16_t>(header, 42 + 2 * d, int16_t(labels.grid.dim[size_t(d)]));
    put<int16_t>(header, 48, int16_t(labels.frames));
    for (int d = 4; d < 8; ++d) put<int16_t>(header, 42 + 2 * d, 1);
    put<int16_t>(header, 70, fits_int16 ? 4 : 8);  // DT_INT16 or DT_INT32
    put<int16_t>(header, 72, fits_int16 ? 16 : 32);
    put<float>(header, 76, 1.0f);  // qfac
    const auto vox = labels.grid.voxel_size();
    for (int d = 0; d < 3; ++d) put<float>(header, 80 + 4 * d, float(vox[size_t(d)]));
    put<float>(header, 92, 1.0f);
    put<float>(header, 108, 352.0f);  // vox_offset
    put<float>(header, 112, 1.0f);    // scl_slope: identity scaling
    header[123] = 2;                  // xyzt_units: mm
    put<int16_t>(header, 254, 1);     // sform_code: scanner
    for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 4; ++c) put<float>(header, 280 + 16 * r + 4 * c, float(labels.grid.affine.m[r][c]));
    std::memcpy(header.data() + 344, "n+1", 4);

    FILE* file = std::fopen(path.c_str(), "wb");
    ISS_INPUT(file, "cannot open '", path, "' for writing");
    bool ok = std::fwrite(header.data(), 1, header.size(), file) == header.size();
    if (fits_int16) {
        std::vector<int16_t> data(labels.data.begin(), labels.data.end());
        ok = ok && std::fwrite(data.data(), sizeof(int16_t), data.size(), file) == data.size();
    } else {
        ok = ok && std::fwrite(labels.data.data(), sizeof(int32_t), labels.data.size(), file) == labels.data.size();
    }
    ok = (std::fclose(file) == 0) && ok;
    ISS_INPUT(ok, "failed writing '", path, "'");
}

}  // namespace iss
