#include "io/json.h"

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <set>
#include <vector>

#include "io/csv.h"  // csv_float
#include "kernels/common/error.h"

namespace iss {

bool is_json_text(const std::string& text) {
    try {
        (void)nlohmann::json(text).dump();
        return true;
    } catch (const nlohmann::json::exception&) {
        return false;
    }
}

nlohmann::json parse_json(const std::string& text, const std::string& where) {
    using json = nlohmann::json;
    std::vector<std::set<std::string>> keys_of_open_objects;
    std::optional<std::string> twice;  // the first key given twice ("" is a key too)
    const json::parser_callback_t check = [&](int depth, json::parse_event_t event, json& parsed) {
        // The parser is iterative, but copying, comparing and printing a value recurse: 200,000
        // nested brackets in a model.json overflowed the stack (a crash, no message).
        ISS_INPUT(depth <= max_json_depth, where, ": values nested more than ", max_json_depth,
                  " deep: not a file this program writes or reads");
        if (event == json::parse_event_t::object_start) keys_of_open_objects.emplace_back();
        if (event == json::parse_event_t::object_end) keys_of_open_objects.pop_back();
        if (event == json::parse_event_t::key && !twice &&
            !keys_of_open_objects.back().insert(parsed.get<std::string>()).second)
            twice = parsed.get<std::string>();
        return true;
    };
    json parsed;
    try {
        parsed = json::parse(text, check);
    } catch (const json::exception& e) {
        // A volume or a model given for a JSON file: said so, not as the parser's byte it choked on.
        const bool binary = std::any_of(text.begin(), text.begin() + std::min<ptrdiff_t>(ptrdiff_t(text.size()), 64),
                                        [](unsigned char c) { return c < 9 || (c > 13 && c < 32); });
        const bool utf16 =
            text.size() >= 2 && ((text[0] == '\xff' && text[1] == '\xfe') || (text[0] == '\xfe' && text[1] == '\xff'));
        ISS_INPUT(!utf16, where, " is UTF-16 text (as Windows PowerShell's > writes it): save it as UTF-8");
        ISS_INPUT(!binary, where, " is a binary file (a volume, a model?), not JSON text");
        std::string what = e.what();  // without the library's "[json.exception.parse_error.101] "
        const size_t tag_end = what.find("] ");
        if (what.rfind("[json.", 0) == 0 && tag_end != std::string::npos) what = what.substr(tag_end + 2);
        throw InputError(cat(where, " is not valid JSON: ", what));
    }
    ISS_INPUT(!twice, where, ": key '", clipped(*twice), "' is given twice in one object");
    return parsed;
}

double json_float(float value) {
    return std::strtod(csv_float(value).c_str(), nullptr);  // its shortest text, read back
}

}  // namespace iss
