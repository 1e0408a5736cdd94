// Every HTTP answer kapso-ingest gives, and the one mapping from errors to
// status codes. No RESTinio here, so the mapping is unit-testable.
#pragma once

#include <string>

#include "actors/protocol.hpp"

namespace kapso {

struct http_answer {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  int retry_after = 0; // seconds; 0 = no Retry-After header
};

http_answer answer_ok(const delivery_result& result);
http_answer answer_error(int status, const std::string& message, int retry_after = 0);

// The single place where a failed delivery becomes a status code: 401 for
// signatures, 503 with Retry-After for everything Kapso should retry.
http_answer answer_for(ingest_errc why);

const char* reason_phrase(int status);

} // namespace kapso
