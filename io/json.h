// JSON text from a file we did not write (a config, a model's description, a Keras config, a
// safetensors header), parsed as JSON with one rule more than the library keeps: a key given twice
// in one object is refused, where nlohmann::json would keep the last one without a word (a config
// with "preset" twice would run the second).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace iss {

// Deeper than any file we read (a Keras config nests about 10 deep).
constexpr int max_json_depth = 128;

// InputError "<where> is not valid JSON: ...", "<where>: key 'K' is given twice in one object",
// or nested deeper than max_json_depth.
nlohmann::json parse_json(const std::string& text, const std::string& where);

// Whether `text` can be a JSON string: valid UTF-8 (a file name of Latin-1 bytes is not, and
// writing it threw nlohmann's type_error 316, an internal error).
bool is_json_text(const std::string& text);

// A float as the JSON number that reads back to it, its shortest decimal (0.99f as 0.99, as Keras
// writes it; not its double's 0.9900000095367432, which a reader comparing with 0.99 finds unequal).
double json_float(float value);

}  // namespace iss
