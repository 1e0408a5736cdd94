// Contacts end to end: E.164 normalisation across spellings and payload forms, name filling.
#include <stdexcept>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"

using namespace kapso_test;

namespace {

struct contacts_suite : inbox_fixture, shared_suite<contacts_suite> {
  contacts_suite()
    : inbox_fixture(server_options{{"--phone.default-region=US"}, {}, "/readyz", std::nullopt,
                                   "contacts"}) {}
};

contacts_suite& suite() { return contacts_suite::current(); }

void deliver(const workspace& ws, const std::string& id, int64_t timestamp,
             const std::string& phone, std::optional<std::string> name) {
  auto m = text_message(ws, id, timestamp, "text of " + id, phone);
  m.contact_name = std::move(name);
  auto client = suite().client();
  auto response = post_webhook(client, kapso_event(m).dump());
  BOOST_TEST_REQUIRE(response.status == 200, id << ": HTTP " << response.status << " "
                                                << response.body);
  BOOST_TEST(counts_of(response).accepted == 1, id << ": " << response.body);
}

std::optional<std::string> contact_name(const workspace& ws) {
  return suite().db.value("SELECT coalesce(name, '<NULL>') FROM contacts "
                          "WHERE workspace_id = $1::uuid",
                          ws.id);
}

} // namespace

BOOST_AUTO_TEST_SUITE(contacts, *boost::unit_test::fixture<contacts_suite>())

BOOST_AUTO_TEST_CASE(three_spellings_of_one_number_are_one_contact) {
  auto ws = suite().take_workspace();
  deliver(ws, "wamid.norm.1", 1730000001, "+1 (555) 123-4567", "Ana");
  deliver(ws, "wamid.norm.2", 1730000002, "15551234567", "Ana");
  deliver(ws, "wamid.norm.3", 1730000003, "+15551234567", "Ana");
  auto& db = suite().db;
  auto contacts = db.query("SELECT phone FROM contacts WHERE workspace_id = $1::uuid", ws.id);
  BOOST_TEST_REQUIRE(contacts.size() == 1u);
  BOOST_TEST(text(contacts[0][0]) == "+15551234567");
  BOOST_TEST(db.count("SELECT count(*) FROM conversations WHERE workspace_id = $1::uuid", ws.id)
             == 1);
  BOOST_TEST(db.value("SELECT unread_count::text FROM conversations WHERE workspace_id = $1::uuid",
                      ws.id)
             == std::optional<std::string>{"3"});
  BOOST_TEST(db.count("SELECT count(*) FROM messages m JOIN conversations cv "
                      "ON cv.id = m.conversation_id WHERE m.workspace_id = $1::uuid",
                      ws.id)
             == 3);
}

BOOST_AUTO_TEST_CASE(meta_wa_id_and_kapso_phone_are_one_contact) {
  auto ws = suite().take_workspace();
  deliver(ws, "wamid.cross.1", 1730000101, "+447700900123", "Eve");
  json value = json::object();
  value["contacts"] =
    json::array({json{{"wa_id", "447700900123"}, {"profile", {{"name", "Eve"}}}}});
  value["messages"] =
    json::array({meta_text_message("447700900123", "wamid.cross.2", 1730000102, "via meta")});
  auto client = suite().client();
  auto response = post_meta(client, meta_forward(ws.phone_number_id, value).dump());
  BOOST_TEST_REQUIRE(response.status == 200, response.body);
  auto& db = suite().db;
  auto contacts = db.query("SELECT phone FROM contacts WHERE workspace_id = $1::uuid", ws.id);
  BOOST_TEST_REQUIRE(contacts.size() == 1u);
  BOOST_TEST(text(contacts[0][0]) == "+447700900123");
  BOOST_TEST(db.value("SELECT unread_count::text || '|' || last_message_preview "
                      "FROM conversations WHERE workspace_id = $1::uuid",
                      ws.id)
             == std::optional<std::string>{"2|via meta"});
}

BOOST_AUTO_TEST_CASE(empty_name_is_filled_by_a_later_delivery) {
  auto ws = suite().take_workspace();
  deliver(ws, "wamid.name.1", 1730000201, "+15551234567", std::nullopt);
  auto first = contact_name(ws);
  BOOST_TEST_REQUIRE(first.has_value());
  BOOST_TEST((*first == "<NULL>" || first->empty()), "name after a nameless delivery: " << *first);
  deliver(ws, "wamid.name.2", 1730000202, "+15551234567", "");
  deliver(ws, "wamid.name.3", 1730000203, "+15551234567", "Ana");
  BOOST_TEST(contact_name(ws) == std::optional<std::string>{"Ana"});
}

BOOST_AUTO_TEST_CASE(a_set_name_is_kept) {
  auto ws = suite().take_workspace();
  deliver(ws, "wamid.keep.1", 1730000301, "+15551234567", "Ana");
  deliver(ws, "wamid.keep.2", 1730000302, "+15551234567", "Someone Else");
  BOOST_TEST(contact_name(ws) == std::optional<std::string>{"Ana"});
  // Also when the message with the other name is older (order must not matter).
  deliver(ws, "wamid.keep.3", 1730000100, "+15551234567", "Older Name");
  BOOST_TEST(contact_name(ws) == std::optional<std::string>{"Ana"});
  // A contact name edited in the inbox application is kept too.
  suite().db.query("UPDATE contacts SET name = 'Ana (VIP)' WHERE workspace_id = $1::uuid", ws.id);
  deliver(ws, "wamid.keep.4", 1730000400, "+15551234567", "Ana");
  BOOST_TEST(contact_name(ws) == std::optional<std::string>{"Ana (VIP)"});
}

BOOST_AUTO_TEST_SUITE_END()
