// Line plots (io/plot.h): a written plot read back with libpng (size, frame, each series'
// colour inside it), degenerate inputs that must still give a picture, the tick choice and
// labels, the moving average, the built-in font staying inside its cells, and a failed write.
#include <gtest/gtest.h>
#include <png.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "io/plot.h"
#include "kernels/common/error.h"
#include "test_util.h"

namespace iss {
namespace {

namespace fs = std::filesystem;
using Rgb = std::array<uint8_t, 3>;
constexpr double nan = std::numeric_limits<double>::quiet_NaN();
constexpr double inf = std::numeric_limits<double>::infinity();
constexpr Rgb white{255, 255, 255};

class PlotTest : public test::TempDirTest {};

RgbImage read_back(const std::string& file) {
    png_image image{};
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&image, file.c_str())) throw std::runtime_error(image.message);
    image.format = PNG_FORMAT_RGB;
    RgbImage out(int(image.width), int(image.height));
    if (!png_image_finish_read(&image, nullptr, out.rgb.data(), 0, nullptr)) throw std::runtime_error(image.message);
    return out;
}

Rgb at(const RgbImage& image, int x, int y) {
    const uint8_t* p = image.pixel(x, y);
    return {p[0], p[1], p[2]};
}

struct Box {
    int x0 = 1 << 30, y0 = 1 << 30, x1 = -1, y1 = -1;
    bool empty() const { return x1 < x0; }
};

// The bounding box of the pixels of one colour.
Box bounds_of(const RgbImage& image, Rgb colour) {
    Box b;
    for (int y = 0; y < image.height; ++y)
        for (int x = 0; x < image.width; ++x)
            if (at(image, x, y) == colour) {
                b.x0 = std::min(b.x0, x);
                b.y0 = std::min(b.y0, y);
                b.x1 = std::max(b.x1, x);
                b.y1 = std::max(b.y1, y);
            }
    return b;
}

int count_in(const RgbImage& image, const Box& box, Rgb colour) {
    int n = 0;
    for (int y = box.y0; y <= box.y1; ++y)
        for (int x = box.x0; x <= box.x1; ++x) n += at(image, x, y) == colour;
    return n;
}

// The plot frame: the frame colour's bounding box (tick marks reach 5 pixels outside it),
// shrunk to the area inside the frame line.
Box plot_area(const RgbImage& image) {
    Box b = bounds_of(image, {90, 90, 90});
    b.x0 += 5;
    b.y0 += 1;
    b.x1 -= 1;
    b.y1 -= 5;
    return b;
}

TEST_F(PlotTest, TwoSeriesWithGapsAndLargeSteps) {
    Series a{"training", {}, {}, {200, 30, 30}};
    Series b{"validation", {}, {}, {30, 30, 200}};
    for (int i = 0; i < 3000; ++i) {
        const double x = 1 + i * 300.0;  // 1 .. ~900000
        a.x.push_back(x);
        a.y.push_back(i >= 1000 && i < 1500 ? nan : 2.0 + std::sin(i * 0.01));
        if (i % 100 == 0) {
            b.x.push_back(x);
            b.y.push_back(i == 500 ? inf : 1.0 + 0.5 * std::cos(i * 0.01));
        }
    }
    a.x.back() = 900000;
    LinePlot plot;
    plot.title = "two series";
    plot.x_label = "step";
    plot.y_label = "value";
    plot.series = {a, b};
    const std::string file = path("two.png");
    write_line_plot(file, plot);
    const RgbImage image = read_back(file);
    ASSERT_EQ(image.width, 800);
    ASSERT_EQ(image.height, 480);

    const Box area = plot_area(image);
    ASSERT_FALSE(area.empty());
    EXPECT_GT(area.x1 - area.x0, 500) << "the plot area is most of the picture";
    EXPECT_GT(area.y1 - area.y0, 300);
    int drawn = 0;
    for (int y = area.y0; y <= area.y1; ++y)
        for (int x = area.x0; x <= area.x1; ++x) drawn += at(image, x, y) != white;
    EXPECT_GT(drawn, 2000);
    EXPECT_GT(count_in(image, area, a.colour), 500);
    EXPECT_GT(count_in(image, area, b.colour), 200);
    // Every pixel of a series' colour is inside the frame (data and legend both are).
    EXPECT_EQ(count_in(image, area, a.colour), count_in(image, {0, 0, image.width - 1, image.height - 1}, a.colour));

    // The NaN stretch (a third of the way along) is a gap: no red in its middle columns.
    const int gap_x0 = area.x0 + (area.x1 - area.x0) * 36 / 100, gap_x1 = area.x0 + (area.x1 - area.x0) * 46 / 100;
    EXPECT_EQ(count_in(image, {gap_x0, area.y0, gap_x1, area.y1}, a.colour), 0);
}

TEST_F(PlotTest, DegenerateInputsStillGiveAPicture) {
    const Rgb c{0, 150, 0};
    std::vector<std::pair<std::string, std::vector<Series>>> cases = {
        {"nothing", {}},
        {"empty", {{"empty", {}, {}, c}}},
        {"one", {{"one point", {5}, {3}, c}}},
        {"constant", {{"constant", {0, 1, 2, 3}, {7, 7, 7, 7}, c}}},
        {"nan", {{"all nan", {0, 1, 2}, {nan, nan, nan}, c}}},
        {"inf-x", {{"x inf", {inf, -inf}, {1, 2}, c}}},
        {"same-x", {{"one x", {4, 4, 4}, {1, 2, 3}, c}}},
    };
    for (bool log_y : {false, true}) {
        cases.push_back({"log-nonpositive", {{"<= 0", {0, 1, 2}, {0, -1, 0}, c}}});
        for (const auto& [name, series] : cases) {
            LinePlot plot;
            plot.title = name;
            plot.series = series;
            plot.log_y = log_y;
            plot.width = 320;
            plot.height = 200;
            const std::string file = path(name + (log_y ? "-log" : "") + ".png");
            ASSERT_NO_THROW(write_line_plot(file, plot)) << file;
            const RgbImage image = read_back(file);
            EXPECT_EQ(image.width, 320) << file;
            EXPECT_EQ(image.height, 200) << file;
            EXPECT_FALSE(plot_area(image).empty()) << file << ": no frame";
            if (name == "one" || name == "constant" || name == "same-x") {
                EXPECT_GT(count_in(image, plot_area(image), c), 20) << file << ": the data is visible";
            }
        }
    }
}

TEST_F(PlotTest, LogAxisDrawsPositiveValues) {
    LinePlot plot;
    plot.log_y = true;
    plot.series.push_back({"decay", {}, {}, {200, 0, 200}});
    for (int i = 0; i < 100; ++i) {
        plot.series[0].x.push_back(i);
        plot.series[0].y.push_back(std::pow(10.0, -i / 20.0));
    }
    const RgbImage image = render_line_plot(plot);
    EXPECT_GT(count_in(image, plot_area(image), {200, 0, 200}), 300);
}

// Steps are whole numbers: a 2-step run's axis has ticks at 1 and 2, not 1.2, 1.4, ...
TEST_F(PlotTest, IntegerXAxisTicksOnlyWholeNumbers) {
    LinePlot plot;
    plot.series.push_back({"loss", {1, 2}, {0.5, 0.4}, {200, 0, 0}});
    auto x_ticks = [&] {
        const RgbImage image = render_line_plot(plot);
        const Box area = plot_area(image);
        int ticks = 0;  // marks below the frame, 2 to 5 pixels under the plot area
        for (int x = area.x0 - 1; x <= area.x1 + 1; ++x) ticks += at(image, x, area.y1 + 3) == Rgb{90, 90, 90};
        return ticks;
    };
    EXPECT_GT(x_ticks(), 2);
    plot.integer_x = true;
    EXPECT_EQ(x_ticks(), 2);
}

TEST_F(PlotTest, BadSeriesIsRejected) {
    LinePlot plot;
    plot.series.push_back({"uneven", {1, 2, 3}, {1, 2}, {0, 0, 0}});
    EXPECT_THROW(render_line_plot(plot), Error);
    plot.series[0].y.push_back(3);
    plot.width = 50;
    EXPECT_THROW(render_line_plot(plot), Error);
}

TEST(PlotTicksTest, NiceTicks) {
    EXPECT_EQ(nice_ticks(0, 1, 5), (std::vector<double>{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1}));
    const std::vector<double> big = nice_ticks(1, 900000, 10);
    ASSERT_GE(big.size(), 5u);
    EXPECT_EQ(big[0], 100000);
    EXPECT_EQ(big.back(), 900000);
    // A narrow interval still gets two ticks.
    EXPECT_GE(nice_ticks(0.95, 1.05, 2).size(), 2u);
    EXPECT_GE(nice_ticks(7.001, 7.009, 3).size(), 2u);
    for (double t : nice_ticks(-3.3, 4.1, 6)) {
        EXPECT_GE(t, -3.3);
        EXPECT_LE(t, 4.1);
    }
    EXPECT_EQ(nice_ticks(-1, 1, 4)[2], 0.0) << "zero is exactly zero";
    EXPECT_EQ(nice_ticks(2, 2, 5), (std::vector<double>{2}));
    EXPECT_TRUE(nice_ticks(nan, 1, 5).empty());
}

TEST(PlotTicksTest, CompactLabels) {
    EXPECT_EQ(compact_number(900000, 100000), "900k");
    EXPECT_EQ(compact_number(1200000, 200000), "1.2M");
    EXPECT_EQ(compact_number(2e9, 1e9), "2G");
    EXPECT_EQ(compact_number(1500, 500), "1.5k");
    EXPECT_EQ(compact_number(200, 100), "200");
    EXPECT_EQ(compact_number(0.25, 0.05), "0.25");
    EXPECT_EQ(compact_number(0.4, 0.2), "0.4");
    EXPECT_EQ(compact_number(-1, 0.5), "-1.0");
    EXPECT_EQ(compact_number(5e-5, 1e-5), "5e-5");
    EXPECT_EQ(compact_number(1e-5, 1e-5), "1e-5");
    EXPECT_EQ(compact_number(1e-17, 0.1), "0.0") << "rounding noise at zero";
    EXPECT_EQ(compact_number(0, 100000), "0");
    EXPECT_EQ(compact_number(nan, 1), "nan");
}

TEST(PlotMovingAverageTest, TrailingWindow) {
    EXPECT_EQ(moving_average({1, 2, 3, 4}, 2), (std::vector<double>{1, 1.5, 2.5, 3.5}));
    EXPECT_EQ(moving_average({1, 2, 3}, 1), (std::vector<double>{1, 2, 3}));
    EXPECT_EQ(moving_average({2, 4, 6}, 10), (std::vector<double>{2, 3, 4}));
    EXPECT_EQ(moving_average({1, nan, 3, inf}, 2), (std::vector<double>{1, 1, 3, 3})) << "non-finite skipped";
    EXPECT_TRUE(moving_average({}, 3).empty());
    const std::vector<double> none = moving_average({nan, nan}, 2);
    EXPECT_TRUE(std::isnan(none[0]) && std::isnan(none[1]));
    EXPECT_THROW(moving_average({1}, 0), Error);
}

TEST(PlotFontTest, EveryCharacterDrawsInsideItsCell) {
    const std::string& chars = font_characters();
    for (const char c : std::string("0123456789azAZ.-+:%()/_")) EXPECT_NE(chars.find(c), std::string::npos) << c;
    std::set<std::vector<uint8_t>> seen;
    for (int scale : {1, 2}) {
        for (const char c : chars) {
            const int ox = 7, oy = 5;
            RgbImage image(30, 30, white);
            draw_text(image, ox, oy, std::string(1, c), {0, 0, 0}, scale);
            const Box b = bounds_of(image, {0, 0, 0});
            if (c == ' ') {
                EXPECT_TRUE(b.empty());
                continue;
            }
            ASSERT_FALSE(b.empty()) << "'" << c << "' draws nothing";
            EXPECT_GE(b.x0, ox) << c;
            EXPECT_GE(b.y0, oy) << c;
            EXPECT_LT(b.x1, ox + 5 * scale) << c;
            EXPECT_LT(b.y1, oy + font_height * scale) << c;
            if (scale == 1) {
                EXPECT_TRUE(seen.insert(image.rgb).second) << "'" << c << "' looks like another character";
            }
        }
    }
    // A character outside the font is a visible box, not nothing.
    RgbImage image(10, 12, white);
    draw_text(image, 1, 1, "#", {0, 0, 0});
    EXPECT_FALSE(bounds_of(image, {0, 0, 0}).empty());
}

TEST(PlotFontTest, TextIsClippedAtTheEdges) {
    const std::string all = font_characters();
    RgbImage small(24, 10, white);
    // Partly above, left, right and below the picture: nothing written outside the buffer
    // (a sanitizer build checks that), something written inside.
    for (const auto& [x, y] : std::vector<std::pair<int, int>>{{-3, -4}, {-200, 2}, {20, 5}, {2, 8}, {1000, 1000}})
        draw_text(small, x, y, all, {0, 0, 0}, 2);
    EXPECT_EQ(small.rgb.size(), size_t(24 * 10 * 3));
    EXPECT_FALSE(bounds_of(small, {0, 0, 0}).empty());

    RgbImage tall(20, 40, white);
    draw_text_vertical(tall, 3, 4, "Ab1", {0, 0, 0});
    const Box b = bounds_of(tall, {0, 0, 0});
    ASSERT_FALSE(b.empty());
    EXPECT_GE(b.x0, 3);
    EXPECT_LT(b.x1, 3 + font_height);
    EXPECT_GE(b.y0, 4);
    EXPECT_LT(b.y1, 4 + text_width("Ab1"));
    EXPECT_EQ(text_width("Ab1"), 17);
    EXPECT_EQ(text_width("Ab1", 2), 34);
    EXPECT_EQ(text_width(""), 0);
}

TEST_F(PlotTest, LossCurveHasRawSmoothedAndValidation) {
    std::vector<double> steps, losses, val_steps, dice;
    for (int i = 0; i < 5000; ++i) {
        steps.push_back(i * 10);
        losses.push_back(0.2 + 0.8 * std::exp(-i / 800.0) + 0.05 * std::sin(i * 1.7));
        if (i % 500 == 0) {
            val_steps.push_back(i * 10);
            dice.push_back(0.85 - 0.7 * std::exp(-i / 1000.0));
        }
    }
    losses[123] = nan;
    const std::string file = path("loss.png");
    write_loss_curve(file, "training loss: soft Dice", steps, losses, val_steps, dice);
    const RgbImage image = read_back(file);
    const Box area = plot_area(image);
    EXPECT_GT(count_in(image, area, {166, 196, 232}), 1000) << "raw loss";
    EXPECT_GT(count_in(image, area, {24, 78, 170}), 1000) << "moving average";
    EXPECT_GT(count_in(image, area, {222, 110, 20}), 200) << "validation";

    write_loss_curve(path("no-validation.png"), "loss", steps, losses);
    write_loss_curve(path("empty.png"), "loss", {}, {});
    EXPECT_THROW(write_loss_curve(path("bad.png"), "loss", {1, 2}, {1}), Error);
}

TEST_F(PlotTest, FailedWriteNamesTheFileAndLeavesNothing) {
    const std::string file = path("missing-dir/plot.png");
    LinePlot plot;
    plot.series.push_back({"s", {0, 1}, {0, 1}, {0, 0, 0}});
    try {
        write_line_plot(file, plot);
        FAIL() << "no error writing into a nonexistent directory";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
    }
    EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator{}), 0);
}

}  // namespace
}  // namespace iss
