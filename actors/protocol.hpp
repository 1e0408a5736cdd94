// The actors' vocabulary: deliveries, the parts writers commit, how answers
// travel back, atoms and the typed interfaces; the only header other folders
// include from actors/.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <caf/all.hpp>

#include "domain/event.hpp"

namespace kapso {

// -- deliveries ----------------------------------------------------------------

// One POST body, parsed, before the signature check (which needs the
// workspace's secret, known only to the router).
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

  delivery_result& operator+=(const delivery_result& other) {
    accepted += other.accepted;
    duplicates += other.duplicates;
    ignored += other.ignored;
    return *this;
  }
};

// -- errors --------------------------------------------------------------------

enum class ingest_errc : uint8_t {
  bad_signature = 1, // 401
  overloaded,        // 503 + Retry-After: in-flight limit
  unavailable,       // 503: database down and spool disabled/full
  shutting_down,     // 503
  timeout,           // 503: the pipeline did not answer in time
};


// -- answers -------------------------------------------------------------------

// Where the answer to a delivery goes, by the ticket the HTTP layer gave it.
// Called from any actor's thread; http/ implements it and keeps the request
// handles. A delivery is split into `parts` (one per writer it needs, or one
// for the router alone); it is answered 200 when every part is done, or at
// once with the first failure.
class answer_sink {
public:
  virtual ~answer_sink();
  virtual void part_done(uint64_t ticket, uint32_t parts, const delivery_result& counts) = 0;
  virtual void failed(uint64_t ticket, ingest_errc why) = 0;
};

using answer_sink_ptr = std::shared_ptr<answer_sink>;

// -- writes ----------------------------------------------------------------------

// One event of a part: its place in the delivery and its workspace's place
// in the part.
struct write_item {
  uint32_t event_index;     // into delivery::events
  uint32_t workspace_index; // into write_part::workspace_ids
};

// The events of one delivery that one writer stores: one message per
// (delivery, writer), however many events. The events stay in the delivery.
struct write_part {
  delivery_ptr d;
  uint64_t ticket = 0;
  uint32_t parts = 1;              // how many parts the delivery was split into
  delivery_result counted;         // decided by the router (ignored, ...): part 0 only
  int64_t arrival = 0;             // unix seconds, for events without a timestamp
  std::vector<std::string> workspace_ids;
  std::vector<write_item> items;
};

// Which writer owns a conversation: a fixed share by hash of (workspace,
// customer); a status without a customer goes by its message id.
size_t writer_for(std::string_view workspace_id, const event& ev, size_t writers);

// -- workspaces ------------------------------------------------------------------

// What the router needs to know of a workspace: its id and its own secrets
// (empty = the global secrets apply).
struct workspace_info {
  std::string id;
  std::string phone_number_id;
  std::vector<std::string> secrets;
};

// The directory's answer to a look-up. `from_snapshot`: PostgreSQL did not
// answer and these are the last known entries kept on disk; an id missing
// from them is unknown for now, not known to match no workspace.
struct workspace_lookup {
  std::vector<workspace_info> found;
  bool from_snapshot = false;
};

// -- atoms -----------------------------------------------------------------------
// Prefixed with "k" so none collides with CAF's built-in atom texts.

using ingest_atom = caf::atom_constant<caf::atom("kingest")>;     // http -> router
using persist_atom = caf::atom_constant<caf::atom("kpersist")>;   // router -> writer
using commit_atom = caf::atom_constant<caf::atom("kcommit")>;     // writer: write the batch now
using resolve_atom = caf::atom_constant<caf::atom("kresolve")>;   // router -> directory
using readiness_atom = caf::atom_constant<caf::atom("kready")>;   // http -> directory
using sweep_atom = caf::atom_constant<caf::atom("ksweep")>;       // periodic housekeeping
using replay_atom = caf::atom_constant<caf::atom("kreplay")>;     // spool -> database
using migrate_atom = caf::atom_constant<caf::atom("kmigrate")>;   // migrator: try again now
using schema_atom = caf::atom_constant<caf::atom("kschema")>;     // migrator -> writers, directory

// -- typed interfaces ------------------------------------------------------------

// (ingest_atom, delivery, ticket): answered through the answer sink.
using router_actor = caf::typed_actor<caf::reacts_to<ingest_atom, delivery_ptr, uint64_t>>;

// (persist_atom, part): answered through the answer sink after commit (or
// the spool). (schema_atom): the schema is migrated, PostgreSQL may be
// written. The other messages are the writer's own timers.
using writer_actor = caf::typed_actor<caf::reacts_to<persist_atom, write_part>,
                                      caf::reacts_to<schema_atom>,
                                      caf::reacts_to<commit_atom>,
                                      caf::reacts_to<replay_atom>,
                                      caf::reacts_to<sweep_atom>>;

// (schema_atom): the schema is migrated; readiness is false before it.
using directory_actor = caf::typed_actor<
  caf::replies_to<resolve_atom, std::vector<std::string>>::with<workspace_lookup>,
  caf::replies_to<readiness_atom>::with<bool>,
  caf::reacts_to<schema_atom>>;

// (migrate_atom): one attempt; the migrator sends it to itself until the
// schema is migrated, then tells the writers and the directory, and quits.
using migrator_actor = caf::typed_actor<caf::reacts_to<migrate_atom>>;

} // namespace kapso

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(kapso::workspace_lookup)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(kapso::delivery_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(kapso::write_part)
