// Message content -> inbox preview text.
#pragma once

#include <string>
#include <string_view>

namespace kapso {

// The first `max_chars` Unicode code points of UTF-8 `text`, never splitting
// a multi-byte sequence (invalid bytes are dropped).
std::string cut_utf8(std::string_view text, size_t max_chars = 100);

} // namespace kapso
