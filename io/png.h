// PNG output for previews: 8-bit RGB, written through libpng to a temporary name beside the
// target and renamed when complete (io/file_util.h), so a failed write leaves nothing behind.
// Every libpng error becomes an iss::InputError naming the file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace iss {

// `rgb` holds width * height pixels, 3 bytes each (R, G, B), rows top to bottom.
void write_png(const std::string& path, const std::vector<uint8_t>& rgb, int width, int height);

}  // namespace iss
