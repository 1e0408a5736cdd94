// Message content -> inbox preview text.
#pragma once

#include <string>
#include <string_view>

namespace kapso {

// Maximum preview length in code points (conversations.last_message_preview).
constexpr size_t preview_chars = 100;

// The first `max_chars` Unicode code points of UTF-8 `text`, never splitting
// a multi-byte sequence (invalid bytes are dropped).
std::string cut_utf8(std::string_view text, size_t max_chars = preview_chars);

} // namespace kapso
