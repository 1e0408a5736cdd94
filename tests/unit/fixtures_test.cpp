// The fixture corpus is well-formed and its expectations agree with the
// parser under a small reference model of the inbox rules.
#include "http/payload.hpp"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include <boost/test/unit_test.hpp>

#include "http/preview.hpp"

using namespace kapso;
using nlohmann::json;

namespace {

namespace fs = std::filesystem;

std::vector<fs::path> fixture_files() {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(fs::path{KAPSO_SOURCE_DIR} / "tests/fixtures"))
    if (entry.path().extension() == ".json")
      out.push_back(entry.path());
  std::sort(out.begin(), out.end());
  return out;
}

json load(const fs::path& path) {
  std::ifstream in{path};
  std::stringstream text;
  text << in.rdbuf();
  return json::parse(text.str());
}

std::string lower(std::string text) {
  for (auto& c : text)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

std::string header(const json& headers, const char* name) {
  for (const auto& [key, value] : headers.items())
    if (lower(key) == lower(name))
      return value.get<std::string>();
  return {};
}

bool is_subset(const json& part, const json& whole) {
  if (!part.is_object() || !whole.is_object())
    return part == whole;
  for (const auto& [key, value] : part.items())
    if (!whole.contains(key) || whole[key] != value)
      return false;
  return true;
}

// Every event of a fixture that reaches a known workspace, in order.
struct routed {
  std::string workspace; // fixture key
  event ev;
};

// One customer as the database should end up with: events sharing a phone,
// a BSUID or a key are the same contact; number changes move them.
struct customer {
  std::set<std::string> ids;
  std::string phone; // what contacts.phone holds
  std::string name;
  std::set<std::string> message_ids;
  bool has_conversation = false;
  bool closed = false;
  json previous_phones = json::array();
  json identity = json::object(); // identity_changed_at, identity_hash
};

// A stored message with the edits and deletions that change it.
struct model_message {
  const event* written = nullptr;
  std::vector<const event*> edits;
  std::vector<const event*> revokes;
};

using message_key = std::pair<std::string, std::string>; // (workspace, message id)

std::string iso_time(int64_t seconds) {
  std::time_t t = seconds;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

// A message as stored after its edits and deletions (migration 0003): a
// deletion wins and keeps no text; otherwise the newest edit by (time, id)
// is shown and every older version is listed in metadata.edits.
struct final_message {
  std::string content;
  std::string media_url;
  json metadata;
};

final_message final_state(const model_message& m) {
  final_message out{m.written->content, m.written->media_url,
                    json::parse(m.written->metadata_json)};
  if (!m.revokes.empty()) {
    out.content = "[Message deleted]";
    out.media_url.clear();
    for (auto key : {"edits", "edited_at", "edit_id", "media", "has_media", "location",
                     "contacts", "interactive", "button", "reaction", "order", "template",
                     "transcript", "referral"})
      out.metadata.erase(key);
    out.metadata["deleted_at"] = iso_time(m.revokes.front()->timestamp);
    return out;
  }
  if (m.edits.empty())
    return out;
  auto edits = m.edits;
  std::sort(edits.begin(), edits.end(), [](const event* x, const event* y) {
    return std::make_pair(iso_time(x->timestamp), x->message_id)
           < std::make_pair(iso_time(y->timestamp), y->message_id);
  });
  auto history = json::array();
  std::string shown = out.content;
  for (const auto* edit : edits) {
    history.push_back({{"content", shown.empty() ? json() : json(shown)},
                       {"edited_at", iso_time(edit->timestamp)},
                       {"edit_id", edit->message_id}});
    shown = edit->content;
  }
  const auto* newest = edits.back();
  out.content = shown;
  out.metadata["edits"] = history;
  out.metadata["edited_at"] = iso_time(newest->timestamp);
  out.metadata["edit_id"] = newest->message_id;
  if (!newest->media_url.empty())
    out.media_url = newest->media_url;
  auto newest_metadata = json::parse(newest->metadata_json);
  if (newest_metadata.contains("media"))
    out.metadata["media"] = newest_metadata["media"];
  return out;
}

// The reference inbox of one fixture: customers per workspace, messages.
struct reference {
  std::map<std::string, std::vector<customer>> customers;
  std::map<message_key, model_message> messages;
};

std::set<std::string> identifiers(const event& ev) {
  std::set<std::string> ids{ev.contact_key};
  if (!ev.contact_phone.empty())
    ids.insert(ev.contact_phone);
  if (!ev.contact_bsuid.empty())
    ids.insert("bsuid:" + ev.contact_bsuid);
  return ids;
}

bool makes_conversation(event_kind kind) {
  return kind == event_kind::message_received || kind == event_kind::message_sent
         || kind == event_kind::conversation_created
         || kind == event_kind::conversation_ended;
}

void check_structure(const json& fx) {
  BOOST_TEST(fx.at("name").is_string());
  BOOST_TEST(!fx.at("name").get<std::string>().empty());
  BOOST_TEST(fx.at("description").is_string());
  BOOST_TEST(fx.at("workspaces").is_array());
  std::set<std::string> keys;
  for (const auto& ws : fx.at("workspaces")) {
    keys.insert(ws.at("key").get<std::string>());
    BOOST_TEST(ws.at("phone_number_id").is_string());
    BOOST_TEST((ws.at("secret").is_null() || ws.at("secret").is_string()));
  }
  BOOST_TEST(!fx.at("deliveries").empty());
  for (const auto& d : fx.at("deliveries")) {
    BOOST_TEST(d.at("headers").is_object());
    BOOST_TEST(d.contains("body"));
    auto status = d.at("expect_status").get<int>();
    BOOST_TEST((status == 200 || status == 400));
    if (status == 200)
      for (auto key : {"accepted", "duplicates", "ignored"})
        BOOST_TEST(d.at("expect_counts").at(key).is_number_integer());
  }
  const auto& expect = fx.at("expect");
  for (const auto& row : expect.at("contacts")) {
    BOOST_TEST(keys.count(row.at("workspace").get<std::string>()) == 1u);
    BOOST_TEST(row.at("phone").is_string());
    BOOST_TEST((row.at("name").is_null() || row.at("name").is_string()));
  }
  for (const auto& row : expect.at("conversations")) {
    BOOST_TEST(keys.count(row.at("workspace").get<std::string>()) == 1u);
    for (auto key : {"contact_phone", "status", "unread_count", "last_message_preview",
                     "last_message_at"})
      BOOST_TEST(row.contains(key), key);
  }
  for (const auto& row : expect.at("messages")) {
    BOOST_TEST(keys.count(row.at("workspace").get<std::string>()) == 1u);
    for (auto key : {"kapso_message_id", "direction", "sender_type", "content",
                     "message_type", "media_url", "status", "created_at", "metadata"})
      BOOST_TEST(row.contains(key), key);
  }
}

// Parses every delivery, checks answers and counts, returns routed events.
std::vector<routed> parse_deliveries(const json& fx) {
  std::map<std::string, std::string> workspace_of; // phone_number_id -> key
  for (const auto& ws : fx.at("workspaces"))
    workspace_of[ws.at("phone_number_id").get<std::string>()] = ws.at("key").get<std::string>();
  std::vector<routed> out;
  size_t index = 0;
  for (const auto& d : fx.at("deliveries")) {
    BOOST_TEST_CONTEXT("delivery " << index++) {
      auto event_type = header(d.at("headers"), "X-Webhook-Event");
      auto batch = header(d.at("headers"), "X-Webhook-Batch");
      auto version = header(d.at("headers"), "X-Webhook-Payload-Version");
      delivery_headers headers{event_type, batch, version};
      auto body = d.at("body").dump();
      auto result = parse_delivery(body, headers, parse_options{});
      if (d.at("expect_status") == 400) {
        BOOST_TEST(!result.ok);
        continue;
      }
      BOOST_TEST(result.ok, result.error);
      if (!result.ok)
        continue;
      const auto& counts = d.at("expect_counts");
      auto total = counts.at("accepted").get<size_t>() + counts.at("duplicates").get<size_t>()
                   + counts.at("ignored").get<size_t>();
      BOOST_TEST(total == result.parsed.events.size() + result.parsed.malformed);
      size_t must_ignore = result.parsed.malformed;
      for (const auto& ev : result.parsed.events) {
        auto ws = workspace_of.find(ev.phone_number_id);
        if (ev.kind == event_kind::unknown || ws == workspace_of.end()) {
          ++must_ignore;
          continue;
        }
        out.push_back({ws->second, ev});
      }
      BOOST_TEST(counts.at("ignored").get<size_t>() == must_ignore);
    }
  }
  return out;
}

void add_previous_phone(json& list, const std::string& phone, const std::string& own) {
  if (phone != own && std::find(list.begin(), list.end(), json(phone)) == list.end())
    list.push_back(phone);
}

// Moves the customer who changed number like the server does (plan_move in
// persistence/lifecycle_plan.cpp and the move statements it chooses).
void apply_number_change(std::vector<customer>& customers,
                         const std::map<message_key, model_message>& messages,
                         const std::string& ws, const event& change,
                         const std::vector<const event*>& all_changes) {
  const auto& old_phone = change.contact_key;
  const auto& new_phone = change.new_contact_phone;
  for (const auto* other : all_changes)
    if (other->new_contact_phone == old_phone && other->timestamp >= change.timestamp)
      return; // the customer changed back later
  auto by_phone = [&](const std::string& phone) {
    return std::find_if(customers.begin(), customers.end(),
                        [&](const customer& c) { return c.phone == phone; });
  };
  auto from = by_phone(old_phone);
  if (from == customers.end() || old_phone == new_phone)
    return;
  std::set<std::string> staying;
  for (const auto& id : from->message_ids)
    if (messages.at({ws, id}).written->timestamp > change.timestamp)
      staying.insert(id);
  auto to = by_phone(new_phone);
  if (staying.empty()) {
    if (to == customers.end()) {
      from->phone = new_phone;
      from->ids.insert(new_phone);
      add_previous_phone(from->previous_phones, old_phone, new_phone);
      return;
    }
    // Merged: the older contact stays.
    auto previous = from->previous_phones;
    for (const auto& phone : to->previous_phones)
      add_previous_phone(previous, phone, new_phone);
    add_previous_phone(previous, old_phone, new_phone);
    auto& keep = from < to ? *from : *to;
    auto& gone = from < to ? *to : *from;
    keep.ids.insert(gone.ids.begin(), gone.ids.end());
    keep.message_ids.insert(gone.message_ids.begin(), gone.message_ids.end());
    keep.has_conversation = keep.has_conversation || gone.has_conversation;
    if (keep.name.empty())
      keep.name = gone.name;
    if (keep.identity.empty())
      keep.identity = gone.identity;
    keep.phone = new_phone;
    keep.previous_phones = previous;
    customers.erase(from < to ? to : from);
    return;
  }
  std::set<std::string> moving;
  for (const auto& id : from->message_ids)
    if (staying.count(id) == 0)
      moving.insert(id);
  if (moving.empty())
    return;
  if (to == customers.end()) {
    customers.emplace_back();
    to = customers.end() - 1;
    from = by_phone(old_phone);
    to->phone = new_phone;
    to->ids.insert(new_phone);
  }
  add_previous_phone(to->previous_phones, old_phone, new_phone);
  to->has_conversation = true;
  for (const auto& id : moving) {
    from->message_ids.erase(id);
    to->message_ids.insert(id);
  }
}

// Groups events into customers per workspace: messages and conversation
// events in delivery order, then number changes by time, then identity
// changes — the order in which the server's results do not depend on
// arrival order.
reference reference_inbox(const std::vector<routed>& events) {
  reference ref;
  auto& inbox = ref.customers;
  std::set<message_key> seen_changes;
  std::map<std::string, std::vector<const event*>> number_changes;
  std::vector<const routed*> identities;
  for (const auto& r : events) {
    const auto& [ws, ev] = r;
    if (ev.kind == event_kind::message_edit || ev.kind == event_kind::message_revoke
        || ev.kind == event_kind::contact_number_changed
        || ev.kind == event_kind::contact_identity_changed) {
      if (!seen_changes.emplace(ws, ev.message_id).second)
        continue;
      if (ev.kind == event_kind::contact_number_changed)
        number_changes[ws].push_back(&ev);
      else if (ev.kind == event_kind::contact_identity_changed)
        identities.push_back(&r);
      continue;
    }
    if (!makes_conversation(ev.kind))
      continue;
    auto& customers = inbox[ws];
    auto ids = identifiers(ev);
    auto found = std::find_if(customers.begin(), customers.end(), [&](const customer& c) {
      return std::any_of(ids.begin(), ids.end(),
                         [&](const std::string& id) { return c.ids.count(id) != 0; });
    });
    if (found == customers.end()) {
      customers.emplace_back();
      found = customers.end() - 1;
      found->phone = ev.contact_key;
    }
    auto& c = *found;
    c.ids.insert(ids.begin(), ids.end());
    c.has_conversation = true;
    // A contact first keyed by its BSUID takes the phone once it is known.
    if (!ev.contact_phone.empty() && c.phone.rfind("bsuid:", 0) == 0)
      c.phone = ev.contact_phone;
    if (c.name.empty())
      c.name = ev.contact_name;
    if (ev.kind == event_kind::conversation_ended)
      c.closed = true;
    if (ev.kind != event_kind::message_received && ev.kind != event_kind::message_sent)
      continue;
    if (ref.messages.count({ws, ev.message_id}) != 0)
      continue;
    ref.messages[{ws, ev.message_id}].written = &ev;
    c.message_ids.insert(ev.message_id);
  }
  for (const auto& [ws, ev] : events) {
    if (ev.kind != event_kind::message_edit && ev.kind != event_kind::message_revoke)
      continue;
    auto found = ref.messages.find({ws, ev.original_message_id});
    if (found == ref.messages.end())
      continue;
    auto& list = ev.kind == event_kind::message_edit ? found->second.edits
                                                     : found->second.revokes;
    if (std::none_of(list.begin(), list.end(),
                     [&](const event* e) { return e->message_id == ev.message_id; }))
      list.push_back(&ev);
  }
  for (auto& [ws, changes] : number_changes) {
    auto ordered = changes;
    std::sort(ordered.begin(), ordered.end(), [](const event* x, const event* y) {
      return std::make_pair(x->timestamp, x->message_id)
             < std::make_pair(y->timestamp, y->message_id);
    });
    for (const auto* change : ordered)
      apply_number_change(inbox[ws], ref.messages, ws, *change, changes);
  }
  for (const auto* r : identities) {
    auto& customers = inbox[r->workspace];
    const auto& ev = r->ev;
    auto found = std::find_if(customers.begin(), customers.end(),
                              [&](const customer& c) { return c.ids.count(ev.contact_key) != 0; });
    if (found == customers.end()) {
      customers.emplace_back();
      found = customers.end() - 1;
      found->phone = ev.contact_key;
      found->ids.insert(ev.contact_key);
      found->name = ev.contact_name;
    }
    json noted = {{"identity_changed_at", iso_time(ev.timestamp)},
                  {"identity_hash", ev.identity_hash}};
    auto at = [](const json& x) {
      return std::make_pair(x.value("identity_changed_at", std::string{}),
                            x.value("identity_hash", std::string{}));
    };
    if (at(found->identity) < at(noted))
      found->identity = noted;
  }
  return ref;
}

void check_contacts_and_conversations(const json& fx, const std::vector<routed>& events) {
  auto ref = reference_inbox(events);
  auto& inbox = ref.customers;
  size_t customers = 0;
  size_t conversations = 0;
  for (const auto& [ws, list] : inbox)
    for (const auto& c : list) {
      ++customers;
      conversations += c.has_conversation ? 1 : 0;
    }
  const auto& expect = fx.at("expect");
  BOOST_TEST(expect.at("contacts").size() == customers);
  BOOST_TEST(expect.at("conversations").size() == conversations);
  auto find = [&](const std::string& ws, const std::string& phone) -> const customer* {
    for (const auto& c : inbox[ws])
      if (c.phone == phone)
        return &c;
    return nullptr;
  };
  for (const auto& row : expect.at("contacts")) {
    auto phone = row.at("phone").get<std::string>();
    BOOST_TEST_CONTEXT("contact " << phone) {
      const auto* c = find(row.at("workspace").get<std::string>(), phone);
      BOOST_TEST(c != nullptr);
      if (c == nullptr)
        continue;
      BOOST_TEST(row.at("name") == (c->name.empty() ? json() : json(c->name)));
      auto metadata = c->identity;
      if (!c->previous_phones.empty())
        metadata["previous_phones"] = c->previous_phones;
      if (row.contains("metadata"))
        BOOST_TEST(is_subset(row.at("metadata"), metadata),
                   row.at("metadata").dump() << " not in " << metadata.dump());
      else
        BOOST_TEST(metadata.empty(), "contact metadata not expected: " << metadata.dump());
    }
  }
  for (const auto& row : expect.at("conversations")) {
    auto ws = row.at("workspace").get<std::string>();
    auto phone = row.at("contact_phone").get<std::string>();
    BOOST_TEST_CONTEXT("conversation " << phone) {
      const auto* c = find(ws, phone);
      BOOST_TEST(c != nullptr);
      if (c == nullptr)
        continue;
      BOOST_TEST(c->has_conversation);
      BOOST_TEST(row.at("status") == (c->closed ? "closed" : "open"));
      // Unread: the distinct inbound messages, whatever changed them since.
      size_t unread = 0;
      bool has_last = false;
      int64_t last_at = 0;
      std::string last_preview;
      for (const auto& id : c->message_ids) {
        const auto& m = ref.messages.at({ws, id});
        if (m.written->kind == event_kind::message_received)
          ++unread;
        auto preview = cut_utf8(final_state(m).content);
        auto ts = m.written->timestamp;
        if (!has_last || ts > last_at || (ts == last_at && preview > last_preview)) {
          has_last = true;
          last_at = ts;
          last_preview = preview;
        }
      }
      BOOST_TEST(row.at("unread_count").get<size_t>() == unread);
      BOOST_TEST(row.at("last_message_at") == (has_last ? json(last_at) : json()));
      BOOST_TEST(row.at("last_message_preview") == (has_last ? json(last_preview) : json()));
    }
  }
}

json empty_as_null(const std::string& text) {
  return text.empty() ? json() : json(text);
}

// The test's own statement of SPEC's status order (sent < delivered < read;
// failed is terminal), independent of the SQL function the store uses.
int status_rank(std::string_view status) {
  if (status == "received" || status == "sent")
    return 1;
  if (status == "delivered")
    return 2;
  if (status == "read")
    return 3;
  return status == "failed" ? 4 : 0;
}

void check_messages(const json& fx, const std::vector<routed>& events) {
  auto ref = reference_inbox(events);
  const auto& rows = fx.at("expect").at("messages");
  BOOST_TEST(rows.size() == ref.messages.size());
  for (const auto& row : rows) {
    auto ws = row.at("workspace").get<std::string>();
    auto id = row.at("kapso_message_id").get<std::string>();
    BOOST_TEST_CONTEXT("message " << id) {
      auto found = ref.messages.find({ws, id});
      BOOST_TEST((found != ref.messages.end()));
      if (found == ref.messages.end())
        continue;
      const event* written = found->second.written;
      std::string final_status;
      json error;
      for (const auto& [w, ev] : events) {
        if (w != ws || ev.message_id != id)
          continue;
        if (ev.kind == event_kind::message_status && ev.status == "failed"
            && !ev.status_error_json.empty())
          error = json::parse(ev.status_error_json);
        if (status_rank(ev.status) > status_rank(final_status))
          final_status = ev.status;
      }
      auto stored = final_state(found->second);
      BOOST_TEST(row.at("direction") == written->direction);
      BOOST_TEST(row.at("sender_type") == written->sender_type);
      BOOST_TEST(row.at("content") == empty_as_null(stored.content));
      BOOST_TEST(row.at("message_type") == written->message_type);
      BOOST_TEST(row.at("media_url") == empty_as_null(stored.media_url));
      BOOST_TEST(row.at("created_at") == written->timestamp);
      BOOST_TEST(row.at("status") == final_status);
      // A failed status's error is merged into the metadata by the store.
      if (!error.is_null())
        stored.metadata["error"] = error;
      BOOST_TEST(is_subset(row.at("metadata"), stored.metadata),
                 row.at("metadata").dump() << " not in " << stored.metadata.dump());
    }
  }
}

} // namespace

BOOST_AUTO_TEST_SUITE(fixture_corpus)

BOOST_AUTO_TEST_CASE(corpus_is_not_empty) {
  BOOST_TEST(fixture_files().size() >= 20u);
}

BOOST_AUTO_TEST_CASE(every_fixture_agrees_with_the_parser) {
  std::set<std::string> names;
  for (const auto& path : fixture_files()) {
    BOOST_TEST_CONTEXT(path.filename().string()) {
      auto fx = load(path);
      check_structure(fx);
      BOOST_TEST(names.insert(fx.at("name").get<std::string>()).second);
      auto events = parse_deliveries(fx);
      check_contacts_and_conversations(fx, events);
      check_messages(fx, events);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
