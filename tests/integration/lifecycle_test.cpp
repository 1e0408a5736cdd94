// Edits, deletions, number and identity changes end to end: each arriving after and
// before what it changes, twice, in both payload forms; never a row, never unread.
#include <ctime>
#include <fstream>
#include <sstream>

#include <boost/test/unit_test.hpp>

#include "http/preview.hpp"
#include "tests/integration/harness.hpp"

using namespace kapso_test;

namespace {

struct lifecycle_suite : inbox_fixture, shared_suite<lifecycle_suite> {
  lifecycle_suite()
    : inbox_fixture(server_options{{}, {}, "/readyz", std::nullopt, "lifecycle"}, 40) {}
};

lifecycle_suite& suite() { return lifecycle_suite::current(); }

// The customer's numbers as Meta writes them, and as stored.
constexpr const char* ana = "15551230001";
constexpr const char* ana_e164 = "+15551230001";
constexpr const char* ana_new = "15551230002";
constexpr const char* ana_new_e164 = "+15551230002";

std::string iso(int64_t seconds) {
  std::time_t t = seconds;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

// -- Meta's message objects (the shapes of Meta's webhook reference) -------------

json contacts_of(const std::string& wa_id, const std::string& name = "Ana") {
  return json::array({{{"profile", {{"name", name}}}, {"wa_id", wa_id}}});
}

json edit_message(const std::string& from, const std::string& id, int64_t ts,
                  const std::string& original, const std::string& text) {
  return {{"from", from}, {"id", id}, {"timestamp", std::to_string(ts)}, {"type", "edit"},
          {"edit", {{"original_message_id", original},
                    {"message", {{"type", "text"}, {"text", {{"body", text}}}}}}}};
}

json revoke_message(const std::string& from, const std::string& id, int64_t ts,
                    const std::string& original) {
  return {{"from", from}, {"id", id}, {"timestamp", std::to_string(ts)}, {"type", "revoke"},
          {"revoke", {{"original_message_id", original}}}};
}

json number_change(const std::string& from, const std::string& id, int64_t ts,
                   const std::string& new_wa_id) {
  return {{"from", from}, {"id", id}, {"timestamp", std::to_string(ts)}, {"type", "system"},
          {"system", {{"body", "User Ana changed from " + from + " to " + new_wa_id},
                      {"wa_id", new_wa_id}, {"type", "user_changed_number"}}}};
}

json identity_change(const std::string& from, const std::string& id, int64_t ts,
                     const std::string& hash) {
  return {{"from", from}, {"id", id}, {"timestamp", std::to_string(ts)}, {"type", "system"},
          {"identity", {{"acknowledged", true}, {"created_timestamp", std::to_string(ts)},
                        {"hash", hash}}},
          {"system", {{"body", "User identity changed"}, {"type", "customer_identity_changed"}}}};
}

// POSTs Meta-forward messages (a contacts array unless `contacts` is null)
// and requires a 200.
delivery_counts deliver_meta(const workspace& ws, const json& messages,
                             const json& contacts = contacts_of(ana),
                             const char* field = "messages") {
  json value = {{field == std::string{"messages"} ? "messages" : "message_echoes", messages}};
  if (!contacts.is_null())
    value["contacts"] = contacts;
  auto body = meta_forward(ws.phone_number_id, value);
  body["entry"][0]["changes"][0]["field"] = field;
  auto client = suite().client();
  auto response = post_meta(client, body.dump());
  BOOST_TEST_REQUIRE(response.status == 200, "HTTP " << response.status << " " << response.body);
  return counts_of(response);
}

delivery_counts deliver_one(const workspace& ws, const json& message,
                            const json& contacts = contacts_of(ana)) {
  return deliver_meta(ws, json::array({message}), contacts);
}

// POSTs one Kapso v2 event and requires a 200.
delivery_counts deliver_kapso(const json& event, const std::string& type) {
  auto client = suite().client();
  auto response = post_webhook(client, event.dump(), global_secret, type);
  BOOST_TEST_REQUIRE(response.status == 200, "HTTP " << response.status << " " << response.body);
  return counts_of(response);
}

void expect_counts(const delivery_counts& counts, int64_t accepted, int64_t duplicates,
                   const std::string& what) {
  BOOST_TEST(counts.accepted == accepted, what << ": accepted " << counts.accepted);
  BOOST_TEST(counts.duplicates == duplicates, what << ": duplicates " << counts.duplicates);
  BOOST_TEST(counts.ignored == 0, what << ": ignored " << counts.ignored);
}

// -- what the tables hold --------------------------------------------------------

struct stored_message {
  std::string content;   // "<NULL>" for SQL NULL
  std::string media_url; // "<NULL>" for SQL NULL
  std::string message_type;
  std::string contact_phone;
  json metadata;
};

std::optional<stored_message> message(const workspace& ws, const std::string& id) {
  auto rows = suite().db.query(
    "SELECT m.content, m.media_url, m.message_type, c.phone, m.metadata::text "
    "FROM messages m JOIN conversations cv ON cv.id = m.conversation_id "
    "JOIN contacts c ON c.id = cv.contact_id "
    "WHERE m.workspace_id = $1::uuid AND m.kapso_message_id = $2",
    ws.id, id);
  if (rows.empty())
    return std::nullopt;
  return stored_message{text(rows[0][0]), text(rows[0][1]), text(rows[0][2]), text(rows[0][3]),
                        json::parse(rows[0][4].c_str())};
}

// "unread|last_message_at|preview" of the conversation of `phone`.
std::optional<std::string> conversation(const workspace& ws, const std::string& phone) {
  return suite().db.value(
    "SELECT cv.unread_count || '|' "
    "|| coalesce(extract(epoch FROM cv.last_message_at)::bigint::text, 'null') || '|' "
    "|| coalesce(cv.last_message_preview, 'null') "
    "FROM conversations cv JOIN contacts c ON c.id = cv.contact_id "
    "WHERE cv.workspace_id = $1::uuid AND c.phone = $2",
    ws.id, phone);
}

int64_t rows_in(const workspace& ws, const std::string& table) {
  return suite().db.count("SELECT count(*) FROM " + table + " WHERE workspace_id = $1::uuid",
                          ws.id);
}

// Rows of every table: contacts, conversations, messages.
std::string table_sizes(const workspace& ws) {
  return std::to_string(rows_in(ws, "contacts")) + "/"
         + std::to_string(rows_in(ws, "conversations")) + "/"
         + std::to_string(rows_in(ws, "messages"));
}

json contact_metadata(const workspace& ws, const std::string& phone) {
  auto value = suite().db.value(
    "SELECT metadata::text FROM contacts WHERE workspace_id = $1::uuid AND phone = $2", ws.id,
    phone);
  return value ? json::parse(*value) : json{};
}

int64_t unread_total(const workspace& ws) {
  return suite().db.count(
    "SELECT coalesce(sum(unread_count), 0) FROM conversations WHERE workspace_id = $1::uuid",
    ws.id);
}

// Changes still waiting for their row, in any of the lifecycle tables.
int64_t waiting(const workspace& ws) {
  return rows_in(ws, "kapso_pending_message_changes");
}

json one_edit(const std::string& content, int64_t at, const std::string& edit_id) {
  return {{"content", content}, {"edited_at", iso(at)}, {"edit_id", edit_id}};
}

} // namespace

BOOST_AUTO_TEST_SUITE(lifecycle, *boost::unit_test::fixture<lifecycle_suite>())

// -- edits ---------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(edit_after_its_original_twice) {
  auto ws = suite().take_workspace();
  expect_counts(deliver_one(ws, meta_text_message(ana, "wamid.E.o", 1730000100, "Hola")), 1, 0,
                "original");
  auto edit = edit_message(ana, "wamid.E.e", 1730000160, "wamid.E.o", "Hola, soy Ana");
  expect_counts(deliver_one(ws, edit), 1, 0, "edit");
  expect_counts(deliver_one(ws, edit), 0, 1, "edit again");

  BOOST_TEST(table_sizes(ws) == "1/1/1");
  auto m = message(ws, "wamid.E.o");
  BOOST_TEST_REQUIRE(m.has_value());
  BOOST_TEST(m->content == "Hola, soy Ana");
  BOOST_TEST(m->metadata["edits"] == json::array({one_edit("Hola", 1730000160, "wamid.E.e")}));
  BOOST_TEST(m->metadata["edited_at"] == iso(1730000160));
  // Newest message: the preview follows; the time stays the message's own.
  BOOST_TEST(conversation(ws, ana_e164) == std::optional<std::string>{"1|1730000100|Hola, soy Ana"});
  BOOST_TEST(waiting(ws) == 0);
}

BOOST_AUTO_TEST_CASE(edit_before_its_original_twice) {
  auto ws = suite().take_workspace();
  auto edit = edit_message(ana, "wamid.EB.e", 1730000160, "wamid.EB.o", "Hola, soy Ana");
  expect_counts(deliver_one(ws, edit), 1, 0, "early edit");
  expect_counts(deliver_one(ws, edit), 0, 1, "early edit again");
  // Waiting is not a row: no contact, no conversation, nothing unread.
  BOOST_TEST(table_sizes(ws) == "0/0/0");
  BOOST_TEST(waiting(ws) == 1);

  expect_counts(deliver_one(ws, meta_text_message(ana, "wamid.EB.o", 1730000100, "Hola")), 1, 0,
                "original");
  expect_counts(deliver_one(ws, edit), 0, 1, "edit after it was applied");
  BOOST_TEST(table_sizes(ws) == "1/1/1");
  auto m = message(ws, "wamid.EB.o");
  BOOST_TEST_REQUIRE(m.has_value());
  BOOST_TEST(m->content == "Hola, soy Ana");
  BOOST_TEST(m->metadata["edits"] == json::array({one_edit("Hola", 1730000160, "wamid.EB.e")}));
  BOOST_TEST(conversation(ws, ana_e164) == std::optional<std::string>{"1|1730000100|Hola, soy Ana"});
  BOOST_TEST(waiting(ws) == 0);
}

BOOST_AUTO_TEST_CASE(edits_in_any_order_end_at_the_newest) {
  auto in_order = suite().take_workspace();
  auto shuffled = suite().take_workspace();
  auto original = meta_text_message(ana, "wamid.EO.o", 1730000100, "v0");
  auto first = edit_message(ana, "wamid.EO.1", 1730000200, "wamid.EO.o", "v1");
  auto second = edit_message(ana, "wamid.EO.2", 1730000300, "wamid.EO.o", "v2");
  for (const auto& m : {original, first, second})
    deliver_one(in_order, m);
  // Newest edit first, then the original, the older edit and copies.
  expect_counts(deliver_one(shuffled, second), 1, 0, "newest edit");
  expect_counts(deliver_one(shuffled, original), 1, 0, "original");
  expect_counts(deliver_one(shuffled, first), 1, 0, "older edit, late");
  expect_counts(deliver_meta(shuffled, json::array({first, second})), 0, 2, "both again");

  auto a = message(in_order, "wamid.EO.o");
  auto b = message(shuffled, "wamid.EO.o");
  BOOST_TEST_REQUIRE((a && b));
  BOOST_TEST(a->content == "v2");
  BOOST_TEST(b->content == "v2");
  BOOST_TEST(a->metadata["edits"]
             == json::array({one_edit("v0", 1730000200, "wamid.EO.1"),
                             one_edit("v1", 1730000300, "wamid.EO.2")}));
  BOOST_TEST(a->metadata == b->metadata, a->metadata.dump() << " vs " << b->metadata.dump());
  BOOST_TEST(conversation(in_order, ana_e164) == conversation(shuffled, ana_e164));
  BOOST_TEST(conversation(shuffled, ana_e164) == std::optional<std::string>{"1|1730000100|v2"});
}

BOOST_AUTO_TEST_CASE(edit_of_an_older_message_leaves_the_preview) {
  auto ws = suite().take_workspace();
  deliver_one(ws, meta_text_message(ana, "wamid.EP.1", 1730000100, "first"));
  deliver_one(ws, meta_text_message(ana, "wamid.EP.2", 1730000200, "second"));
  expect_counts(deliver_one(ws, edit_message(ana, "wamid.EP.e", 1730000300, "wamid.EP.1",
                                             "first, edited")),
                1, 0, "edit");
  BOOST_TEST(message(ws, "wamid.EP.1")->content == "first, edited");
  BOOST_TEST(conversation(ws, ana_e164) == std::optional<std::string>{"2|1730000200|second"});
}

BOOST_AUTO_TEST_CASE(business_edit_echoes_before_and_after) {
  auto ws = suite().take_workspace();
  auto echo = [](const std::string& id, int64_t ts, const std::string& body) {
    return json{{"from", "15550009999"}, {"to", ana}, {"id", id},
                {"timestamp", std::to_string(ts)}, {"type", "text"},
                {"text", {{"body", body}}}};
  };
  auto edit_echo = [](const std::string& id, int64_t ts, const std::string& original,
                      const std::string& body) {
    auto edit = edit_message("15550009999", id, ts, original, body);
    edit["to"] = ana;
    return edit;
  };
  deliver_one(ws, meta_text_message(ana, "wamid.BE.in", 1730000050, "question"));
  // After: the echo, then its edit twice.
  expect_counts(deliver_meta(ws, json::array({echo("wamid.BE.1", 1730000100, "answr")}),
                             json(nullptr), "smb_message_echoes"),
                1, 0, "echo");
  for (int copy = 0; copy < 2; ++copy)
    expect_counts(deliver_meta(ws, json::array({edit_echo("wamid.BE.1e", 1730000110, "wamid.BE.1",
                                                          "answer")}),
                               json(nullptr), "smb_message_echoes"),
                  copy == 0 ? 1 : 0, copy == 0 ? 0 : 1, "edit echo");
  // Before: the edit twice, then its echo.
  for (int copy = 0; copy < 2; ++copy)
    expect_counts(deliver_meta(ws, json::array({edit_echo("wamid.BE.2e", 1730000210, "wamid.BE.2",
                                                          "see you")}),
                               json(nullptr), "smb_message_echoes"),
                  copy == 0 ? 1 : 0, copy == 0 ? 0 : 1, "early edit echo");
  expect_counts(deliver_meta(ws, json::array({echo("wamid.BE.2", 1730000200, "see yu")}),
                             json(nullptr), "smb_message_echoes"),
                1, 0, "echo after its edit");

  BOOST_TEST(table_sizes(ws) == "1/1/3");
  BOOST_TEST(message(ws, "wamid.BE.1")->content == "answer");
  BOOST_TEST(message(ws, "wamid.BE.2")->content == "see you");
  BOOST_TEST(message(ws, "wamid.BE.2")->metadata["edits"]
             == json::array({one_edit("see yu", 1730000210, "wamid.BE.2e")}));
  // Outbound edits never count as unread.
  BOOST_TEST(conversation(ws, ana_e164) == std::optional<std::string>{"1|1730000200|see you"});
}

BOOST_AUTO_TEST_CASE(kapso_caption_edit_before_and_after) {
  auto ws = suite().take_workspace();
  auto image = [&](const std::string& id, int64_t ts, const std::string& caption) {
    auto m = text_message(ws, id, ts, "", ana_e164);
    m.type = "image";
    m.type_object = {{"id", "media." + id}, {"mime_type", "image/jpeg"}, {"caption", caption}};
    m.media_url = "https://media.kapso.example/" + id + ".jpg";
    return kapso_event(m);
  };
  auto edit = [&](const std::string& id, int64_t ts, const std::string& original,
                  const std::string& caption) {
    auto m = text_message(ws, id, ts, "", ana_e164);
    m.type = "edit";
    m.type_object = {{"original_message_id", original},
                     {"message", {{"type", "image"},
                                  {"image", {{"id", "media." + original},
                                             {"mime_type", "image/jpeg"},
                                             {"caption", caption}}}}}};
    return kapso_event(m);
  };
  const std::string received = "whatsapp.message.received";
  expect_counts(deliver_kapso(image("wamid.KE.1", 1730000100, "my cat"), received), 1, 0, "image");
  for (int copy = 0; copy < 2; ++copy)
    expect_counts(deliver_kapso(edit("wamid.KE.1e", 1730000120, "wamid.KE.1", "my cat Tom"),
                                received),
                  copy == 0 ? 1 : 0, copy == 0 ? 0 : 1, "caption edit");
  for (int copy = 0; copy < 2; ++copy)
    expect_counts(deliver_kapso(edit("wamid.KE.2e", 1730000220, "wamid.KE.2", "my dog Rex"),
                                received),
                  copy == 0 ? 1 : 0, copy == 0 ? 0 : 1, "early caption edit");
  expect_counts(deliver_kapso(image("wamid.KE.2", 1730000200, "my dog"), received), 1, 0,
                "second image");

  for (const auto& [id, caption, old] :
       {std::tuple<std::string, std::string, std::string>{"wamid.KE.1", "my cat Tom", "my cat"},
        {"wamid.KE.2", "my dog Rex", "my dog"}}) {
    auto m = message(ws, id);
    BOOST_TEST_REQUIRE(m.has_value());
    BOOST_TEST(m->content == caption);
    BOOST_TEST(m->message_type == "image");
    // A caption edit keeps its picture.
    BOOST_TEST(m->media_url == "https://media.kapso.example/" + id + ".jpg");
    BOOST_TEST(m->metadata["edits"][0]["content"] == old);
  }
  BOOST_TEST(table_sizes(ws) == "1/1/2");
  BOOST_TEST(conversation(ws, ana_e164) == std::optional<std::string>{"2|1730000200|my dog Rex"});
}

// -- revokes -----------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(revoke_after_its_original_twice) {
  auto ws = suite().take_workspace();
  deliver_one(ws, meta_text_message(ana, "wamid.R.o", 1730000100, "my card is 4111"));
  auto revoke = revoke_message(ana, "wamid.R.r", 1730000130, "wamid.R.o");
  expect_counts(deliver_one(ws, revoke), 1, 0, "revoke");
  expect_counts(deliver_one(ws, revoke), 0, 1, "revoke again");

  BOOST_TEST(table_sizes(ws) == "1/1/1");
  auto m = message(ws, "wamid.R.o");
  BOOST_TEST_REQUIRE(m.has_value());
  BOOST_TEST(m->content == "[Message deleted]");
  BOOST_TEST(m->metadata["deleted_at"] == iso(1730000130));
  BOOST_TEST(conversation(ws, ana_e164)
             == std::optional<std::string>{"1|1730000100|[Message deleted]"});
  BOOST_TEST(suite().db.count("SELECT count(*) FROM messages WHERE workspace_id = $1::uuid "
                              "AND (content LIKE '%4111%' OR metadata::text LIKE '%4111%')",
                              ws.id)
             == 0);
}

BOOST_AUTO_TEST_CASE(revoke_before_its_original_twice) {
  auto ws = suite().take_workspace();
  auto revoke = revoke_message(ana, "wamid.RB.r", 1730000130, "wamid.RB.o");
  expect_counts(deliver_one(ws, revoke), 1, 0, "early revoke");
  expect_counts(deliver_one(ws, revoke), 0, 1, "early revoke again");
  BOOST_TEST(table_sizes(ws) == "0/0/0");
  expect_counts(deliver_one(ws, meta_text_message(ana, "wamid.RB.o", 1730000100, "oops")), 1, 0,
                "original");
  expect_counts(deliver_one(ws, revoke), 0, 1, "revoke after it was applied");

  BOOST_TEST(table_sizes(ws) == "1/1/1");
  auto m = message(ws, "wamid.RB.o");
  BOOST_TEST_REQUIRE(m.has_value());
  BOOST_TEST(m->content == "[Message deleted]");
  BOOST_TEST(m->metadata["deleted_at"] == iso(1730000130));
  BOOST_TEST(conversation(ws, ana_e164)
             == std::optional<std::string>{"1|1730000100|[Message deleted]"});
  BOOST_TEST(waiting(ws) == 0);
}

BOOST_AUTO_TEST_CASE(revoke_is_final_and_keeps_no_text) {
  auto after = suite().take_workspace();
  auto before = suite().take_workspace();
  auto original = meta_text_message(ana, "wamid.RF.o", 1730000100, "secret one");
  auto edit = edit_message(ana, "wamid.RF.e1", 1730000110, "wamid.RF.o", "secret two");
  auto revoke = revoke_message(ana, "wamid.RF.r", 1730000120, "wamid.RF.o");
  auto late_edit = edit_message(ana, "wamid.RF.e2", 1730000130, "wamid.RF.o", "secret three");
  for (const auto& m : {original, edit, revoke})
    deliver_one(after, m);
  // An edit after the deletion resurrects nothing.
  expect_counts(deliver_one(after, late_edit), 0, 1, "edit of a deleted message");
  // The same changes before their original, deletion in between.
  for (const auto& m : {late_edit, revoke, edit})
    expect_counts(deliver_one(before, m), 1, 0, "waiting change");
  deliver_one(before, original);

  for (const auto& ws : {after, before}) {
    auto m = message(ws, "wamid.RF.o");
    BOOST_TEST_REQUIRE(m.has_value());
    BOOST_TEST(m->content == "[Message deleted]");
    BOOST_TEST(!m->metadata.contains("edits"));
    BOOST_TEST(m->metadata["deleted_at"] == iso(1730000120));
    BOOST_TEST(suite().db.count(
                 "SELECT (SELECT count(*) FROM messages WHERE workspace_id = $1::uuid "
                 "        AND (content LIKE '%secret%' OR metadata::text LIKE '%secret%'))"
                 " + (SELECT count(*) FROM kapso_pending_message_changes "
                 "    WHERE workspace_id = $1::uuid)"
                 " + (SELECT count(*) FROM conversations WHERE workspace_id = $1::uuid "
                 "    AND last_message_preview LIKE '%secret%')",
                 ws.id)
               == 0);
    BOOST_TEST(table_sizes(ws) == "1/1/1");
    BOOST_TEST(unread_total(ws) == 1);
  }
}

BOOST_AUTO_TEST_CASE(kapso_media_revoke_before_and_after) {
  auto ws = suite().take_workspace();
  auto document = [&](const std::string& id, int64_t ts) {
    auto m = text_message(ws, id, ts, "", ana_e164);
    m.type = "document";
    m.type_object = {{"id", "media." + id}, {"filename", "contract.pdf"},
                     {"mime_type", "application/pdf"}};
    m.media_url = "https://media.kapso.example/" + id + ".pdf";
    return kapso_event(m);
  };
  auto revoke = [&](const std::string& id, int64_t ts, const std::string& original) {
    auto m = text_message(ws, id, ts, "", ana_e164);
    m.type = "revoke";
    m.type_object = {{"original_message_id", original}};
    return kapso_event(m);
  };
  const std::string received = "whatsapp.message.received";
  deliver_kapso(document("wamid.KR.1", 1730000100), received);
  for (int copy = 0; copy < 2; ++copy) {
    expect_counts(deliver_kapso(revoke("wamid.KR.1r", 1730000150, "wamid.KR.1"), received),
                  copy == 0 ? 1 : 0, copy == 0 ? 0 : 1, "revoke");
    expect_counts(deliver_kapso(revoke("wamid.KR.2r", 1730000250, "wamid.KR.2"), received),
                  copy == 0 ? 1 : 0, copy == 0 ? 0 : 1, "early revoke");
  }
  deliver_kapso(document("wamid.KR.2", 1730000200), received);
  for (const auto& id : {"wamid.KR.1", "wamid.KR.2"}) {
    auto m = message(ws, id);
    BOOST_TEST_REQUIRE(m.has_value());
    BOOST_TEST(m->content == "[Message deleted]");
    BOOST_TEST(m->media_url == "<NULL>");
    BOOST_TEST(!m->metadata.contains("media"));
    BOOST_TEST(m->metadata.contains("deleted_at"));
  }
  BOOST_TEST(table_sizes(ws) == "1/1/2");
  BOOST_TEST(conversation(ws, ana_e164)
             == std::optional<std::string>{"2|1730000200|[Message deleted]"});
}

// -- number changes ------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(number_change_after_messages_twice) {
  auto ws = suite().take_workspace();
  deliver_one(ws, meta_text_message(ana, "wamid.N.1", 1730000100, "from the old phone"));
  auto change = number_change(ana, "wamid.N.c", 1730000200, ana_new);
  expect_counts(deliver_one(ws, change, json(nullptr)), 1, 0, "number change");
  expect_counts(deliver_one(ws, change, json(nullptr)), 0, 1, "number change again");
  expect_counts(deliver_one(ws, meta_text_message(ana_new, "wamid.N.2", 1730000300,
                                                  "from the new phone"),
                            contacts_of(ana_new)),
                1, 0, "message from the new number");

  BOOST_TEST(table_sizes(ws) == "1/1/2");
  BOOST_TEST(contact_metadata(ws, ana_new_e164)["previous_phones"] == json::array({ana_e164}));
  BOOST_TEST(message(ws, "wamid.N.1")->contact_phone == ana_new_e164);
  BOOST_TEST(message(ws, "wamid.N.2")->contact_phone == ana_new_e164);
  BOOST_TEST(conversation(ws, ana_new_e164)
             == std::optional<std::string>{"2|1730000300|from the new phone"});
  BOOST_TEST(suite().db.value("SELECT name FROM contacts WHERE workspace_id = $1::uuid", ws.id)
             == std::optional<std::string>{"Ana"});
}

BOOST_AUTO_TEST_CASE(number_change_before_messages_twice) {
  auto ws = suite().take_workspace();
  auto change = number_change(ana, "wamid.NB.c", 1730000200, ana_new);
  expect_counts(deliver_one(ws, change, json(nullptr)), 1, 0, "early number change");
  expect_counts(deliver_one(ws, change, json(nullptr)), 0, 1, "early number change again");
  BOOST_TEST(table_sizes(ws) == "0/0/0");
  // A message the customer sent from the old number before changing it,
  // delivered late: it belongs to the contact of the new number.
  expect_counts(deliver_one(ws, meta_text_message(ana, "wamid.NB.1", 1730000100, "old phone")),
                1, 0, "late message from the old number");
  expect_counts(deliver_one(ws, meta_text_message(ana_new, "wamid.NB.2", 1730000300, "new phone"),
                            contacts_of(ana_new)),
                1, 0, "message from the new number");
  expect_counts(deliver_one(ws, change, json(nullptr)), 0, 1, "number change once more");

  BOOST_TEST(table_sizes(ws) == "1/1/2");
  BOOST_TEST(contact_metadata(ws, ana_new_e164)["previous_phones"] == json::array({ana_e164}));
  BOOST_TEST(conversation(ws, ana_new_e164) == std::optional<std::string>{"2|1730000300|new phone"});
}

BOOST_AUTO_TEST_CASE(message_from_the_new_number_before_the_change_merges) {
  auto ws = suite().take_workspace();
  deliver_one(ws, meta_text_message(ana, "wamid.NM.1", 1730000100, "old phone"));
  auto old_contact = suite().db.value(
    "SELECT id::text FROM contacts WHERE workspace_id = $1::uuid AND phone = $2", ws.id,
    std::string{ana_e164});
  suite().db.query("UPDATE contacts SET tags = '{vip}' WHERE id = $1::uuid", *old_contact);
  deliver_one(ws, meta_text_message(ana_new, "wamid.NM.2", 1730000300, "new phone"),
              contacts_of(ana_new));
  BOOST_TEST(table_sizes(ws) == "2/2/2");

  auto change = number_change(ana, "wamid.NM.c", 1730000200, ana_new);
  expect_counts(deliver_one(ws, change, json(nullptr)), 1, 0, "number change");
  expect_counts(deliver_one(ws, change, json(nullptr)), 0, 1, "number change again");
  BOOST_TEST(table_sizes(ws) == "1/1/2");
  // The older contact row stays (its id, tags), under the new number.
  BOOST_TEST(suite().db.value("SELECT id::text || ' ' || phone || ' ' || array_to_string(tags, ',')"
                              " FROM contacts WHERE workspace_id = $1::uuid",
                              ws.id)
             == std::optional<std::string>{*old_contact + " " + ana_new_e164 + " vip"});
  BOOST_TEST(contact_metadata(ws, ana_new_e164)["previous_phones"] == json::array({ana_e164}));
  BOOST_TEST(conversation(ws, ana_new_e164) == std::optional<std::string>{"2|1730000300|new phone"});

  // The writer's cached ids of both numbers are gone: the next messages
  // land in the merged conversation.
  expect_counts(deliver_one(ws, meta_text_message(ana_new, "wamid.NM.3", 1730000400, "again"),
                            contacts_of(ana_new)),
                1, 0, "next message from the new number");
  expect_counts(deliver_one(ws, meta_text_message(ana, "wamid.NM.0", 1730000050, "very late")),
                1, 0, "very late message from the old number");
  BOOST_TEST(table_sizes(ws) == "1/1/4");
  BOOST_TEST(conversation(ws, ana_new_e164) == std::optional<std::string>{"4|1730000400|again"});
}

BOOST_AUTO_TEST_CASE(old_number_after_the_change_belongs_to_someone_else) {
  auto ws = suite().take_workspace();
  deliver_one(ws, meta_text_message(ana, "wamid.NR.1", 1730000100, "Ana, old phone"));
  deliver_one(ws, number_change(ana, "wamid.NR.c", 1730000200, ana_new), json(nullptr));
  // Months later the old number writes again: not Ana any more.
  deliver_one(ws, meta_text_message(ana, "wamid.NR.2", 1740000000, "hello, I am Bo"),
              contacts_of(ana, "Bo"));
  BOOST_TEST(table_sizes(ws) == "2/2/2");
  BOOST_TEST(message(ws, "wamid.NR.1")->contact_phone == ana_new_e164);
  BOOST_TEST(message(ws, "wamid.NR.2")->contact_phone == ana_e164);
  BOOST_TEST(conversation(ws, ana_e164) == std::optional<std::string>{"1|1740000000|hello, I am Bo"});
}

BOOST_AUTO_TEST_CASE(chain_of_number_changes_before_and_after_twice) {
  constexpr const char* third = "15551230003";
  constexpr const char* third_e164 = "+15551230003";
  auto after = suite().take_workspace();
  auto before = suite().take_workspace();
  // One delivery each: in one, the two would go to two writers (two
  // customer keys), and the second could be written before the first moved
  // anything, leaving the last step to the sweep.
  const json changes[] = {number_change(ana, "wamid.NC.1", 1730000200, ana_new),
                          number_change(ana_new, "wamid.NC.2", 1730000300, third)};
  auto first = meta_text_message(ana, "wamid.NC.m", 1730000100, "from the first phone");
  deliver_one(after, first);
  for (int copy = 0; copy < 2; ++copy)
    for (const auto& change : changes) {
      expect_counts(deliver_one(after, change, json(nullptr)), copy == 0 ? 1 : 0,
                    copy == 0 ? 0 : 1, "change after");
      expect_counts(deliver_one(before, change, json(nullptr)), copy == 0 ? 1 : 0,
                    copy == 0 ? 0 : 1, "change before");
    }
  BOOST_TEST(table_sizes(before) == "0/0/0");
  // Both changes apply to the late message's contact in its own batch: the
  // second from where the first left it.
  expect_counts(deliver_one(before, first), 1, 0, "message after its changes");
  for (const auto& ws : {after, before}) {
    BOOST_TEST(table_sizes(ws) == "1/1/1");
    BOOST_TEST(message(ws, "wamid.NC.m")->contact_phone == third_e164);
    BOOST_TEST(contact_metadata(ws, third_e164)["previous_phones"]
               == json::array({ana_e164, ana_new_e164}));
    BOOST_TEST(conversation(ws, third_e164)
               == std::optional<std::string>{"1|1730000100|from the first phone"});
  }
}

BOOST_AUTO_TEST_CASE(change_back_recorded_first_moves_nothing) {
  auto ws = suite().take_workspace();
  auto changes = json::array({number_change(ana, "wamid.NK.1", 1730000200, ana_new),
                              number_change(ana_new, "wamid.NK.2", 1730000300, ana)});
  for (int copy = 0; copy < 2; ++copy)
    expect_counts(deliver_meta(ws, changes, json(nullptr)), copy == 0 ? 2 : 0,
                  copy == 0 ? 0 : 2, "a change and its change back");
  expect_counts(deliver_one(ws, meta_text_message(ana, "wamid.NK.m", 1730000100, "before both")),
                1, 0, "message dated before both");
  // Back on the first number: the customer's contact stays where it is.
  BOOST_TEST(table_sizes(ws) == "1/1/1");
  BOOST_TEST(message(ws, "wamid.NK.m")->contact_phone == ana_e164);
  BOOST_TEST(!contact_metadata(ws, ana_e164).contains("previous_phones"));
}

BOOST_AUTO_TEST_CASE(kapso_number_change_before_and_after) {
  auto after = suite().take_workspace();
  auto before = suite().take_workspace();
  auto change_for = [&](const workspace& ws) {
    auto m = text_message(ws, "wamid.KN.c", 1730000200, "", ana_e164);
    m.type = "system";
    m.type_object = {{"type", "user_changed_number"}, {"wa_id", ana_new},
                     {"body", "User Ana changed from " + std::string{ana} + " to " + ana_new}};
    return kapso_event(m);
  };
  const std::string received = "whatsapp.message.received";
  deliver_kapso(kapso_event(text_message(after, "wamid.KN.1", 1730000100, "old", ana_e164)),
                received);
  for (int copy = 0; copy < 2; ++copy) {
    expect_counts(deliver_kapso(change_for(after), received), copy == 0 ? 1 : 0,
                  copy == 0 ? 0 : 1, "change after");
    expect_counts(deliver_kapso(change_for(before), received), copy == 0 ? 1 : 0,
                  copy == 0 ? 0 : 1, "change before");
  }
  deliver_kapso(kapso_event(text_message(before, "wamid.KN.1", 1730000100, "old", ana_e164)),
                received);
  for (const auto& ws : {after, before}) {
    deliver_kapso(kapso_event(text_message(ws, "wamid.KN.2", 1730000300, "new", ana_new_e164)),
                  received);
    BOOST_TEST(table_sizes(ws) == "1/1/2");
    BOOST_TEST(contact_metadata(ws, ana_new_e164)["previous_phones"] == json::array({ana_e164}));
    BOOST_TEST(conversation(ws, ana_new_e164) == std::optional<std::string>{"2|1730000300|new"});
  }
}

// -- identity changes ----------------------------------------------------------------

BOOST_AUTO_TEST_CASE(identity_change_before_and_after_twice) {
  auto after = suite().take_workspace();
  auto before = suite().take_workspace();
  auto change = identity_change(ana, "wamid.I.c", 1730000200, "aWRlbnRpdHk=");
  deliver_one(after, meta_text_message(ana, "wamid.I.1", 1730000100, "hi"));
  for (int copy = 0; copy < 2; ++copy) {
    expect_counts(deliver_one(after, change), copy == 0 ? 1 : 0, copy == 0 ? 0 : 1,
                  "identity change");
    expect_counts(deliver_one(before, change), copy == 0 ? 1 : 0, copy == 0 ? 0 : 1,
                  "early identity change");
  }
  deliver_one(before, meta_text_message(ana, "wamid.I.1", 1730000100, "hi"));
  for (const auto& ws : {after, before}) {
    BOOST_TEST(table_sizes(ws) == "1/1/1");
    auto metadata = contact_metadata(ws, ana_e164);
    BOOST_TEST(metadata["identity_changed_at"] == iso(1730000200));
    BOOST_TEST(metadata["identity_hash"] == "aWRlbnRpdHk=");
    BOOST_TEST(conversation(ws, ana_e164) == std::optional<std::string>{"1|1730000100|hi"});
  }
  // Logged at info, without the customer's number.
  std::string log;
  BOOST_TEST(eventually(
    [&] {
      log = suite().server.log_tail(100000);
      return log.find("customer identity changed") != std::string::npos;
    },
    3s));
  BOOST_TEST(log.find(ana) == std::string::npos);
}

// -- everything together -------------------------------------------------------------

BOOST_AUTO_TEST_CASE(unread_counts_only_distinct_inbound_messages) {
  auto ws = suite().take_workspace();
  auto burst = json::array({
    edit_message(ana, "wamid.U.e", 1730000150, "wamid.U.1", "one, edited"),
    meta_text_message(ana, "wamid.U.1", 1730000100, "one"),
    meta_text_message(ana, "wamid.U.2", 1730000110, "two"),
    revoke_message(ana, "wamid.U.r", 1730000160, "wamid.U.2"),
    identity_change(ana, "wamid.U.i", 1730000170, "aGFzaA=="),
    meta_text_message(ana, "wamid.U.3", 1730000120, "three"),
    revoke_message(ana, "wamid.U.r3", 1730000180, "wamid.U.3"),
  });
  expect_counts(deliver_meta(ws, burst), 7, 0, "burst");
  expect_counts(deliver_meta(ws, burst), 0, 7, "burst again");
  expect_counts(deliver_one(ws, number_change(ana, "wamid.U.c", 1730000190, ana_new),
                            json(nullptr)),
                1, 0, "number change");
  BOOST_TEST(table_sizes(ws) == "1/1/3");
  BOOST_TEST(unread_total(ws) == 3);
  BOOST_TEST(message(ws, "wamid.U.1")->content == "one, edited");
  BOOST_TEST(message(ws, "wamid.U.2")->content == "[Message deleted]");
  BOOST_TEST(conversation(ws, ana_new_e164)
             == std::optional<std::string>{"3|1730000120|[Message deleted]"});
}

BOOST_AUTO_TEST_CASE(change_staged_on_another_server_is_applied_by_the_sweep) {
  auto ws = suite().take_workspace();
  server_process other{suite().db.url(),
                       server_options{{}, {}, "/readyz", std::nullopt, "lifecycle-other"}};
  // The suite's server has written before, so it keeps what it knew then.
  deliver_one(ws, meta_text_message(ana, "wamid.S.0", 1730000050, "earlier"));
  http_client to_other{other.port()};
  auto edit = meta_forward(ws.phone_number_id,
                           {{"contacts", contacts_of(ana)},
                            {"messages", {edit_message(ana, "wamid.S.e", 1730000150,
                                                       "wamid.S.1", "edited elsewhere")}}});
  BOOST_TEST_REQUIRE(post_meta(to_other, edit.dump()).status == 200);
  deliver_one(ws, meta_text_message(ana, "wamid.S.1", 1730000100, "original"));
  BOOST_TEST(eventually([&] { return message(ws, "wamid.S.1")->content == "edited elsewhere"; },
                        15s, 200ms));
  BOOST_TEST(waiting(ws) == 0);
}

// The database recomputes previews of changed messages (kapso_preview,
// migration 0003); it must cut exactly like the server.
BOOST_AUTO_TEST_CASE(database_previews_match_the_server) {
  const std::vector<std::string> texts = {
    "", "   ", "Hola", "  leading and trailing  \n", "line one\r\nline two\nthree\rfour",
    "tab\there\vvertical\fform", "two  spaces\n\nand blank line",
    std::string(99, 'a') + " b", std::string(100, 'a') + "   ", std::string(150, 'x'),
    [] { std::string s; for (int i = 0; i < 120; ++i) s += "\xc3\xa9"; return s; }(),
    [] { std::string s; for (int i = 0; i < 60; ++i) s += "\xf0\x9f\x98\x80 "; return s; }(),
    "\xc2\xa0non-breaking stays\xc2\xa0", std::string(98, 'a') + "\r\n\r\nz"};
  for (const auto& t : texts)
    BOOST_TEST(suite().db.value("SELECT kapso_preview($1)", t) == std::optional<std::string>{
                 kapso::cut_utf8(t)}, json(t).dump());
}

BOOST_AUTO_TEST_SUITE_END()
