// JSON bodies and status codes of the webhook's answers.
#include "http/answers.hpp"

#include <nlohmann/json.hpp>

namespace kapso {

http_answer answer_ok(const delivery_result& result) {
  http_answer a;
  a.body = "{\"received\":true,\"accepted\":" + std::to_string(result.accepted)
           + ",\"duplicates\":" + std::to_string(result.duplicates)
           + ",\"ignored\":" + std::to_string(result.ignored) + "}";
  return a;
}

http_answer answer_error(int status, const std::string& message, int retry_after) {
  http_answer a;
  a.status = status;
  nlohmann::json body = {{"received", false}, {"error", message}};
  a.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  a.retry_after = retry_after;
  return a;
}

http_answer answer_for(ingest_errc why) {
  switch (why) {
    case ingest_errc::bad_signature:
      return answer_error(401, "signature missing or invalid");
    case ingest_errc::overloaded:
      return answer_error(503, "server busy, retry later", 1);
    case ingest_errc::shutting_down:
      return answer_error(503, "server shutting down, retry later", 5);
    case ingest_errc::timeout:
      return answer_error(503, "timed out before the events were committed", 5);
    case ingest_errc::unavailable:
      return answer_error(503, "database unavailable, retry later", 5);
  }
  return answer_error(503, "could not commit the delivery, retry later", 5);
}

const char* reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

} // namespace kapso
