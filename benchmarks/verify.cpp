// Checks the inbox tables against what the harness sent and got acknowledged.
#include "benchmarks/verify.hpp"

#include <algorithm>
#include <set>
#include <unordered_map>

#include <pqxx/pqxx>

namespace kapso::bench {

namespace {

constexpr size_t max_examples = 10;
constexpr const char* fetch_size = "20000";

// A PostgreSQL array literal ({"a","b"}) for one text/uuid[] parameter.
std::string array_literal(const std::vector<std::string>& items) {
  std::string out = "{";
  for (auto& item : items) {
    if (out.size() > 1)
      out += ',';
    out += '"';
    for (char ch : item) {
      if (ch == '"' || ch == '\\')
        out += '\\';
      out += ch;
    }
    out += '"';
  }
  out += '}';
  return out;
}

std::string conversation_key(const std::string& workspace_id, const std::string& phone) {
  return workspace_id + '\n' + phone;
}

struct stored_conversation {
  int64_t unread = 0;
  bool has_last_at = false;
  int64_t last_at = 0;
  bool has_preview = false;
  std::string preview;
};

// Keeps the first few problems verbatim: counts say how bad, examples say what.
void note(verify_report& report, std::string text) {
  if (report.examples.size() < max_examples)
    report.examples.push_back(std::move(text));
}

} // namespace

verify_report verify_database(pqxx::connection_base& db, const expected_state& expected) {
  verify_report report;
  auto& messages = expected.messages;
  auto& conversations = expected.conversations;

  std::unordered_map<std::string, uint32_t> message_index;
  message_index.reserve(messages.size());
  for (uint32_t i = 0; i < messages.size(); ++i) {
    message_index.emplace(messages[i].kapso_message_id, i);
    if (messages[i].acknowledged)
      ++report.expected_acknowledged;
    else
      ++report.expected_unconfirmed;
  }

  // One snapshot for every query, so a write that commits while we read
  // (an unconfirmed delivery still in the server) cannot make counts disagree.
  pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx{db, "bench_verify"};

  // -- workspaces ---------------------------------------------------------------
  std::set<std::string> phone_ids;
  for (auto& conv : conversations)
    phone_ids.insert(conv.phone_number_id);
  std::unordered_map<std::string, std::vector<std::string>> workspaces_of_phone;
  auto ws_rows = tx.exec_params(
    "SELECT id::text, kapso_phone_id FROM workspaces WHERE kapso_phone_id = ANY($1::text[])",
    array_literal({phone_ids.begin(), phone_ids.end()}));
  for (const auto& row : ws_rows)
    workspaces_of_phone[row[1].c_str()].push_back(row[0].c_str());
  std::unordered_map<std::string, std::string> workspace_of_phone;
  std::vector<std::string> workspace_ids;
  for (auto& phone_id : phone_ids) {
    auto& ids = workspaces_of_phone[phone_id];
    if (ids.size() != 1) {
      ++report.missing_workspaces;
      note(report, "phone_number_id " + phone_id + " has " + std::to_string(ids.size())
                    + " workspaces, expected exactly one");
      continue;
    }
    workspace_of_phone[phone_id] = ids.front();
    workspace_ids.push_back(ids.front());
  }
  auto workspace_array = array_literal(workspace_ids);

  // -- conversations ---------------------------------------------------------------
  std::unordered_map<std::string, uint32_t> conversation_by_key;
  for (uint32_t c = 0; c < conversations.size(); ++c) {
    auto ws = workspace_of_phone.find(conversations[c].phone_number_id);
    if (ws != workspace_of_phone.end())
      conversation_by_key.emplace(conversation_key(ws->second, conversations[c].contact_phone),
                                  c);
  }
  constexpr int64_t none = -1;
  std::vector<int64_t> stored_of(conversations.size(), none);
  std::vector<stored_conversation> stored;
  std::unordered_map<std::string, int64_t> expected_of_row; // conversations.id -> index
  auto conv_rows = tx.exec_params(
    "SELECT c.id::text, c.workspace_id::text, ct.phone, c.unread_count, "
    "extract(epoch FROM c.last_message_at)::bigint, c.last_message_preview "
    "FROM conversations c JOIN contacts ct ON ct.id = c.contact_id "
    "WHERE c.workspace_id = ANY($1::uuid[])",
    workspace_array);
  for (const auto& row : conv_rows) {
    auto key = conversation_key(row[1].c_str(), row[2].c_str());
    auto found = conversation_by_key.find(key);
    if (found == conversation_by_key.end()) {
      expected_of_row.emplace(row[0].c_str(), none);
      if (expected.workspaces_were_empty) {
        ++report.unexpected_conversations;
        note(report, std::string{"conversation with unknown contact "} + row[2].c_str());
      }
      continue;
    }
    auto c = found->second;
    expected_of_row.emplace(row[0].c_str(), c);
    if (stored_of[c] != none) {
      ++report.duplicate_conversations;
      note(report, "second conversation for " + conversations[c].contact_phone);
      continue;
    }
    stored_conversation sc;
    sc.unread = row[3].is_null() ? 0 : row[3].as<int64_t>();
    sc.has_last_at = !row[4].is_null();
    sc.last_at = sc.has_last_at ? row[4].as<int64_t>() : 0;
    sc.has_preview = !row[5].is_null();
    sc.preview = sc.has_preview ? row[5].c_str() : "";
    stored_of[c] = static_cast<int64_t>(stored.size());
    stored.push_back(std::move(sc));
  }

  // -- messages, through a cursor: a long run stores millions ------------------------
  std::vector<char> present(messages.size(), 0);
  tx.exec("DECLARE bench_verify_messages NO SCROLL CURSOR FOR "
          "SELECT workspace_id::text, kapso_message_id, count(*), "
          "min(conversation_id::text), min(extract(epoch FROM created_at))::bigint "
          "FROM messages WHERE workspace_id = ANY("
          + tx.quote(workspace_array)
          + "::uuid[]) GROUP BY workspace_id, kapso_message_id");
  for (;;) {
    auto chunk = tx.exec(std::string{"FETCH "} + fetch_size + " FROM bench_verify_messages");
    if (chunk.empty())
      break;
    for (const auto& row : chunk) {
      auto rows = row[2].as<uint64_t>();
      auto found = row[1].is_null() ? message_index.end()
                                    : message_index.find(row[1].c_str());
      if (found == message_index.end()) {
        if (expected.workspaces_were_empty) {
          report.unexpected += rows;
          note(report, std::string{"unexpected message "}
                        + (row[1].is_null() ? "(null id)" : row[1].c_str()));
        }
        continue;
      }
      auto i = found->second;
      auto& msg = messages[i];
      if (rows > 1) {
        report.duplicated += rows - 1;
        note(report, msg.kapso_message_id + " stored " + std::to_string(rows) + " times");
      }
      auto& conv = conversations[msg.conversation];
      auto ws = workspace_of_phone.find(conv.phone_number_id);
      auto row_conv = expected_of_row.find(row[3].c_str());
      bool right_place = ws != workspace_of_phone.end() && ws->second == row[0].c_str()
                         && row_conv != expected_of_row.end()
                         && row_conv->second == static_cast<int64_t>(msg.conversation);
      if (present[i] || !right_place) {
        // Found twice means it is stored in two workspaces.
        ++report.misrouted;
        note(report, msg.kapso_message_id + " is stored outside conversation "
                      + conv.contact_phone);
      }
      present[i] = 1;
      if (row[4].is_null() || row[4].as<int64_t>() != msg.timestamp) {
        ++report.wrong_created_at;
        note(report, msg.kapso_message_id + " created_at "
                      + (row[4].is_null() ? "NULL" : row[4].c_str()) + ", expected "
                      + std::to_string(msg.timestamp));
      }
    }
  }
  tx.exec("CLOSE bench_verify_messages");

  // -- what must be there ----------------------------------------------------------
  // A conversation counts every message that is acknowledged (it must be
  // stored) or stored anyway (its answer was lost, but it is committed).
  std::vector<uint64_t> counted(conversations.size(), 0);
  std::vector<int64_t> newest(conversations.size(), none);
  for (uint32_t i = 0; i < messages.size(); ++i) {
    auto& msg = messages[i];
    if (present[i])
      ++report.present;
    if (msg.acknowledged && !present[i]) {
      ++report.lost;
      note(report, msg.kapso_message_id + " was acknowledged but is not stored");
    }
    if (!msg.acknowledged && !present[i])
      continue;
    ++counted[msg.conversation];
    auto& best = newest[msg.conversation];
    if (best == none || msg.timestamp > messages[static_cast<size_t>(best)].timestamp)
      best = i;
  }
  for (uint32_t c = 0; c < conversations.size(); ++c) {
    if (counted[c] == 0 && stored_of[c] == none)
      continue;
    ++report.conversations_checked;
    if (stored_of[c] == none) {
      ++report.missing_conversations;
      note(report, "no conversation for " + conversations[c].contact_phone);
      continue;
    }
    if (!expected.workspaces_were_empty)
      continue;
    auto& sc = stored[static_cast<size_t>(stored_of[c])];
    if (sc.unread != static_cast<int64_t>(counted[c])) {
      ++report.wrong_unread;
      note(report, conversations[c].contact_phone + " unread_count "
                    + std::to_string(sc.unread) + ", expected "
                    + std::to_string(counted[c]));
    }
    if (newest[c] == none)
      continue;
    auto& last = messages[static_cast<size_t>(newest[c])];
    if (!sc.has_last_at || sc.last_at != last.timestamp || !sc.has_preview
        || sc.preview != last.preview) {
      ++report.wrong_preview;
      note(report, conversations[c].contact_phone + " preview '" + sc.preview + "' at "
                    + std::to_string(sc.last_at) + ", expected '" + last.preview
                    + "' at " + std::to_string(last.timestamp));
    }
  }
  tx.commit();
  return report;
}

std::string to_string(const verify_report& r) {
  auto n = [](uint64_t x) { return std::to_string(x); };
  std::string out = r.ok() ? "verify: OK" : "verify: FAILED";
  out += "\n  messages: acknowledged " + n(r.expected_acknowledged) + ", unconfirmed "
         + n(r.expected_unconfirmed) + ", stored " + n(r.present) + ", lost " + n(r.lost)
         + ", duplicated " + n(r.duplicated) + ", unexpected " + n(r.unexpected)
         + ", misrouted " + n(r.misrouted) + ", wrong created_at "
         + n(r.wrong_created_at);
  out += "\n  conversations: checked " + n(r.conversations_checked) + ", missing "
         + n(r.missing_conversations) + ", duplicated " + n(r.duplicate_conversations)
         + ", unexpected " + n(r.unexpected_conversations) + ", wrong unread "
         + n(r.wrong_unread) + ", wrong preview " + n(r.wrong_preview);
  if (r.missing_workspaces > 0)
    out += "\n  workspaces missing or ambiguous: " + n(r.missing_workspaces);
  for (auto& example : r.examples)
    out += "\n  - " + example;
  return out;
}

} // namespace kapso::bench
