// The batch write: contacts, conversations, messages, statuses, inbox
// metadata, edits, deletions and account changes — one statement per step,
// all of them sent as one pipeline: one transaction, one network round trip.
// Three exceptions: a customer known only by a business-scoped id is looked
// up first (a round trip more); messages of conversations that do not exist
// yet take a second pipeline (write_known_first); a batch with lifecycle
// work adds BEGIN and COMMIT around its pipeline, and a round trip per round
// of contacts that number changes move.
#include "persistence/store.hpp"

#include <map>
#include <set>

#include "domain/contact_key.hpp"
#include "persistence/batch_plan.hpp"
#include "persistence/migrations.hpp"
#include "persistence/pg_array.hpp"
#include "persistence/statements.hpp"

namespace kapso {

namespace {

using sql::statement;
using pair_key = std::pair<std::string, std::string>;

pair_key key_of(std::string_view workspace_id, std::string_view id) {
  return {std::string{workspace_id}, std::string{id}};
}

// -- the steps: each adds its statement to the pipeline ---------------------------

std::vector<std::string_view> resolve_bsuid_keys(pg_session& session,
                                                 const std::vector<batch_entry>& entries,
                                                 std::vector<std::string>& storage,
                                                 pg_deadline deadline) {
  std::vector<std::string_view> keys(entries.size());
  for (size_t i = 0; i < entries.size(); ++i)
    keys[i] = entries[i].ev->contact_key;
  auto lookups = bsuid_only_entries(entries);
  if (lookups.empty())
    return keys;
  // A customer known only by a business-scoped id is found again under the
  // phone it was linked to: a look-up before the batch.
  pg_array ws{pg_type::uuid};
  pg_array bsuid{pg_type::text};
  for (auto i : lookups) {
    add_own_uuid(ws, entries[i].workspace_id);
    bsuid.add_text(entries[i].ev->contact_bsuid);
  }
  pg_pipeline lookup;
  lookup.add(sql::name_of(statement::find_contacts_by_bsuid), take_columns({&ws, &bsuid}));
  auto rows = std::move(session.run(lookup, deadline).front());
  std::map<pair_key, std::string> phone_of;
  for (size_t r = 0; r < rows.size(); ++r) {
    auto& slot = phone_of[key_of(rows.text(r, 0), rows.text(r, 1))];
    // A real phone beats the placeholder key.
    if (slot.empty() || is_bsuid_key(slot))
      slot = std::string{rows.text(r, 2)};
  }
  storage.reserve(lookups.size());
  for (auto i : lookups) {
    auto found = phone_of.find(key_of(entries[i].workspace_id, entries[i].ev->contact_bsuid));
    if (found != phone_of.end()) {
      storage.push_back(found->second);
      keys[i] = storage.back();
    }
  }
  return keys;
}

void add_bsuid_links(pg_pipeline& pipeline, const batch_plan& plan) {
  if (plan.bsuid_links.empty())
    return;
  pg_array ws{pg_type::uuid};
  pg_array phone{pg_type::text};
  pg_array bsuid_key{pg_type::text};
  for (const auto& link : plan.bsuid_links) {
    add_own_uuid(ws, link.workspace_id);
    phone.add_text(link.phone);
    bsuid_key.add_text(link.bsuid_key);
  }
  pipeline.add(sql::name_of(statement::link_bsuid_contacts),
               take_columns({&ws, &phone, &bsuid_key}));
}

void add_contacts_and_conversations(pg_pipeline& pipeline, const batch_plan& plan) {
  if (plan.contacts.empty())
    return;
  pg_array ws{pg_type::uuid};
  pg_array phone{pg_type::text};
  pg_array name{pg_type::text};
  pg_array bsuid{pg_type::text};
  pg_array conv_ws{pg_type::uuid};
  pg_array conv_phone{pg_type::text};
  for (const auto& c : plan.contacts) {
    add_own_uuid(ws, c.workspace_id);
    phone.add_text(c.key);
    name.add_text_or_null(c.name);
    bsuid.add_text_or_null(c.bsuid);
    add_own_uuid(conv_ws, c.workspace_id);
    conv_phone.add_text(c.key);
  }
  pipeline.add(sql::name_of(statement::upsert_contacts),
               take_columns({&ws, &phone, &name, &bsuid}));
  pipeline.add(sql::name_of(statement::insert_conversations),
               take_columns({&conv_ws, &conv_phone}));
}

// The messages `which` (indices into entries) with their columns; for
// insert_known_messages also the contact names that fill empty ones.
std::optional<size_t> add_messages(pg_pipeline& pipeline, statement s,
                                   const std::vector<size_t>& which,
                                   const std::vector<batch_entry>& entries,
                                   const std::vector<std::string_view>& keys) {
  if (which.empty())
    return std::nullopt;
  // Each column's buffer grows once: its size is known before it is built.
  auto bytes = [&](auto field) {
    size_t n = 0;
    for (auto i : which)
      n += 5 + field(*entries[i].ev).size();
    return n;
  };
  auto fixed = [&](size_t size) { return which.size() * (4 + size); };
  pg_array ws{pg_type::uuid, fixed(16)};
  pg_array phone{pg_type::text, bytes([](const event& ev) -> const std::string& {
                   return ev.contact_key;
                 })};
  pg_array direction{pg_type::text, fixed(8)};
  pg_array sender{pg_type::text, fixed(7)};
  pg_array content{pg_type::text, bytes([](const event& ev) -> const std::string& {
                     return ev.content;
                   })};
  pg_array type{pg_type::text, fixed(8)};
  pg_array media{pg_type::text, bytes([](const event& ev) -> const std::string& {
                   return ev.media_url;
                 })};
  pg_array id{pg_type::text, bytes([](const event& ev) -> const std::string& {
                return ev.message_id;
              })};
  pg_array metadata{pg_type::jsonb, bytes([](const event& ev) -> const std::string& {
                      return ev.metadata_json;
                    })};
  pg_array ts{pg_type::int8, fixed(8)};
  pg_array status{pg_type::text, fixed(9)};
  pg_array preview{pg_type::text, bytes([](const event& ev) -> const std::string& {
                     return ev.preview;
                   })};
  bool with_names = s == statement::insert_known_messages;
  pg_array name{pg_type::text, with_names ? bytes([](const event& ev) -> const std::string& {
                                             return ev.contact_name;
                                           })
                                         : 0};
  for (auto i : which) {
    const auto& e = entries[i];
    const auto& ev = *e.ev;
    add_own_uuid(ws, e.workspace_id);
    phone.add_text(keys[i]);
    direction.add_text(ev.direction);
    sender.add_text(ev.sender_type);
    content.add_text_or_null(ev.content);
    type.add_text(ev.message_type.empty() ? std::string_view{"text"} : ev.message_type);
    media.add_text_or_null(ev.media_url);
    id.add_text(ev.message_id);
    metadata.add_jsonb(ev.metadata_json.empty() ? std::string_view{"{}"} : ev.metadata_json);
    ts.add_int8(e.timestamp);
    status.add_text_or_null(ev.status);
    preview.add_text(ev.preview);
    if (with_names)
      name.add_text_or_null(ev.contact_name);
  }
  auto params = take_columns({&ws, &phone, &direction, &sender, &content, &type, &media, &id,
                              &metadata, &ts, &status, &preview});
  if (with_names)
    params.push_back(std::move(name).take());
  return pipeline.add(sql::name_of(s), std::move(params));
}

void add_closings(pg_pipeline& pipeline, const batch_plan& plan,
                  const std::vector<batch_entry>& entries,
                  const std::vector<std::string_view>& keys) {
  if (plan.closings.empty())
    return;
  pg_array ws{pg_type::uuid};
  pg_array phone{pg_type::text};
  for (auto i : plan.closings) {
    add_own_uuid(ws, entries[i].workspace_id);
    phone.add_text(keys[i]);
  }
  pipeline.add(sql::name_of(statement::close_conversations), take_columns({&ws, &phone}));
}

std::optional<size_t> add_statuses(pg_pipeline& pipeline, const batch_plan& plan,
                                   const std::vector<batch_entry>& entries) {
  if (plan.statuses.empty())
    return std::nullopt;
  pg_array ws{pg_type::uuid};
  pg_array id{pg_type::text};
  pg_array status{pg_type::text};
  pg_array error{pg_type::jsonb};
  for (auto i : plan.statuses) {
    const auto& ev = *entries[i].ev;
    add_own_uuid(ws, entries[i].workspace_id);
    id.add_text(ev.message_id);
    status.add_text(ev.status);
    error.add_jsonb(ev.status_error_json);
  }
  return pipeline.add(sql::name_of(statement::write_statuses),
                      take_columns({&ws, &id, &status, &error}));
}

// Statuses that arrived before these outbound messages are applied in the
// same transaction as the messages.
void add_pending_for_outbound(pg_pipeline& pipeline, const std::vector<size_t>& outbound,
                              const std::vector<batch_entry>& entries) {
  if (outbound.empty())
    return;
  pg_array ws{pg_type::uuid};
  pg_array id{pg_type::text};
  for (auto i : outbound) {
    add_own_uuid(ws, entries[i].workspace_id);
    id.add_text(entries[i].ev->message_id);
  }
  pipeline.add(sql::name_of(statement::apply_pending_statuses), take_columns({&ws, &id}));
}

// -- reading the answers -------------------------------------------------------------

// Marks the messages `which` that were not inserted as duplicates (rows come
// back by their place in the statement's arrays); returns the places in
// `which` of those whose conversation was not found.
std::vector<size_t> read_messages(const pg_rows& rows, const std::vector<size_t>& which,
                                  batch_result& result) {
  std::vector<char> state(which.size(), 0); // 0 not inserted, 1 inserted, 2 unresolved
  for (size_t r = 0; r < rows.size(); ++r) {
    auto n = static_cast<size_t>(rows.integer(r, 0));
    if (n < 1 || n > which.size())
      throw db_error({}, "insert_messages answered a row it was not given", false);
    state[n - 1] = rows.boolean(r, 1) ? 1 : 2;
  }
  std::vector<size_t> unresolved;
  for (size_t k = 0; k < which.size(); ++k) {
    auto i = which[k];
    if (state[k] == 0)
      result.outcomes[i] = write_outcome::duplicate;
    else if (state[k] == 2)
      unresolved.push_back(k);
  }
  return unresolved;
}

// After the upserts a conversation can only be missing if another
// application deleted it between the steps: the attempt is retried (the
// upserts create it again), or the event waits.
void require_resolved(const std::vector<size_t>& unresolved) {
  if (!unresolved.empty())
    throw db_error("23503", "a conversation vanished while its batch was written", false);
}

// Messages and statuses only, every customer known by a phone (or a key of
// its own, no identity to link): the batch can try the statement for
// existing conversations first.
bool fits_known_path(const std::vector<batch_entry>& entries) {
  for (const auto& e : entries) {
    if (!is_message_or_status(e.ev->kind))
      return false;
    if (is_message(e.ev->kind) && !e.ev->contact_bsuid.empty())
      return false;
  }
  return true;
}

void read_statuses(const pg_rows& rows, const batch_plan& plan,
                   const std::vector<batch_entry>& entries, batch_result& result) {
  std::set<pair_key> stale;
  for (size_t r = 0; r < rows.size(); ++r) {
    bool advanced = rows.boolean(r, 2);
    bool found = rows.boolean(r, 3);
    auto key = key_of(rows.text(r, 0), rows.text(r, 1));
    if (found && !advanced)
      stale.insert(std::move(key));
    else if (!found)
      result.pending.push_back(std::move(key));
  }
  for (auto i : plan.statuses)
    if (stale.count(key_of(entries[i].workspace_id, entries[i].ev->message_id)) != 0)
      result.outcomes[i] = write_outcome::duplicate;
}

pg_session_options session_options(std::string url, std::chrono::milliseconds statement_timeout,
                                   std::chrono::milliseconds connect_timeout) {
  pg_session_options options;
  options.conninfo = std::move(url);
  options.statement_timeout = statement_timeout;
  options.connect_timeout = connect_timeout;
  return options;
}

} // namespace

failure_kind classify_sqlstate(const std::string& state) {
  if (state.size() != 5)
    return failure_kind::unavailable;
  // Deadlocks and serialization failures, and a unique violation: a
  // concurrent writer took the key between our check and our write; the
  // next attempt sees its row.
  if (state == "40001" || state == "40P01" || state == "23505")
    return failure_kind::conflict;
  if (state == "23503")
    return failure_kind::stale_reference;
  // 22: data exception (a value that does not fit, invalid text, bad
  // timestamp...); 23: integrity constraint violations on the event's values
  // (check, not null, unique outside our own ON CONFLICT keys); 54: a value
  // too large for an index or a limit. The classes below are unexplained;
  // everything else — 08 connection, 25006 read-only transaction, 42
  // privileges / undefined objects, 53 resources (disk full), 55 lock not
  // available, 57 shutdown or statement timeout, 58 I/O errors — is about
  // the database, not the event.
  auto cls = state.substr(0, 2);
  if (cls == "22" || cls == "23" || cls == "54")
    return failure_kind::bad_data;
  // A trigger's or routine's exception (09, 27, 2F, 38, 39, P0: RAISE), a
  // WITH CHECK OPTION (44), a batch that touches a row twice (21), an
  // internal error (XX: a corrupt page or index entry, a trigger raising
  // it): one event may cause them while the others are stored. A list of
  // what may be the event's doing, not of what is not: a class PostgreSQL
  // adds later counts as the database's, which never quarantines anything.
  static constexpr std::string_view event_classes[] = {"09", "21", "27", "2F", "38",
                                                       "39", "44", "P0", "XX"};
  for (auto c : event_classes)
    if (cls == c)
      return failure_kind::unexplained;
  return failure_kind::unavailable;
}

failure_kind classify_failure(const std::exception& e) {
  if (auto failure = dynamic_cast<const db_error*>(&e)) {
    if (failure->connection_lost())
      return failure_kind::unavailable;
    return classify_sqlstate(failure->sqlstate());
  }
  // Anything that is not an answer from the database (a bug of ours, an
  // allocation failure) must not turn an event into "ignored"; nor may it
  // stop the writer for good when one event causes it.
  return failure_kind::unexplained;
}

inbox_store::inbox_store(std::string url, std::chrono::milliseconds statement_timeout,
                         std::chrono::milliseconds connect_timeout)
  : session_(session_options(std::move(url), statement_timeout, connect_timeout)) {
  for (size_t i = 0; i < sql::statement_count; ++i) {
    auto s = static_cast<statement>(i);
    session_.add_prepared(sql::name_of(s), sql::text_of(s));
  }
}

inbox_store::~inbox_store() = default;

void inbox_store::ensure_connected(pg_deadline deadline) {
  connect_before(deadline);
}

pg_deadline inbox_store::connect_before(pg_deadline deadline) {
  return session_.connect_within_budget(deadline);
}

void inbox_store::disconnect() noexcept {
  session_.close();
}

batch_result inbox_store::commit_batch(const std::vector<batch_entry>& entries,
                                       pg_deadline deadline) {
  deadline = connect_before(deadline);
  if (!waiting_.loaded())
    lifecycle::load_waiting(session_, deadline, waiting_);
  std::vector<std::string> key_storage;
  auto keys = resolve_bsuid_keys(session_, entries, key_storage, deadline);
  auto plan = plan_batch(entries, keys);
  auto changes = lifecycle::plan_lifecycle(entries, keys, waiting_);
  batch_result result;
  result.outcomes.assign(entries.size(), write_outcome::accepted);
  if (fits_known_path(entries) && changes.empty())
    write_known_first(entries, keys, plan, deadline, result);
  else
    write_everything(entries, keys, plan, changes, deadline, result);
  // Later copies of a message in the batch share its fate: stored once,
  // they are duplicates of it.
  for (size_t i = 0; i < entries.size(); ++i)
    if (plan.outcome_of[i] != i)
      result.outcomes[i] = write_outcome::duplicate;
  return result;
}

// Every step in one pipeline: the upserts of contacts and conversations,
// then messages, closings, statuses, and the edits, deletions, number and
// identity changes after the messages they may apply to. A batch with such
// changes runs inside an explicit transaction: moving a contact takes a
// round trip after the answers are read, and what the changes count as
// holds only if the messages are stored with them.
void inbox_store::write_everything(const std::vector<batch_entry>& entries,
                                   const std::vector<std::string_view>& keys,
                                   const batch_plan& plan,
                                   const lifecycle::lifecycle_plan& changes,
                                   pg_deadline deadline, batch_result& result) {
  pg_pipeline pipeline;
  add_bsuid_links(pipeline, plan);
  add_contacts_and_conversations(pipeline, plan);
  auto messages = add_messages(pipeline, statement::insert_messages, plan.messages, entries, keys);
  add_closings(pipeline, plan, entries, keys);
  auto statuses = add_statuses(pipeline, plan, entries);
  add_pending_for_outbound(pipeline, plan.outbound, entries);
  auto lifecycle_slots = lifecycle::add_batch(pipeline, changes, entries, keys);

  std::optional<pg_transaction> transaction;
  if (!changes.empty())
    transaction.emplace(session_, deadline);
  auto answers = pipeline.empty() ? std::vector<pg_rows>{} : session_.run(pipeline, deadline);
  if (messages)
    require_resolved(read_messages(answers[*messages], plan.messages, result));
  if (statuses)
    read_statuses(answers[*statuses], plan, entries, result);
  if (!transaction)
    return;
  auto settled = lifecycle::finish_batch(session_, deadline, waiting_, changes, entries,
                                         lifecycle_slots, answers);
  for (const auto& [i, outcome] : settled.outcomes)
    result.outcomes[i] = outcome;
  result.pending.insert(result.pending.end(), settled.waiting.begin(), settled.waiting.end());
  transaction->commit();
}

// The common case: the messages of existing conversations (and the
// statuses) in one statement each, one pipeline; only the messages whose
// conversation does not exist yet take the upserts, in a second pipeline.
// The two commit separately: every write is idempotent, and the batch is
// answered only after both.
void inbox_store::write_known_first(const std::vector<batch_entry>& entries,
                                    const std::vector<std::string_view>& keys,
                                    const batch_plan& plan, pg_deadline deadline,
                                    batch_result& result) {
  pg_pipeline known;
  auto messages =
    add_messages(known, statement::insert_known_messages, plan.messages, entries, keys);
  auto statuses = add_statuses(known, plan, entries);
  add_pending_for_outbound(known, plan.outbound, entries);
  auto answers = session_.run(known, deadline);
  std::vector<size_t> unresolved;
  if (messages)
    unresolved = read_messages(answers[*messages], plan.messages, result);
  if (statuses)
    read_statuses(answers[*statuses], plan, entries, result);
  if (unresolved.empty())
    return;

  std::vector<batch_entry> rest;
  std::vector<std::string_view> rest_keys;
  std::vector<size_t> origin; // rest index -> entry index
  for (auto k : unresolved) {
    auto i = plan.messages[k];
    rest.push_back(entries[i]);
    rest_keys.push_back(keys[i]);
    origin.push_back(i);
  }
  auto rest_plan = plan_batch(rest, rest_keys);
  pg_pipeline created;
  add_contacts_and_conversations(created, rest_plan);
  auto rest_messages =
    add_messages(created, statement::insert_messages, rest_plan.messages, rest, rest_keys);
  add_pending_for_outbound(created, rest_plan.outbound, rest);
  auto created_answers = session_.run(created, deadline);
  batch_result rest_result;
  rest_result.outcomes.assign(rest.size(), write_outcome::accepted);
  if (rest_messages)
    require_resolved(
      read_messages(created_answers[*rest_messages], rest_plan.messages, rest_result));
  for (size_t k = 0; k < rest.size(); ++k)
    result.outcomes[origin[k]] = rest_result.outcomes[k];
}

void inbox_store::apply_pending(const std::vector<message_ref>& refs, pg_deadline deadline) {
  if (refs.empty())
    return;
  pg_array ws{pg_type::uuid};
  pg_array id{pg_type::text};
  for (const auto& [workspace, message] : refs) {
    add_own_uuid(ws, workspace);
    id.add_text(message);
  }
  pg_pipeline pipeline;
  pipeline.add(sql::name_of(statement::apply_pending_statuses), take_columns({&ws, &id}));
  deadline = connect_before(deadline);
  session_.run(pipeline, deadline);
  lifecycle::apply_waiting(session_, deadline, waiting_, refs);
}

void inbox_store::sweep_pending(pg_deadline deadline) {
  pg_pipeline pipeline;
  pipeline.add(sql::name_of(statement::apply_all_pending_statuses), {});
  deadline = connect_before(deadline);
  session_.run(pipeline, deadline);
  lifecycle::sweep(session_, deadline, waiting_);
}

std::vector<inbox_store::workspace_row>
inbox_store::find_workspaces(const std::vector<std::string>& phone_ids, pg_deadline deadline) {
  pg_array ids{pg_type::text};
  for (const auto& id : phone_ids)
    ids.add_text(id);
  pg_pipeline pipeline;
  pipeline.add(sql::name_of(statement::find_workspaces), take_columns({&ids}));
  deadline = connect_before(deadline);
  auto rows = std::move(session_.run(pipeline, deadline).front());
  std::vector<workspace_row> found;
  std::set<std::string> seen;
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
  return schema_is_current(session_, connect_before(deadline));
}

std::string register_workspace(const std::string& url, const workspace_registration& ws,
                               std::chrono::milliseconds connect_timeout,
                               std::chrono::milliseconds statement_timeout) {
  pg_session session{session_options(url, statement_timeout, connect_timeout)};
  auto deadline = session.connect_within_budget(pg_clock::now() + statement_timeout);
  auto rows = session.exec_params(sql::register_workspace,
                                  {ws.name, ws.slug, ws.phone_number_id, ws.secret}, deadline);
  return std::string{rows.text(0, 0)};
}

} // namespace kapso
