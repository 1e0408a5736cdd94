// The batch write: contacts, conversations, messages, statuses, inbox
// metadata — a handful of set-based statements in one transaction.
#include "persistence/store.hpp"

#include <pqxx/pqxx>

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

failure_kind classify_sqlstate(const std::string& state) {
  if (state.size() != 5)
    return failure_kind::unavailable;
  if (state == "40001" || state == "40P01")
    return failure_kind::conflict;
  if (state == "23503")
    return failure_kind::stale_reference;
  // 22: data exception (a value that does not fit, invalid text, bad
  // timestamp...); 23: integrity constraint violations on the event's values
  // (check, not null, unique outside our own ON CONFLICT keys); 54: a value
  // too large for an index or a limit. Everything else — 08 connection,
  // 25006 read-only transaction, 42 privileges / undefined objects, 53
  // resources (disk full), 55 lock not available, 57 shutdown or statement
  // timeout, 58 / XX system errors — is about the database, not the event.
  auto cls = state.substr(0, 2);
  if (cls == "22" || cls == "23" || cls == "54")
    return failure_kind::bad_data;
  return failure_kind::unavailable;
}

failure_kind classify_failure(const std::exception& e) {
  if (auto failure = dynamic_cast<const db_error*>(&e)) {
    if (failure->connection_lost())
      return failure_kind::unavailable;
    return classify_sqlstate(failure->sqlstate());
  }
  // Anything that is not an answer from the database (a bug of ours, an
  // allocation failure) must not turn an event into "ignored".
  return failure_kind::unavailable;
}

// BEGIN at construction, ROLLBACK unless commit() was called. A session whose
// transaction cannot be rolled back in time is closed (the server then
// aborts the transaction itself).
class inbox_store::transaction {
public:
  transaction(pg_session& session, pg_deadline deadline, bool atomic)
    : session_(session), deadline_(deadline), open_(atomic) {
    if (open_)
      session_.exec("BEGIN", deadline_);
  }

  ~transaction() {
    if (!open_ || !session_.connected())
      return;
    try {
      session_.exec("ROLLBACK", std::max(deadline_, pg_clock::now() + rollback_grace));
    } catch (const std::exception&) {
      session_.close();
    }
  }

  transaction(const transaction&) = delete;
  transaction& operator=(const transaction&) = delete;

  pg_rows run(const char* statement, std::string_view rows) {
    return session_.exec_prepared(statement, {pg_param{rows}}, deadline_);
  }

  void commit() {
    if (!open_)
      return;
    session_.exec("COMMIT", deadline_);
    open_ = false;
  }

private:
  static constexpr auto rollback_grace = std::chrono::milliseconds(200);
  pg_session& session_;
  pg_deadline deadline_;
  bool open_;
};

namespace {

pg_session_options session_options(std::string url, std::chrono::milliseconds statement_timeout) {
  pg_session_options options;
  options.conninfo = std::move(url);
  options.statement_timeout = statement_timeout;
  return options;
}

} // namespace

inbox_store::inbox_store(std::string url, std::chrono::milliseconds statement_timeout)
  : session_(session_options(std::move(url), statement_timeout)) {
  const std::pair<const char*, const char*> statements[] = {
    {find_contacts_by_bsuid_stmt, sql::find_contacts_by_bsuid},
    {link_bsuid_contacts_stmt, sql::link_bsuid_contacts},
    {upsert_contacts_stmt, sql::upsert_contacts},
    {select_contacts_stmt, sql::select_contacts},
    {insert_conversations_stmt, sql::insert_conversations},
    {select_conversations_stmt, sql::select_conversations},
    {insert_messages_stmt, sql::insert_messages},
    {close_conversations_stmt, sql::close_conversations},
    {advance_statuses_stmt, sql::advance_statuses},
    {insert_pending_statuses_stmt, sql::insert_pending_statuses},
    {apply_pending_statuses_stmt, sql::apply_pending_statuses},
    {find_workspaces_stmt, sql::find_workspaces},
  };
  for (const auto& [name, text] : statements)
    session_.add_prepared(name, text);
}

inbox_store::~inbox_store() = default;

void inbox_store::ensure_connected(pg_deadline deadline) {
  session_.connect(deadline);
}

void inbox_store::disconnect() noexcept {
  session_.close();
}

batch_result inbox_store::commit_batch(const std::vector<routed_event>& events,
                                       pg_deadline deadline) {
  session_.connect(deadline);
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
  transaction txn{session_, deadline, !simple};

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
      txn.run(link_bsuid_contacts_stmt, bsuid_links.str());
    if (!bsuid_lookup.empty()) {
      std::map<pair_key, std::string> phone_of;
      auto rows = txn.run(find_contacts_by_bsuid_stmt, bsuid_lookup.str());
      for (size_t r = 0; r < rows.size(); ++r) {
        std::string phone{rows.text(r, 2)};
        auto& slot = phone_of[{std::string{rows.text(r, 0)}, std::string{rows.text(r, 1)}}];
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
      txn.run(upsert_contacts_stmt, upsert.str());
      std::map<pair_key, std::string> key_by_contact; // (ws, contact id) -> key
      json_rows conversations;
      auto contact_rows = txn.run(select_contacts_stmt, lookup.str());
      for (size_t r = 0; r < contact_rows.size(); ++r) {
        pair_key key{std::string{contact_rows.text(r, 1)}, std::string{contact_rows.text(r, 2)}};
        std::string id{contact_rows.text(r, 0)};
        key_by_contact[{key.first, id}] = key.second;
        auto& entry = learned[key];
        entry.contact_id = id;
        entry.named = contact_rows.boolean(r, 3);
        conversations.row().field("workspace_id", key.first).field("contact_id", id);
      }
      auto conversation_rows = conversations.str();
      txn.run(insert_conversations_stmt, conversation_rows);
      auto rows = txn.run(select_conversations_stmt, conversation_rows);
      for (size_t r = 0; r < rows.size(); ++r) {
        std::string ws{rows.text(r, 1)};
        auto found = key_by_contact.find({ws, std::string{rows.text(r, 2)}});
        if (found == key_by_contact.end())
          continue;
        learned[{ws, found->second}].conversation_id = std::string{rows.text(r, 0)};
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
  if (!messages.empty()) {
    auto rows = txn.run(insert_messages_stmt, messages.str());
    for (size_t r = 0; r < rows.size(); ++r) {
      pair_key key{std::string{rows.text(r, 0)}, std::string{rows.text(r, 1)}};
      if (rows.text(r, 2) != "inbound")
        new_outbound.row().field("workspace_id", key.first).field("kapso_message_id", key.second);
      inserted.insert(std::move(key));
    }
  }
  for (const auto& [key, i] : first_of)
    if (inserted.count(key) == 0)
      result.outcomes[i] = write_outcome::duplicate;
  if (!closing.empty())
    txn.run(close_conversations_stmt, json_string_array(closing));

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
    auto rows = txn.run(advance_statuses_stmt, statuses.str());
    for (size_t r = 0; r < rows.size(); ++r) {
      pair_key key{std::string{rows.text(r, 0)}, std::string{rows.text(r, 1)}};
      bool updated = rows.boolean(r, 2);
      bool found = rows.boolean(r, 3);
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
      txn.run(insert_pending_statuses_stmt, pending.str());
    result.pending.assign(missing.begin(), missing.end());
  }

  // 5. Statuses that arrived before these new messages.
  if (!new_outbound.empty())
    txn.run(apply_pending_statuses_stmt, new_outbound.str());

  txn.commit();

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

void inbox_store::apply_pending(const std::vector<message_ref>& refs, pg_deadline deadline) {
  if (refs.empty())
    return;
  json_rows rows;
  for (const auto& [ws, id] : refs)
    rows.row().field("workspace_id", ws).field("kapso_message_id", id);
  session_.connect(deadline);
  transaction txn{session_, deadline, true};
  txn.run(apply_pending_statuses_stmt, rows.str());
  txn.commit();
}

void inbox_store::sweep_pending(pg_deadline deadline) {
  session_.connect(deadline);
  session_.exec(std::string{"BEGIN; "} + sql::apply_all_pending_statuses + "; COMMIT", deadline);
}

std::vector<inbox_store::workspace_row>
inbox_store::find_workspaces(const std::vector<std::string>& phone_ids, pg_deadline deadline) {
  std::vector<workspace_row> found;
  std::set<std::string> seen;
  auto rows = session_.exec_prepared(find_workspaces_stmt, {pg_param{json_string_array(phone_ids)}},
                                     deadline);
  for (size_t r = 0; r < rows.size(); ++r) {
    workspace_row ws{std::string{rows.text(r, 0)}, std::string{rows.text(r, 1)},
                     std::string{rows.text(r, 2)}};
    // Several workspaces on one number: the oldest owns it.
    if (seen.insert(ws.phone_number_id).second)
      found.push_back(std::move(ws));
  }
  return found;
}

bool inbox_store::schema_current(pg_deadline deadline) {
  session_.connect(deadline);
  auto exists = session_.exec(sql::migrations_table_exists, deadline);
  if (exists.empty() || exists.is_null(0, 0))
    return false;
  auto rows = session_.exec(sql::select_applied_migrations, deadline);
  std::set<std::string> done;
  for (size_t r = 0; r < rows.size(); ++r)
    done.emplace(rows.text(r, 0));
  for (const auto& m : embedded_migrations())
    if (done.count(m.name) == 0)
      return false;
  return true;
}

std::vector<std::string> migrate_database(const std::string& url) {
  pqxx::connection conn{url};
  return apply_migrations(conn);
}

std::string register_workspace(const std::string& url, const std::string& name,
                               const std::string& slug, const std::string& phone_number_id,
                               const std::string& secret) {
  pqxx::connection conn{url};
  pqxx::work txn{conn};
  auto row = txn.exec_params1(sql::register_workspace, name, slug, phone_number_id, secret);
  txn.commit();
  return row[0].as<std::string>();
}

} // namespace kapso
