// The fixture corpus is well-formed and its expectations agree with the
// parser under a small reference model of the inbox rules.
#include "http/payload.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include <boost/test/unit_test.hpp>

#include "persistence/inbox_rules.hpp"

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
// a BSUID or a key are the same contact.
struct customer {
  std::set<std::string> ids;
  std::string phone; // what contacts.phone holds
  std::string name;
  std::set<std::string> inbound_ids;
  std::set<std::string> message_ids;
  int64_t last_at = 0;
  std::string last_preview;
  bool has_last = false;
  bool closed = false;
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

// Groups events into customers per workspace, in delivery order.
std::map<std::string, std::vector<customer>> reference_inbox(const std::vector<routed>& events) {
  std::map<std::string, std::vector<customer>> inbox;
  std::set<std::pair<std::string, std::string>> seen_messages;
  for (const auto& [ws, ev] : events) {
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
    // A contact first keyed by its BSUID takes the phone once it is known.
    if (!ev.contact_phone.empty() && c.phone.rfind("bsuid:", 0) == 0)
      c.phone = ev.contact_phone;
    if (c.name.empty())
      c.name = ev.contact_name;
    if (ev.kind == event_kind::conversation_ended)
      c.closed = true;
    if (ev.kind != event_kind::message_received && ev.kind != event_kind::message_sent)
      continue;
    if (!seen_messages.emplace(ws, ev.message_id).second)
      continue;
    c.message_ids.insert(ev.message_id);
    if (ev.kind == event_kind::message_received)
      c.inbound_ids.insert(ev.message_id);
    if (!c.has_last || ev.timestamp > c.last_at
        || (ev.timestamp == c.last_at && ev.preview > c.last_preview)) {
      c.has_last = true;
      c.last_at = ev.timestamp;
      c.last_preview = ev.preview;
    }
  }
  return inbox;
}

void check_contacts_and_conversations(const json& fx, const std::vector<routed>& events) {
  auto inbox = reference_inbox(events);
  size_t customers = 0;
  for (const auto& [ws, list] : inbox)
    customers += list.size();
  const auto& expect = fx.at("expect");
  BOOST_TEST(expect.at("contacts").size() == customers);
  BOOST_TEST(expect.at("conversations").size() == customers);
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
    }
  }
  for (const auto& row : expect.at("conversations")) {
    auto phone = row.at("contact_phone").get<std::string>();
    BOOST_TEST_CONTEXT("conversation " << phone) {
      const auto* c = find(row.at("workspace").get<std::string>(), phone);
      BOOST_TEST(c != nullptr);
      if (c == nullptr)
        continue;
      BOOST_TEST(row.at("status") == (c->closed ? "closed" : "open"));
      BOOST_TEST(row.at("unread_count").get<size_t>() == c->inbound_ids.size());
      BOOST_TEST(row.at("last_message_at") == (c->has_last ? json(c->last_at) : json()));
      BOOST_TEST(row.at("last_message_preview")
                 == (c->has_last ? json(c->last_preview) : json()));
    }
  }
}

json empty_as_null(const std::string& text) {
  return text.empty() ? json() : json(text);
}

void check_messages(const json& fx, const std::vector<routed>& events) {
  std::set<std::pair<std::string, std::string>> stored;
  for (const auto& [ws, ev] : events)
    if (ev.kind == event_kind::message_received || ev.kind == event_kind::message_sent)
      stored.emplace(ws, ev.message_id);
  const auto& rows = fx.at("expect").at("messages");
  BOOST_TEST(rows.size() == stored.size());
  for (const auto& row : rows) {
    auto ws = row.at("workspace").get<std::string>();
    auto id = row.at("kapso_message_id").get<std::string>();
    BOOST_TEST_CONTEXT("message " << id) {
      const event* written = nullptr;
      std::string final_status;
      json error;
      for (const auto& [w, ev] : events) {
        if (w != ws || ev.message_id != id)
          continue;
        if ((ev.kind == event_kind::message_received || ev.kind == event_kind::message_sent)
            && written == nullptr)
          written = &ev;
        if (ev.kind == event_kind::message_status && ev.status == "failed"
            && !ev.status_error_json.empty())
          error = json::parse(ev.status_error_json);
        if (kapso::status_rank(ev.status) > kapso::status_rank(final_status))
          final_status = ev.status;
      }
      BOOST_TEST(written != nullptr);
      if (written == nullptr)
        continue;
      BOOST_TEST(row.at("direction") == written->direction);
      BOOST_TEST(row.at("sender_type") == written->sender_type);
      BOOST_TEST(row.at("content") == empty_as_null(written->content));
      BOOST_TEST(row.at("message_type") == written->message_type);
      BOOST_TEST(row.at("media_url") == empty_as_null(written->media_url));
      BOOST_TEST(row.at("created_at") == written->timestamp);
      BOOST_TEST(row.at("status") == final_status);
      auto metadata = json::parse(written->metadata_json);
      // A failed status's error is merged into the metadata by the store.
      if (!error.is_null())
        metadata["error"] = error;
      BOOST_TEST(is_subset(row.at("metadata"), metadata),
                 row.at("metadata").dump() << " not in " << metadata.dump());
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
