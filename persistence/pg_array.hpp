// One-dimensional PostgreSQL arrays in the binary wire format, one per
// column of a batch: PostgreSQL reads them with unnest() without parsing
// text, which a JSON document per batch (jsonb_to_recordset) would cost it.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace kapso {

// Element type OIDs of the built-in types the batch statements use.
enum class pg_type : uint32_t {
  boolean = 16,
  int8 = 20,
  text = 25,
  jsonb = 3802,
  uuid = 2950,
};

class pg_array {
public:
  // `expected_bytes`: a guess at the elements' size, to grow the buffer once.
  explicit pg_array(pg_type type, size_t expected_bytes = 0);

  void add_text(std::string_view value); // text: bytes as they are (UTF-8)
  // Empty text is SQL NULL: for the optional columns of the batch.
  void add_text_or_null(std::string_view value);
  void add_int8(int64_t value);
  void add_bool(bool value);
  // `json` must be valid JSON text; empty means SQL NULL.
  void add_jsonb(std::string_view json);
  // `canonical` is a UUID in text form; false (nothing added) when it is
  // not one.
  bool add_uuid(std::string_view canonical);
  void add_null();

  size_t size() const noexcept { return count_; }

  // The wire bytes (the header written into its place: no copy); the array
  // object is spent afterwards.
  std::string take() &&;

private:
  void element_header(int32_t length);

  static constexpr size_t header_size = 20;
  pg_type type_;
  std::string bytes_; // the header's place, then the elements
  int32_t count_ = 0;
  bool has_null_ = false;
};

// Adds a UUID the database gave us (a workspace's or a row's id): one that
// is not a UUID is a bug, not bad data (std::logic_error).
void add_own_uuid(pg_array& ids, std::string_view canonical);

// The parameters of a statement, one per array in order (the arrays are
// spent).
std::vector<std::string> take_columns(std::initializer_list<pg_array*> arrays);

} // namespace kapso
