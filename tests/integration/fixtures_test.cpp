// Data-driven runner: replays tests/fixtures/*.json against the server, compares the tables.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"

using namespace kapso_test;

namespace {

namespace fs = std::filesystem;

struct fixtures_suite : shared_suite<fixtures_suite> {
  fixtures_suite()
    // No workspace cache: each fixture's workspaces are new rows for phone
    // ids an earlier fixture may have used, and must be seen at once.
    : db(true), server(db.url(), server_options{{"--router.workspace-cache-ttl-ms=0"}, {},
                                                "/readyz", std::nullopt, "fixtures"}) {}
  test_database db;
  server_process server;
};

fixtures_suite& suite() { return fixtures_suite::current(); }

std::vector<fs::path> fixture_files() {
  std::vector<fs::path> files;
  fs::path dir = std::string{KAPSO_SOURCE_DIR} + "/tests/fixtures";
  if (fs::is_directory(dir))
    for (auto& entry : fs::directory_iterator{dir})
      if (entry.is_regular_file() && entry.path().extension() == ".json")
        files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// Every phone_number_id a body routes by, in any of the three forms.
void collect_phone_ids(const json& node, std::set<std::string>& ids) {
  if (node.is_object()) {
    for (auto& [key, value] : node.items()) {
      if (key == "phone_number_id" && value.is_string())
        ids.insert(value.get<std::string>());
      else
        collect_phone_ids(value, ids);
    }
  } else if (node.is_array()) {
    for (auto& value : node)
      collect_phone_ids(value, ids);
  }
}

// Fixture workspaces as created in the database.
struct fixture_workspace {
  std::string key;
  workspace row;
};

// The secret a delivery is signed with: that of the workspace its body routes
// to (or that the delivery names), else the global one.
std::string secret_for(const json& delivery, const json& body,
                       const std::vector<fixture_workspace>& workspaces) {
  if (delivery.contains("workspace")) {
    for (auto& w : workspaces)
      if (w.key == delivery["workspace"].get<std::string>())
        return w.row.secret.value_or(global_secret);
  }
  std::set<std::string> ids;
  collect_phone_ids(body, ids);
  for (auto& w : workspaces)
    if (ids.count(w.row.phone_number_id) && w.row.secret)
      return *w.row.secret;
  return global_secret;
}

// `expected` is contained in `actual` (objects: every key, recursively).
bool subset_of(const json& expected, const json& actual) {
  if (expected.is_object()) {
    if (!actual.is_object())
      return false;
    for (auto& [key, value] : expected.items())
      if (!actual.contains(key) || !subset_of(value, actual[key]))
        return false;
    return true;
  }
  return expected == actual;
}

struct table_check {
  const char* name;                    // contacts | conversations | messages
  const char* identity;                // field naming a row besides its workspace
  const char* sql;                     // one JSON object per row
};

const table_check checks[] = {
  {"contacts", "phone",
   "SELECT (to_jsonb(t) || jsonb_build_object("
   "'created_at', extract(epoch FROM t.created_at)::bigint, "
   "'updated_at', extract(epoch FROM t.updated_at)::bigint))::text FROM contacts t"},
  {"conversations", "contact_phone",
   "SELECT (to_jsonb(cv) || jsonb_build_object('contact_phone', c.phone, "
   "'last_message_at', extract(epoch FROM cv.last_message_at)::bigint, "
   "'created_at', extract(epoch FROM cv.created_at)::bigint, "
   "'updated_at', extract(epoch FROM cv.updated_at)::bigint))::text "
   "FROM conversations cv LEFT JOIN contacts c ON c.id = cv.contact_id"},
  {"messages", "kapso_message_id",
   "SELECT (to_jsonb(m) || jsonb_build_object('contact_phone', c.phone, "
   "'created_at', extract(epoch FROM m.created_at)::bigint))::text "
   "FROM messages m LEFT JOIN conversations cv ON cv.id = m.conversation_id "
   "LEFT JOIN contacts c ON c.id = cv.contact_id"},
};

std::string row_name(const std::string& table, const std::string& workspace,
                     const std::string& identity) {
  return table + "[" + workspace + ", " + identity + "]";
}

// Every difference between the tables and `expect`; empty when they match.
std::vector<std::string> compare_tables(const json& expect,
                                        const std::vector<fixture_workspace>& workspaces) {
  std::vector<std::string> problems;
  std::map<std::string, std::string> key_of_id;
  for (auto& w : workspaces)
    key_of_id[w.row.id] = w.key;
  auto default_key = workspaces.size() == 1 ? workspaces.front().key : std::string{};

  for (auto& check : checks) {
    std::map<std::pair<std::string, std::string>, json> actual;
    for (auto row : suite().db.query(check.sql)) {
      auto object = json::parse(row[0].c_str());
      auto ws_id = object.value("workspace_id", std::string{});
      auto key = key_of_id.count(ws_id) ? key_of_id[ws_id] : "<workspace " + ws_id + ">";
      auto identity = object[check.identity].is_string()
                        ? object[check.identity].get<std::string>()
                        : object[check.identity].dump();
      actual[{key, identity}] = object;
    }
    json expected_rows = expect.value(check.name, json::array());
    std::set<std::pair<std::string, std::string>> matched;
    for (auto& expected : expected_rows) {
      auto key = expected.value("workspace", default_key);
      if (!expected.contains(check.identity)) {
        problems.push_back(std::string{check.name} + ": expectation without \"" + check.identity
                           + "\": " + expected.dump());
        continue;
      }
      auto identity = expected[check.identity].is_string()
                        ? expected[check.identity].get<std::string>()
                        : expected[check.identity].dump();
      auto name = row_name(check.name, key, identity);
      auto found = actual.find({key, identity});
      if (found == actual.end()) {
        problems.push_back(name + ": missing");
        continue;
      }
      matched.insert(found->first);
      for (auto& [field, value] : expected.items()) {
        if (field == "workspace" || field == check.identity)
          continue;
        if (!found->second.contains(field)) {
          problems.push_back(name + ": no column \"" + field + "\"");
          continue;
        }
        auto& got = found->second[field];
        bool same = field == "metadata" ? subset_of(value, got) : value == got;
        if (!same)
          problems.push_back(name + "." + field + ": expected " + value.dump() + ", got "
                             + got.dump());
      }
    }
    for (auto& [id, row] : actual)
      if (!matched.count(id))
        problems.push_back(row_name(check.name, id.first, id.second)
                           + ": unexpected row " + row.dump());
  }
  return problems;
}

void run_fixture(const json& fixture, http_client& client) {
  auto& db = suite().db;
  db.truncate_inbox();
  std::vector<fixture_workspace> workspaces;
  for (auto& w : fixture.value("workspaces", json::array())) {
    std::optional<std::string> secret;
    if (w.contains("secret") && w["secret"].is_string())
      secret = w["secret"].get<std::string>();
    workspaces.push_back({w.at("key").get<std::string>(),
                          db.insert_workspace(secret, w.at("phone_number_id").get<std::string>())});
  }

  auto deliveries = fixture.value("deliveries", json::array());
  for (size_t i = 0; i < deliveries.size(); ++i) {
    auto& delivery = deliveries[i];
    BOOST_TEST_CONTEXT("delivery " << i) {
      auto body_json = delivery.value("body", json{});
      std::string body = body_json.dump();
      header_list headers;
      bool has_content_type = false, has_signature = false;
      auto given_headers = delivery.value("headers", json::object());
      for (auto& [name, value] : given_headers.items()) {
        auto l = lower(name);
        has_content_type = has_content_type || l == "content-type";
        has_signature = has_signature || l == "x-webhook-signature" || l == "x-kapso-signature"
                        || l == "x-hub-signature-256";
        headers.emplace_back(name, value.is_string() ? value.get<std::string>() : value.dump());
      }
      if (!has_content_type)
        headers.emplace_back("Content-Type", "application/json");
      if (!has_signature && delivery.value("sign", true)) {
        auto secret = secret_for(delivery, body_json, workspaces);
        auto signature = sign(body, secret);
        headers.emplace_back("X-Webhook-Signature", signature);
        if (body_json.is_object()
            && body_json.value("object", std::string{}) == "whatsapp_business_account")
          headers.emplace_back("X-Hub-Signature-256", "sha256=" + signature);
      }
      auto response = client.request("POST", webhook_path, headers, body);
      auto expected_status = delivery.value("expect_status", 200);
      BOOST_TEST(response.status == expected_status, response.body);
      if (delivery.contains("expect_counts") && response.status == 200) {
        auto answer = response.parsed();
        for (auto& [name, value] : delivery["expect_counts"].items())
          BOOST_TEST(answer.value(name, json{}) == value,
                     name << ": expected " << value.dump() << ", answer " << response.body);
      }
    }
  }

  auto expect = fixture.value("expect", json::object());
  std::vector<std::string> problems;
  eventually(
    [&] {
      problems = compare_tables(expect, workspaces);
      return problems.empty();
    },
    3s, 100ms);
  for (auto& p : problems)
    BOOST_ERROR(p);
}

} // namespace

BOOST_AUTO_TEST_SUITE(fixtures, *boost::unit_test::fixture<fixtures_suite>())

BOOST_AUTO_TEST_CASE(every_fixture_gives_its_expected_tables) {
  auto files = fixture_files();
  BOOST_TEST_REQUIRE(!files.empty(), "no fixtures in " << KAPSO_SOURCE_DIR
                                                      << "/tests/fixtures: nothing was checked");
  http_client client{suite().server.port()};
  for (auto& file : files) {
    json fixture;
    try {
      std::ifstream in{file};
      fixture = json::parse(in);
    } catch (const std::exception& e) {
      BOOST_ERROR(file.filename().string() << ": not valid JSON: " << e.what());
      continue;
    }
    BOOST_TEST_CONTEXT(file.filename().string() << " (" << fixture.value("name", std::string{})
                                                << ")") {
      try {
        run_fixture(fixture, client);
      } catch (const std::exception& e) {
        BOOST_ERROR("fixture aborted: " << e.what());
        // A broken connection must not poison the next fixture.
        client = http_client{suite().server.port()};
      }
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
