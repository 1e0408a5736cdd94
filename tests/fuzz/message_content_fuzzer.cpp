// libFuzzer target: any JSON value through describe_message, as the parser
// hands it a WhatsApp message object.
#include <cstddef>
#include <cstdint>

#include <simdjson.h>

#include "http/message_content.hpp"
#include "tests/fuzz/fuzz_checks.hpp"

using namespace kapso;
using kapso_fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static simdjson::dom::parser parser;
  simdjson::dom::element message;
  if (parser.parse(reinterpret_cast<const char*>(data), size).get(message) != simdjson::SUCCESS)
    return 0;
  auto described = describe_message(message);
  size_t chars = 0;
  require(!described.type.empty(), "a message has a type");
  require(kapso_fuzz::valid_utf8(described.content, chars), "content is valid UTF-8");
  require(kapso_fuzz::valid_utf8(described.preview, chars), "preview is valid UTF-8");
  require(chars <= preview_chars, "preview within preview_chars");
  require(kapso_fuzz::valid_utf8(described.media_url, chars), "media url is valid UTF-8");
  require(described.metadata.is_object(), "metadata is an object");
  // What the parser stores: must serialise without replacing anything.
  auto text = described.metadata.dump();
  require(nlohmann::json::parse(text, nullptr, false) == described.metadata,
          "metadata survives a round trip");
  return 0;
}
