// Names of event kinds, for logs and metric labels.
#include "domain/event.hpp"

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
    case event_kind::message_edit: return "message_edit";
    case event_kind::message_revoke: return "message_revoke";
    case event_kind::contact_number_changed: return "contact_number_changed";
    case event_kind::contact_identity_changed: return "contact_identity_changed";
  }
  return "unknown";
}

} // namespace kapso
