#include "io/png.h"

#include <png.h>

#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "io/file_util.h"
#include "kernels/common/error.h"

namespace iss {
namespace {

// libpng reports errors by calling an error function that must not return. Throwing a C++
// exception through libpng's C frames is not safe, so the error function records the message
// and longjmps back to encode_png, whose frame holds no C++ objects.
struct PngErrorState {
    char message[256];
};

void on_png_error(png_structp png, png_const_charp message) {
    auto* state = static_cast<PngErrorState*>(png_get_error_ptr(png));
    std::snprintf(state->message, sizeof state->message, "%s", message ? message : "libpng error");
    png_longjmp(png, 1);
}

void on_png_warning(png_structp, png_const_charp) {}  // warnings are not worth a line in a preview

// Writes the whole PNG stream to `file`; returns false with `state->message` set on failure.
bool encode_png(FILE* file, const uint8_t* rgb, int width, int height, PngErrorState* state) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, state, on_png_error, on_png_warning);
    if (!png) {
        std::snprintf(state->message, sizeof state->message, "cannot create the PNG writer");
        return false;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, nullptr);
        std::snprintf(state->message, sizeof state->message, "cannot create the PNG header");
        return false;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return false;
    }
    png_init_io(png, file);
    png_set_IHDR(png, info, png_uint_32(width), png_uint_32(height), 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    const size_t stride = size_t(width) * 3;
    for (int row = 0; row < height; ++row) png_write_row(png, rgb + size_t(row) * stride);
    png_write_end(png, nullptr);
    png_destroy_write_struct(&png, &info);
    return true;
}

}  // namespace

void write_png(const std::string& path, const std::vector<uint8_t>& rgb, int width, int height) {
    ISS_REQUIRE(width > 0 && height > 0, "write_png: ", path, ": empty image ", width, "x", height);
    ISS_REQUIRE(rgb.size() == size_t(width) * size_t(height) * 3, "write_png: ", path, ": ", rgb.size(),
                " bytes for ", width, "x", height, " RGB pixels");
    OutputFile output(path);
    FILE* file = output.open_stream();

    PngErrorState state{};
    const bool encoded = encode_png(file, rgb.data(), width, height, &state);
    const bool flushed = std::fflush(file) == 0;
    const int saved_errno = errno;
    const bool closed = std::fclose(file) == 0;
    if (!encoded) throw Error(cat(path, ": cannot write PNG: ", state.message));
    if (!flushed || !closed) throw_output_error(path, flushed ? errno : saved_errno, "write failed");
    output.commit();
}

}  // namespace iss
