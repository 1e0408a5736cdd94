// The vocabulary shared by every folder: events, deliveries, outcomes, atoms.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>

namespace kapso {

// -- events ------------------------------------------------------------------

// What one webhook event asks the inbox to do.
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

const char* to_string(event_kind kind);

// One event, parsed and normalised; everything the database needs, nothing
// it has to look up in the JSON again. Empty strings mean "absent".
struct event {
  event_kind kind = event_kind::unknown;
  std::string event_type;      // the type string as received, for logs/metrics
  std::string phone_number_id; // business number: routes to the workspace

  // The customer. `contact_key` is what goes into contacts.phone: the E.164
  // phone when there is one, else "bsuid:<id>", else "username:<name>".
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

// Which conversation an event belongs to once its workspace is known.
struct conversation_key {
  std::string workspace_id;
  std::string contact_key;

  friend bool operator==(const conversation_key& x, const conversation_key& y) {
    return x.workspace_id == y.workspace_id && x.contact_key == y.contact_key;
  }
};

struct conversation_key_hash {
  size_t operator()(const conversation_key& k) const noexcept {
    return std::hash<std::string>{}(k.workspace_id)
           ^ (std::hash<std::string>{}(k.contact_key) * 1099511628211ull);
  }
};

// An event bound to its workspace: the unit the persistence actors write.
struct routed_event {
  std::string workspace_id;
  event ev;
};

// -- deliveries ----------------------------------------------------------------

// One verified-to-be-JSON POST body, parsed, before the signature check
// (which needs the workspace's secret, known only to the router).
struct delivery {
  std::string body;               // exact raw bytes, for the HMAC
  std::string kapso_signature;    // X-Webhook-Signature or X-Kapso-Signature
  std::string hub_signature;      // X-Hub-Signature-256 (without "sha256=")
  bool meta_forward = false;      // body was Meta's raw webhook shape
  std::vector<event> events;
  uint32_t malformed = 0;         // events skipped by the parser (-> ignored)
};

using delivery_ptr = std::shared_ptr<const delivery>;

// What the POST answers with on success.
struct delivery_result {
  uint32_t accepted = 0;
  uint32_t duplicates = 0;
  uint32_t ignored = 0;
};

// The fate of one routed event after its batch committed.
// `retry`: not written for a reason that may pass (e.g. the workspace row
// changed under us); answered as an error so Kapso delivers it again.
enum class write_outcome : uint8_t { accepted, duplicate, ignored, retry };

// -- workspaces ------------------------------------------------------------------

// What the router needs to know of a workspace: its id and its own secrets
// (empty = the global secrets apply).
struct workspace_info {
  std::string id;
  std::string phone_number_id;
  std::vector<std::string> secrets;
};

// -- errors --------------------------------------------------------------------

enum class ingest_errc : uint8_t {
  bad_signature = 1, // 401
  overloaded,        // 503 + Retry-After: in-flight limit
  unavailable,       // 503: database down and spool disabled/full
  shutting_down,     // 503
  timeout,           // 503: the pipeline did not answer in time
};

caf::error make_error(ingest_errc x);
const char* to_string(ingest_errc x);

// -- deadlines -----------------------------------------------------------------

// The events inside one delivery carry no timer of their own: the delivery's
// deadline (the router answers every delivery within http.request-timeout-ms,
// checked by one periodic sweep) bounds all of them, and every writer path
// answers every request. CAF 0.17 never cancels a request
// timeout, so each one costs a clock insertion, a wake-up of the timer
// thread and a stale message later: one per event per hop was about 14 % of
// the server's CPU. Only the hops inside a delivery use this.
inline const caf::duration within_delivery_deadline{caf::infinite};

// -- atoms -----------------------------------------------------------------------
// Prefixed with "k" so none collides with CAF's built-in atom texts.

using ingest_atom = caf::atom_constant<caf::atom("kingest")>;     // delivery -> router -> conversation
using persist_atom = caf::atom_constant<caf::atom("kpersist")>;   // conversation -> persistence
using commit_atom = caf::atom_constant<caf::atom("kcommit")>;     // persistence: write the batch now
using resolve_atom = caf::atom_constant<caf::atom("kresolve")>;   // router -> directory
using readiness_atom = caf::atom_constant<caf::atom("kready")>;   // http -> directory
using sweep_atom = caf::atom_constant<caf::atom("ksweep")>;       // periodic housekeeping
using replay_atom = caf::atom_constant<caf::atom("kreplay")>;     // spool -> database
using idle_atom = caf::atom_constant<caf::atom("kidle")>;         // conversation idle check

} // namespace kapso

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<kapso::workspace_info>)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(kapso::delivery_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(kapso::routed_event)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(kapso::delivery_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(kapso::write_outcome)
