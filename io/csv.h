// Small CSV tables for training logs and metric reports: a header row of column names, then
// rows of text fields. Written through AtomicWriter (a failed write leaves nothing) with
// RFC 4180 quoting; read back strictly, so a damaged file is an InputError naming the file
// and the line rather than a silently shifted column.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace iss {

struct CsvTable {
    std::vector<std::string> columns;
    std::vector<std::vector<std::string>> rows;  // each as many fields as `columns`
    std::string source;                          // the file read_csv read it from (for messages)
    std::vector<size_t> row_lines;               // read_csv's: the line each row starts on

    // Index of the column called `name`; InputError naming the file and listing the columns
    // when there is none.
    size_t column(const std::string& name) const;
    // "SOURCE line N", where row `row` was read (SOURCE alone for a table not read from a file).
    std::string where(size_t row) const;
};

// Fields holding a comma, a double quote, CR or LF are quoted (quotes doubled); lines end in
// LF. At least one column; every row as wide as the header.
void write_csv(const std::string& path, const CsvTable& table);

// The first record is the header. Accepts LF or CRLF line ends, quoted fields spanning lines,
// and skips blank lines. InputError naming the file and line for a record with the wrong
// number of fields, an unterminated quote, text after a closing quote, or an empty file.
CsvTable read_csv(const std::string& path);

// Shortest text that reads back as exactly `v` ("0.1", "1e-7", "123456789"; integers without
// ".0"); "nan", "inf", "-inf" for the non-finite values.
std::string csv_number(double v);
// The same for a float: the shortest text that reads back as `v` as a float ("0.0001" for
// 1e-4f, where csv_number gives its double's "9.999999747378752e-5").
std::string csv_float(float v);
// The inverse: a whole field as a number (csv_number's "nan" and "inf" included); InputError
// naming `what` (e.g. "runs.csv line 4 column loss") when the field is not one.
double csv_to_number(const std::string& field, const std::string& what);
// The same for a whole number (a step): InputError naming `what` for a fraction, a value past
// 2^53 or one that is not finite.
int64_t csv_to_integer(const std::string& field, const std::string& what);

}  // namespace iss
