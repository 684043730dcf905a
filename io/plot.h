// Line plots as PNG files, for training curves (loss, validation Dice) without a Python
// plotting stack: a frame, "nice" ticks (1, 2, 5 x 10^k) with compact labels ("900k",
// "1.2M"), a title, axis labels, a legend, and one polyline per series. Text comes from a
// small built-in 5x7 pixel font, so the only dependency is libpng (through write_png).
//
// Non-finite points (and, on a log axis, y <= 0) break a line instead of being drawn; the
// ranges come from the finite points only. Degenerate input (no series, no points, one
// point, a constant series) still gives a valid picture.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "io/preview.h"

namespace iss {

struct Series {
    std::string name;  // shown in the legend; an empty name leaves the series out of it
    std::vector<double> x, y;  // same length
    std::array<uint8_t, 3> colour{0, 0, 0};
    int thickness = 1;     // line width in pixels (1..5)
    bool markers = false;  // a small square at every point, for sparse series
};

struct LinePlot {
    std::string title;
    std::string x_label, y_label;
    std::vector<Series> series;
    int width = 800, height = 480;  // at least 160 x 120
    bool log_y = false;
    bool integer_x = false;  // x ticks at whole numbers only (steps: no 1.5 on a 2-step run)
};

// Renders `plot` and writes it through write_png: InputError naming `path` when the file
// cannot be written (nothing is left behind then).
void write_line_plot(const std::string& path, const LinePlot& plot);
// The picture write_line_plot writes.
RgbImage render_line_plot(const LinePlot& plot);

// Trailing moving average, same length as `y`: out[i] is the mean of the finite values among
// y[i - window + 1 .. i] (fewer at the start), NaN when there are none. window >= 1.
std::vector<double> moving_average(const std::vector<double>& y, size_t window);

// A training curve under `title` (which says the loss): the raw loss (light), its moving
// average over max(1, n / 50) logged points (strong) and, when validation is given, 1 - mean
// hard Dice at the validation steps (markers).
void write_loss_curve(const std::string& path, const std::string& title, const std::vector<double>& steps,
                      const std::vector<double>& losses, const std::vector<double>& validation_steps = {},
                      const std::vector<double>& validation_dice = {});

// Tick positions: multiples of a step 1, 2 or 5 x 10^k inside [lo, hi], about `target`
// of them (at least 2 whenever hi > lo).
std::vector<double> nice_ticks(double lo, double hi, int target);
// A short label for tick value `v` when ticks are `step` apart: thousands and millions as
// "900k", "1.2M", "3G"; small steps with just enough decimals; tiny values as "1e-5".
std::string compact_number(double v, double step);

// The built-in font: each character a 5x7 cell (with two rows below the baseline for
// descenders) drawn at `scale`, advancing 6 * scale pixels. Characters: digits, a-z, A-Z,
// space and . , - + : % ( ) / _ = ; any other character is drawn as a hollow box.
constexpr int font_advance = 6;  // pixels per character at scale 1
constexpr int font_height = 9;   // rows per line at scale 1, descenders included
const std::string& font_characters();
int text_width(const std::string& text, int scale = 1);
// Draws `text` with its top-left corner at (x, y); pixels outside the image are clipped.
void draw_text(RgbImage& image, int x, int y, const std::string& text, std::array<uint8_t, 3> colour,
               int scale = 1);
// The same text turned 90 degrees counter-clockwise (reading bottom to top), its bounding
// box's top-left corner at (x, y): text_width wide becomes text_width tall.
void draw_text_vertical(RgbImage& image, int x, int y, const std::string& text, std::array<uint8_t, 3> colour,
                        int scale = 1);

}  // namespace iss
