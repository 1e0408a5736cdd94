// Decides from a request's headers, before a byte of its body is read,
// whether the body may be read at all: larger than http.body-limit -> 413,
// no room left in the byte budget shared with the deliveries in the
// pipeline -> 503. No sockets here, so every decision is unit-testable.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <http_parser.h>

#include "http/answers.hpp"

namespace kapso {

// Bytes the HTTP layer may hold at once: bodies being read plus deliveries
// waiting for the actors. One bound, so that no mix of slow senders and a
// slow database can take more memory than configured.
class byte_budget {
public:
  explicit byte_budget(size_t limit) : limit_(limit) {}

  // Takes `bytes` unless that would pass the limit.
  bool try_take(size_t bytes) noexcept;
  void give_back(size_t bytes) noexcept;

  size_t in_use() const noexcept { return used_.load(std::memory_order_relaxed); }
  size_t limit() const noexcept { return limit_; }

private:
  std::atomic<size_t> used_{0};
  const size_t limit_;
};

struct admission_limits {
  size_t body_limit = 1024 * 1024; // http.body-limit
  int retry_after_seconds = 1;     // of the 503 when the budget is full
};

// A request refused before its body was read, and where it starts among the
// bytes just followed: everything before `message_offset` belongs to earlier
// requests, which are served normally.
struct admission_refusal {
  http_answer answer;
  size_t message_offset = 0;
  uint64_t announced = 0; // Content-Length, or the chunked bytes seen so far
  bool chunked = false;
  std::string target; // the request's path (its first bytes), for metrics and the log
};

// Follows one connection's request bytes with an HTTP parser of its own, a
// step ahead of RESTinio's, holding budget for the body being read from its
// headers on until the request is complete.
class request_stream_watch {
public:
  request_stream_watch(admission_limits limits, std::shared_ptr<byte_budget> budget);
  ~request_stream_watch();
  request_stream_watch(const request_stream_watch&) = delete;
  request_stream_watch& operator=(const request_stream_watch&) = delete;

  // Follows `size` bytes just read. A refusal ends the watch: what follows
  // the refused request's start is never looked at.
  std::optional<admission_refusal> follow(const char* data, size_t size);

  // Budget held right now for the body being read.
  size_t held() const noexcept { return held_; }

private:
  static int on_message_begin(http_parser* parser);
  static int on_url(http_parser* parser, const char* at, size_t length);
  static int on_headers_complete(http_parser* parser);
  static int on_body(http_parser* parser, const char* at, size_t length);
  static int on_message_complete(http_parser* parser);

  bool hold(size_t bytes);
  void release() noexcept;
  void refuse(int status, const std::string& why);

  admission_limits limits_;
  std::shared_ptr<byte_budget> budget_;
  http_parser parser_{};
  http_parser_settings callbacks_{};
  size_t held_ = 0;
  uint64_t chunked_seen_ = 0;
  std::string target_;
  bool message_ended_ = false;
  bool stopped_ = false; // refused, or bytes its parser could not follow
  std::optional<admission_refusal> refusal_;
};

// The answer written straight onto the socket for a refused request: a
// complete HTTP/1.1 response that closes the connection.
std::string raw_closing_response(const http_answer& answer);

} // namespace kapso
