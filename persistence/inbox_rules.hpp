// The inbox's pure rules: status order and which message is the newest.
#pragma once

#include <cstdint>
#include <string_view>

namespace kapso {

// sent < delivered < read; failed is terminal; received ranks with sent.
// Mirrors the SQL function kapso_status_rank (migration 0002).
int status_rank(std::string_view status);

// True when `to` may replace `from` (status never moves backwards).
bool status_advances(std::string_view from, std::string_view to);

// True when message (ts_a, preview_a) is newer than (ts_b, preview_b):
// later timestamp, ties broken by preview bytes so every writer agrees.
bool newer_message(int64_t ts_a, std::string_view preview_a, int64_t ts_b,
                   std::string_view preview_b);

// What a batch adds to one conversation: folded message by message.
struct conversation_delta {
  int32_t unread = 0;       // distinct new inbound messages
  int64_t newest_ts = 0;    // 0 = no new message
  std::string_view newest_preview;
  bool close = false;

  // Folds in one newly inserted message.
  void add_message(bool inbound, int64_t ts, std::string_view preview);
};

} // namespace kapso
