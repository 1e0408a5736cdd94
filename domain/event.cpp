// Names of event kinds, for logs and metric labels, and what each kind is.
#include "domain/event.hpp"

namespace kapso {

namespace {

struct kind_facts {
  bool message;
  bool message_or_status;
  bool message_change;
  bool change;
  bool conversation;
  bool contact;
};

// One row per kind, without a default: a new kind does not compile until it
// has its row.
kind_facts facts_of(event_kind kind) {
  using k = event_kind;
  switch (kind) {
    //                                  message msg|status m.change change  conv.  contact
    case k::message_received:         return {true,  true,  false, false, true,  true};
    case k::message_sent:             return {true,  true,  false, false, true,  true};
    case k::message_status:           return {false, true,  false, false, false, false};
    case k::conversation_created:     return {false, false, false, false, true,  true};
    case k::conversation_ended:       return {false, false, false, false, true,  true};
    case k::conversation_inactive:    return {false, false, false, false, false, false};
    case k::unknown:                  return {false, false, false, false, false, false};
    // Lifecycle events change rows that exist (or wait for them): they
    // create no conversation of their own (persistence/lifecycle.cpp).
    case k::message_edit:             return {false, false, true,  true,  false, false};
    case k::message_revoke:           return {false, false, true,  true,  false, false};
    case k::contact_number_changed:   return {false, false, false, true,  false, false};
    case k::contact_identity_changed: return {false, false, false, true,  false, true};
  }
  return {};
}

} // namespace

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

bool is_message(event_kind kind) {
  return facts_of(kind).message;
}

bool is_message_or_status(event_kind kind) {
  return facts_of(kind).message_or_status;
}

bool is_message_change(event_kind kind) {
  return facts_of(kind).message_change;
}

bool is_change(event_kind kind) {
  return facts_of(kind).change;
}

bool needs_conversation(event_kind kind) {
  return facts_of(kind).conversation;
}

bool touches_contact(event_kind kind) {
  return facts_of(kind).contact;
}

} // namespace kapso
