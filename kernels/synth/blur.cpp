#include "kernels/synth/blur.h"

#include <cmath>

#include "kernels/common/device.h"
#include "kernels/common/error.h"
#include "kernels/common/launch.h"

namespace iss {

std::vector<float> blur_taps(double sigma, int half_width) {
    ISS_REQUIRE(half_width >= 0 && half_width <= max_blur_half_width, "blur_taps: half width ", half_width,
                " outside 0..", max_blur_half_width);
    std::vector<double> weights(size_t(2 * half_width + 1), 0.0);
    if (sigma <= 0) {
        weights[size_t(half_width)] = 1;
    } else {
        for (int t = -half_width; t <= half_width; ++t) weights[size_t(t + half_width)] = std::exp(-0.5 * t * t / (sigma * sigma));
    }
    double total = 0;
    for (double w : weights) total += w;
    std::vector<float> taps;
    for (double w : weights) taps.push_back(float(w / total));
    return taps;
}

void blur_axis(DeviceContext& ctx, const BlurArgs& a) {
    ISS_REQUIRE(a.src && a.dst && a.src != a.dst, "blur_axis: null or aliased image pointers");
    ISS_REQUIRE(a.axis >= 0 && a.axis < 3, "blur_axis: axis ", a.axis);
    ISS_REQUIRE(a.half_width >= 0 && a.half_width <= max_blur_half_width, "blur_axis: half width ", a.half_width);
    for (int d = 0; d < 3; ++d) ISS_REQUIRE(a.dim[d] > 0, "blur_axis: empty image");
    ISS_REQUIRE(a.channels >= 1, "blur_axis: ", a.channels, " channels");
    if (ctx.is_cuda()) {
        ISS_CUDA_ONLY("blur_axis", blur_axis_cuda(ctx, a));
        return;
    }
    cpu_for_each_voxel(a.dim, BlurBody{a});
}

}  // namespace iss
