// Edits, revokes and system notices in both payload forms (Meta forward, Kapso v2).
#include "http/payload.hpp"

#include <string>

#include <nlohmann/json.hpp>

#include <boost/test/unit_test.hpp>

using namespace kapso;
using nlohmann::json;

namespace {

parse_result parse(const json& body, std::string_view type = {}) {
  delivery_headers headers;
  headers.event_type = type;
  auto text = body.dump();
  return parse_delivery(text, headers, parse_options{});
}

// A copy: callers often pass a temporary parse_result.
event only_event(const parse_result& result) {
  BOOST_REQUIRE_MESSAGE(result.ok, result.error);
  BOOST_REQUIRE_EQUAL(result.parsed.events.size(), 1u);
  return result.parsed.events.front();
}

std::string kind_of(const event& ev) {
  return to_string(ev.kind);
}

json metadata_of(const event& ev) {
  return json::parse(ev.metadata_json);
}

// Meta's webhook with one change holding `value_extra` (business number
// 15550783881, the one in Meta's reference payloads).
json meta_body(const json& value_extra, const std::string& field = "messages") {
  json value = {{"messaging_product", "whatsapp"},
                {"metadata", {{"display_phone_number", "15550783881"},
                              {"phone_number_id", "106540352242922"}}}};
  value.update(value_extra);
  return {{"object", "whatsapp_business_account"},
          {"entry", {{{"id", "102290129340398"},
                      {"changes", {{{"field", field}, {"value", value}}}}}}}};
}

json customer_contacts() {
  return json::parse(R"([{"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}])");
}

json meta_messages(const json& message) {
  return {{"contacts", customer_contacts()}, {"messages", {message}}};
}

// A Kapso v2 event around `message` (which lacks only the kapso block).
json kapso_body(json message, const std::string& direction) {
  message["kapso"] = {{"direction", direction}, {"origin", "cloud_api"},
                      {"whatsapp_conversation_id", "conv_1"}};
  return {{"message", message},
          {"conversation", {{"id", "conv_1"}, {"phone_number", "+16505551234"},
                            {"phone_number_id", "106540352242922"},
                            {"contact_name", "Sheena Nelson"}}},
          {"phone_number_id", "106540352242922"}};
}

json text_edit() {
  return json::parse(R"({"from": "16505551234", "id": "wamid.EDIT1",
    "timestamp": "1739321024", "type": "edit",
    "edit": {"original_message_id": "wamid.ORIG1",
             "message": {"type": "text", "text": {"body": "Text was edited"}}}})");
}

json revoke() {
  return json::parse(R"({"from": "16505551234", "id": "wamid.REVOKE1",
    "timestamp": "1739321100", "type": "revoke",
    "revoke": {"original_message_id": "wamid.ORIG1"}})");
}

json number_change() {
  return json::parse(R"({"from": "16505551234", "id": "wamid.SYS1",
    "timestamp": "1739321200", "type": "system",
    "system": {"body": "User Sheena Nelson changed from 16505551234 to 12195555358",
               "wa_id": "12195555358", "type": "user_changed_number"}})");
}

json identity_change() {
  return json::parse(R"({"from": "16505551234", "id": "wamid.SYS2",
    "timestamp": "1739321300", "type": "system",
    "identity": {"acknowledged": true, "created_timestamp": "1739321290",
                 "hash": "bGlmZWN5Y2xl"},
    "system": {"body": "User identity changed", "type": "customer_identity_changed"}})");
}

} // namespace

BOOST_AUTO_TEST_SUITE(payload_lifecycle_meta)

BOOST_AUTO_TEST_CASE(text_edit_carries_the_new_version) {
  auto ev = only_event(parse(meta_body(meta_messages(text_edit()))));
  BOOST_TEST(kind_of(ev) == "message_edit");
  BOOST_TEST(ev.message_id == "wamid.EDIT1");
  BOOST_TEST(ev.original_message_id == "wamid.ORIG1");
  BOOST_TEST(ev.timestamp == 1739321024);
  BOOST_TEST(ev.contact_key == "+16505551234");
  BOOST_TEST(ev.direction == "inbound");
  BOOST_TEST(ev.message_type == "text");
  BOOST_TEST(ev.content == "Text was edited");
  BOOST_TEST(ev.preview == "Text was edited");
}

BOOST_AUTO_TEST_CASE(caption_edit_carries_caption_and_media) {
  auto message = text_edit();
  message["edit"]["message"] = json::parse(R"({"context": {"id": "wamid.CTX"},
    "type": "image", "image": {"caption": "New caption", "mime_type": "image/jpeg",
    "sha256": "c2hhMjU2", "id": "1003383421387256",
    "url": "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1"}})");
  auto ev = only_event(parse(meta_body(meta_messages(message))));
  BOOST_TEST(kind_of(ev) == "message_edit");
  BOOST_TEST(ev.message_type == "image");
  BOOST_TEST(ev.content == "New caption");
  BOOST_TEST(ev.media_url == "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1");
  BOOST_TEST(metadata_of(ev)["media"]["id"] == "1003383421387256");
}

BOOST_AUTO_TEST_CASE(business_edit_echo_is_outbound_to_the_customer) {
  auto message = text_edit();
  message["from"] = "15550783881";
  message["to"] = "16505551234";
  auto ev = only_event(parse(meta_body({{"message_echoes", {message}}}, "smb_message_echoes")));
  BOOST_TEST(kind_of(ev) == "message_edit");
  BOOST_TEST(ev.direction == "outbound");
  BOOST_TEST(ev.sender_type == "user");
  BOOST_TEST(ev.contact_key == "+16505551234");
  BOOST_TEST(metadata_of(ev)["origin"] == "business_app");
}

BOOST_AUTO_TEST_CASE(echo_naming_the_business_as_recipient_keeps_the_customer) {
  // Seen in public test data: `to` is the business, `from` the customer.
  auto message = revoke();
  message["to"] = "15550783881";
  auto ev = only_event(parse(meta_body({{"message_echoes", {message}}}, "smb_message_echoes")));
  BOOST_TEST(kind_of(ev) == "message_revoke");
  BOOST_TEST(ev.contact_key == "+16505551234");
}

BOOST_AUTO_TEST_CASE(revoke_names_its_original) {
  auto ev = only_event(parse(meta_body(meta_messages(revoke()))));
  BOOST_TEST(kind_of(ev) == "message_revoke");
  BOOST_TEST(ev.message_id == "wamid.REVOKE1");
  BOOST_TEST(ev.original_message_id == "wamid.ORIG1");
  BOOST_TEST(ev.timestamp == 1739321100);
  BOOST_TEST(ev.content.empty());
}

BOOST_AUTO_TEST_CASE(number_change_without_contacts_array) {
  auto ev = only_event(parse(meta_body({{"messages", {number_change()}}})));
  BOOST_TEST(kind_of(ev) == "contact_number_changed");
  BOOST_TEST(ev.contact_key == "+16505551234");
  BOOST_TEST(ev.new_contact_phone == "+12195555358");
  BOOST_TEST(ev.timestamp == 1739321200);
  BOOST_TEST(ev.message_id == "wamid.SYS1");
}

BOOST_AUTO_TEST_CASE(customer_changed_number_is_the_same_notice) {
  auto message = number_change();
  message["system"]["type"] = "customer_changed_number";
  auto ev = only_event(parse(meta_body({{"messages", {message}}})));
  BOOST_TEST(kind_of(ev) == "contact_number_changed");
  BOOST_TEST(ev.new_contact_phone == "+12195555358");
}

BOOST_AUTO_TEST_CASE(identity_change_keeps_the_hash) {
  auto ev = only_event(parse(meta_body(meta_messages(identity_change()))));
  BOOST_TEST(kind_of(ev) == "contact_identity_changed");
  BOOST_TEST(ev.contact_key == "+16505551234");
  BOOST_TEST(ev.contact_name == "Sheena Nelson");
  BOOST_TEST(ev.identity_hash == "bGlmZWN5Y2xl");
  BOOST_TEST(ev.timestamp == 1739321300);
  BOOST_TEST(metadata_of(ev)["identity"]["acknowledged"] == true);
}

BOOST_AUTO_TEST_CASE(other_system_notices_are_ignored_by_name) {
  // A changed business-scoped id names no phone at all.
  auto message = json::parse(R"({"id": "wamid.SYS3", "timestamp": "1753851315",
    "type": "system", "system": {"body": "User changed from CO.1 to MX.2",
    "user_id": "MX.2", "previous_user_id": "CO.1", "type": "user_changed_user_id"}})");
  auto result = parse(meta_body({{"messages", {message}}}));
  auto ev = only_event(result);
  BOOST_TEST(result.parsed.malformed == 0u);
  BOOST_TEST(kind_of(ev) == "unknown");
  BOOST_TEST(ev.event_type == "system.user_changed_user_id");
}

BOOST_AUTO_TEST_CASE(malformed_changes_are_counted_not_fatal) {
  auto no_original = text_edit();
  no_original["edit"].erase("original_message_id");
  auto no_version = text_edit();
  no_version["edit"].erase("message");
  auto no_revoked = revoke();
  no_revoked["revoke"] = json::object();
  auto no_new_number = number_change();
  no_new_number["system"].erase("wa_id");
  auto result = parse(meta_body(
    {{"contacts", customer_contacts()},
     {"messages", {no_original, no_version, no_revoked, no_new_number, text_edit()}}}));
  BOOST_REQUIRE(result.ok);
  BOOST_TEST(result.parsed.malformed == 4u);
  BOOST_REQUIRE_EQUAL(result.parsed.events.size(), 1u);
  BOOST_TEST(kind_of(result.parsed.events[0]) == "message_edit");
  BOOST_REQUIRE_EQUAL(result.skipped.size(), 4u);
  BOOST_TEST(result.skipped[0].find("original_message_id") != std::string::npos);
  BOOST_TEST(result.skipped[3].find("16505551234") == std::string::npos); // no numbers in logs
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(payload_lifecycle_kapso)

BOOST_AUTO_TEST_CASE(received_edit) {
  auto ev = only_event(parse(kapso_body(text_edit(), "inbound"), "whatsapp.message.received"));
  BOOST_TEST(kind_of(ev) == "message_edit");
  BOOST_TEST(ev.event_type == "whatsapp.message.received");
  BOOST_TEST(ev.original_message_id == "wamid.ORIG1");
  BOOST_TEST(ev.content == "Text was edited");
  BOOST_TEST(ev.contact_key == "+16505551234");
  BOOST_TEST(metadata_of(ev)["whatsapp_conversation_id"] == "conv_1");
}

BOOST_AUTO_TEST_CASE(edit_takes_kapso_media_url) {
  auto message = text_edit();
  message["edit"]["message"] = json::parse(R"({"type": "image",
    "image": {"caption": "Better caption", "id": "77"}})");
  auto body = kapso_body(message, "inbound");
  body["message"]["kapso"]["media_url"] = "https://media.kapso.example/77.jpg";
  auto ev = only_event(parse(body, "whatsapp.message.received"));
  BOOST_TEST(ev.content == "Better caption");
  BOOST_TEST(ev.media_url == "https://media.kapso.example/77.jpg");
}

BOOST_AUTO_TEST_CASE(sent_revoke) {
  auto message = revoke();
  message.erase("from");
  message["to"] = "16505551234";
  auto ev = only_event(parse(kapso_body(message, "outbound"), "whatsapp.message.sent"));
  BOOST_TEST(kind_of(ev) == "message_revoke");
  BOOST_TEST(ev.direction == "outbound");
  BOOST_TEST(ev.original_message_id == "wamid.ORIG1");
}

BOOST_AUTO_TEST_CASE(system_notices) {
  auto changed = only_event(parse(kapso_body(number_change(), "inbound"),
                                  "whatsapp.message.received"));
  BOOST_TEST(kind_of(changed) == "contact_number_changed");
  BOOST_TEST(changed.contact_key == "+16505551234");
  BOOST_TEST(changed.new_contact_phone == "+12195555358");
  auto identity = only_event(parse(kapso_body(identity_change(), "inbound"),
                                   "whatsapp.message.received"));
  BOOST_TEST(kind_of(identity) == "contact_identity_changed");
  BOOST_TEST(identity.identity_hash == "bGlmZWN5Y2xl");
}

BOOST_AUTO_TEST_CASE(type_from_direction_works_for_changes) {
  auto ev = only_event(parse(kapso_body(revoke(), "inbound")));
  BOOST_TEST(kind_of(ev) == "message_revoke");
}

BOOST_AUTO_TEST_CASE(status_of_an_edit_stays_a_status) {
  auto body = kapso_body(text_edit(), "outbound");
  auto ev = only_event(parse(body, "whatsapp.message.delivered"));
  BOOST_TEST(kind_of(ev) == "message_status");
  BOOST_TEST(ev.message_id == "wamid.EDIT1");
}

BOOST_AUTO_TEST_CASE(malformed_single_change_is_rejected) {
  auto message = text_edit();
  message["edit"].erase("original_message_id");
  auto result = parse(kapso_body(message, "inbound"), "whatsapp.message.received");
  BOOST_TEST(!result.ok);
  BOOST_TEST(result.error.find("original_message_id") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(batched_changes) {
  json body = {{"type", "whatsapp.message.received"}, {"batch", true},
               {"data", {kapso_body(text_edit(), "inbound"), kapso_body(revoke(), "inbound"),
                         kapso_body(number_change(), "inbound")}}};
  auto result = parse(body);
  BOOST_REQUIRE(result.ok);
  BOOST_REQUIRE_EQUAL(result.parsed.events.size(), 3u);
  BOOST_TEST(kind_of(result.parsed.events[0]) == "message_edit");
  BOOST_TEST(kind_of(result.parsed.events[1]) == "message_revoke");
  BOOST_TEST(kind_of(result.parsed.events[2]) == "contact_number_changed");
}

BOOST_AUTO_TEST_CASE(every_new_kind_has_a_name) {
  BOOST_TEST(std::string(to_string(event_kind::message_edit)) == "message_edit");
  BOOST_TEST(std::string(to_string(event_kind::message_revoke)) == "message_revoke");
  BOOST_TEST(std::string(to_string(event_kind::contact_number_changed))
             == "contact_number_changed");
  BOOST_TEST(std::string(to_string(event_kind::contact_identity_changed))
             == "contact_identity_changed");
}

BOOST_AUTO_TEST_SUITE_END()
