// Payload forms (Kapso v2 single/batch, Meta forward) and event types.
#include "http/payload.hpp"

#include <ostream>

#include <nlohmann/json.hpp>

#include <boost/test/unit_test.hpp>

using namespace kapso;
using nlohmann::json;

namespace kapso {

// Lets BOOST_TEST print event kinds in failure messages (found by ADL).
std::ostream& boost_test_print_type(std::ostream& out, event_kind kind) {
  return out << to_string(kind);
}

} // namespace kapso

namespace {

parse_result parse(const std::string& body, std::string_view type = {},
                   std::string_view batch = {}) {
  delivery_headers headers;
  headers.event_type = type;
  headers.batch = batch;
  return parse_delivery(body, headers, parse_options{});
}

parse_result parse(const json& body, std::string_view type = {},
                   std::string_view batch = {}) {
  return parse(body.dump(), type, batch);
}

// A copy: callers often pass a temporary parse_result.
event only_event(const parse_result& result) {
  BOOST_REQUIRE_MESSAGE(result.ok, result.error);
  BOOST_REQUIRE_EQUAL(result.parsed.events.size(), 1u);
  return result.parsed.events.front();
}

json metadata_of(const event& ev) {
  return json::parse(ev.metadata_json);
}

// The SPEC's example of a Kapso v2 whatsapp.message.received body.
json received_body() {
  return json::parse(R"({
    "message": {"id": "wamid.HBgL1", "timestamp": "1730092801", "type": "text",
                "text": {"body": "Hola"},
                "context": {"from": "15550001111", "id": "wamid.prev"},
                "kapso": {"direction": "inbound", "status": "received",
                          "origin": "cloud_api", "whatsapp_conversation_id": "conv_123",
                          "content": "Hola", "contact_name": "Ana", "has_media": false}},
    "conversation": {"id": "conv_123", "phone_number": "+15551234567",
                     "phone_number_id": "123456789012345", "contact_name": "Ana",
                     "business_scoped_user_id": "US.1001"},
    "phone_number_id": "123456789012345", "is_new_conversation": false})");
}

json sent_body(const std::string& origin) {
  return json::parse(R"({
    "message": {"id": "wamid.OUT1", "timestamp": "1730092900", "type": "text",
                "to": "15551234567", "text": {"body": "Hi Ana"},
                "kapso": {"direction": "outbound", "status": "sent",
                          "origin": ")" + origin + R"("}},
    "conversation": {"id": "conv_123", "phone_number_id": "123456789012345"},
    "phone_number_id": "123456789012345"})");
}

json status_body(const std::string& status) {
  return json::parse(R"({
    "message": {"id": "wamid.OUT1", "timestamp": "1730092900", "type": "text",
                "text": {"body": "Hi Ana"},
                "kapso": {"direction": "outbound", "status": ")" + status + R"(",
                          "origin": "api"}},
    "conversation": {"id": "conv_123", "phone_number": "+15551234567",
                     "phone_number_id": "123456789012345"},
    "phone_number_id": "123456789012345"})");
}

json meta_change(const std::string& phone_number_id, const json& value_extra,
                 const std::string& field = "messages") {
  json value = {{"messaging_product", "whatsapp"},
                {"metadata", {{"display_phone_number", "15550009999"},
                              {"phone_number_id", phone_number_id}}}};
  value.update(value_extra);
  return {{"field", field}, {"value", value}};
}

json meta_body(const json& entries) {
  return {{"object", "whatsapp_business_account"}, {"entry", entries}};
}

} // namespace

BOOST_AUTO_TEST_SUITE(payload_kapso_single)

BOOST_AUTO_TEST_CASE(received_fills_every_field) {
  auto result = parse(received_body(), "whatsapp.message.received");
  const auto& ev = only_event(result);
  BOOST_TEST(!result.parsed.meta_forward);
  BOOST_TEST(result.parsed.malformed == 0u);
  BOOST_TEST(ev.kind == event_kind::message_received);
  BOOST_TEST(ev.event_type == "whatsapp.message.received");
  BOOST_TEST(ev.phone_number_id == "123456789012345");
  BOOST_TEST(ev.contact_key == "+15551234567");
  BOOST_TEST(ev.contact_phone == "+15551234567");
  BOOST_TEST(ev.contact_bsuid == "US.1001");
  BOOST_TEST(ev.contact_username == "");
  BOOST_TEST(ev.contact_name == "Ana");
  BOOST_TEST(ev.whatsapp_conversation_id == "conv_123");
  BOOST_TEST(ev.message_id == "wamid.HBgL1");
  BOOST_TEST(ev.timestamp == 1730092801);
  BOOST_TEST(ev.direction == "inbound");
  BOOST_TEST(ev.sender_type == "contact");
  BOOST_TEST(ev.message_type == "text");
  BOOST_TEST(ev.content == "Hola");
  BOOST_TEST(ev.preview == "Hola");
  BOOST_TEST(ev.media_url == "");
  BOOST_TEST(ev.status == "received");
  BOOST_TEST(ev.status_error_json == "");
  auto metadata = metadata_of(ev);
  BOOST_TEST(metadata["context"] == json({{"id", "wamid.prev"}, {"from", "15550001111"}}));
  BOOST_TEST(metadata["origin"] == "cloud_api");
  BOOST_TEST(metadata["whatsapp_conversation_id"] == "conv_123");
  BOOST_TEST(metadata["has_media"] == false);
  // Compact: no whitespace between tokens.
  BOOST_TEST(ev.metadata_json.find(": ") == std::string::npos);
  BOOST_TEST(ev.metadata_json.find(", ") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(phone_number_id_falls_back_to_the_conversation) {
  auto body = received_body();
  body.erase("phone_number_id");
  body["conversation"]["phone_number_id"] = "999";
  BOOST_TEST(only_event(parse(body, "whatsapp.message.received")).phone_number_id == "999");
}

BOOST_AUTO_TEST_CASE(numeric_ids_are_read_as_text) {
  auto body = received_body();
  body["phone_number_id"] = 123456789012345;
  BOOST_TEST(only_event(parse(body)).phone_number_id == "123456789012345");
}

BOOST_AUTO_TEST_CASE(missing_phone_number_id_is_malformed) {
  auto body = received_body();
  body.erase("phone_number_id");
  body["conversation"].erase("phone_number_id");
  auto result = parse(body, "whatsapp.message.received");
  BOOST_TEST(!result.ok);
  BOOST_TEST(result.error.find("phone_number_id") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(message_without_id_is_rejected_with_a_reason) {
  auto body = received_body();
  body["message"].erase("id");
  auto result = parse(body, "whatsapp.message.received");
  BOOST_TEST(!result.ok);
  BOOST_TEST(result.error.find("message.id") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(message_event_without_message_is_rejected) {
  auto body = received_body();
  body.erase("message");
  auto result = parse(body, "whatsapp.message.received");
  BOOST_TEST(!result.ok);
  BOOST_TEST(result.error.find("without a message object") != std::string::npos, result.error);
}

BOOST_AUTO_TEST_CASE(timestamp_forms) {
  auto body = received_body();
  body["message"]["timestamp"] = 1730092801;
  BOOST_TEST(only_event(parse(body)).timestamp == 1730092801);
  body["message"]["timestamp"] = "2024-10-28T05:20:01Z";
  BOOST_TEST(only_event(parse(body)).timestamp == 1730092801);
  body["message"].erase("timestamp");
  BOOST_TEST(only_event(parse(body)).timestamp == 0);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(payload_event_types)

BOOST_AUTO_TEST_CASE(header_beats_body_event_beats_body_type) {
  auto body = received_body();
  body["event"] = "whatsapp.message.sent";
  body["type"] = "whatsapp.conversation.created";
  BOOST_TEST(only_event(parse(body, "whatsapp.message.received")).kind
             == event_kind::message_received);
  BOOST_TEST(only_event(parse(body)).kind == event_kind::message_sent);
  body.erase("event");
  BOOST_TEST(only_event(parse(body)).kind == event_kind::conversation_created);
}

BOOST_AUTO_TEST_CASE(header_is_trimmed) {
  BOOST_TEST(only_event(parse(received_body(), " whatsapp.message.received ")).event_type
             == "whatsapp.message.received");
}

BOOST_AUTO_TEST_CASE(type_inferred_from_direction) {
  auto inbound = only_event(parse(received_body()));
  BOOST_TEST(inbound.kind == event_kind::message_received);
  BOOST_TEST(inbound.event_type == "whatsapp.message.received");
  auto outbound = only_event(parse(sent_body("api")));
  BOOST_TEST(outbound.kind == event_kind::message_sent);
  BOOST_TEST(outbound.event_type == "whatsapp.message.sent");
}

BOOST_AUTO_TEST_CASE(no_type_and_no_direction_is_rejected) {
  auto body = received_body();
  body["message"]["kapso"].erase("direction");
  auto result = parse(body);
  BOOST_TEST(!result.ok);
  BOOST_TEST(result.error.find("event type") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(sent_from_business_app_is_a_user) {
  const auto& ev = only_event(parse(sent_body("business_app"), "whatsapp.message.sent"));
  BOOST_TEST(ev.kind == event_kind::message_sent);
  BOOST_TEST(ev.direction == "outbound");
  BOOST_TEST(ev.sender_type == "user");
  BOOST_TEST(ev.status == "sent");
  BOOST_TEST(ev.contact_key == "+15551234567"); // from message.to
  BOOST_TEST(metadata_of(ev)["origin"] == "business_app");
}

BOOST_AUTO_TEST_CASE(sent_from_api_is_a_bot) {
  const auto& ev = only_event(parse(sent_body("api"), "whatsapp.message.sent"));
  BOOST_TEST(ev.sender_type == "bot");
  BOOST_TEST(ev.content == "Hi Ana");
}

BOOST_AUTO_TEST_CASE(sent_status_comes_from_kapso_when_known) {
  auto body = sent_body("api");
  body["message"]["kapso"]["status"] = "delivered";
  BOOST_TEST(only_event(parse(body, "whatsapp.message.sent")).status == "delivered");
  body["message"]["kapso"]["status"] = "pending";
  BOOST_TEST(only_event(parse(body, "whatsapp.message.sent")).status == "sent");
}

BOOST_AUTO_TEST_CASE(sent_already_failed_keeps_its_error_in_metadata) {
  auto body = sent_body("api");
  body["message"]["kapso"]["status"] = "failed";
  body["message"]["kapso"]["error"] = {{"code", 131026}};
  const auto& ev = only_event(parse(body, "whatsapp.message.sent"));
  BOOST_TEST(ev.kind == event_kind::message_sent);
  BOOST_TEST(ev.status == "failed");
  BOOST_TEST(json::parse(ev.status_error_json) == json({{"code", 131026}}));
  BOOST_TEST(metadata_of(ev)["error"] == json({{"code", 131026}}));
}

BOOST_AUTO_TEST_CASE(delivered_and_read) {
  for (auto status : {"delivered", "read"}) {
    BOOST_TEST_CONTEXT(status) {
      auto type = std::string("whatsapp.message.") + status;
      const auto& ev = only_event(parse(status_body(status), type));
      BOOST_TEST(ev.kind == event_kind::message_status);
      BOOST_TEST(ev.event_type == type);
      BOOST_TEST(ev.status == status);
      BOOST_TEST(ev.message_id == "wamid.OUT1");
      BOOST_TEST(ev.contact_key == "+15551234567");
      BOOST_TEST(ev.status_error_json == "");
    }
  }
}

BOOST_AUTO_TEST_CASE(failed_error_from_kapso_error) {
  auto body = status_body("failed");
  body["message"]["kapso"]["error"] = {{"code", 131047}, {"title", "Re-engagement"}};
  const auto& ev = only_event(parse(body, "whatsapp.message.failed"));
  BOOST_TEST(ev.status == "failed");
  BOOST_TEST(json::parse(ev.status_error_json)
             == json({{"code", 131047}, {"title", "Re-engagement"}}));
}

BOOST_AUTO_TEST_CASE(failed_error_from_message_errors) {
  auto body = status_body("failed");
  body["message"]["errors"] = json::array({{{"code", 131026}}});
  const auto& ev = only_event(parse(body, "whatsapp.message.failed"));
  BOOST_TEST(json::parse(ev.status_error_json) == json::array({{{"code", 131026}}}));
}

BOOST_AUTO_TEST_CASE(failed_error_from_kapso_statuses) {
  auto body = status_body("failed");
  body["message"]["kapso"]["statuses"] = json::parse(R"([
    {"status": "sent", "timestamp": "1730092900"},
    {"status": "failed", "timestamp": "1730092901",
     "errors": [{"code": 131049, "title": "Not delivered"}]}])");
  const auto& ev = only_event(parse(body, "whatsapp.message.failed"));
  BOOST_TEST(json::parse(ev.status_error_json)
             == json::parse(R"([{"code": 131049, "title": "Not delivered"}])"));
}

BOOST_AUTO_TEST_CASE(failed_string_error_becomes_an_object) {
  auto body = status_body("failed");
  body["message"]["kapso"]["error"] = "boom";
  const auto& ev = only_event(parse(body, "whatsapp.message.failed"));
  BOOST_TEST(json::parse(ev.status_error_json) == json({{"message", "boom"}}));
}

BOOST_AUTO_TEST_CASE(conversation_events) {
  auto body = json::parse(R"({
    "conversation": {"id": "conv_9", "phone_number": "15551234567", "status": "active",
                     "phone_number_id": "123456789012345",
                     "kapso": {"contact_name": "Bea"}},
    "phone_number_id": "123456789012345"})");
  const auto& created = only_event(parse(body, "whatsapp.conversation.created"));
  BOOST_TEST(created.kind == event_kind::conversation_created);
  BOOST_TEST(created.contact_key == "+15551234567");
  BOOST_TEST(created.contact_name == "Bea");
  BOOST_TEST(created.whatsapp_conversation_id == "conv_9");
  BOOST_TEST(created.message_id == "");
  BOOST_TEST(only_event(parse(body, "whatsapp.conversation.ended")).kind
             == event_kind::conversation_ended);
  BOOST_TEST(only_event(parse(body, "whatsapp.conversation.inactive")).kind
             == event_kind::conversation_inactive);
}

BOOST_AUTO_TEST_CASE(inactive_needs_no_identity_but_created_does) {
  auto body = json::parse(R"({"conversation": {"id": "conv_9"},
                              "phone_number_id": "123456789012345"})");
  const auto& inactive = only_event(parse(body, "whatsapp.conversation.inactive"));
  BOOST_TEST(inactive.kind == event_kind::conversation_inactive);
  BOOST_TEST(inactive.contact_key == "");
  auto created = parse(body, "whatsapp.conversation.created");
  BOOST_TEST(!created.ok);
  BOOST_TEST(created.error.find("identity") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(unknown_type_with_a_message_is_kept_as_unknown) {
  const auto& ev = only_event(parse(received_body(), "whatsapp.message.edited"));
  BOOST_TEST(ev.kind == event_kind::unknown);
  BOOST_TEST(ev.event_type == "whatsapp.message.edited");
  BOOST_TEST(ev.phone_number_id == "123456789012345");
}

BOOST_AUTO_TEST_CASE(unknown_type_in_its_own_shape_is_kept_as_unknown) {
  auto body = json::parse(R"({"phone_number_id": "123", "project": {"id": "p1"}})");
  const auto& ev = only_event(parse(body, "whatsapp.phone_number.created"));
  BOOST_TEST(ev.kind == event_kind::unknown);
  BOOST_TEST(ev.event_type == "whatsapp.phone_number.created");
  const auto& from_body = only_event(parse(json{{"event", "workflow.execution.failed"}}));
  BOOST_TEST(from_body.event_type == "workflow.execution.failed");
}

BOOST_AUTO_TEST_CASE(known_type_without_message_or_conversation_is_rejected) {
  auto result = parse(json{{"phone_number_id", "123"}}, "whatsapp.message.received");
  BOOST_TEST(!result.ok);
  BOOST_TEST(result.error.find("whatsapp.message.received") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(payload_identity)

BOOST_AUTO_TEST_CASE(inbound_phone_falls_back_to_message_from) {
  auto body = received_body();
  body["conversation"].erase("phone_number");
  body["message"]["from"] = "447911123456";
  BOOST_TEST(only_event(parse(body)).contact_key == "+447911123456");
}

BOOST_AUTO_TEST_CASE(unreadable_conversation_phone_falls_back) {
  auto body = received_body();
  body["conversation"]["phone_number"] = "not a phone";
  body["message"]["from"] = "447911123456";
  BOOST_TEST(only_event(parse(body)).contact_phone == "+447911123456");
}

BOOST_AUTO_TEST_CASE(bsuid_only_customer) {
  auto body = received_body();
  body["conversation"].erase("phone_number");
  const auto& ev = only_event(parse(body));
  BOOST_TEST(ev.contact_phone == "");
  BOOST_TEST(ev.contact_bsuid == "US.1001");
  BOOST_TEST(ev.contact_key == "bsuid:US.1001");
}

BOOST_AUTO_TEST_CASE(bsuid_from_the_message) {
  auto body = received_body();
  body["conversation"].erase("phone_number");
  body["conversation"].erase("business_scoped_user_id");
  body["message"]["from_user_id"] = "US.2002";
  BOOST_TEST(only_event(parse(body)).contact_key == "bsuid:US.2002");
}

BOOST_AUTO_TEST_CASE(username_only_customer) {
  auto body = received_body();
  body["conversation"].erase("phone_number");
  body["conversation"].erase("business_scoped_user_id");
  body["conversation"]["username"] = "@ana.w";
  const auto& ev = only_event(parse(body));
  BOOST_TEST(ev.contact_username == "@ana.w");
  BOOST_TEST(ev.contact_key == "username:@ana.w");
}

BOOST_AUTO_TEST_CASE(phone_wins_over_bsuid_and_username) {
  auto body = received_body();
  body["conversation"]["username"] = "@ana.w";
  const auto& ev = only_event(parse(body));
  BOOST_TEST(ev.contact_key == "+15551234567");
  BOOST_TEST(ev.contact_bsuid == "US.1001");
  BOOST_TEST(ev.contact_username == "@ana.w");
}

BOOST_AUTO_TEST_CASE(no_identity_is_rejected) {
  auto body = received_body();
  body["conversation"].erase("phone_number");
  body["conversation"].erase("business_scoped_user_id");
  auto result = parse(body);
  BOOST_TEST(!result.ok);
  BOOST_TEST(result.error.find("identity") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(contact_name_prefers_the_message) {
  auto body = received_body();
  body["message"]["kapso"]["contact_name"] = "Ana Maria";
  BOOST_TEST(only_event(parse(body)).contact_name == "Ana Maria");
  body["message"]["kapso"].erase("contact_name");
  body["conversation"]["contact_name"] = "Ana C";
  BOOST_TEST(only_event(parse(body)).contact_name == "Ana C");
}

BOOST_AUTO_TEST_CASE(default_region_is_used_for_national_numbers) {
  auto body = received_body();
  body["conversation"]["phone_number"] = "07911 123456";
  delivery_headers headers;
  parse_options gb;
  gb.default_region = "GB";
  auto result = parse_delivery(body.dump(), headers, gb);
  BOOST_TEST(only_event(result).contact_key == "+447911123456");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(payload_rejections)

BOOST_AUTO_TEST_CASE(v1_is_rejected) {
  auto body = received_body();
  body["whatsapp_config"] = {{"id", "cfg"}};
  auto result = parse(body, "whatsapp.message.received");
  BOOST_TEST(!result.ok);
  BOOST_TEST(result.error
             == "Kapso v1 payloads (whatsapp_config) are not supported; send payload "
                "version v2");
}

BOOST_AUTO_TEST_CASE(not_json_is_rejected) {
  for (auto body : {"", "not json", "{", R"({"a":})", "{\"a\":1} trailing"}) {
    BOOST_TEST_CONTEXT(body) {
      auto result = parse(std::string{body});
      BOOST_TEST(!result.ok);
      BOOST_TEST(result.error == "body is not valid JSON");
    }
  }
}

BOOST_AUTO_TEST_CASE(invalid_utf8_is_rejected) {
  // A body valid in every other way: only the byte 0xFF in a string is wrong.
  auto body = received_body().dump();
  auto at = body.find("\"Hola\"");
  BOOST_TEST_REQUIRE(at != std::string::npos);
  body.replace(at + 1, 4, "\xFF");
  auto result = parse(body, "whatsapp.message.received");
  BOOST_TEST(!result.ok);
  BOOST_TEST(result.error == "body is not valid JSON");
}

BOOST_AUTO_TEST_CASE(non_objects_are_rejected) {
  for (auto body : {"[]", "\"text\"", "42", "null", "true"}) {
    BOOST_TEST_CONTEXT(body) {
      auto result = parse(std::string{body});
      BOOST_TEST(!result.ok);
      BOOST_TEST(result.error == "body is not a JSON object");
    }
  }
}

BOOST_AUTO_TEST_CASE(no_form_is_rejected) {
  auto result = parse(json{{"hello", "world"}});
  BOOST_TEST(!result.ok);
  BOOST_TEST(result.error.find("neither") != std::string::npos);
  BOOST_TEST(!parse(json::object()).ok);
}

BOOST_AUTO_TEST_CASE(meta_with_another_object_is_rejected) {
  auto result = parse(json{{"object", "page"}, {"entry", json::array()}});
  BOOST_TEST(!result.ok);
  BOOST_TEST(!parse(json{{"object", "whatsapp_business_account"}}).ok);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(payload_kapso_batch)

BOOST_AUTO_TEST_CASE(batch_flag_in_body) {
  auto second = received_body();
  second["message"]["id"] = "wamid.HBgL2";
  json body = {{"type", "whatsapp.message.received"}, {"batch", true},
               {"data", {received_body(), second}}};
  auto result = parse(body);
  BOOST_REQUIRE(result.ok);
  BOOST_REQUIRE_EQUAL(result.parsed.events.size(), 2u);
  BOOST_TEST(result.parsed.events[0].message_id == "wamid.HBgL1");
  BOOST_TEST(result.parsed.events[1].message_id == "wamid.HBgL2");
  BOOST_TEST(result.parsed.events[1].kind == event_kind::message_received);
  BOOST_TEST(result.parsed.malformed == 0u);
}

BOOST_AUTO_TEST_CASE(batch_flag_in_header) {
  json body = {{"data", {received_body()}}};
  auto result = parse(body, "whatsapp.message.received", "true");
  BOOST_TEST(only_event(result).message_id == "wamid.HBgL1");
  // Without the flag the same body is no form at all.
  BOOST_TEST(!parse(body, "whatsapp.message.received").ok);
}

BOOST_AUTO_TEST_CASE(element_type_beats_the_outer_type) {
  auto ended = json::parse(R"({"event": "whatsapp.conversation.ended",
    "conversation": {"id": "c", "phone_number": "+15551234567"},
    "phone_number_id": "123456789012345"})");
  json body = {{"type", "whatsapp.message.received"}, {"batch", true},
               {"data", {received_body(), ended}}};
  auto result = parse(body);
  BOOST_REQUIRE_EQUAL(result.parsed.events.size(), 2u);
  BOOST_TEST(result.parsed.events[0].kind == event_kind::message_received);
  BOOST_TEST(result.parsed.events[1].kind == event_kind::conversation_ended);
}

BOOST_AUTO_TEST_CASE(header_type_applies_to_elements_without_one) {
  json body = {{"batch", true}, {"data", {sent_body("api")}}};
  BOOST_TEST(only_event(parse(body, "whatsapp.message.sent")).kind
             == event_kind::message_sent);
}

BOOST_AUTO_TEST_CASE(malformed_elements_are_counted_not_fatal) {
  auto no_id = received_body();
  no_id["message"].erase("id");
  auto no_identity = received_body();
  no_identity["message"]["id"] = "wamid.X";
  no_identity["conversation"].erase("phone_number");
  no_identity["conversation"].erase("business_scoped_user_id");
  json body = {{"type", "whatsapp.message.received"}, {"batch", true},
               {"data", {no_id, received_body(), 42, no_identity}}};
  auto result = parse(body);
  BOOST_REQUIRE(result.ok);
  BOOST_TEST(result.parsed.events.size() == 1u);
  BOOST_TEST(result.parsed.malformed == 3u);
  BOOST_REQUIRE_EQUAL(result.skipped.size(), 3u);
  BOOST_TEST(result.skipped[0].find("data[0]") == 0u);
  BOOST_TEST(result.skipped[1].find("data[2]") == 0u);
  BOOST_TEST(result.skipped[2].find("data[3]") == 0u);
  BOOST_TEST(result.skipped[2].find("identity") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(empty_batch_is_ok) {
  auto result = parse(json{{"type", "whatsapp.message.received"}, {"batch", true},
                           {"data", json::array()}});
  BOOST_TEST(result.ok);
  BOOST_TEST(result.parsed.events.empty());
  BOOST_TEST(result.parsed.malformed == 0u);
}

BOOST_AUTO_TEST_CASE(batch_without_data_is_rejected) {
  auto result = parse(json{{"type", "whatsapp.message.received"}, {"batch", true}});
  BOOST_TEST(!result.ok);
  BOOST_TEST(result.error.find("data") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(top_level_phone_number_id_applies_to_elements) {
  auto element = received_body();
  element.erase("phone_number_id");
  element["conversation"].erase("phone_number_id");
  json body = {{"type", "whatsapp.message.received"}, {"batch", true},
               {"phone_number_id", "777"}, {"data", {element}}};
  BOOST_TEST(only_event(parse(body)).phone_number_id == "777");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(payload_meta_forward)

BOOST_AUTO_TEST_CASE(inbound_message) {
  auto value = json::parse(R"({
    "contacts": [{"wa_id": "15550001111", "profile": {"name": "Other"}},
                 {"wa_id": "15551234567", "profile": {"name": "Ana"}}],
    "messages": [{"from": "15551234567", "id": "wamid.M1", "timestamp": "1730092801",
                  "type": "text", "text": {"body": "Hola"},
                  "context": {"from": "15550009999", "id": "wamid.prev"}}]})");
  auto result = parse(meta_body({{{"id", "WABA1"},
                                  {"changes", {meta_change("111", value)}}}}));
  const auto& ev = only_event(result);
  BOOST_TEST(result.parsed.meta_forward);
  BOOST_TEST(ev.kind == event_kind::message_received);
  BOOST_TEST(ev.event_type == "whatsapp.message.received");
  BOOST_TEST(ev.phone_number_id == "111");
  BOOST_TEST(ev.contact_key == "+15551234567");
  BOOST_TEST(ev.contact_name == "Ana"); // the matching contact, not the first
  BOOST_TEST(ev.message_id == "wamid.M1");
  BOOST_TEST(ev.timestamp == 1730092801);
  BOOST_TEST(ev.direction == "inbound");
  BOOST_TEST(ev.sender_type == "contact");
  BOOST_TEST(ev.status == "received");
  BOOST_TEST(ev.content == "Hola");
  BOOST_TEST(metadata_of(ev)["context"]["id"] == "wamid.prev");
}

BOOST_AUTO_TEST_CASE(name_from_first_contact_when_none_matches) {
  auto value = json::parse(R"({
    "contacts": [{"wa_id": "15550001111", "profile": {"name": "First"}}],
    "messages": [{"from": "15551234567", "id": "wamid.M1", "type": "text",
                  "text": {"body": "x"}}]})");
  auto result = parse(meta_body({{{"changes", {meta_change("111", value)}}}}));
  BOOST_TEST(only_event(result).contact_name == "First");
}

BOOST_AUTO_TEST_CASE(multi_entry_multi_workspace) {
  auto message = [](const std::string& id, const std::string& from) {
    return json{{"messages", {{{"from", from}, {"id", id}, {"type", "text"},
                               {"timestamp", "1730092801"}, {"text", {{"body", id}}}}}}};
  };
  json entries = {
    {{"id", "WABA1"},
     {"changes", {meta_change("111", message("wamid.A", "15551234567")),
                  meta_change("222", message("wamid.B", "15551234568"))}}},
    {{"id", "WABA2"}, {"changes", {meta_change("333", message("wamid.C", "15551234569"))}}},
  };
  auto result = parse(meta_body(entries));
  BOOST_REQUIRE(result.ok);
  BOOST_REQUIRE_EQUAL(result.parsed.events.size(), 3u);
  BOOST_TEST(result.parsed.events[0].phone_number_id == "111");
  BOOST_TEST(result.parsed.events[0].message_id == "wamid.A");
  BOOST_TEST(result.parsed.events[1].phone_number_id == "222");
  BOOST_TEST(result.parsed.events[1].contact_key == "+15551234568");
  BOOST_TEST(result.parsed.events[2].phone_number_id == "333");
  BOOST_TEST(result.parsed.events[2].content == "wamid.C");
}

BOOST_AUTO_TEST_CASE(echo_field_is_sent_by_a_user) {
  auto value = json::parse(R"({"message_echoes": [{"from": "15550009999",
    "to": "15551234567", "id": "wamid.E1", "timestamp": "1730092900",
    "type": "text", "text": {"body": "From the app"}}]})");
  auto result = parse(meta_body({{{"changes",
                                   {meta_change("111", value, "smb_message_echoes")}}}}));
  const auto& ev = only_event(result);
  BOOST_TEST(ev.kind == event_kind::message_sent);
  BOOST_TEST(ev.event_type == "whatsapp.message.sent");
  BOOST_TEST(ev.direction == "outbound");
  BOOST_TEST(ev.sender_type == "user");
  BOOST_TEST(ev.status == "sent");
  BOOST_TEST(ev.contact_key == "+15551234567");
  BOOST_TEST(metadata_of(ev)["origin"] == "business_app");
}

BOOST_AUTO_TEST_CASE(message_from_the_business_number_is_sent) {
  auto value = json::parse(R"({"messages": [{"from": "+1 555-000-9999",
    "to": "15551234567", "id": "wamid.E2", "type": "text", "text": {"body": "x"}}]})");
  const auto& ev = only_event(parse(meta_body({{{"changes", {meta_change("111", value)}}}})));
  BOOST_TEST(ev.kind == event_kind::message_sent);
  BOOST_TEST(ev.direction == "outbound");
  BOOST_TEST(ev.contact_key == "+15551234567");
}

BOOST_AUTO_TEST_CASE(statuses) {
  auto value = json::parse(R"({"statuses": [
    {"id": "wamid.S1", "status": "delivered", "timestamp": "1730092950",
     "recipient_id": "15551234567",
     "conversation": {"id": "c1", "origin": {"type": "service"}},
     "pricing": {"billable": true, "category": "service"}},
    {"id": "wamid.S2", "status": "failed", "timestamp": "1730092960",
     "recipient_id": "15551234567",
     "errors": [{"code": 131047, "title": "Re-engagement message"}]},
    {"id": "wamid.S3", "status": "read", "recipient_id": "15551234567"},
    {"id": "wamid.S4", "status": "deleted", "recipient_id": "15551234567"}]})");
  auto result = parse(meta_body({{{"changes", {meta_change("111", value)}}}}));
  BOOST_REQUIRE(result.ok);
  BOOST_REQUIRE_EQUAL(result.parsed.events.size(), 4u);
  const auto& delivered = result.parsed.events[0];
  BOOST_TEST(delivered.kind == event_kind::message_status);
  BOOST_TEST(delivered.event_type == "whatsapp.message.delivered");
  BOOST_TEST(delivered.status == "delivered");
  BOOST_TEST(delivered.message_id == "wamid.S1");
  BOOST_TEST(delivered.contact_key == "+15551234567");
  BOOST_TEST(delivered.timestamp == 1730092950);
  BOOST_TEST(delivered.status_error_json == "");
  auto metadata = metadata_of(delivered);
  BOOST_TEST(metadata["conversation"]["id"] == "c1");
  BOOST_TEST(metadata["pricing"]["category"] == "service");
  const auto& failed = result.parsed.events[1];
  BOOST_TEST(failed.status == "failed");
  BOOST_TEST(json::parse(failed.status_error_json)
             == json::parse(R"([{"code": 131047, "title": "Re-engagement message"}])"));
  BOOST_TEST(result.parsed.events[2].status == "read");
  BOOST_TEST(result.parsed.events[3].kind == event_kind::unknown);
  BOOST_TEST(result.parsed.events[3].event_type == "whatsapp.message.deleted");
}

BOOST_AUTO_TEST_CASE(status_with_only_a_recipient_user_id) {
  auto value = json::parse(R"({"statuses": [{"id": "wamid.S1", "status": "read",
    "recipient_user_id": "US.77"}]})");
  const auto& ev = only_event(parse(meta_body({{{"changes", {meta_change("111", value)}}}})));
  BOOST_TEST(ev.contact_key == "bsuid:US.77");
}

BOOST_AUTO_TEST_CASE(bsuid_and_username_from_meta_contacts) {
  auto value = json::parse(R"({
    "contacts": [{"user_id": "US.88", "profile": {"name": "Cy", "username": "@cy"}}],
    "messages": [{"from_user_id": "US.88", "id": "wamid.U1", "type": "text",
                  "text": {"body": "hi"}}]})");
  const auto& ev = only_event(parse(meta_body({{{"changes", {meta_change("111", value)}}}})));
  BOOST_TEST(ev.contact_key == "bsuid:US.88");
  BOOST_TEST(ev.contact_username == "@cy");
  BOOST_TEST(ev.contact_name == "Cy");
}

BOOST_AUTO_TEST_CASE(malformed_meta_events_are_counted) {
  auto value = json::parse(R"({"messages": [
    {"from": "15551234567", "type": "text", "text": {"body": "no id"}},
    {"from": "15551234567", "id": "wamid.OK", "type": "text", "text": {"body": "ok"}},
    {"id": "wamid.NOBODY", "type": "text", "text": {"body": "no identity"}}],
    "statuses": [{"id": "wamid.S", "recipient_id": "15551234567"}]})");
  json no_metadata = {{"field", "messages"},
                      {"value", {{"messages", {{{"from", "15551234567"},
                                                {"id", "wamid.Z"}}}}}}};
  auto result = parse(meta_body({{{"changes", {meta_change("111", value), no_metadata}}},
                                 {{"id", "no changes"}}}));
  BOOST_REQUIRE(result.ok);
  BOOST_REQUIRE_EQUAL(result.parsed.events.size(), 1u);
  BOOST_TEST(result.parsed.events[0].message_id == "wamid.OK");
  BOOST_TEST(result.parsed.malformed == 5u);
  BOOST_TEST(result.skipped.size() == 5u);
}

BOOST_AUTO_TEST_CASE(other_fields_are_unknown_events) {
  auto change = meta_change("111", json{{"event", "APPROVED"}},
                            "message_template_status_update");
  const auto& ev = only_event(parse(meta_body({{{"changes", {change}}}})));
  BOOST_TEST(ev.kind == event_kind::unknown);
  BOOST_TEST(ev.event_type == "message_template_status_update");
}

BOOST_AUTO_TEST_CASE(empty_entry_is_ok) {
  auto result = parse(meta_body(json::array()));
  BOOST_TEST(result.ok);
  BOOST_TEST(result.parsed.meta_forward);
  BOOST_TEST(result.parsed.events.empty());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(event_kind_names)

BOOST_AUTO_TEST_CASE(every_kind_has_a_name) {
  BOOST_TEST(std::string(to_string(event_kind::message_received)) == "message_received");
  BOOST_TEST(std::string(to_string(event_kind::message_sent)) == "message_sent");
  BOOST_TEST(std::string(to_string(event_kind::message_status)) == "message_status");
  BOOST_TEST(std::string(to_string(event_kind::conversation_created))
             == "conversation_created");
  BOOST_TEST(std::string(to_string(event_kind::conversation_ended)) == "conversation_ended");
  BOOST_TEST(std::string(to_string(event_kind::conversation_inactive))
             == "conversation_inactive");
  BOOST_TEST(std::string(to_string(event_kind::unknown)) == "unknown");
}

BOOST_AUTO_TEST_SUITE_END()
