// array_send's format: a header, then every element as length + bytes,
// integers in network byte order.
#include "persistence/pg_array.hpp"

#include <stdexcept>

#include "domain/hex.hpp"

namespace kapso {

namespace {

void put_u32(std::string& out, uint32_t value) {
  char bytes[4] = {static_cast<char>(value >> 24), static_cast<char>(value >> 16),
                   static_cast<char>(value >> 8), static_cast<char>(value)};
  out.append(bytes, 4);
}

void put_u64(std::string& out, uint64_t value) {
  put_u32(out, static_cast<uint32_t>(value >> 32));
  put_u32(out, static_cast<uint32_t>(value));
}

} // namespace

pg_array::pg_array(pg_type type, size_t expected_bytes) : type_(type) {
  bytes_.reserve(header_size + expected_bytes);
  bytes_.resize(header_size);
}

void pg_array::element_header(int32_t length) {
  put_u32(bytes_, static_cast<uint32_t>(length));
  ++count_;
}

void pg_array::add_text(std::string_view value) {
  element_header(static_cast<int32_t>(value.size()));
  bytes_.append(value);
}

void pg_array::add_text_or_null(std::string_view value) {
  if (value.empty())
    add_null();
  else
    add_text(value);
}

void pg_array::add_int8(int64_t value) {
  element_header(8);
  put_u64(bytes_, static_cast<uint64_t>(value));
}

void pg_array::add_bool(bool value) {
  element_header(1);
  bytes_ += value ? '\1' : '\0';
}

void pg_array::add_jsonb(std::string_view json) {
  if (json.empty()) {
    add_null();
    return;
  }
  // jsonb's binary input is a version byte (1) followed by the JSON text.
  element_header(static_cast<int32_t>(json.size() + 1));
  bytes_ += '\1';
  bytes_.append(json);
}

bool pg_array::add_uuid(std::string_view canonical) {
  char bytes[16];
  size_t n = 0;
  for (size_t i = 0; i < canonical.size(); ++i) {
    if (canonical[i] == '-')
      continue;
    if (n == 16 || i + 1 >= canonical.size())
      return false;
    int hi = hex_value(canonical[i]);
    int lo = hex_value(canonical[++i]);
    if (hi < 0 || lo < 0)
      return false;
    bytes[n++] = static_cast<char>(hi << 4 | lo);
  }
  if (n != 16)
    return false;
  element_header(16);
  bytes_.append(bytes, 16);
  return true;
}

void pg_array::add_null() {
  put_u32(bytes_, 0xFFFFFFFFu); // length -1
  ++count_;
  has_null_ = true;
}

std::string pg_array::take() && {
  if (count_ == 0) {
    // An empty array has no dimensions: a 12-byte header and nothing else.
    std::string out;
    put_u32(out, 0);
    put_u32(out, 0);
    put_u32(out, static_cast<uint32_t>(type_));
    return out;
  }
  std::string header;
  header.reserve(header_size);
  put_u32(header, 1);                              // dimensions
  put_u32(header, has_null_ ? 1 : 0);              // has nulls
  put_u32(header, static_cast<uint32_t>(type_));   // element type
  put_u32(header, static_cast<uint32_t>(count_));  // length of the dimension
  put_u32(header, 1);                              // lower bound
  bytes_.replace(0, header_size, header);
  return std::move(bytes_);
}

void add_own_uuid(pg_array& ids, std::string_view canonical) {
  if (!ids.add_uuid(canonical))
    throw std::logic_error("an id from the database is not a UUID");
}

std::vector<std::string> take_columns(std::initializer_list<pg_array*> arrays) {
  std::vector<std::string> out;
  out.reserve(arrays.size());
  for (auto* a : arrays)
    out.push_back(std::move(*a).take());
  return out;
}

} // namespace kapso
