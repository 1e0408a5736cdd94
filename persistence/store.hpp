// The inbox database: one connection and the batch write on it. Every call
// takes a deadline; used from detached actors only.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "config/settings.hpp"
#include "domain/event.hpp"
#include "persistence/batch_plan.hpp"
#include "persistence/lifecycle.hpp"
#include "persistence/pg_session.hpp"

namespace kapso {

// (workspace_id, kapso_message_id) of a status kept until its message arrives.
using message_ref = std::pair<std::string, std::string>;

struct batch_result {
  std::vector<write_outcome> outcomes; // one per input event, same order
  std::vector<message_ref> pending;    // statuses stored ahead of their message
};

// How a failed database call should be handled.
enum class failure_kind {
  unavailable,     // the database, not the event: connection lost, timeout,
                   // read-only, privileges, missing table, disk full,
                   // shutdown, conflicts that outlast their retries...
                   // retried, spooled or answered 503, never ignored
  conflict,        // deadlock / serialization failure: retry now
  bad_data,        // the event's own values are invalid: no retry can store it
  stale_reference, // a referenced row (workspace) vanished: retry later
  unexplained,     // about neither the event's values nor the database's state:
                   // a trigger's exception, an internal error (a corrupt page or
                   // index entry), a wrong batch, an exception of ours. One event
                   // may cause it: the writer isolates it, and an event that keeps
                   // failing while others are stored goes to the quarantine
};

// Only an error about the event's own data (data exceptions, check and
// not-null violations on its values, values too large to index) is bad data;
// anything the database says about itself is `unavailable`; the classes an
// event can provoke although its values are valid, and exceptions that are
// not PostgreSQL's answer, are `unexplained`.
failure_kind classify_failure(const std::exception& e);
failure_kind classify_sqlstate(const std::string& sqlstate);

class inbox_store {
public:
  // `statement_timeout` is PostgreSQL's own limit per statement; the
  // deadlines passed to each call are the client's.
  inbox_store(std::string url, std::chrono::milliseconds statement_timeout,
              std::chrono::milliseconds connect_timeout = std::chrono::seconds(1));
  ~inbox_store();

  inbox_store(const inbox_store&) = delete;
  inbox_store& operator=(const inbox_store&) = delete;

  // Opens the connection if needed (throws db_error / db_timeout).
  void ensure_connected(pg_deadline deadline);
  void disconnect() noexcept;
  bool connected() const noexcept { return session_.connected(); }

  // Writes all events in one transaction; idempotent and commutative.
  // Throws on any database failure (nothing is committed then, or, after a
  // timeout or a lost connection, it is unknown whether it was).
  batch_result commit_batch(const std::vector<batch_entry>& entries, pg_deadline deadline);

  // Applies pending statuses of these messages if they exist now.
  void apply_pending(const std::vector<message_ref>& refs, pg_deadline deadline);

  // Applies every pending status whose message exists; drops stale ones.
  void sweep_pending(pg_deadline deadline);

  // The workspaces owning these phone_number_ids (the oldest per id), with
  // their secret column as stored.
  struct workspace_row {
    std::string id;
    std::string phone_number_id;
    std::string secret_list; // "" = none of its own
  };
  std::vector<workspace_row> find_workspaces(const std::vector<std::string>& phone_ids,
                                             pg_deadline deadline);

  // Database reachable and every migration applied.
  bool schema_current(pg_deadline deadline);

private:
  void write_everything(const std::vector<batch_entry>& entries,
                        const std::vector<std::string_view>& keys, const batch_plan& plan,
                        const lifecycle::lifecycle_plan& changes, pg_deadline deadline,
                        batch_result& result);
  void write_known_first(const std::vector<batch_entry>& entries,
                         const std::vector<std::string_view>& keys, const batch_plan& plan,
                         pg_deadline deadline, batch_result& result);

  // A (re)connection within its budget (pg_session::connect_within_budget).
  pg_deadline connect_before(pg_deadline deadline);

  pg_session session_;
  lifecycle::waiting_index waiting_; // what early edits and number changes wait for
};

// `kapso-ingest register-workspace`: one connection attempt of
// `connect_timeout`, then the statement within `statement_timeout`.
// Returns the workspace's id. Throws db_error / db_timeout.
std::string register_workspace(const std::string& url, const workspace_registration& ws,
                               std::chrono::milliseconds connect_timeout,
                               std::chrono::milliseconds statement_timeout);

} // namespace kapso
