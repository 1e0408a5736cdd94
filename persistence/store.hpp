// The inbox database: one libpqxx connection and the batch write on it.
// Blocking: only ever used from detached actors or command-line tools.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <pqxx/pqxx>

#include "actors/protocol.hpp"
#include "persistence/lifecycle.hpp"

namespace kapso {

// (workspace_id, kapso_message_id) of a status kept until its message arrives.
using message_ref = std::pair<std::string, std::string>;

struct batch_result {
  std::vector<write_outcome> outcomes; // one per input event, same order
  std::vector<message_ref> pending;    // statuses stored ahead of their message
};

// How a failed database call should be handled.
enum class failure_kind {
  unavailable, // connection lost, timeout, server shutting down: retry later
  conflict,    // deadlock / serialization failure: retry now
  bad_data,    // the batch contains an event the database rejects
  stale_reference, // a referenced row (workspace) vanished: retry later
};

failure_kind classify_failure(const std::exception& e);

class inbox_store {
public:
  // `connect_timeout` bounds how long a connection attempt may block.
  inbox_store(std::string url, std::chrono::milliseconds statement_timeout,
              std::chrono::milliseconds connect_timeout = std::chrono::seconds(5));
  ~inbox_store();

  inbox_store(const inbox_store&) = delete;
  inbox_store& operator=(const inbox_store&) = delete;

  // Opens the connection if needed (throws pqxx::broken_connection).
  void ensure_connected();
  void disconnect() noexcept;

  // Writes all events in one transaction; idempotent and commutative.
  // Throws on any database failure (nothing is committed then).
  batch_result commit_batch(const std::vector<routed_event>& events);

  // Applies pending statuses of these messages if they exist now.
  void apply_pending(const std::vector<message_ref>& refs);

  // Applies every pending status whose message exists; drops stale ones.
  void sweep_pending();

  // The workspaces owning these phone_number_ids (the oldest per id), with
  // their secret column as stored.
  struct workspace_row {
    std::string id;
    std::string phone_number_id;
    std::string secret_list; // "" = none of its own
  };
  std::vector<workspace_row> find_workspaces(const std::vector<std::string>& phone_ids);

  // Database reachable and every migration applied.
  bool schema_current();

  std::vector<std::string> migrate();

  // Forgets cached contact/conversation ids (e.g. after a foreign-key
  // failure: another application deleted a row).
  void forget_cached_ids() noexcept { known_.clear(); }

  std::string register_workspace(const std::string& name, const std::string& slug,
                                 const std::string& phone_number_id,
                                 const std::string& secret);

private:
  void prepare_statements();

  // What the writer knows of a (workspace, contact key) from earlier
  // commits: saves the contact and conversation upserts on the hot path.
  struct known_conversation {
    std::string contact_id;
    std::string conversation_id;
    bool named = false; // contact has a name: nothing to fill
  };

  std::string url_;
  std::chrono::milliseconds statement_timeout_;
  std::unique_ptr<pqxx::connection> conn_;
  std::unordered_map<std::string, known_conversation> known_; // "ws\nkey"
  lifecycle::waiting_index waiting_; // what early edits and number changes wait for
};

} // namespace kapso
