// What one WhatsApp message shows in the inbox: content, preview, metadata.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>
#include <simdjson.h>

#include "http/preview.hpp"

namespace kapso {

struct message_content {
  std::string type;      // message.type, "text" when absent
  std::string content;   // messages.content: text, caption or a "[Label]"
  std::string preview;   // content cut to one line of preview_chars
  std::string media_url; // kapso.media_url, else the media object's link/url
  // Reply context, media details and the per-type structured data.
  nlohmann::json metadata = nlohmann::json::object();
};

// Reads a WhatsApp message object (Meta's shape, optionally with Kapso's
// `kapso` extension). Never fails: unknown shapes become
// "[Unsupported message]".
message_content describe_message(const simdjson::dom::element& message);

// The new version an edit carries: `edit.message` of a message whose type is
// "edit", read like any message but with the outer message's `kapso` block.
// Empty when the edit has no new version to show.
std::optional<message_content> describe_edit(const simdjson::dom::element& message);

} // namespace kapso
