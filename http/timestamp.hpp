// WhatsApp timestamps (unix seconds as text, or ISO-8601) to unix seconds.
#pragma once

#include <cstdint>
#include <string_view>

namespace kapso {

// Unix seconds of `text`: "1730092801", "1730092801.5", or ISO-8601 such as
// "2024-10-28T05:20:01Z", "2024-10-28T05:20:01.123+02:00" (no zone = UTC).
// Millisecond epochs are scaled down. 0 when `text` is none of these.
int64_t unix_seconds(std::string_view text);

// Seconds or milliseconds since the epoch -> seconds (0 and negatives -> 0).
int64_t epoch_seconds(int64_t value);

} // namespace kapso
