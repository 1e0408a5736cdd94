// Tolerant readers over simdjson's DOM for webhook JSON: absent or mistyped
// fields read as empty. What the inbox stores as JSON (metadata) is built
// with nlohmann::json from the pieces read here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <simdjson.h>

namespace kapso::json_fields {

using element = simdjson::dom::element;
using element_type = simdjson::dom::element_type;

// A value that may be absent (missing key, JSON null, wrong container).
using field = std::optional<element>;

inline bool holds(const field& x, element_type type) {
  return x.has_value() && x->type() == type;
}

// `obj[key]` whatever its type, else absent (null counts as absent).
inline field value_at(const field& obj, std::string_view key) {
  if (!holds(obj, element_type::OBJECT))
    return std::nullopt;
  element value;
  if (obj->get_object().value_unsafe().at_key(key).get(value) != simdjson::SUCCESS
      || value.type() == element_type::NULL_VALUE)
    return std::nullopt;
  return value;
}

// `obj[key]` when it is an object, else absent.
inline field object_at(const field& obj, std::string_view key) {
  auto value = value_at(obj, key);
  return holds(value, element_type::OBJECT) ? value : std::nullopt;
}

// `obj[key]` when it is an array, else absent.
inline field array_at(const field& obj, std::string_view key) {
  auto value = value_at(obj, key);
  return holds(value, element_type::ARRAY) ? value : std::nullopt;
}

// The elements of an array (none when `arr` is absent or not an array).
inline std::vector<element> elements_of(const field& arr) {
  std::vector<element> out;
  if (!holds(arr, element_type::ARRAY))
    return out;
  simdjson::dom::array array = arr->get_array().value_unsafe();
  out.reserve(array.size());
  for (auto value : array)
    out.push_back(value);
  return out;
}

inline size_t size_of(const field& arr) {
  return holds(arr, element_type::ARRAY) ? arr->get_array().value_unsafe().size() : 0;
}

// A value as text: strings as they are, integers in decimal (ids and phone
// numbers sometimes arrive as numbers), anything else as "".
inline std::string text_of(const field& value) {
  if (!value)
    return {};
  switch (value->type()) {
    case element_type::STRING: return std::string{value->get_string().value_unsafe()};
    case element_type::INT64: return std::to_string(value->get_int64().value_unsafe());
    case element_type::UINT64: return std::to_string(value->get_uint64().value_unsafe());
    default: return {};
  }
}

// `obj[key]` as text (see text_of).
inline std::string text_at(const field& obj, std::string_view key) {
  return text_of(value_at(obj, key));
}

// True only for a JSON `true` (or the string "true").
inline bool flag_at(const field& obj, std::string_view key) {
  auto value = value_at(obj, key);
  if (holds(value, element_type::BOOL))
    return value->get_bool().value_unsafe();
  return holds(value, element_type::STRING) && value->get_string().value_unsafe() == "true";
}

// The same value as nlohmann::json, to place into built metadata.
inline nlohmann::json to_json(const element& value) {
  switch (value.type()) {
    case element_type::OBJECT: {
      auto out = nlohmann::json::object();
      simdjson::dom::object object = value.get_object().value_unsafe();
      for (auto [key, member] : object)
        out[std::string{key}] = to_json(member);
      return out;
    }
    case element_type::ARRAY: {
      auto out = nlohmann::json::array();
      simdjson::dom::array array = value.get_array().value_unsafe();
      for (auto member : array)
        out.push_back(to_json(member));
      return out;
    }
    case element_type::STRING: return std::string{value.get_string().value_unsafe()};
    case element_type::INT64: return value.get_int64().value_unsafe();
    case element_type::UINT64: return value.get_uint64().value_unsafe();
    case element_type::DOUBLE: return value.get_double().value_unsafe();
    case element_type::BOOL: return value.get_bool().value_unsafe();
    case element_type::NULL_VALUE: return nullptr;
  }
  return nullptr;
}

// Compact JSON text of an input value.
inline std::string compact(const element& value) {
  return simdjson::to_string(value);
}

// Compact JSON text of built metadata; invalid UTF-8 cannot reach here
// (simdjson rejects it), but replacing beats throwing if it ever does.
inline std::string compact(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

} // namespace kapso::json_fields
