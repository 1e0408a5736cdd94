// What the database holds against what a load sent and was told: every 200 stored exactly once.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "tests/fault/load.hpp"

namespace kapso_fault {

// The messages one or more loads sent, and which of them were answered 200.
class expected_store {
 public:
  void add(const std::vector<delivery>& deliveries, const load_options& options);

  struct message {
    std::string phone;
    std::string text;
    bool acknowledged = false;
  };
  // (workspace_id, kapso_message_id) -> what was sent
  const std::map<std::pair<std::string, std::string>, message>& messages() const {
    return messages_;
  }
  const std::set<std::string>& workspace_ids() const { return workspace_ids_; }
  // Forgets a message that was sent, e.g. one the server rightly ignored:
  // if it is stored anyway, the check reports it as not expected.
  void remove(const std::string& workspace_id, const std::string& message_id);
  size_t acknowledged() const;

 private:
  std::map<std::pair<std::string, std::string>, message> messages_;
  std::set<std::string> workspace_ids_;
};

struct store_report {
  size_t required = 0;               // messages that must be stored
  size_t stored = 0;                 // distinct sent messages found
  size_t missing = 0;
  std::vector<std::string> missing_examples;
  std::vector<std::string> duplicated;      // (workspace, id) stored more than once
  std::vector<std::string> unknown;         // stored but never sent
  std::vector<std::string> wrong_rows;      // stored under another phone or with other text
  std::vector<std::string> unread_mismatch; // unread_count != inbound rows
  std::vector<std::string> duplicate_contacts;
  std::vector<std::string> duplicate_conversations;

  bool ok() const;
  std::string describe() const;
};

// Reads the inbox tables of the expected workspaces. `require_all`: every
// sent message must be stored (after Kapso-like re-sending), else only
// those answered 200.
store_report check_store(const std::string& database_url, const expected_store& expected,
                         bool require_all);

// Polls until every message that must be stored is (spool replay takes a
// while); the last report either way.
store_report wait_until_stored(const std::string& database_url, const expected_store& expected,
                               bool require_all, std::chrono::milliseconds timeout);

} // namespace kapso_fault
