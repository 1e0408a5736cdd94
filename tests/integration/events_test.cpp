// SPEC §3 event types end to end: outbound echoes, statuses, conversation events, media, previews.
#include <stdexcept>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"

using namespace kapso_test;

namespace {

struct events_suite : inbox_fixture, shared_suite<events_suite> {
  events_suite() : inbox_fixture(server_options{{}, {}, "/readyz", std::nullopt, "events"}) {}
};

events_suite& suite() { return events_suite::current(); }

kapso_message message(const workspace& ws, std::string id, int64_t timestamp, std::string text,
                      std::string phone = "+15551230001") {
  return text_message(ws, std::move(id), timestamp, std::move(text), std::move(phone));
}

kapso_message outbound(const workspace& ws, std::string id, int64_t timestamp, std::string text,
                       std::string origin) {
  auto m = message(ws, std::move(id), timestamp, std::move(text));
  m.direction = "outbound";
  m.status = "sent";
  m.origin = std::move(origin);
  m.contact_name.reset();
  return m;
}

// POSTs one event and requires a 200; returns its counts.
delivery_counts deliver(const kapso_message& m, const std::string& event_type) {
  auto client = suite().client();
  auto response = post_webhook(client, kapso_event(m).dump(), global_secret, event_type);
  BOOST_TEST_REQUIRE(response.status == 200,
                     event_type << " " << m.id << ": HTTP " << response.status << " "
                                << response.body);
  return counts_of(response);
}

std::optional<std::string> message_status(const workspace& ws, const std::string& id) {
  return suite().db.value(
    "SELECT status FROM messages WHERE workspace_id = $1::uuid AND kapso_message_id = $2", ws.id,
    id);
}

std::optional<std::string> conversation_summary(const workspace& ws,
                                                const std::string& phone = "+15551230001") {
  return suite().db.value(
    "SELECT cv.status || '|' || cv.unread_count || '|' "
    "|| coalesce(extract(epoch FROM cv.last_message_at)::bigint::text, 'null') || '|' "
    "|| coalesce(cv.last_message_preview, 'null') "
    "FROM conversations cv JOIN contacts c ON c.id = cv.contact_id "
    "WHERE cv.workspace_id = $1::uuid AND c.phone = $2",
    ws.id, phone);
}

// Valid UTF-8 that is a byte prefix of `whole` ending on a character boundary.
bool is_clean_prefix(const std::string& part, const std::string& whole) {
  if (part.size() > whole.size() || whole.compare(0, part.size(), part) != 0)
    return false;
  if (part.size() == whole.size())
    return true;
  auto next = static_cast<unsigned char>(whole[part.size()]);
  return (next & 0xC0) != 0x80;
}

} // namespace

BOOST_AUTO_TEST_SUITE(events, *boost::unit_test::fixture<events_suite>())

BOOST_AUTO_TEST_CASE(outbound_echo_is_stored_without_touching_unread) {
  auto ws = suite().take_workspace();
  deliver(message(ws, "wamid.in.1", 1730000000, "hi"), "whatsapp.message.received");
  auto sent = deliver(outbound(ws, "wamid.out.1", 1730000010, "Hello from the team",
                               "business_app"),
                      "whatsapp.message.sent");
  BOOST_TEST(sent.accepted == 1);
  deliver(outbound(ws, "wamid.out.2", 1730000020, "Automated answer", "cloud_api"),
          "whatsapp.message.sent");

  auto rows = suite().db.query(
    "SELECT kapso_message_id, direction, sender_type, content, status, "
    "extract(epoch FROM created_at)::bigint FROM messages WHERE workspace_id = $1::uuid "
    "ORDER BY created_at",
    ws.id);
  BOOST_TEST_REQUIRE(rows.size() == 3u);
  BOOST_TEST(text(rows[1][0]) == "wamid.out.1");
  BOOST_TEST(text(rows[1][1]) == "outbound");
  BOOST_TEST(text(rows[1][2]) == "user"); // origin business_app: a person typed it
  BOOST_TEST(text(rows[1][3]) == "Hello from the team");
  BOOST_TEST(text(rows[1][4]) == "sent");
  BOOST_TEST(text(rows[1][5]) == "1730000010");
  BOOST_TEST(text(rows[2][1]) == "outbound");
  BOOST_TEST(text(rows[2][2]) == "bot");
  // Unread counts customers' messages only; the newest message (outbound) is the preview.
  BOOST_TEST(conversation_summary(ws)
             == std::optional<std::string>{"open|1|1730000020|Automated answer"});
  BOOST_TEST(suite().db.count("SELECT count(*) FROM contacts WHERE workspace_id = $1::uuid", ws.id)
             == 1);

  auto again = deliver(outbound(ws, "wamid.out.1", 1730000010, "Hello from the team",
                                "business_app"),
                       "whatsapp.message.sent");
  BOOST_TEST(again.duplicates == 1);
  BOOST_TEST(again.accepted == 0);
}

BOOST_AUTO_TEST_CASE(status_advances_and_never_moves_backwards) {
  auto ws = suite().take_workspace();
  deliver(outbound(ws, "wamid.st.1", 1730000100, "order shipped", "api"), "whatsapp.message.sent");
  BOOST_TEST(message_status(ws, "wamid.st.1") == std::optional<std::string>{"sent"});

  auto status_event = [&](const std::string& status, int64_t at) {
    auto m = outbound(ws, "wamid.st.1", at, "order shipped", "api");
    m.status = status;
    auto counts = deliver(m, "whatsapp.message." + status);
    BOOST_TEST(counts.ignored == 0, status);
    BOOST_TEST(counts.accepted + counts.duplicates == 1, status);
  };
  status_event("delivered", 1730000101);
  BOOST_TEST(message_status(ws, "wamid.st.1") == std::optional<std::string>{"delivered"});
  status_event("read", 1730000102);
  BOOST_TEST(message_status(ws, "wamid.st.1") == std::optional<std::string>{"read"});
  // Late, reordered deliveries of older statuses.
  status_event("delivered", 1730000101);
  BOOST_TEST(message_status(ws, "wamid.st.1") == std::optional<std::string>{"read"});
  auto sent_again = deliver(outbound(ws, "wamid.st.1", 1730000100, "order shipped", "api"),
                            "whatsapp.message.sent");
  BOOST_TEST(sent_again.duplicates == 1);
  BOOST_TEST(message_status(ws, "wamid.st.1") == std::optional<std::string>{"read"});
  BOOST_TEST(suite().db.count("SELECT count(*) FROM messages WHERE workspace_id = $1::uuid", ws.id)
             == 1);
}

BOOST_AUTO_TEST_CASE(status_arriving_before_its_message_is_not_lost) {
  // Kapso does not guarantee order: "read" may overtake the "sent" echo.
  auto ws = suite().take_workspace();
  auto read = outbound(ws, "wamid.early.1", 1730000152, "early bird", "api");
  read.status = "read";
  auto client = suite().client();
  auto response = post_webhook(client, kapso_event(read).dump(), global_secret,
                               "whatsapp.message.read");
  BOOST_TEST_REQUIRE(response.status == 200, response.body);
  deliver(outbound(ws, "wamid.early.1", 1730000150, "early bird", "api"), "whatsapp.message.sent");
  BOOST_TEST(message_status(ws, "wamid.early.1") == std::optional<std::string>{"read"});
  BOOST_TEST(suite().db.count("SELECT count(*) FROM messages WHERE workspace_id = $1::uuid", ws.id)
             == 1);
}

BOOST_AUTO_TEST_CASE(kapso_failed_status_is_terminal) {
  auto ws = suite().take_workspace();
  deliver(outbound(ws, "wamid.kf.1", 1730000200, "promo", "api"), "whatsapp.message.sent");
  auto failed = outbound(ws, "wamid.kf.1", 1730000201, "promo", "api");
  failed.status = "failed";
  deliver(failed, "whatsapp.message.failed");
  BOOST_TEST(message_status(ws, "wamid.kf.1") == std::optional<std::string>{"failed"});
  auto read = outbound(ws, "wamid.kf.1", 1730000202, "promo", "api");
  read.status = "read";
  deliver(read, "whatsapp.message.read");
  BOOST_TEST(message_status(ws, "wamid.kf.1") == std::optional<std::string>{"failed"});
}

BOOST_AUTO_TEST_CASE(meta_statuses_advance_and_failed_keeps_the_error) {
  auto ws = suite().take_workspace();
  deliver(outbound(ws, "wamid.ms.1", 1730000300, "first", "api"), "whatsapp.message.sent");
  deliver(outbound(ws, "wamid.ms.2", 1730000301, "second", "api"), "whatsapp.message.sent");
  auto client = suite().client();
  auto meta_status = [&](const std::string& id, const std::string& status, int64_t at,
                         const json& errors) {
    json s = json::object();
    s["id"] = id;
    s["status"] = status;
    s["timestamp"] = std::to_string(at);
    s["recipient_id"] = "15551230001";
    if (!errors.is_null())
      s["errors"] = errors;
    json value = json::object();
    value["statuses"] = json::array({s});
    auto response = post_meta(client, meta_forward(ws.phone_number_id, value).dump());
    BOOST_TEST(response.status == 200, id << " " << status << ": " << response.body);
  };
  meta_status("wamid.ms.1", "delivered", 1730000310, nullptr);
  BOOST_TEST(message_status(ws, "wamid.ms.1") == std::optional<std::string>{"delivered"});
  meta_status("wamid.ms.1", "read", 1730000320, nullptr);
  meta_status("wamid.ms.1", "delivered", 1730000310, nullptr);
  BOOST_TEST(message_status(ws, "wamid.ms.1") == std::optional<std::string>{"read"});

  auto errors = json::array({json{{"code", 131047},
                                  {"title", "Re-engagement message"},
                                  {"message", "Re-engagement message"}}});
  meta_status("wamid.ms.2", "failed", 1730000330, errors);
  BOOST_TEST(message_status(ws, "wamid.ms.2") == std::optional<std::string>{"failed"});
  auto metadata = suite().db.value(
    "SELECT metadata::text FROM messages WHERE workspace_id = $1::uuid "
    "AND kapso_message_id = 'wamid.ms.2'",
    ws.id);
  BOOST_TEST_REQUIRE(metadata.has_value());
  BOOST_TEST(metadata->find("131047") != std::string::npos, "metadata: " << *metadata);
  meta_status("wamid.ms.2", "delivered", 1730000340, nullptr);
  meta_status("wamid.ms.2", "read", 1730000350, nullptr);
  BOOST_TEST(message_status(ws, "wamid.ms.2") == std::optional<std::string>{"failed"});
}

BOOST_AUTO_TEST_CASE(conversation_created_ended_inactive) {
  auto ws = suite().take_workspace();
  json conversation = json::object();
  conversation["id"] = "conv_created_1";
  conversation["phone_number"] = "+15551230001";
  conversation["phone_number_id"] = ws.phone_number_id;
  conversation["contact_name"] = "Dora";
  json body = json::object();
  body["conversation"] = conversation;
  body["phone_number_id"] = ws.phone_number_id;
  auto client = suite().client();

  auto created = post_webhook(client, body.dump(), global_secret, "whatsapp.conversation.created");
  BOOST_TEST_REQUIRE(created.status == 200, created.body);
  BOOST_TEST(counts_of(created).accepted == 1, created.body);
  auto& db = suite().db;
  BOOST_TEST(db.value("SELECT phone || '|' || name FROM contacts WHERE workspace_id = $1::uuid",
                      ws.id)
             == std::optional<std::string>{"+15551230001|Dora"});
  BOOST_TEST(conversation_summary(ws) == std::optional<std::string>{"open|0|null|null"});
  BOOST_TEST(db.count("SELECT count(*) FROM messages WHERE workspace_id = $1::uuid", ws.id) == 0);

  // Created again (retry): still one contact and one conversation.
  auto again = post_webhook(client, body.dump(), global_secret, "whatsapp.conversation.created");
  BOOST_TEST(again.status == 200, again.body);
  BOOST_TEST(db.count("SELECT count(*) FROM conversations WHERE workspace_id = $1::uuid", ws.id)
             == 1);

  deliver(message(ws, "wamid.conv.1", 1730000400, "are you there?"), "whatsapp.message.received");
  auto snapshot = [&] {
    return db.value("SELECT row_to_json(cv)::text FROM conversations cv "
                    "WHERE workspace_id = $1::uuid",
                    ws.id);
  };
  auto before_inactive = snapshot();
  auto inactive = post_webhook(client, body.dump(), global_secret,
                               "whatsapp.conversation.inactive");
  BOOST_TEST_REQUIRE(inactive.status == 200, inactive.body);
  BOOST_TEST(counts_of(inactive).accepted == 1, inactive.body);
  BOOST_TEST(snapshot() == before_inactive);

  auto ended = post_webhook(client, body.dump(), global_secret, "whatsapp.conversation.ended");
  BOOST_TEST_REQUIRE(ended.status == 200, ended.body);
  BOOST_TEST(counts_of(ended).accepted == 1, ended.body);
  BOOST_TEST(conversation_summary(ws)
             == std::optional<std::string>{"closed|1|1730000400|are you there?"});
  BOOST_TEST(db.count("SELECT count(*) FROM conversations WHERE workspace_id = $1::uuid", ws.id)
             == 1);
}

BOOST_AUTO_TEST_CASE(unknown_event_type_is_ignored_not_retried) {
  auto ws = suite().take_workspace();
  auto client = suite().client();
  auto response = post_webhook(
    client, kapso_event(message(ws, "wamid.unknown.1", 1730000500, "x")).dump(), global_secret,
    "whatsapp.something.new");
  BOOST_TEST_REQUIRE(response.status == 200, response.body);
  BOOST_TEST(response.parsed()
             == json::parse(R"({"received":true,"accepted":0,"duplicates":0,"ignored":1})"),
             response.body);
  BOOST_TEST(inbox_rows(suite().db, ws.id) == 0);
}

BOOST_AUTO_TEST_CASE(media_messages_and_their_previews) {
  auto ws = suite().take_workspace();
  auto image = message(ws, "wamid.media.img", 1730000600, "", "+15551230011");
  image.type = "image";
  image.type_object = json{{"id", "media-1"}, {"mime_type", "image/jpeg"}};
  image.media_url = "https://media.example.invalid/1.jpg";
  deliver(image, "whatsapp.message.received");

  auto captioned = message(ws, "wamid.media.cap", 1730000601, "", "+15551230012");
  captioned.type = "image";
  captioned.type_object = json{{"id", "media-2"}, {"mime_type", "image/jpeg"},
                               {"caption", "Look at this"}};
  captioned.media_url = "https://media.example.invalid/2.jpg";
  deliver(captioned, "whatsapp.message.received");

  auto document = message(ws, "wamid.media.doc", 1730000602, "", "+15551230013");
  document.type = "document";
  document.type_object = json{{"id", "media-3"}, {"mime_type", "application/pdf"},
                              {"filename", "invoice.pdf"}};
  document.media_url = "https://media.example.invalid/invoice.pdf";
  deliver(document, "whatsapp.message.received");

  auto& db = suite().db;
  auto row = [&](const std::string& id) {
    return db.value("SELECT message_type || '|' || coalesce(media_url, 'null') FROM messages "
                    "WHERE workspace_id = $1::uuid AND kapso_message_id = $2",
                    ws.id, id);
  };
  BOOST_TEST(row("wamid.media.img")
             == std::optional<std::string>{"image|https://media.example.invalid/1.jpg"});
  BOOST_TEST(row("wamid.media.doc")
             == std::optional<std::string>{"document|https://media.example.invalid/invoice.pdf"});
  BOOST_TEST(conversation_summary(ws, "+15551230011")
             == std::optional<std::string>{"open|1|1730000600|[Image]"});
  BOOST_TEST(conversation_summary(ws, "+15551230013")
             == std::optional<std::string>{"open|1|1730000602|[Document: invoice.pdf]"});
  auto caption_preview = db.value(
    "SELECT last_message_preview FROM conversations cv JOIN contacts c ON c.id = cv.contact_id "
    "WHERE cv.workspace_id = $1::uuid AND c.phone = '+15551230012'",
    ws.id);
  BOOST_TEST_REQUIRE(caption_preview.has_value());
  BOOST_TEST(caption_preview->find("Look at this") != std::string::npos, *caption_preview);
}

BOOST_AUTO_TEST_CASE(previews_are_cut_to_100_characters_on_utf8_boundaries) {
  auto ws = suite().take_workspace();
  struct sample {
    std::string phone;
    std::string text;
  };
  std::string ascii(150, 'a');
  for (size_t i = 0; i < ascii.size(); ++i)
    ascii[i] = static_cast<char>('a' + i % 26);
  std::string two_byte, four_byte, mixed;
  for (int i = 0; i < 150; ++i)
    two_byte += "\xC3\xB1"; // ñ
  for (int i = 0; i < 120; ++i)
    four_byte += "\xF0\x9F\x98\x80"; // 😀
  for (int i = 0; i < 60; ++i)
    mixed += "a\xE2\x82\xAC"; // a€
  std::vector<sample> samples{{"+15551230021", ascii},
                              {"+15551230022", two_byte},
                              {"+15551230023", four_byte},
                              {"+15551230024", mixed}};
  for (size_t i = 0; i < samples.size(); ++i)
    deliver(message(ws, "wamid.long." + std::to_string(i), 1730000700, samples[i].text,
                    samples[i].phone),
            "whatsapp.message.received");

  auto& db = suite().db;
  for (size_t i = 0; i < samples.size(); ++i) {
    BOOST_TEST_CONTEXT("sample " << i) {
      auto preview = db.value(
        "SELECT last_message_preview FROM conversations cv JOIN contacts c "
        "ON c.id = cv.contact_id WHERE cv.workspace_id = $1::uuid AND c.phone = $2",
        ws.id, samples[i].phone);
      BOOST_TEST_REQUIRE(preview.has_value());
      BOOST_TEST(is_clean_prefix(*preview, samples[i].text), *preview);
      auto length = db.count("SELECT char_length($1::text)", *preview);
      BOOST_TEST(length <= 100);
      BOOST_TEST(length >= 25); // cut, not emptied
      // The message keeps the whole text.
      BOOST_TEST(db.value("SELECT content FROM messages WHERE workspace_id = $1::uuid "
                          "AND kapso_message_id = $2",
                          ws.id, "wamid.long." + std::to_string(i))
                 == std::optional<std::string>{samples[i].text});
    }
  }
  BOOST_TEST(db.value("SELECT last_message_preview FROM conversations cv JOIN contacts c "
                      "ON c.id = cv.contact_id WHERE cv.workspace_id = $1::uuid "
                      "AND c.phone = '+15551230021'",
                      ws.id)
             == std::optional<std::string>{ascii.substr(0, 100)});
}

BOOST_AUTO_TEST_CASE(customer_without_phone_is_keyed_by_business_scoped_id) {
  auto ws = suite().take_workspace();
  auto first = message(ws, "wamid.bsuid.1", 1730000800, "no phone here", "");
  first.bsuid = "US.13491208655302741918";
  first.contact_name = "Carla";
  auto second = first;
  second.id = "wamid.bsuid.2";
  second.timestamp = 1730000801;
  second.text = "still no phone";
  BOOST_TEST(deliver(first, "whatsapp.message.received").accepted == 1);
  BOOST_TEST(deliver(second, "whatsapp.message.received").accepted == 1);
  auto& db = suite().db;
  auto contacts = db.query("SELECT phone, name FROM contacts WHERE workspace_id = $1::uuid", ws.id);
  BOOST_TEST_REQUIRE(contacts.size() == 1u);
  BOOST_TEST(text(contacts[0][0]).find("13491208655302741918") != std::string::npos,
             text(contacts[0][0]));
  BOOST_TEST(text(contacts[0][1]) == "Carla");
  BOOST_TEST(db.value("SELECT unread_count::text || '|' || last_message_preview "
                      "FROM conversations WHERE workspace_id = $1::uuid",
                      ws.id)
             == std::optional<std::string>{"2|still no phone"});
  BOOST_TEST(db.count("SELECT count(*) FROM messages WHERE workspace_id = $1::uuid", ws.id) == 2);
}

BOOST_AUTO_TEST_SUITE_END()
