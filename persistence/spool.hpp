// The outage spool: an append-only, fsync'd file of batches that could not
// be committed, replayed into PostgreSQL when it is back.
#pragma once

#include <string>
#include <vector>

#include "actors/protocol.hpp"

namespace kapso {

class spool {
public:
  // `path` is the file; it is created on the first append.
  spool(std::string path, size_t max_bytes);
  ~spool();

  spool(const spool&) = delete;
  spool& operator=(const spool&) = delete;

  // Appends one batch as one record and fsyncs before returning. False when
  // the spool is full or the write failed (then nothing was acknowledged).
  bool append(const std::vector<routed_event>& events);

  // Every complete record, oldest first; a torn last record (crash during
  // append, never acknowledged) is dropped.
  std::vector<std::vector<routed_event>> read_all() const;

  // Empties the file once its records are committed.
  void clear();

  size_t bytes() const noexcept { return bytes_; }
  size_t records() const noexcept { return records_; }
  bool empty() const noexcept { return bytes_ == 0; }
  const std::string& path() const noexcept { return path_; }

private:
  std::string path_;
  size_t max_bytes_;
  int fd_ = -1;
  size_t bytes_ = 0;
  size_t records_ = 0;
};

// Encoding of one routed event in a spool record (exposed for tests).
std::string encode_spool_record(const std::vector<routed_event>& events);
bool decode_spool_record(const std::string& line, std::vector<routed_event>& out);

} // namespace kapso
