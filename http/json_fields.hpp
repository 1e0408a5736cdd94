// Tolerant readers for webhook JSON: absent or mistyped fields read as empty.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace kapso::json_fields {

using json = nlohmann::json;

// `obj[key]` when `obj` is an object holding an object there, else nullptr.
inline const json* object_at(const json* obj, const char* key) {
  if (obj == nullptr || !obj->is_object())
    return nullptr;
  auto i = obj->find(key);
  return i != obj->end() && i->is_object() ? &*i : nullptr;
}

// `obj[key]` when it is an array, else nullptr.
inline const json* array_at(const json* obj, const char* key) {
  if (obj == nullptr || !obj->is_object())
    return nullptr;
  auto i = obj->find(key);
  return i != obj->end() && i->is_array() ? &*i : nullptr;
}

// `obj[key]` whatever its type, else nullptr (null counts as absent).
inline const json* value_at(const json* obj, const char* key) {
  if (obj == nullptr || !obj->is_object())
    return nullptr;
  auto i = obj->find(key);
  return i != obj->end() && !i->is_null() ? &*i : nullptr;
}

// `obj[key]` as text: strings as they are, integers in decimal (ids and
// phone numbers sometimes arrive as numbers), anything else as "".
inline std::string text_at(const json* obj, const char* key) {
  auto* value = value_at(obj, key);
  if (value == nullptr)
    return {};
  if (value->is_string())
    return value->get<std::string>();
  if (value->is_number_unsigned())
    return std::to_string(value->get<uint64_t>());
  if (value->is_number_integer())
    return std::to_string(value->get<int64_t>());
  return {};
}

// True only for a JSON `true` (or the string "true").
inline bool flag_at(const json* obj, const char* key) {
  auto* value = value_at(obj, key);
  if (value == nullptr)
    return false;
  if (value->is_boolean())
    return value->get<bool>();
  return value->is_string() && value->get<std::string>() == "true";
}

// Compact JSON text; invalid UTF-8 cannot reach here (the parser rejects
// it), but replacing beats throwing if it ever does.
inline std::string compact(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace kapso::json_fields
