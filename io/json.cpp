#include "io/json.h"

#include <optional>
#include <set>
#include <vector>

#include "kernels/common/error.h"

namespace iss {

nlohmann::json parse_json(const std::string& text, const std::string& where) {
    using json = nlohmann::json;
    std::vector<std::set<std::string>> keys_of_open_objects;
    std::optional<std::string> twice;  // the first key given twice ("" is a key too)
    const json::parser_callback_t check = [&](int, json::parse_event_t event, json& parsed) {
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
        throw InputError(cat(where, " is not valid JSON: ", e.what()));
    }
    ISS_INPUT(!twice, where, ": key '", clipped(*twice), "' is given twice in one object");
    return parsed;
}

}  // namespace iss
