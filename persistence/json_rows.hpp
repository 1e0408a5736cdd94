// Builds the JSON array of objects that repair-route hands to its merge
// statement (persistence/route_repair.cpp): one text parameter per batch of
// customers, read with jsonb_to_recordset.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kapso {

class json_rows {
public:
  json_rows& row();                                  // starts the next object
  json_rows& field(std::string_view name, std::string_view value);
  json_rows& field(std::string_view name, int64_t value);
  json_rows& null_field(std::string_view name);
  // `json` must already be valid JSON text (e.g. a metadata object).
  json_rows& raw_field(std::string_view name, std::string_view json);

  bool empty() const noexcept { return rows_ == 0; }
  std::string str() const; // the array text

private:
  void key(std::string_view name);

  std::string text_;
  size_t rows_ = 0;
  bool first_field_ = true;
};

// Appends `value` as a JSON string literal (quotes included).
void append_json_string(std::string& out, std::string_view value);

// ["a","b",...] of any range of strings.
template <class Strings>
std::string json_string_array(const Strings& values) {
  std::string out = "[";
  for (const auto& value : values) {
    if (out.size() > 1)
      out += ',';
    append_json_string(out, value);
  }
  out += ']';
  return out;
}

} // namespace kapso
