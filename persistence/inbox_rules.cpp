// Status ranks and newest-message ordering, shared by reducer and tests.
#include "persistence/inbox_rules.hpp"

namespace kapso {

int status_rank(std::string_view status) {
  if (status == "received" || status == "sent")
    return 1;
  if (status == "delivered")
    return 2;
  if (status == "read")
    return 3;
  if (status == "failed")
    return 4;
  return 0;
}

bool status_advances(std::string_view from, std::string_view to) {
  return status_rank(to) > status_rank(from);
}

bool newer_message(int64_t ts_a, std::string_view preview_a, int64_t ts_b,
                   std::string_view preview_b) {
  if (ts_a != ts_b)
    return ts_a > ts_b;
  return preview_a > preview_b;
}

void conversation_delta::add_message(bool inbound, int64_t ts,
                                     std::string_view preview) {
  if (inbound)
    ++unread;
  if (newest_ts == 0 || newer_message(ts, preview, newest_ts, newest_preview)) {
    newest_ts = ts;
    newest_preview = preview;
  }
}

} // namespace kapso
