// CSV tables (io/csv.h): a round trip through quoting, the reader's errors naming the file
// and line, CRLF and blank lines, number formatting that reads back exactly, a failed write.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>

#include "io/csv.h"
#include "kernels/common/error.h"
#include "test_util.h"

namespace iss {
namespace {

namespace fs = std::filesystem;

class CsvTest : public test::TempDirTest {
protected:
    std::string write_text(const std::string& name, const std::string& text) {
        const std::string file = path(name);
        std::ofstream(file, std::ios::binary) << text;
        return file;
    }
    // The InputError message read_csv gives for `text`, "" when it reads fine.
    std::string read_error(const std::string& text) {
        const std::string file = write_text("bad.csv", text);
        try {
            read_csv(file);
        } catch (const InputError& e) {
            return e.what();
        }
        return "";
    }
};

TEST_F(CsvTest, RoundTripWithQuoting) {
    CsvTable table;
    table.columns = {"step", "loss", "note, with comma"};
    table.rows = {
        {"1", "0.5", "plain"},
        {"2", "", "say \"hi\""},
        {"3", "0.25", "two\nlines"},
        {"4", "x", "crlf\r\ninside"},
        {"", "", ""},
    };
    const std::string file = path("t.csv");
    write_csv(file, table);
    const std::string text = test::read_text(file);
    EXPECT_EQ(text.substr(0, text.find('\n')), "step,loss,\"note, with comma\"");
    EXPECT_NE(text.find("2,,\"say \"\"hi\"\"\"\n"), std::string::npos) << text;
    const CsvTable back = read_csv(file);
    EXPECT_EQ(back.columns, table.columns);
    EXPECT_EQ(back.rows, table.rows);
    EXPECT_EQ(back.column("loss"), 1u);
    EXPECT_THROW(back.column("dice"), InputError);
    EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator{}), 1) << "no temporary left";

    // One column with an empty field must not turn into a skipped blank line.
    CsvTable single;
    single.columns = {"name"};
    single.rows = {{"a"}, {""}, {"b"}};
    write_csv(path("single.csv"), single);
    EXPECT_EQ(read_csv(path("single.csv")).rows, single.rows);
}

TEST_F(CsvTest, AcceptsCrlfBlankLinesAndNoFinalNewline) {
    const CsvTable t = read_csv(write_text("crlf.csv", "a,b\r\n1,2\r\n\r\n\"3\",\"\"\n\n5,6"));
    EXPECT_EQ(t.columns, (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(t.rows, (std::vector<std::vector<std::string>>{{"1", "2"}, {"3", ""}, {"5", "6"}}));
    // A quote inside an unquoted field is kept as text.
    EXPECT_EQ(read_csv(write_text("q.csv", "a\n5\"\n")).rows[0][0], "5\"");
    const CsvTable header_only = read_csv(write_text("h.csv", "x,y\n"));
    EXPECT_EQ(header_only.columns.size(), 2u);
    EXPECT_TRUE(header_only.rows.empty());
}

TEST_F(CsvTest, ReadErrorsNameTheFileAndLine) {
    const std::string file = path("bad.csv");
    auto expect_error = [&](const std::string& text, const std::string& where) {
        const std::string message = read_error(text);
        EXPECT_NE(message.find(file), std::string::npos) << "for " << text << ": " << message;
        EXPECT_NE(message.find(where), std::string::npos) << "for " << text << ": " << message;
    };
    expect_error("a,b\n1,2\n3\n", "line 3: 1 fields, expected 2");
    expect_error("a,b\n1,2,3\n", "line 2: 3 fields");
    expect_error("a,b\n1,\"open\n", "line 2: unterminated quoted field");
    expect_error("a\n\"x\"y\n", "line 2: text after a closing quote");
    // A quoted field spanning lines: the record is reported at the line it starts on.
    expect_error("a,b\n\"x\ny\",1\n2\n", "line 4");
    expect_error("", "empty CSV file");
    expect_error("\n\n", "empty CSV file");

    try {
        read_csv(path("missing.csv"));
        FAIL() << "no error for a missing file";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("missing.csv"), std::string::npos) << e.what();
    }
}

TEST_F(CsvTest, FailedWriteNamesTheFileAndLeavesNothing) {
    const std::string file = path("missing-dir/t.csv");
    CsvTable table;
    table.columns = {"a"};
    try {
        write_csv(file, table);
        FAIL() << "no error writing into a nonexistent directory";
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find(file), std::string::npos) << e.what();
    }
    EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator{}), 0);

    table.rows = {{"1", "2"}};
    EXPECT_THROW(write_csv(path("uneven.csv"), table), Error) << "a row wider than the header";
    EXPECT_THROW(write_csv(path("none.csv"), CsvTable{}), Error) << "no columns";
    EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator{}), 0);
}

TEST(CsvNumberTest, ShortestTextThatReadsBack) {
    EXPECT_EQ(csv_number(1), "1");
    EXPECT_EQ(csv_number(0.5), "0.5");
    EXPECT_EQ(csv_number(0.1), "0.1");
    EXPECT_EQ(csv_number(1e-7), "0.0000001");
    EXPECT_EQ(csv_number(9.5367431640625e-7), "0.00000095367431640625");
    EXPECT_EQ(csv_number(2.5e-12), "2.5e-12");
    EXPECT_EQ(csv_number(123456789), "123456789");
    EXPECT_EQ(csv_number(-2.5e20), "-2.5e20");
    // Whole numbers in full below 1e15, as `sort -n` reads them ("1.2e3" sorted as 1.2).
    EXPECT_EQ(csv_number(1200), "1200");
    EXPECT_EQ(csv_number(-7e14), "-700000000000000");
    EXPECT_EQ(csv_number(3e15), "3e15");
    EXPECT_EQ(csv_float(1.5e8f), "150000000");
    EXPECT_EQ(csv_number(0), "0");
    EXPECT_EQ(csv_number(std::numeric_limits<double>::quiet_NaN()), "nan");
    EXPECT_EQ(csv_number(std::numeric_limits<double>::infinity()), "inf");
    EXPECT_EQ(csv_number(-std::numeric_limits<double>::infinity()), "-inf");
    EXPECT_EQ(csv_number(1.0 / 3.0), "0.3333333333333333");
    // A float in its own shortest form (a learning rate of 1e-4 was logged as its double's digits).
    EXPECT_EQ(csv_number(double(1e-4f)), "0.00009999999747378752");
    EXPECT_EQ(csv_float(1e-4f), "0.0001");
    EXPECT_EQ(csv_float(1.0f / 3.0f), "0.33333334");
    EXPECT_EQ(csv_float(std::numeric_limits<float>::infinity()), "inf");
    EXPECT_EQ(csv_float(-std::numeric_limits<float>::denorm_min()), "-1e-45");

    std::mt19937_64 rng(7);
    std::uniform_real_distribution<double> exponent(-30, 30);
    for (int i = 0; i < 2000; ++i) {
        const double v = std::pow(10.0, exponent(rng)) * (i % 2 ? -1 : 1);
        EXPECT_EQ(csv_to_number(csv_number(v), "test"), v) << csv_number(v);
    }
    for (int i = 0; i < 2000; ++i) {
        const float v = float(std::pow(10.0, exponent(rng) * 1.2)) * (i % 2 ? -1.0f : 1.0f);
        EXPECT_EQ(float(csv_to_number(csv_float(v), "test")), v) << csv_float(v);
        const std::string text = csv_float(v);
        const std::string mantissa = text.substr(0, text.find('e'));
        const size_t first = mantissa.find_first_of("123456789");
        EXPECT_LE(std::count_if(mantissa.begin() + first, mantissa.end(), ::isdigit), 9)
            << text << ": a float needs at most 9 significant digits";
    }
    EXPECT_EQ(csv_to_number(csv_number(std::numeric_limits<double>::denorm_min()), "test"),
              std::numeric_limits<double>::denorm_min());
    EXPECT_TRUE(std::isnan(csv_to_number("nan", "test")));
    EXPECT_EQ(csv_to_number("-inf", "test"), -std::numeric_limits<double>::infinity());
}

TEST(CsvNumberTest, BadNumbersNameTheField) {
    for (const std::string field : {"", "abc", "1x", "1.5 ", "1e999"}) {
        try {
            csv_to_number(field, "runs.csv line 4 column loss");
            ADD_FAILURE() << "'" << field << "' read as a number";
        } catch (const InputError& e) {
            EXPECT_NE(std::string(e.what()).find("runs.csv line 4 column loss"), std::string::npos) << e.what();
        }
    }
}

TEST(CsvNumberTest, StepsAreWholeNumbers) {
    EXPECT_EQ(csv_to_integer("1200", "step"), 1200);
    EXPECT_EQ(csv_to_integer("9007199254740992", "step"), int64_t(1) << 53);
    // A converter's "1e+03" is a whole number too.
    EXPECT_EQ(csv_to_integer("1e+03", "step"), 1000);
    for (const std::string field : {"1.9", "1e300", "nan", "inf", "9007199254740994", "x"}) {
        const std::string message =
            test::refusal_of("training_log.csv line 2", [&] { csv_to_integer(field, "training_log.csv line 2"); });
        EXPECT_NE(message.find(field), std::string::npos) << message;
    }
}

}  // namespace
}  // namespace iss
