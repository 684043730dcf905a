// Line plots rendered into an RgbImage with our own rasteriser and 5x7 font, then written as
// PNG. Layout: the title on top, y tick labels and the (vertical) y label on the left, x tick
// labels and the x label below, the legend in whichever inside corner covers least data.
#include "io/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "io/png.h"
#include "kernels/common/error.h"

namespace iss {
namespace {

using Rgb = std::array<uint8_t, 3>;

// ---------------------------------------------------------------------------------------
// Font. Each glyph is 9 rows of 5 bits (bit 4 = leftmost column): rows 0..6 are the cap
// height, the baseline is under row 6, rows 7..8 hold descenders (g j p q y , _).

struct Glyph {
    char c;
    uint8_t rows[font_height];
};

// clang-format off
constexpr Glyph glyphs[] = {
    {' ', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}},
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E, 0x00, 0x00}},
    {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F, 0x00, 0x00}},
    {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E, 0x00, 0x00}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02, 0x00, 0x00}},
    {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E, 0x00, 0x00}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E, 0x00, 0x00}},
    {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08, 0x00, 0x00}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E, 0x00, 0x00}},
    {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C, 0x00, 0x00}},
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11, 0x00, 0x00}},
    {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E, 0x00, 0x00}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E, 0x00, 0x00}},
    {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C, 0x00, 0x00}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F, 0x00, 0x00}},
    {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10, 0x00, 0x00}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F, 0x00, 0x00}},
    {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11, 0x00, 0x00}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00}},
    {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C, 0x00, 0x00}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11, 0x00, 0x00}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F, 0x00, 0x00}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11, 0x00, 0x00}},
    {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x00, 0x00}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0x00, 0x00}},
    {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10, 0x00, 0x00}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D, 0x00, 0x00}},
    {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11, 0x00, 0x00}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E, 0x00, 0x00}},
    {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x00}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, 0x00, 0x00}},
    {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04, 0x00, 0x00}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A, 0x00, 0x00}},
    {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11, 0x00, 0x00}},
    {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x00, 0x00}},
    {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F, 0x00, 0x00}},
    {'a', {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F, 0x00, 0x00}},
    {'b', {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E, 0x00, 0x00}},
    {'c', {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E, 0x00, 0x00}},
    {'d', {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F, 0x00, 0x00}},
    {'e', {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E, 0x00, 0x00}},
    {'f', {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08, 0x00, 0x00}},
    {'g', {0x00, 0x00, 0x0F, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E}},
    {'h', {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00, 0x00}},
    {'i', {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00}},
    {'j', {0x02, 0x00, 0x06, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'k', {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12, 0x00, 0x00}},
    {'l', {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, 0x00, 0x00}},
    {'m', {0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11, 0x00, 0x00}},
    {'n', {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11, 0x00, 0x00}},
    {'o', {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E, 0x00, 0x00}},
    {'p', {0x00, 0x00, 0x1E, 0x11, 0x11, 0x11, 0x1E, 0x10, 0x10}},
    {'q', {0x00, 0x00, 0x0F, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x01}},
    {'r', {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10, 0x00, 0x00}},
    {'s', {0x00, 0x00, 0x0F, 0x10, 0x0E, 0x01, 0x1E, 0x00, 0x00}},
    {'t', {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06, 0x00, 0x00}},
    {'u', {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D, 0x00, 0x00}},
    {'v', {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04, 0x00, 0x00}},
    {'w', {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A, 0x00, 0x00}},
    {'x', {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x00, 0x00}},
    {'y', {0x00, 0x00, 0x11, 0x11, 0x11, 0x11, 0x0F, 0x01, 0x0E}},
    {'z', {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F, 0x00, 0x00}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C, 0x00, 0x00}},
    {',', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C, 0x04, 0x08}},
    {'-', {0x00, 0x00, 0x00, 0x0E, 0x00, 0x00, 0x00, 0x00, 0x00}},
    {'+', {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00, 0x00, 0x00}},
    {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00, 0x00, 0x00}},
    {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03, 0x00, 0x00}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02, 0x00, 0x00}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08, 0x00, 0x00}},
    {'/', {0x01, 0x02, 0x02, 0x04, 0x08, 0x08, 0x10, 0x00, 0x00}},
    {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F, 0x00}},
    {'=', {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00, 0x00, 0x00}},
};
// clang-format on

// Anything the font lacks: a hollow box, so a missing glyph is visible rather than silent.
constexpr Glyph missing_glyph = {'?', {0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F, 0x00, 0x00}};

const Glyph& glyph_for(char c) {
    for (const Glyph& g : glyphs)
        if (g.c == c) return g;
    return missing_glyph;
}

// Calls paint(tx, ty) for every lit pixel of `text` in text coordinates (origin top-left).
template <class Paint>
void for_each_text_pixel(const std::string& text, int scale, Paint paint) {
    for (size_t i = 0; i < text.size(); ++i) {
        const Glyph& g = glyph_for(text[i]);
        const int left = int(i) * font_advance * scale;
        for (int row = 0; row < font_height; ++row)
            for (int col = 0; col < 5; ++col)
                if (g.rows[row] & (0x10 >> col))
                    for (int sy = 0; sy < scale; ++sy)
                        for (int sx = 0; sx < scale; ++sx) paint(left + col * scale + sx, row * scale + sy);
    }
}

void put(RgbImage& image, int x, int y, Rgb colour) {
    if (x < 0 || y < 0 || x >= image.width || y >= image.height) return;
    std::copy(colour.begin(), colour.end(), image.pixel(x, y));
}

// ---------------------------------------------------------------------------------------
// Rasterising.

// Pixels inside [x0, x1] x [y0, y1] (inclusive); drawing outside it is dropped, so a series
// never paints over the frame or the labels.
struct Clip {
    int x0, y0, x1, y1;
    bool inside(int x, int y) const { return x >= x0 && x <= x1 && y >= y0 && y <= y1; }
};

void fill_rect(RgbImage& image, int x0, int y0, int x1, int y1, Rgb colour) {
    for (int y = y0; y <= y1; ++y)
        for (int x = x0; x <= x1; ++x) put(image, x, y, colour);
}

void draw_rect(RgbImage& image, int x0, int y0, int x1, int y1, Rgb colour) {
    for (int x = x0; x <= x1; ++x) {
        put(image, x, y0, colour);
        put(image, x, y1, colour);
    }
    for (int y = y0; y <= y1; ++y) {
        put(image, x0, y, colour);
        put(image, x1, y, colour);
    }
}

// A `thickness`-wide square pen stamped at (x, y), clipped.
void stamp(RgbImage& image, const Clip& clip, int x, int y, int thickness, Rgb colour) {
    const int lo = -(thickness - 1) / 2;
    for (int dy = lo; dy < lo + thickness; ++dy)
        for (int dx = lo; dx < lo + thickness; ++dx)
            if (clip.inside(x + dx, y + dy)) put(image, x + dx, y + dy, colour);
}

// Bresenham's line, every step stamped with the pen.
void draw_line(RgbImage& image, const Clip& clip, int x0, int y0, int x1, int y1, int thickness, Rgb colour) {
    const int dx = std::abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
    const int dy = -std::abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int err = dx + dy;
    for (;;) {
        stamp(image, clip, x0, y0, thickness, colour);
        if (x0 == x1 && y0 == y1) break;
        const int e2 = 2 * err;
        if (e2 >= dy) {
            err += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            err += dx;
            y0 += sy;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Axes.

// One axis: the data interval [lo, hi] shown, in plotted coordinates (log10 y on a log
// axis), and the ticks with their labels.
struct Axis {
    double lo = 0, hi = 1;
    std::vector<double> ticks;  // plotted coordinates
    std::vector<std::string> labels;
};

// The range of the finite values, `margin` (a fraction) added on each side; a single value
// gets a unit range around it, no values the range 0..1.
void set_range(Axis& axis, const std::vector<double>& values, double margin) {
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (double v : values) {
        lo = std::min(lo, v);
        hi = std::max(hi, v);
    }
    if (!(lo <= hi)) {
        axis.lo = 0;
        axis.hi = 1;
    } else if (lo == hi) {
        axis.lo = lo - 0.5;
        axis.hi = hi + 0.5;
    } else {
        const double pad = (hi - lo) * margin;
        axis.lo = lo - pad;
        axis.hi = hi + pad;
    }
}

void linear_ticks(Axis& axis, int target, bool integers = false) {
    axis.ticks = nice_ticks(axis.lo, axis.hi, target);
    if (integers)
        axis.ticks.erase(
            std::remove_if(axis.ticks.begin(), axis.ticks.end(), [](double t) { return t != std::round(t); }),
            axis.ticks.end());
    const double step = axis.ticks.size() > 1 ? axis.ticks[1] - axis.ticks[0] : 1.0;
    axis.labels.clear();
    for (double t : axis.ticks) axis.labels.push_back(compact_number(t, step));
}

// Ticks on a log10 axis: decades when the range spans at least two, else 1, 2, 5 x 10^k,
// else linear nice ticks of the values themselves.
void log_ticks(Axis& axis, int target) {
    axis.ticks.clear();
    axis.labels.clear();
    for (const std::vector<double>& mantissas : {std::vector<double>{1}, std::vector<double>{1, 2, 5}}) {
        std::vector<double> values;
        for (double k = std::floor(axis.lo); k <= std::ceil(axis.hi); ++k)
            for (double m : mantissas) {
                const double t = std::log10(m) + k;
                if (t >= axis.lo && t <= axis.hi) values.push_back(m * std::pow(10.0, k));
            }
        if (values.size() < 2) continue;
        const size_t stride = (values.size() + size_t(target) - 1) / size_t(target);
        for (size_t i = 0; i < values.size(); i += stride) {
            axis.ticks.push_back(std::log10(values[i]));
            axis.labels.push_back(compact_number(values[i], values[i]));
        }
        return;
    }
    const std::vector<double> values = nice_ticks(std::pow(10.0, axis.lo), std::pow(10.0, axis.hi), target);
    const double step = values.size() > 1 ? values[1] - values[0] : 1.0;
    for (double v : values)
        if (v > 0) {
            axis.ticks.push_back(std::log10(v));
            axis.labels.push_back(compact_number(v, step));
        }
}

int max_label_width(const Axis& axis) {
    int w = 0;
    for (const std::string& s : axis.labels) w = std::max(w, text_width(s));
    return w;
}

// Maps plotted coordinates to pixels: x0 at the left edge of the plot area, x1 at its right.
struct Mapping {
    double lo, hi;
    int p0, p1;  // pixel for lo, pixel for hi
    int operator()(double v) const {
        const double t = (v - lo) / (hi - lo);
        // Clamped so that a point far outside cannot overflow an int or make a huge line.
        return int(std::lround(p0 + std::clamp(t, -0.1, 1.1) * (p1 - p0)));
    }
};

constexpr Rgb white{255, 255, 255}, ink{30, 30, 30}, frame_grey{90, 90, 90}, grid_grey{232, 232, 232},
    legend_border{170, 170, 170};

}  // namespace

const std::string& font_characters() {
    static const std::string all = [] {
        std::string s;
        for (const Glyph& g : glyphs) s += g.c;
        return s;
    }();
    return all;
}

int text_width(const std::string& text, int scale) {
    // The last character's trailing blank column is not part of the text.
    return text.empty() ? 0 : (int(text.size()) * font_advance - 1) * scale;
}

void draw_text(RgbImage& image, int x, int y, const std::string& text, Rgb colour, int scale) {
    for_each_text_pixel(text, scale, [&](int tx, int ty) { put(image, x + tx, y + ty, colour); });
}

void draw_text_vertical(RgbImage& image, int x, int y, const std::string& text, Rgb colour, int scale) {
    const int w = text_width(text, scale);
    // Turning counter-clockwise: the text's top edge becomes the left edge, its start the bottom.
    for_each_text_pixel(text, scale, [&](int tx, int ty) { put(image, x + ty, y + w - 1 - tx, colour); });
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
    if (!std::isfinite(lo) || !std::isfinite(hi) || hi < lo) return {};
    if (hi == lo) return {lo};
    target = std::clamp(target, 2, 100);
    const double raw = (hi - lo) / target;
    const double decade = std::pow(10.0, std::floor(std::log10(raw)));
    // Multiples of `step` by integer index, so rounding errors do not accumulate.
    auto multiples = [&](double step) {
        std::vector<double> ticks;
        const double first = std::ceil(lo / step - 1e-9), last = std::floor(hi / step + 1e-9);
        for (double k = first; k <= last; ++k) ticks.push_back(std::abs(k) < 0.5 ? 0.0 : k * step);
        return ticks;
    };
    // The smallest nice step at least `raw` gives at most about `target` ticks; when that
    // leaves fewer than two (an interval straddling few multiples), smaller steps.
    const double steps[] = {decade / 10, decade / 5, decade / 2, decade, 2 * decade, 5 * decade, 10 * decade};
    int pick = 6;
    while (pick > 0 && steps[pick - 1] >= raw * (1 - 1e-9)) --pick;
    for (int i = pick; i >= 0; --i) {
        std::vector<double> ticks = multiples(steps[i]);
        if (ticks.size() >= 2 || i == 0) return ticks;
    }
    return {};
}

std::string compact_number(double v, double step) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    step = std::abs(step);
    if (!(step > 0) || !std::isfinite(step)) step = std::abs(v) > 0 ? std::abs(v) : 1.0;
    // Rounding noise at zero is zero, printed with the decimals of its neighbours ("0.0").
    if (std::abs(v) < step * 1e-9) v = 0;
    char buf[64];
    const double a = std::abs(v);
    if (a > 0 && a < 1e-3) {
        // Tiny values: a mantissa with as many decimals as the step needs, e.g. "2.5e-5".
        const int e = int(std::floor(std::log10(a)));
        const double m = v / std::pow(10.0, e);
        const int decimals = std::clamp(int(std::ceil(-std::log10(step / std::pow(10.0, e)) - 1e-9)), 0, 3);
        std::snprintf(buf, sizeof buf, "%.*fe%d", decimals, m, e);
        return buf;
    }
    double div = 1;
    const char* suffix = "";
    if (a >= 1e9) {
        div = 1e9;
        suffix = "G";
    } else if (a >= 1e6) {
        div = 1e6;
        suffix = "M";
    } else if (a >= 1e3) {
        div = 1e3;
        suffix = "k";
    }
    const int decimals = std::clamp(int(std::ceil(-std::log10(step / div) - 1e-9)), 0, 6);
    std::snprintf(buf, sizeof buf, "%.*f%s", decimals, v / div, suffix);
    return buf;
}

std::vector<double> moving_average(const std::vector<double>& y, size_t window) {
    ISS_REQUIRE(window >= 1, "moving_average: window must be at least 1");
    std::vector<double> out(y.size());
    // A running sum and count of the finite values in the window. Drift in the sum is far
    // below what a plot can show.
    double sum = 0;
    size_t count = 0;
    for (size_t i = 0; i < y.size(); ++i) {
        if (std::isfinite(y[i])) {
            sum += y[i];
            ++count;
        }
        if (i >= window && std::isfinite(y[i - window])) {
            sum -= y[i - window];
            --count;
        }
        out[i] = count > 0 ? sum / double(count) : std::numeric_limits<double>::quiet_NaN();
    }
    return out;
}

// The plot area's frame, the axes' ticks and labels, the title and the axis names.
void draw_frame_and_labels(RgbImage& image, const LinePlot& plot, const Clip& area, const Axis& xa, const Axis& ya,
                           const Mapping& mx, const Mapping& my) {
    const int W = image.width, plot_w = area.x1 - area.x0 + 1, plot_h = area.y1 - area.y0 + 1;
    draw_rect(image, area.x0 - 1, area.y0 - 1, area.x1 + 1, area.y1 + 1, frame_grey);
    for (size_t i = 0; i < xa.ticks.size(); ++i) {
        const int px = mx(xa.ticks[i]);
        for (int d = 2; d <= 5; ++d) put(image, px, area.y1 + d, frame_grey);
        const int w = text_width(xa.labels[i]);
        // Labels at the ends are kept inside the picture.
        const int lx = std::clamp(px - w / 2, 2, W - 2 - w);
        draw_text(image, lx, area.y1 + 8, xa.labels[i], ink);
    }
    for (size_t i = 0; i < ya.ticks.size(); ++i) {
        const int py = my(ya.ticks[i]);
        for (int d = 2; d <= 5; ++d) put(image, area.x0 - d, py, frame_grey);
        draw_text(image, area.x0 - 8 - text_width(ya.labels[i]), py - 3, ya.labels[i], ink);
    }

    // Title and axis labels, centred on the plot area.
    const int cx = area.x0 + plot_w / 2, cy = area.y0 + plot_h / 2;
    if (!plot.title.empty()) draw_text(image, std::max(2, cx - text_width(plot.title, 2) / 2), 8, plot.title, ink, 2);
    if (!plot.x_label.empty())
        draw_text(image, cx - text_width(plot.x_label) / 2, area.y1 + 8 + font_height + 6, plot.x_label, ink);
    if (!plot.y_label.empty())
        draw_text_vertical(image, 10, std::max(2, cy - text_width(plot.y_label) / 2), plot.y_label, ink);
}

// A sample of each named series' line and its name, in the inside corner that hides the fewest
// drawn pixels (the data is already there to count).
void draw_legend(RgbImage& image, const std::vector<Series>& series, const Clip& area) {
    const int W = image.width, H = image.height;
    std::vector<const Series*> named;
    for (const Series& s : series)
        if (!s.name.empty()) named.push_back(&s);
    if (!named.empty()) {
        int name_w = 0;
        for (const Series* s : named) name_w = std::max(name_w, text_width(s->name));
        const int row_h = font_height + 5, sample_w = 22;
        const int lw = 8 + sample_w + 6 + name_w + 8, lh = 6 + int(named.size()) * row_h + 2;
        const int gap = 8;
        const int corners[4][2] = {{area.x1 - gap - lw, area.y0 + gap},
                                   {area.x0 + gap, area.y0 + gap},
                                   {area.x1 - gap - lw, area.y1 - gap - lh},
                                   {area.x0 + gap, area.y1 - gap - lh}};
        int best = 0;
        long best_cover = -1;
        for (int c = 0; c < 4; ++c) {
            long cover = 0;
            for (int y = corners[c][1]; y < corners[c][1] + lh; ++y)
                for (int x = corners[c][0]; x < corners[c][0] + lw; ++x) {
                    if (!area.inside(x, y)) continue;
                    const uint8_t* p = image.pixel(x, y);
                    const Rgb here{p[0], p[1], p[2]};
                    cover += here != white && here != grid_grey;
                }
            if (best_cover < 0 || cover < best_cover) {
                best_cover = cover;
                best = c;
            }
        }
        const int lx = corners[best][0], ly = corners[best][1];
        fill_rect(image, lx, ly, lx + lw - 1, ly + lh - 1, white);
        draw_rect(image, lx, ly, lx + lw - 1, ly + lh - 1, legend_border);
        const Clip everywhere{0, 0, W - 1, H - 1};
        for (size_t i = 0; i < named.size(); ++i) {
            const Series& s = *named[i];
            const int ty = ly + 6 + int(i) * row_h, mid = ty + 3;
            draw_line(image, everywhere, lx + 8, mid, lx + 8 + sample_w - 1, mid, std::max(2, s.thickness), s.colour);
            if (s.markers) stamp(image, everywhere, lx + 8 + sample_w / 2, mid, s.thickness + 4, s.colour);
            draw_text(image, lx + 8 + sample_w + 6, ty, s.name, ink);
        }
    }
}

RgbImage render_line_plot(const LinePlot& plot) {
    ISS_REQUIRE(plot.width >= 160 && plot.height >= 120 && plot.width <= 1 << 14 && plot.height <= 1 << 14,
                "line plot '", plot.title, "': size ", plot.width, "x", plot.height, " outside 160x120 .. 16384^2");
    for (const Series& s : plot.series) {
        ISS_REQUIRE(s.x.size() == s.y.size(), "line plot '", plot.title, "': series '", s.name, "' has ",
                    s.x.size(), " x values and ", s.y.size(), " y values");
        ISS_REQUIRE(s.thickness >= 1 && s.thickness <= 5, "line plot series '", s.name, "': thickness ",
                    s.thickness, " outside 1..5");
    }
    // Plotted coordinates: y through log10 on a log axis, where y <= 0 has no place.
    auto plotted_y = [&](double y) {
        if (!plot.log_y) return y;
        return y > 0 ? std::log10(y) : std::numeric_limits<double>::quiet_NaN();
    };
    auto usable = [&](double x, double y) { return std::isfinite(x) && std::isfinite(plotted_y(y)); };

    std::vector<double> xs, ys;
    for (const Series& s : plot.series)
        for (size_t i = 0; i < s.x.size(); ++i)
            if (usable(s.x[i], s.y[i])) {
                xs.push_back(s.x[i]);
                ys.push_back(plotted_y(s.y[i]));
            }
    Axis xa, ya;
    set_range(xa, xs, 0.0);  // x from the first to the last step: no blank margin in time
    set_range(ya, ys, 0.05);

    // Vertical layout first: the number of y ticks depends on the plot's height only.
    const int W = plot.width, H = plot.height;
    const int top = plot.title.empty() ? 12 : 2 * font_height + 16;
    const int bottom = 8 + font_height + 6 + (plot.x_label.empty() ? 0 : font_height + 6) + 4;
    const int plot_h = H - top - bottom;
    if (plot.log_y)
        log_ticks(ya, std::max(2, plot_h / 50));
    else
        linear_ticks(ya, std::max(2, plot_h / 50));
    const int left = 10 + (plot.y_label.empty() ? 0 : font_height + 8) + max_label_width(ya) + 8;
    const int right = 24;
    const int plot_w = W - left - right;
    ISS_REQUIRE(plot_w >= 40 && plot_h >= 40, "line plot '", plot.title, "': ", W, "x", H,
                " leaves no room for the plot area");
    // As many x ticks as fit with their labels a comfortable distance apart.
    for (int target = std::max(2, plot_w / 80);; --target) {
        linear_ticks(xa, target, plot.integer_x);
        const double px_per_tick = xa.ticks.size() > 1 ? plot_w * (xa.ticks[1] - xa.ticks[0]) / (xa.hi - xa.lo) : plot_w;
        if (target <= 2 || max_label_width(xa) + 16 <= px_per_tick) break;
    }

    const Clip area{left, top, left + plot_w - 1, top + plot_h - 1};
    const Mapping mx{xa.lo, xa.hi, area.x0, area.x1}, my{ya.lo, ya.hi, area.y1, area.y0};

    RgbImage image(W, H, white);
    for (double t : xa.ticks)
        for (int y = area.y0; y <= area.y1; ++y) put(image, mx(t), y, grid_grey);
    for (double t : ya.ticks)
        for (int x = area.x0; x <= area.x1; ++x) put(image, x, my(t), grid_grey);

    for (const Series& s : plot.series) {
        const size_t n = s.x.size();
        auto ok = [&](size_t i) { return i < n && usable(s.x[i], s.y[i]); };
        for (size_t i = 0; i < n; ++i) {
            if (!ok(i)) continue;
            const int px = mx(s.x[i]), py = my(plotted_y(s.y[i]));
            if (ok(i + 1))
                draw_line(image, area, px, py, mx(s.x[i + 1]), my(plotted_y(s.y[i + 1])), s.thickness, s.colour);
            const bool isolated = (i == 0 || !ok(i - 1)) && !ok(i + 1);
            // A point with no neighbour would be a lone pixel: draw it as a dot.
            if (isolated && !s.markers) stamp(image, area, px, py, s.thickness + 2, s.colour);
        }
        if (s.markers)
            for (size_t i = 0; i < n; ++i)
                if (ok(i)) stamp(image, area, mx(s.x[i]), my(plotted_y(s.y[i])), s.thickness + 4, s.colour);
    }

    draw_frame_and_labels(image, plot, area, xa, ya, mx, my);
    draw_legend(image, plot.series, area);
    return image;
}

void write_line_plot(const std::string& path, const LinePlot& plot) {
    const RgbImage image = render_line_plot(plot);
    write_png(path, image.rgb, image.width, image.height);
}

void write_loss_curve(const std::string& path, const std::string& title, const std::vector<double>& steps,
                      const std::vector<double>& losses, const std::vector<double>& validation_steps,
                      const std::vector<double>& validation_dice) {
    ISS_REQUIRE(steps.size() == losses.size(), "loss curve ", path, ": ", steps.size(), " steps and ",
                losses.size(), " losses");
    ISS_REQUIRE(validation_steps.size() == validation_dice.size(), "loss curve ", path, ": ",
                validation_steps.size(), " validation steps and ", validation_dice.size(), " Dice values");
    LinePlot plot;
    plot.title = title;
    plot.x_label = "step";
    plot.integer_x = true;
    plot.y_label = "loss";
    plot.series.push_back({"loss", steps, losses, {166, 196, 232}});
    const size_t window = std::max<size_t>(1, losses.size() / 50);
    Series smooth{cat("moving average (", window, window == 1 ? " point)" : " points)"),
                  steps,
                  moving_average(losses, window),
                  {24, 78, 170}};
    smooth.thickness = 2;
    plot.series.push_back(smooth);
    if (!validation_steps.empty()) {
        Series val{"1 - mean hard Dice (validation)", validation_steps, {}, {222, 110, 20}};
        for (double d : validation_dice) val.y.push_back(1.0 - d);
        val.thickness = 2;
        val.markers = true;
        plot.series.push_back(val);
    }
    write_line_plot(path, plot);
}

}  // namespace iss
