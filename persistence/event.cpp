// Names of event kinds, for logs and metric labels.
#include "persistence/event.hpp"

namespace kapso {

const char* to_string(event_kind kind) {
  switch (kind) {
    case event_kind::message_received: return "message_received";
    case event_kind::message_sent: return "message_sent";
    case event_kind::message_status: return "message_status";
    case event_kind::conversation_created: return "conversation_created";
    case event_kind::conversation_ended: return "conversation_ended";
    case event_kind::conversation_inactive: return "conversation_inactive";
    case event_kind::unknown: return "unknown";
  }
  return "unknown";
}

} // namespace kapso
