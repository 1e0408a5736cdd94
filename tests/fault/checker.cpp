// What the database holds against what a load sent and was told: every 200 stored exactly once.
#include "tests/fault/checker.hpp"

#include <sstream>
#include <thread>

#include <pqxx/pqxx>

namespace kapso_fault {

namespace {

constexpr size_t max_examples = 5;

void note(std::vector<std::string>& list, std::string what) {
  list.push_back(std::move(what));
}

std::string array_literal(const std::set<std::string>& ids) {
  std::string out = "{";
  for (const auto& id : ids)
    out += (out.size() > 1 ? "," : "") + id;
  return out + "}";
}

// A checker must never hang on a frozen or vanished database.
std::string with_timeouts(const std::string& url) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + "connect_timeout=10";
}

void describe_list(std::ostringstream& out, const char* what,
                   const std::vector<std::string>& list) {
  if (list.empty())
    return;
  out << "\n  " << list.size() << " " << what << ", e.g.";
  for (size_t i = 0; i < list.size() && i < max_examples; ++i)
    out << " " << list[i];
}

} // namespace

void expected_store::add(const std::vector<delivery>& deliveries, const load_options& options) {
  for (const auto& ws : options.workspaces)
    workspace_ids_.insert(ws.id);
  for (const auto& d : deliveries) {
    auto acknowledged = d.acknowledged();
    for (const auto& m : d.messages) {
      auto& entry = messages_[{options.workspaces.at(d.workspace).id, m.id}];
      entry.phone = phone_of(m.conversation);
      entry.text = text_of(m, options);
      entry.acknowledged = entry.acknowledged || acknowledged;
    }
  }
}

void expected_store::remove(const std::string& workspace_id, const std::string& message_id) {
  messages_.erase({workspace_id, message_id});
}

size_t expected_store::acknowledged() const {
  size_t n = 0;
  for (const auto& [key, m] : messages_)
    n += m.acknowledged ? 1 : 0;
  return n;
}

bool store_report::ok() const {
  return missing == 0 && duplicated.empty() && unknown.empty() && wrong_rows.empty()
         && unread_mismatch.empty() && duplicate_contacts.empty()
         && duplicate_conversations.empty();
}

std::string store_report::describe() const {
  std::ostringstream out;
  out << stored << " of " << required << " messages that must be stored are stored";
  if (missing > 0) {
    out << "\n  " << missing << " MISSING, e.g.";
    for (auto& id : missing_examples)
      out << " " << id;
  }
  describe_list(out, "stored more than once", duplicated);
  describe_list(out, "stored but not expected (never sent, or sent in a record that must not be "
                     "replayed)", unknown);
  describe_list(out, "stored with the wrong phone or text", wrong_rows);
  describe_list(out, "conversations whose unread_count != inbound rows", unread_mismatch);
  describe_list(out, "phones with more than one contact", duplicate_contacts);
  describe_list(out, "contacts with more than one conversation", duplicate_conversations);
  return out.str();
}

store_report check_store(const std::string& database_url, const expected_store& expected,
                         bool require_all) {
  store_report report;
  pqxx::connection connection{with_timeouts(database_url)};
  pqxx::read_transaction tx{connection};
  auto workspaces = array_literal(expected.workspace_ids());

  std::set<std::pair<std::string, std::string>> found;
  auto rows = tx.exec_params(
    "SELECT m.workspace_id::text, m.kapso_message_id, count(*), min(ct.phone), "
    "       min(m.content), count(DISTINCT ct.phone) "
    "FROM messages m JOIN conversations c ON c.id = m.conversation_id "
    "JOIN contacts ct ON ct.id = c.contact_id "
    "WHERE m.workspace_id = ANY($1::uuid[]) GROUP BY 1, 2",
    workspaces);
  for (const auto& row : rows) {
    std::pair<std::string, std::string> key{row[0].c_str(),
                                            row[1].is_null() ? "<NULL>" : row[1].c_str()};
    auto copies = row[2].as<int64_t>();
    if (copies > 1)
      note(report.duplicated, key.second + " x" + std::to_string(copies));
    auto sent = expected.messages().find(key);
    if (sent == expected.messages().end()) {
      note(report.unknown, key.second);
      continue;
    }
    found.insert(key);
    std::string phone = row[3].is_null() ? "<NULL>" : row[3].c_str();
    std::string content = row[4].is_null() ? "<NULL>" : row[4].c_str();
    if (phone != sent->second.phone || content != sent->second.text)
      note(report.wrong_rows, key.second + " (phone " + phone + ", text '"
                                + content.substr(0, 40) + "')");
  }
  for (const auto& [key, m] : expected.messages()) {
    if (!require_all && !m.acknowledged)
      continue;
    ++report.required;
    if (found.count(key) != 0) {
      ++report.stored;
    } else {
      ++report.missing;
      if (report.missing_examples.size() < max_examples)
        report.missing_examples.push_back(key.second);
    }
  }

  auto unread = tx.exec_params(
    "SELECT ct.phone, c.unread_count, "
    "       (SELECT count(*) FROM messages m "
    "        WHERE m.conversation_id = c.id AND m.direction = 'inbound') "
    "FROM conversations c JOIN contacts ct ON ct.id = c.contact_id "
    "WHERE c.workspace_id = ANY($1::uuid[])",
    workspaces);
  for (const auto& row : unread) {
    auto count = row[1].is_null() ? -1 : row[1].as<int64_t>();
    auto inbound = row[2].as<int64_t>();
    if (count != inbound)
      note(report.unread_mismatch, std::string{row[0].c_str()} + ": unread "
                                     + std::to_string(count) + ", inbound "
                                     + std::to_string(inbound));
  }
  for (const auto& row : tx.exec_params(
         "SELECT phone, count(*) FROM contacts WHERE workspace_id = ANY($1::uuid[]) "
         "GROUP BY workspace_id, phone HAVING count(*) > 1",
         workspaces))
    note(report.duplicate_contacts, std::string{row[0].c_str()} + " x" + row[1].c_str());
  for (const auto& row : tx.exec_params(
         "SELECT contact_id::text, count(*) FROM conversations "
         "WHERE workspace_id = ANY($1::uuid[]) GROUP BY contact_id HAVING count(*) > 1",
         workspaces))
    note(report.duplicate_conversations, std::string{row[0].c_str()} + " x" + row[1].c_str());
  return report;
}

store_report wait_until_stored(const std::string& database_url, const expected_store& expected,
                               bool require_all, std::chrono::milliseconds timeout) {
  auto deadline = clock_type::now() + timeout;
  for (;;) {
    auto report = check_store(database_url, expected, require_all);
    if (report.missing == 0 || clock_type::now() >= deadline)
      return report;
    std::this_thread::sleep_for(250ms);
  }
}

} // namespace kapso_fault
