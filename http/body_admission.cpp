// Body admission: the budget, the second parser and the closing answer.
#include "http/body_admission.hpp"

#include <algorithm>
#include <climits>
#include <utility>

namespace kapso {

namespace {

// A chunked body has no length up front: budget is taken in steps of this
// size (capped at the body limit) as its chunks arrive.
constexpr size_t chunked_budget_step = 64 * 1024;

// Enough of a request's target to name its route.
constexpr size_t target_kept = 64;

request_stream_watch& watch_of(http_parser* parser) {
  return *static_cast<request_stream_watch*>(parser->data);
}

} // namespace

bool byte_budget::try_take(size_t bytes) noexcept {
  auto used = used_.load(std::memory_order_relaxed);
  do {
    if (bytes > limit_ || used > limit_ - bytes)
      return false;
  } while (!used_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
  return true;
}

void byte_budget::give_back(size_t bytes) noexcept {
  used_.fetch_sub(bytes, std::memory_order_relaxed);
}

request_stream_watch::request_stream_watch(admission_limits limits,
                                           std::shared_ptr<byte_budget> budget)
  : limits_(limits), budget_(std::move(budget)) {
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
  http_parser_settings_init(&callbacks_);
  callbacks_.on_message_begin = &request_stream_watch::on_message_begin;
  callbacks_.on_url = &request_stream_watch::on_url;
  callbacks_.on_headers_complete = &request_stream_watch::on_headers_complete;
  callbacks_.on_body = &request_stream_watch::on_body;
  callbacks_.on_message_complete = &request_stream_watch::on_message_complete;
}

request_stream_watch::~request_stream_watch() {
  release();
}

std::optional<admission_refusal> request_stream_watch::follow(const char* data, size_t size) {
  // Where the request being parsed began among these bytes: 0 when it began
  // in an earlier read.
  size_t message_start = 0;
  size_t offset = 0;
  while (!stopped_ && offset < size) {
    message_ended_ = false;
    auto parsed = http_parser_execute(&parser_, &callbacks_, data + offset, size - offset);
    offset += parsed;
    auto error = HTTP_PARSER_ERRNO(&parser_);
    if (error == HPE_PAUSED) {
      http_parser_pause(&parser_, 0);
      if (refusal_) {
        stopped_ = true;
        refusal_->message_offset = message_start;
        return std::exchange(refusal_, std::nullopt);
      }
      if (message_ended_)
        message_start = offset;
      continue;
    }
    if (error != HPE_OK || parsed == 0) {
      // Bytes this parser cannot follow: RESTinio's parser refuses them too
      // and closes the connection; nothing is held for them.
      stopped_ = true;
      release();
    }
  }
  return std::nullopt;
}

int request_stream_watch::on_message_begin(http_parser* parser) {
  watch_of(parser).target_.clear();
  return 0;
}

int request_stream_watch::on_url(http_parser* parser, const char* at, size_t length) {
  auto& target = watch_of(parser).target_;
  target.append(at, std::min(length, target_kept - std::min(target_kept, target.size())));
  return 0;
}

int request_stream_watch::on_headers_complete(http_parser* parser) {
  auto& self = watch_of(parser);
  self.chunked_seen_ = 0;
  if ((parser->flags & F_CHUNKED) != 0 || parser->content_length == ULLONG_MAX
      || parser->content_length == 0)
    return 0;
  auto length = parser->content_length;
  if (length > self.limits_.body_limit) {
    self.refuse(413, "body larger than " + std::to_string(self.limits_.body_limit) + " bytes");
    self.refusal_->announced = length;
  } else if (!self.hold(static_cast<size_t>(length))) {
    self.refuse(503, "server busy, retry later");
    self.refusal_->announced = length;
  }
  return 0;
}

int request_stream_watch::on_body(http_parser* parser, const char*, size_t length) {
  auto& self = watch_of(parser);
  if ((parser->flags & F_CHUNKED) == 0)
    return 0;
  self.chunked_seen_ += length;
  if (self.chunked_seen_ > self.limits_.body_limit) {
    self.refuse(413, "body larger than " + std::to_string(self.limits_.body_limit) + " bytes");
  } else if (self.chunked_seen_ > self.held_) {
    auto wanted = std::min<uint64_t>(self.limits_.body_limit,
                                     self.chunked_seen_ + chunked_budget_step);
    if (!self.hold(static_cast<size_t>(wanted - self.held_)))
      self.refuse(503, "server busy, retry later");
  }
  if (self.refusal_) {
    self.refusal_->announced = self.chunked_seen_;
    self.refusal_->chunked = true;
  }
  return 0;
}

int request_stream_watch::on_message_complete(http_parser* parser) {
  auto& self = watch_of(parser);
  // The request is whole and RESTinio hands it over next: from here its
  // bytes count as a waiting delivery, not as a body being read.
  self.release();
  self.message_ended_ = true;
  // A pause marks where the next request begins.
  http_parser_pause(parser, 1);
  return 0;
}

bool request_stream_watch::hold(size_t bytes) {
  if (!budget_->try_take(bytes))
    return false;
  held_ += bytes;
  return true;
}

void request_stream_watch::release() noexcept {
  if (held_ > 0)
    budget_->give_back(held_);
  held_ = 0;
}

void request_stream_watch::refuse(int status, const std::string& why) {
  release();
  refusal_ = admission_refusal{
    answer_error(status, why, status == 503 ? limits_.retry_after_seconds : 0), 0, 0, false,
    target_};
  http_parser_pause(&parser_, 1);
}

std::string raw_closing_response(const http_answer& answer) {
  std::string raw = "HTTP/1.1 " + std::to_string(answer.status) + " "
                    + reason_phrase(answer.status) + "\r\n";
  raw += "Content-Type: " + answer.content_type + "\r\n";
  raw += "Content-Length: " + std::to_string(answer.body.size()) + "\r\n";
  if (answer.retry_after > 0)
    raw += "Retry-After: " + std::to_string(answer.retry_after) + "\r\n";
  raw += "Connection: close\r\n\r\n";
  raw += answer.body;
  return raw;
}

} // namespace kapso
