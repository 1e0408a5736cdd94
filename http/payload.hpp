// Turns a POST body plus its headers into a parsed delivery (no I/O, no DB).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "actors/protocol.hpp"

namespace kapso {

struct parse_options {
  std::string default_region = "US"; // for numbers without a country code
};

// The request headers the parser looks at (empty = header absent).
struct delivery_headers {
  std::string_view event_type;      // X-Webhook-Event
  std::string_view batch;           // X-Webhook-Batch
  std::string_view payload_version; // X-Webhook-Payload-Version
};

struct parse_result {
  bool ok = false;
  std::string error; // when !ok: why the body is not an accepted form (-> 400)
  delivery parsed;   // when ok: events + malformed count (body/signatures unset)
  // Why each of the `parsed.malformed` events was skipped, for the caller to
  // log (the parser itself does no I/O). Never contains phone numbers.
  std::vector<std::string> skipped;
};

// Parses the three accepted forms (Kapso v2 single, Kapso v2 batch, Meta
// forward). A body that is not JSON or not one of the forms is an error;
// a malformed event inside a valid batch is counted in `parsed.malformed`.
parse_result parse_delivery(std::string_view body, const delivery_headers& headers,
                            const parse_options& options);

} // namespace kapso
