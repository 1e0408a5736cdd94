// What one webhook event asks the inbox to do: the vocabulary every layer
// shares (http/ parses into it, actors/ route it, persistence/ writes it),
// and what each kind of event is, decided once.
#pragma once

#include <cstdint>
#include <string>

namespace kapso {

enum class event_kind : uint8_t {
  message_received,      // inbound message from a customer
  message_sent,          // outbound echo (business app, API, bot)
  message_status,        // delivered / read / failed / sent for a known message id
  conversation_created,  // upsert contact + conversation only
  conversation_ended,    // conversation status -> closed
  conversation_inactive, // accepted and counted, no data change
  unknown,               // an event type we do not handle: counted as ignored
  // Changes to what is stored; never rows of their own, never unread.
  message_edit,             // new content for original_message_id
  message_revoke,           // original_message_id deleted for everyone
  contact_number_changed,   // the customer moved to new_contact_phone
  contact_identity_changed, // the customer's security identity changed
};

// The highest kind: a decoder checks that a stored kind is one of ours.
constexpr event_kind last_event_kind = event_kind::contact_identity_changed;

const char* to_string(event_kind kind);

// What each kind is: one table in event.cpp, so a new kind is decided there
// once (the compiler asks for its row; tests/unit/event_kinds_test.cpp pins
// every answer).

// A message of its own, stored as a row: received or sent.
bool is_message(event_kind kind);
// A message or a delivery status of one: the body carries a message object
// with the message's id.
bool is_message_or_status(event_kind kind);
// An edit or a revoke: new content for, or the deletion of, a stored message.
bool is_message_change(event_kind kind);
// A change to what is stored (an edit, a revoke, a number or identity
// change): never a row of its own, never unread.
bool is_change(event_kind kind);
// Upserts the customer's contact and conversation rows.
bool needs_conversation(event_kind kind);
// Creates or touches a contact row: a number change recorded for its key
// may have to move it. Unlike needs_conversation, also an identity change.
bool touches_contact(event_kind kind);

// One event, parsed and normalised; everything the database needs, nothing
// it has to look up in the JSON again. Empty strings mean "absent".
struct event {
  event_kind kind = event_kind::unknown;
  std::string event_type;      // the type string as received, for logs/metrics
  std::string phone_number_id; // business number: routes to the workspace

  // The customer. `contact_key` is what goes into contacts.phone: the E.164
  // phone when there is one, else "bsuid:<id>", else "username:<name>"
  // (domain/contact_key.hpp).
  std::string contact_key;
  std::string contact_phone;   // E.164, may be empty
  std::string contact_bsuid;   // business_scoped_user_id, may be empty
  std::string contact_username;
  std::string contact_name;
  std::string whatsapp_conversation_id; // Kapso's conversation id, if any

  // The message (message_* kinds).
  std::string message_id;      // kapso_message_id (wamid...)
  int64_t timestamp = 0;       // WhatsApp timestamp, unix seconds (0 = unknown)
  std::string direction;       // "inbound" | "outbound"
  std::string sender_type;     // "contact" | "user" | "bot"
  std::string message_type;    // text, image, ...
  std::string content;         // messages.content (may be empty -> NULL)
  std::string preview;         // <= 100 chars, UTF-8 safe
  std::string media_url;
  std::string metadata_json = "{}"; // JSON object for messages.metadata
  std::string status;          // received | sent | delivered | read | failed
  std::string status_error_json; // failed statuses: the error object, else ""

  // Edits, deletions and account changes (message_id is their own id; for an
  // edit, content .. metadata_json above describe the new version).
  std::string original_message_id; // the message an edit or revoke changes
  std::string new_contact_phone;   // contact_number_changed: the new E.164 number
  std::string identity_hash;       // contact_identity_changed: identity.hash
};

// An event bound to its workspace, with its timestamp final (the arrival
// time when it had none): what the outage spool keeps.
struct routed_event {
  std::string workspace_id;
  event ev;
};

// The fate of one event after its batch committed.
// `retry`: not written for a reason that may pass (e.g. the workspace row
// changed under us); answered as an error so Kapso delivers it again.
enum class write_outcome : uint8_t { accepted, duplicate, ignored, retry };

} // namespace kapso
