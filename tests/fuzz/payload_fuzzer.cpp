// libFuzzer target: webhook bodies through parse_delivery. The first byte
// picks the headers and region; the rest is the body.
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "http/payload.hpp"
#include "http/preview.hpp"
#include "tests/fuzz/fuzz_checks.hpp"

using namespace kapso;
using kapso_fuzz::require;

namespace {

constexpr std::string_view event_types[] = {
  "",
  "whatsapp.message.received",
  "whatsapp.message.sent",
  "whatsapp.message.delivered",
  "whatsapp.message.read",
  "whatsapp.message.failed",
  "whatsapp.conversation.created",
  "whatsapp.conversation.ended",
  "whatsapp.conversation.inactive",
  "workflow.execution.completed",
  " whatsapp.message.received\t",
};

constexpr std::string_view batch_flags[] = {"", "true", "1", " TRUE ", "false"};

bool is_json(const std::string& text, bool object) {
  auto parsed = nlohmann::json::parse(text, nullptr, false);
  return !parsed.is_discarded() && (!object || parsed.is_object());
}

void check_preview(const std::string& preview) {
  size_t chars = 0;
  require(kapso_fuzz::valid_utf8(preview, chars), "preview is valid UTF-8");
  require(chars <= preview_chars, "preview within preview_chars");
  require(preview.find_first_of("\t\n\r\v\f") == std::string::npos, "preview is one line");
  require(preview.empty() || (preview.front() != ' ' && preview.back() != ' '),
          "preview trimmed");
}

void check_event(const event& ev) {
  require(static_cast<uint8_t>(ev.kind) <= static_cast<uint8_t>(event_kind::unknown),
          "kind in range");
  bool message = ev.kind == event_kind::message_received || ev.kind == event_kind::message_sent
                 || ev.kind == event_kind::message_status;
  if (message) {
    require(!ev.message_id.empty(), "message event has a message id");
    require(!ev.phone_number_id.empty(), "message event has a phone_number_id");
    require(!ev.contact_key.empty(), "message event has a customer");
  }
  if (!ev.contact_phone.empty())
    require(ev.contact_phone.front() == '+'
              && ev.contact_phone.find_first_not_of("0123456789", 1) == std::string::npos,
            "contact phone is E.164");
  check_preview(ev.preview);
  require(is_json(ev.metadata_json, true), "metadata is a JSON object");
  require(ev.status_error_json.empty() || is_json(ev.status_error_json, false),
          "status error is JSON");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  auto selector = data[0];
  delivery_headers headers;
  headers.event_type = event_types[selector % std::size(event_types)];
  headers.batch = batch_flags[(selector / 16) % std::size(batch_flags)];
  headers.payload_version = selector & 0x40 ? "v2" : "";
  parse_options options;
  if (selector & 0x80)
    options.default_region = "BR";
  std::string_view body{reinterpret_cast<const char*>(data + 1), size - 1};
  auto result = parse_delivery(body, headers, options);
  if (!result.ok) {
    require(!result.error.empty(), "a refused body says why");
    require(result.parsed.events.empty(), "a refused body has no events");
    return 0;
  }
  require(result.parsed.malformed == result.skipped.size(), "every skipped event has a reason");
  for (const auto& ev : result.parsed.events)
    check_event(ev);
  return 0;
}
