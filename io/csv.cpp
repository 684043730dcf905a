// CSV writing and a strict reader (a small state machine over the whole file) for io/csv.h.
#include "io/csv.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "io/file_util.h"
#include "kernels/common/error.h"

namespace iss {
namespace {

bool needs_quotes(const std::string& field) { return field.find_first_of(",\"\r\n") != std::string::npos; }

void append_field(std::string& out, const std::string& field) {
    if (!needs_quotes(field)) {
        out += field;
        return;
    }
    out += '"';
    for (char c : field) {
        if (c == '"') out += '"';
        out += c;
    }
    out += '"';
}

void append_record(std::string& out, const std::vector<std::string>& fields) {
    // A record of one empty field would be a blank line, which the reader skips: quote it.
    if (fields.size() == 1 && fields[0].empty()) {
        out += "\"\"\n";
        return;
    }
    for (size_t i = 0; i < fields.size(); ++i) {
        if (i > 0) out += ',';
        append_field(out, fields[i]);
    }
    out += '\n';
}

}  // namespace

size_t CsvTable::column(const std::string& name) const {
    for (size_t i = 0; i < columns.size(); ++i)
        if (columns[i] == name) return i;
    std::string known;
    for (const std::string& c : columns) known += (known.empty() ? "" : ", ") + c;
    throw InputError(cat(source.empty() ? "" : source + ": ", "no CSV column '", name, "' (columns: ", known, ")"));
}

std::string CsvTable::where(size_t row) const {
    return row < row_lines.size() ? cat(source, " line ", row_lines[row]) : source;
}

void write_csv(const std::string& path, const CsvTable& table) {
    ISS_REQUIRE(!table.columns.empty(), "write_csv: ", path, ": a table needs at least one column");
    std::string text;
    append_record(text, table.columns);
    for (size_t r = 0; r < table.rows.size(); ++r) {
        ISS_REQUIRE(table.rows[r].size() == table.columns.size(), "write_csv: ", path, ": row ", r, " has ",
                    table.rows[r].size(), " fields for ", table.columns.size(), " columns");
        append_record(text, table.rows[r]);
    }
    AtomicWriter out(path);
    out.write(text.data(), text.size());
    out.commit();
}

CsvTable read_csv(const std::string& path) {
    const std::string text = read_text_file(path);

    CsvTable table;
    table.source = path;
    std::vector<std::string> record;
    std::string field;
    size_t line = 1;         // the line the reader is on
    size_t record_line = 1;  // the line the current record started on (quoted fields span lines)
    bool record_started = false;
    bool field_started = false;  // a quote opens a quoted field only as a field's first character

    auto end_field = [&] {
        record.push_back(std::move(field));
        field.clear();
        field_started = false;
    };
    auto end_record = [&] {
        end_field();
        if (table.columns.empty()) {
            table.columns = std::move(record);
        } else {
            ISS_INPUT(record.size() == table.columns.size(), path, " line ", record_line, ": ", record.size(),
                      " fields, expected ", table.columns.size(), " as in the header");
            table.rows.push_back(std::move(record));
            table.row_lines.push_back(record_line);
        }
        record.clear();
        record_started = false;
    };
    const size_t n = text.size();
    auto line_end_at = [&](size_t i) {  // length of the line end at i: 1 (LF), 2 (CRLF) or 0
        if (text[i] == '\n') return size_t(1);
        return text[i] == '\r' && i + 1 < n && text[i + 1] == '\n' ? size_t(2) : size_t(0);
    };

    size_t i = 0;
    while (i < n) {
        if (const size_t eol = line_end_at(i)) {
            if (record_started) end_record();  // else a blank line, which carries nothing
            i += eol;
            ++line;
            continue;
        }
        if (!record_started) {
            record_started = true;
            record_line = line;
        }
        const char c = text[i];
        if (c == ',') {
            end_field();
            ++i;
        } else if (c == '"' && !field_started) {
            // A quoted field: up to the closing quote, "" standing for one quote.
            const size_t open_line = line;
            field_started = true;
            for (++i;; ++i) {
                ISS_INPUT(i < n, path, " line ", open_line, ": unterminated quoted field");
                if (text[i] == '"') {
                    if (i + 1 < n && text[i + 1] == '"') {
                        field += '"';
                        ++i;
                        continue;
                    }
                    ++i;
                    break;
                }
                if (text[i] == '\n') ++line;
                field += text[i];
            }
            ISS_INPUT(i == n || text[i] == ',' || line_end_at(i) > 0, path, " line ", line,
                      ": text after a closing quote");
        } else {
            // A quote inside an unquoted field is kept as it is, as most writers expect.
            field += c;
            field_started = true;
            ++i;
        }
    }
    if (record_started) end_record();  // no newline after the last record
    ISS_INPUT(!table.columns.empty(), path, ": empty CSV file, expected a header line");
    return table;
}

// The fewest significant digits that read back as `v` exactly, as a double or (`as_float`) as a
// float: 17 and 9 digits always do.
static std::string shortest_text(double v, bool as_float) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    char buf[40];
    int digits = 1;
    for (; digits <= 17; ++digits) {
        std::snprintf(buf, sizeof buf, "%.*g", digits, v);
        const double read = std::strtod(buf, nullptr);  // as csv_to_number reads it
        if (as_float ? float(read) == float(v) : read == v) break;
    }
    digits = std::min(digits, 17);
    std::string s = buf;
    // A small number written with an exponent down to 1e-9 in full as well ("9.5e-07" as
    // 0.00000095): the same digits after the point's zeros, so it reads back the same.
    if (const size_t e = s.find("e-"); e != std::string::npos) {
        const int exponent = std::atoi(s.c_str() + e + 1);
        if (exponent >= -9) {
            std::snprintf(buf, sizeof buf, "%.*f", digits - 1 - exponent, v);
            return buf;
        }
    }
    // A whole number written with an exponent ("1.2e+03": %g's form where the digits end before
    // the point) in full, as a volume or a step: `sort -n` reads "1.2e3" as 1.2. It is exact (the
    // text read back as v), and short below 1e15 (a float's, 1e9: at most 9 digits).
    if (s.find("e+") != std::string::npos && std::fabs(v) < (as_float ? 1e9 : 1e15)) {
        std::snprintf(buf, sizeof buf, "%.0f", v);
        return buf;
    }
    // Tidy the exponent: "1e-07" -> "1e-7", "1e+20" -> "1e20".
    const size_t e = s.find('e');
    if (e != std::string::npos) {
        size_t d = e + 1;
        std::string sign;
        if (s[d] == '+' || s[d] == '-') {
            if (s[d] == '-') sign = "-";
            ++d;
        }
        while (d + 1 < s.size() && s[d] == '0') ++d;
        s = s.substr(0, e + 1) + sign + s.substr(d);
    }
    return s;
}

std::string csv_number(double v) {
    return shortest_text(v, false);
}
std::string csv_float(float v) {
    return shortest_text(v, true);
}

double csv_to_number(const std::string& field, const std::string& what) {
    ISS_INPUT(!field.empty(), what, ": empty, expected a number");
    errno = 0;
    char* end = nullptr;
    const double v = std::strtod(field.c_str(), &end);
    ISS_INPUT(end == field.c_str() + field.size(), what, ": '", field, "' is not a number");
    // Out of range: strtod gives +-HUGE_VAL for overflow, which only "inf" should mean.
    ISS_INPUT(errno != ERANGE || std::abs(v) < 1.0, what, ": '", field, "' is out of range");
    return v;
}

int64_t csv_to_integer(const std::string& field, const std::string& what) {
    const double v = csv_to_number(field, what);
    constexpr double largest = 9007199254740992.0;  // 2^53: every whole number up to it is a double
    ISS_INPUT(std::isfinite(v) && v == std::floor(v) && std::abs(v) <= largest, what, ": '", field,
              "' is not a whole number of at most 2^53");
    return int64_t(v);
}

}  // namespace iss
