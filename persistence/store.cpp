// The batch write: contacts, conversations, messages, statuses, inbox
// metadata — a handful of set-based statements in one transaction.
#include "persistence/store.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <unordered_map>

#include "persistence/inbox_rules.hpp"
#include "persistence/json_rows.hpp"
#include "persistence/migrations.hpp"
#include "persistence/statements.hpp"

namespace kapso {

namespace {

// Statement names for prepare/exec_prepared.
constexpr const char* find_contacts_by_bsuid_stmt = "find_contacts_by_bsuid";
constexpr const char* link_bsuid_contacts_stmt = "link_bsuid_contacts";
constexpr const char* upsert_contacts_stmt = "upsert_contacts";
constexpr const char* select_contacts_stmt = "select_contacts";
constexpr const char* insert_conversations_stmt = "insert_conversations";
constexpr const char* select_conversations_stmt = "select_conversations";
constexpr const char* insert_messages_stmt = "insert_messages";
constexpr const char* close_conversations_stmt = "close_conversations";
constexpr const char* advance_statuses_stmt = "advance_statuses";
constexpr const char* insert_pending_statuses_stmt = "insert_pending_statuses";
constexpr const char* apply_pending_statuses_stmt = "apply_pending_statuses";
constexpr const char* find_workspaces_stmt = "find_workspaces";

// Bounds the writer's id cache; past it the cache starts over.
constexpr size_t max_known_conversations = 100000;

bool needs_conversation(event_kind kind) {
  switch (kind) {
    case event_kind::message_received:
    case event_kind::message_sent:
    case event_kind::conversation_created:
    case event_kind::conversation_ended:
      return true;
    default:
      return false;
  }
}

bool is_message(event_kind kind) {
  return kind == event_kind::message_received || kind == event_kind::message_sent;
}

using pair_key = std::pair<std::string, std::string>;

// One (workspace_id, kapso_message_id, status, error) row of a status statement.
void add_status_row(json_rows& rows, const pair_key& key, const event& ev) {
  auto& row = rows.row()
                .field("workspace_id", key.first)
                .field("kapso_message_id", key.second)
                .field("status", ev.status);
  if (ev.status_error_json.empty())
    row.null_field("error");
  else
    row.raw_field("error", ev.status_error_json);
}

struct contact_row {
  std::string name;
  std::string bsuid;
};

} // namespace

failure_kind classify_failure(const std::exception& e) {
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr
      || dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr)
    return failure_kind::unavailable;
  if (auto sql_error = dynamic_cast<const pqxx::sql_error*>(&e)) {
    const auto& state = sql_error->sqlstate();
    if (state == "40001" || state == "40P01")
      return failure_kind::conflict;
    if (state == "23503")
      return failure_kind::stale_reference;
    // 08: connection, 53: resources, 57: operator intervention (incl. the
    // statement timeout 57014), 58: system error.
    if (state.size() == 5
        && (state.compare(0, 2, "08") == 0 || state.compare(0, 2, "53") == 0
            || state.compare(0, 2, "57") == 0 || state.compare(0, 2, "58") == 0))
      return failure_kind::unavailable;
    return failure_kind::bad_data;
  }
  if (dynamic_cast<const pqxx::failure*>(&e) != nullptr)
    return failure_kind::unavailable;
  return failure_kind::bad_data;
}

inbox_store::inbox_store(std::string url, std::chrono::milliseconds statement_timeout,
                         std::chrono::milliseconds connect_timeout)
  : url_(std::move(url)), statement_timeout_(statement_timeout) {
  // libpq counts whole seconds and treats anything below 2 as 2.
  auto seconds = std::max<int64_t>(2, (connect_timeout.count() + 999) / 1000);
  auto option = "connect_timeout=" + std::to_string(seconds);
  if (url_.rfind("postgres://", 0) == 0 || url_.rfind("postgresql://", 0) == 0)
    url_ += (url_.find('?') == std::string::npos ? "?" : "&") + option;
  else
    url_ += " " + option;
}

inbox_store::~inbox_store() {
  disconnect();
}

void inbox_store::ensure_connected() {
  if (conn_ && conn_->is_open())
    return;
  conn_.reset();
  auto conn = std::make_unique<pqxx::connection>(url_);
  {
    pqxx::nontransaction txn{*conn};
    txn.exec("SET statement_timeout = " + std::to_string(statement_timeout_.count()));
  }
  conn_ = std::move(conn);
  prepare_statements();
}

void inbox_store::disconnect() noexcept {
  try {
    if (conn_)
      conn_->disconnect();
  } catch (...) {
    // Closing a dead connection may throw; it is gone either way.
  }
  conn_.reset();
}

void inbox_store::prepare_statements() {
  auto& c = *conn_;
  c.prepare(find_contacts_by_bsuid_stmt, sql::find_contacts_by_bsuid);
  c.prepare(link_bsuid_contacts_stmt, sql::link_bsuid_contacts);
  c.prepare(upsert_contacts_stmt, sql::upsert_contacts);
  c.prepare(select_contacts_stmt, sql::select_contacts);
  c.prepare(insert_conversations_stmt, sql::insert_conversations);
  c.prepare(select_conversations_stmt, sql::select_conversations);
  c.prepare(insert_messages_stmt, sql::insert_messages);
  c.prepare(close_conversations_stmt, sql::close_conversations);
  c.prepare(advance_statuses_stmt, sql::advance_statuses);
  c.prepare(insert_pending_statuses_stmt, sql::insert_pending_statuses);
  c.prepare(apply_pending_statuses_stmt, sql::apply_pending_statuses);
  c.prepare(find_workspaces_stmt, sql::find_workspaces);
}

batch_result inbox_store::commit_batch(const std::vector<routed_event>& events) {
  ensure_connected();
  batch_result result;
  result.outcomes.assign(events.size(), write_outcome::accepted);

  // Which contact each event belongs to, and whether the cache knows its
  // conversation well enough to skip the contact/conversation upserts.
  std::vector<std::string> keys(events.size());
  std::vector<const known_conversation*> known(events.size(), nullptr);
  bool all_known = true;
  bool simple = true; // inbound messages of known conversations only
  for (size_t i = 0; i < events.size(); ++i) {
    const auto& r = events[i];
    keys[i] = r.ev.contact_key;
    if (r.ev.kind != event_kind::message_received)
      simple = false;
    if (!needs_conversation(r.ev.kind))
      continue;
    if (!r.ev.contact_bsuid.empty()) {
      all_known = false; // identity linking needs the database
      continue;
    }
    auto found = known_.find(r.workspace_id + '\n' + keys[i]);
    if (found == known_.end() || (!found->second.named && !r.ev.contact_name.empty())) {
      all_known = false;
      continue;
    }
    known[i] = &found->second;
  }
  simple = simple && all_known;

  // A transaction only when there is more than the one statement to run:
  // a single statement is atomic on its own and saves two round trips.
  std::unique_ptr<pqxx::transaction_base> txn;
  if (simple)
    txn = std::make_unique<pqxx::nontransaction>(*conn_);
  else
    txn = std::make_unique<pqxx::work>(*conn_);

  std::map<pair_key, known_conversation> learned; // (ws, key): cached after commit
  if (!all_known) {
    // 1. A customer known only by a business-scoped id is looked up under
    //    the phone it was linked to.
    json_rows bsuid_lookup;
    json_rows bsuid_links;
    std::set<pair_key> linked;
    for (const auto& r : events) {
      if (!needs_conversation(r.ev.kind) || r.ev.contact_bsuid.empty())
        continue;
      if (r.ev.contact_phone.empty())
        bsuid_lookup.row().field("workspace_id", r.workspace_id).field("bsuid", r.ev.contact_bsuid);
      else if (linked.emplace(r.workspace_id, r.ev.contact_phone).second)
        bsuid_links.row()
          .field("workspace_id", r.workspace_id)
          .field("phone", r.ev.contact_phone)
          .field("bsuid_key", "bsuid:" + r.ev.contact_bsuid);
    }
    if (!bsuid_links.empty())
      txn->exec_prepared(link_bsuid_contacts_stmt, bsuid_links.str());
    if (!bsuid_lookup.empty()) {
      std::map<pair_key, std::string> phone_of;
      for (const auto& row : txn->exec_prepared(find_contacts_by_bsuid_stmt, bsuid_lookup.str())) {
        auto phone = row[2].as<std::string>();
        auto& slot = phone_of[{row[0].as<std::string>(), row[1].as<std::string>()}];
        // A real phone beats the placeholder key.
        if (slot.empty() || slot.compare(0, 6, "bsuid:") == 0)
          slot = phone;
      }
      for (size_t i = 0; i < events.size(); ++i) {
        const auto& r = events[i];
        if (needs_conversation(r.ev.kind) && r.ev.contact_phone.empty()
            && !r.ev.contact_bsuid.empty()) {
          auto found = phone_of.find({r.workspace_id, r.ev.contact_bsuid});
          if (found != phone_of.end())
            keys[i] = found->second;
        }
      }
    }

    // 2. Contacts, then conversations, each upserted once per batch.
    std::map<pair_key, contact_row> contacts;
    for (size_t i = 0; i < events.size(); ++i) {
      const auto& r = events[i];
      if (!needs_conversation(r.ev.kind) || known[i] != nullptr)
        continue;
      auto& c = contacts[{r.workspace_id, keys[i]}];
      if (c.name.empty())
        c.name = r.ev.contact_name;
      if (c.bsuid.empty())
        c.bsuid = r.ev.contact_bsuid;
    }
    if (!contacts.empty()) {
      json_rows upsert;
      json_rows lookup;
      for (const auto& [key, c] : contacts) {
        upsert.row()
          .field("workspace_id", key.first)
          .field("phone", key.second)
          .field("name", c.name)
          .field("bsuid", c.bsuid);
        lookup.row().field("workspace_id", key.first).field("phone", key.second);
      }
      txn->exec_prepared(upsert_contacts_stmt, upsert.str());
      std::map<pair_key, std::string> key_by_contact; // (ws, contact id) -> key
      json_rows conversations;
      for (const auto& row : txn->exec_prepared(select_contacts_stmt, lookup.str())) {
        pair_key key{row[1].as<std::string>(), row[2].as<std::string>()};
        auto id = row[0].as<std::string>();
        key_by_contact[{key.first, id}] = key.second;
        auto& entry = learned[key];
        entry.contact_id = id;
        entry.named = row[3].as<bool>();
        conversations.row().field("workspace_id", key.first).field("contact_id", id);
      }
      auto conversation_rows = conversations.str();
      txn->exec_prepared(insert_conversations_stmt, conversation_rows);
      for (const auto& row : txn->exec_prepared(select_conversations_stmt, conversation_rows)) {
        auto ws = row[1].as<std::string>();
        auto found = key_by_contact.find({ws, row[2].as<std::string>()});
        if (found == key_by_contact.end())
          continue;
        learned[{ws, found->second}].conversation_id = row[0].as<std::string>();
      }
    }
  }
  auto conversation_of = [&](size_t i) -> const std::string& {
    if (known[i] != nullptr)
      return known[i]->conversation_id;
    auto found = learned.find({events[i].workspace_id, keys[i]});
    if (found == learned.end() || found->second.conversation_id.empty())
      throw std::runtime_error("conversation missing after upsert");
    return found->second.conversation_id;
  };

  // 3. Messages with their conversations' inbox metadata: the first
  //    occurrence of an id in the batch is written, later ones duplicate it.
  std::map<pair_key, size_t> first_of;
  json_rows messages;
  std::set<std::string> closing;
  for (size_t i = 0; i < events.size(); ++i) {
    const auto& r = events[i];
    if (!needs_conversation(r.ev.kind))
      continue;
    const auto& conversation_id = conversation_of(i);
    if (r.ev.kind == event_kind::conversation_ended)
      closing.insert(conversation_id);
    if (!is_message(r.ev.kind))
      continue;
    if (!first_of.emplace(pair_key{r.workspace_id, r.ev.message_id}, i).second) {
      result.outcomes[i] = write_outcome::duplicate;
      continue;
    }
    messages.row()
      .field("conversation_id", conversation_id)
      .field("workspace_id", r.workspace_id)
      .field("direction", r.ev.direction)
      .field("sender_type", r.ev.sender_type)
      .field("content", r.ev.content)
      .field("message_type", r.ev.message_type.empty() ? std::string_view{"text"}
                                                       : r.ev.message_type)
      .field("media_url", r.ev.media_url)
      .field("kapso_message_id", r.ev.message_id)
      .raw_field("metadata", r.ev.metadata_json.empty() ? std::string_view{"{}"}
                                                        : r.ev.metadata_json)
      .field("ts", r.ev.timestamp)
      .field("status", r.ev.status)
      .field("preview", r.ev.preview);
  }
  std::set<pair_key> inserted;
  json_rows new_outbound;
  if (!messages.empty())
    for (const auto& row : txn->exec_prepared(insert_messages_stmt, messages.str())) {
      pair_key key{row[0].as<std::string>(), row[1].as<std::string>()};
      if (row[2].as<std::string>() != "inbound")
        new_outbound.row().field("workspace_id", key.first).field("kapso_message_id", key.second);
      inserted.insert(std::move(key));
    }
  for (const auto& [key, i] : first_of)
    if (inserted.count(key) == 0)
      result.outcomes[i] = write_outcome::duplicate;
  if (!closing.empty())
    txn->exec_prepared(close_conversations_stmt, json_string_array(closing));

  // 4. Statuses: the highest of each message's statuses in this batch is
  //    applied if it moves the message forward, or kept for later.
  std::map<pair_key, size_t> best_status;
  for (size_t i = 0; i < events.size(); ++i) {
    const auto& r = events[i];
    if (r.ev.kind != event_kind::message_status)
      continue;
    auto [it, added] = best_status.emplace(pair_key{r.workspace_id, r.ev.message_id}, i);
    if (!added && status_advances(events[it->second].ev.status, r.ev.status))
      it->second = i;
  }
  if (!best_status.empty()) {
    json_rows statuses;
    for (const auto& [key, i] : best_status) {
      add_status_row(statuses, key, events[i].ev);
    }
    std::set<pair_key> stale;
    std::set<pair_key> missing;
    for (const auto& row : txn->exec_prepared(advance_statuses_stmt, statuses.str())) {
      pair_key key{row[0].as<std::string>(), row[1].as<std::string>()};
      bool updated = row[2].as<bool>();
      bool found = row[3].as<bool>();
      if (found && !updated)
        stale.insert(key);
      else if (!found)
        missing.insert(key);
    }
    // Every status of a message not yet seen is kept, not just the highest,
    // so a failed status's error survives whichever arrives first.
    json_rows pending;
    for (size_t i = 0; i < events.size(); ++i) {
      const auto& r = events[i];
      if (r.ev.kind != event_kind::message_status)
        continue;
      pair_key key{r.workspace_id, r.ev.message_id};
      if (stale.count(key) != 0) {
        result.outcomes[i] = write_outcome::duplicate;
      } else if (missing.count(key) != 0) {
        add_status_row(pending, key, r.ev);
      }
    }
    if (!pending.empty())
      txn->exec_prepared(insert_pending_statuses_stmt, pending.str());
    result.pending.assign(missing.begin(), missing.end());
  }

  // 5. Statuses that arrived before these new messages.
  if (!new_outbound.empty())
    txn->exec_prepared(apply_pending_statuses_stmt, new_outbound.str());

  // 6. Edits, deletions, number and identity changes (persistence/lifecycle.hpp).
  //    A contact a number change moved must not be served from the id cache.
  auto changes = lifecycle::write_batch(*txn, waiting_, events, keys, inserted, result.outcomes);
  for (const auto& key : changes.moved_contacts) {
    learned.erase(key);
    known_.erase(key.first + '\n' + key.second);
  }
  result.pending.insert(result.pending.end(), changes.waiting.begin(), changes.waiting.end());

  if (auto work = dynamic_cast<pqxx::work*>(txn.get()))
    work->commit();
  txn.reset();

  // Only committed ids are worth remembering.
  // Past the bound, drop an arbitrary tenth rather than everything, so a
  // large working set keeps most of its hits.
  if (known_.size() + learned.size() > max_known_conversations) {
    auto keep = max_known_conversations - max_known_conversations / 10;
    while (known_.size() > keep)
      known_.erase(known_.begin());
  }
  for (auto& [key, entry] : learned)
    if (!entry.conversation_id.empty())
      known_[key.first + '\n' + key.second] = std::move(entry);
  return result;
}

void inbox_store::apply_pending(const std::vector<message_ref>& refs) {
  if (refs.empty())
    return;
  ensure_connected();
  json_rows rows;
  for (const auto& [ws, id] : refs)
    rows.row().field("workspace_id", ws).field("kapso_message_id", id);
  pqxx::work txn{*conn_};
  txn.exec_prepared(apply_pending_statuses_stmt, rows.str());
  lifecycle::apply_waiting(txn, waiting_, refs);
  txn.commit();
}

void inbox_store::sweep_pending() {
  ensure_connected();
  pqxx::work txn{*conn_};
  txn.exec(sql::apply_all_pending_statuses);
  lifecycle::sweep(txn);
  txn.commit();
}

std::vector<inbox_store::workspace_row>
inbox_store::find_workspaces(const std::vector<std::string>& phone_ids) {
  ensure_connected();
  std::vector<workspace_row> found;
  std::set<std::string> seen;
  pqxx::read_transaction txn{*conn_};
  for (const auto& row : txn.exec_prepared(find_workspaces_stmt, json_string_array(phone_ids))) {
    workspace_row ws{row[0].as<std::string>(), row[1].as<std::string>(),
                     row[2].as<std::string>()};
    // Several workspaces on one number: the oldest owns it.
    if (seen.insert(ws.phone_number_id).second)
      found.push_back(std::move(ws));
  }
  return found;
}

bool inbox_store::schema_current() {
  ensure_connected();
  return schema_is_current(*conn_);
}

std::vector<std::string> inbox_store::migrate() {
  ensure_connected();
  return apply_migrations(*conn_);
}

std::string inbox_store::register_workspace(const std::string& name,
                                            const std::string& slug,
                                            const std::string& phone_number_id,
                                            const std::string& secret) {
  ensure_connected();
  pqxx::work txn{*conn_};
  auto row = txn.exec_params1(sql::register_workspace, name, slug, phone_number_id, secret);
  txn.commit();
  return row[0].as<std::string>();
}

} // namespace kapso
