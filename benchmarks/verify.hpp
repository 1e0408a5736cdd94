// Checks the inbox tables against what the harness sent and got acknowledged.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <pqxx/connection_base>

namespace kapso::bench {

struct expected_conversation {
  std::string phone_number_id; // the workspace's kapso_phone_id
  std::string contact_phone;   // contacts.phone, E.164
};

// One inbound message the harness sent at least once.
struct expected_message {
  std::string kapso_message_id;
  uint32_t conversation = 0; // index into expected_state::conversations
  int64_t timestamp = 0;     // unix seconds: messages.created_at, last_message_at
  std::string preview;       // what last_message_preview must hold if newest
  // Answered 200 at least once: must be stored. A message whose deliveries
  // all failed or timed out may or may not be stored; both are fine.
  bool acknowledged = false;
};

struct expected_state {
  std::vector<expected_conversation> conversations;
  std::vector<expected_message> messages;
  // Unread counts, previews and foreign rows can only be checked when the
  // bench workspaces held no rows before the run (kapso-bench --setup).
  bool workspaces_were_empty = true;
};

struct verify_report {
  uint64_t expected_acknowledged = 0;
  uint64_t expected_unconfirmed = 0; // sent, never acknowledged
  uint64_t present = 0;              // distinct expected messages found
  uint64_t lost = 0;                 // acknowledged but not stored
  uint64_t duplicated = 0;           // extra rows per (workspace_id, kapso_message_id)
  uint64_t unexpected = 0;           // message rows the harness never sent
  uint64_t misrouted = 0;            // stored under another workspace or conversation
  uint64_t wrong_created_at = 0;     // created_at is not the WhatsApp timestamp
  uint64_t conversations_checked = 0;
  uint64_t missing_conversations = 0;
  uint64_t duplicate_conversations = 0; // more than one per (workspace, contact phone)
  uint64_t unexpected_conversations = 0;
  uint64_t wrong_unread = 0;
  uint64_t wrong_preview = 0;        // last_message_preview or last_message_at
  uint64_t missing_workspaces = 0;   // no (or no unique) workspace for a phone id
  std::vector<std::string> examples; // the first few problems, for humans

  bool ok() const {
    return lost == 0 && duplicated == 0 && unexpected == 0 && misrouted == 0
           && wrong_created_at == 0 && missing_conversations == 0
           && duplicate_conversations == 0 && unexpected_conversations == 0
           && wrong_unread == 0 && wrong_preview == 0 && missing_workspaces == 0;
  }
};

// Reads the bench workspaces' messages and conversations in one snapshot
// and compares them with `expected`. Throws pqxx exceptions on SQL errors.
verify_report verify_database(pqxx::connection_base& db, const expected_state& expected);

// "verify: OK ..." or "verify: FAILED ..." with every count, and examples.
std::string to_string(const verify_report& report);

} // namespace kapso::bench
