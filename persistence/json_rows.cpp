// JSON text for jsonb_to_recordset parameters.
#include "persistence/json_rows.hpp"

#include "domain/hex.hpp"

namespace kapso {

void append_json_string(std::string& out, std::string_view value) {
  out += '"';
  for (unsigned char c : value) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          append_hex(out, c);
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

json_rows& json_rows::row() {
  text_ += rows_ == 0 ? "{" : "},{";
  ++rows_;
  first_field_ = true;
  return *this;
}

void json_rows::key(std::string_view name) {
  if (!first_field_)
    text_ += ',';
  first_field_ = false;
  append_json_string(text_, name);
  text_ += ':';
}

json_rows& json_rows::field(std::string_view name, std::string_view value) {
  key(name);
  append_json_string(text_, value);
  return *this;
}

json_rows& json_rows::field(std::string_view name, int64_t value) {
  key(name);
  text_ += std::to_string(value);
  return *this;
}

json_rows& json_rows::null_field(std::string_view name) {
  key(name);
  text_ += "null";
  return *this;
}

json_rows& json_rows::raw_field(std::string_view name, std::string_view json) {
  key(name);
  text_ += json;
  return *this;
}

std::string json_rows::str() const {
  return rows_ == 0 ? std::string{"[]"} : "[" + text_ + "}]";
}

} // namespace kapso
