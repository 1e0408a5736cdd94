// Content, preview and metadata of every WhatsApp message shape.
#include "http/message_content.hpp"

#include <boost/test/unit_test.hpp>

using namespace kapso;
using nlohmann::json;

namespace {

message_content describe(const std::string& message_json) {
  simdjson::dom::parser parser;
  simdjson::dom::element message;
  BOOST_REQUIRE(parser.parse(message_json).get(message) == simdjson::SUCCESS);
  return describe_message(message);
}

} // namespace

BOOST_AUTO_TEST_SUITE(message_content_shapes)

BOOST_AUTO_TEST_CASE(text) {
  auto out = describe(R"({"type": "text", "text": {"body": "Hola\nqué tal"}})");
  BOOST_TEST(out.type == "text");
  BOOST_TEST(out.content == "Hola\nqué tal"); // content keeps the newline
  BOOST_TEST(out.preview == "Hola qué tal");
  BOOST_TEST(out.media_url == "");
  BOOST_TEST(out.metadata == json::object());
}

BOOST_AUTO_TEST_CASE(type_defaults_to_text) {
  auto out = describe(R"({"text": {"body": "x"}})");
  BOOST_TEST(out.type == "text");
  BOOST_TEST(out.content == "x");
}

BOOST_AUTO_TEST_CASE(empty_text_stays_empty) {
  auto out = describe(R"({"type": "text", "text": {"body": ""},
                          "kapso": {"content": "ignored"}})");
  BOOST_TEST(out.content == "");
  BOOST_TEST(out.preview == "");
}

BOOST_AUTO_TEST_CASE(kapso_content_fills_a_missing_text_body) {
  auto out = describe(R"({"type": "text", "kapso": {"content": "from kapso"}})");
  BOOST_TEST(out.content == "from kapso");
  BOOST_TEST(out.preview == "from kapso");
}

BOOST_AUTO_TEST_CASE(long_text_preview_is_cut) {
  std::string body(150, 'a');
  auto out = describe(json{{"type", "text"}, {"text", {{"body", body}}}}.dump());
  BOOST_TEST(out.content == body);
  BOOST_TEST(out.preview == std::string(100, 'a'));
}

BOOST_AUTO_TEST_CASE(image_with_caption_and_kapso_media_url) {
  auto out = describe(R"({"type": "image",
    "image": {"id": "MEDIA1", "mime_type": "image/jpeg", "sha256": "abc",
              "caption": "Look", "link": "https://meta.example/tmp"},
    "kapso": {"media_url": "https://kapso.example/m/1", "has_media": true}})");
  BOOST_TEST(out.content == "Look");
  BOOST_TEST(out.preview == "Look");
  BOOST_TEST(out.media_url == "https://kapso.example/m/1");
  BOOST_TEST(out.metadata["has_media"] == true);
  BOOST_TEST(out.metadata["media"]
             == json({{"id", "MEDIA1"}, {"mime_type", "image/jpeg"}, {"sha256", "abc"}}));
}

BOOST_AUTO_TEST_CASE(image_without_caption_uses_the_label_and_link) {
  auto out = describe(R"({"type": "image", "image": {"id": "M", "link": "https://l/1"}})");
  BOOST_TEST(out.content == "[Image]");
  BOOST_TEST(out.preview == "[Image]");
  BOOST_TEST(out.media_url == "https://l/1");
  BOOST_TEST(out.metadata["has_media"] == true);
}

BOOST_AUTO_TEST_CASE(media_url_from_url_field) {
  auto out = describe(R"({"type": "video", "video": {"url": "https://v/1"}})");
  BOOST_TEST(out.content == "[Video]");
  BOOST_TEST(out.media_url == "https://v/1");
}

BOOST_AUTO_TEST_CASE(audio_and_voice_note) {
  BOOST_TEST(describe(R"({"type": "audio", "audio": {"id": "A"}})").content == "[Audio]");
  auto voice = describe(R"({"type": "audio", "audio": {"id": "A", "voice": true,
                             "mime_type": "audio/ogg; codecs=opus"}})");
  BOOST_TEST(voice.content == "[Voice message]");
  BOOST_TEST(voice.preview == "[Voice message]");
  BOOST_TEST(voice.metadata["media"]["voice"] == true);
}

BOOST_AUTO_TEST_CASE(audio_transcript_goes_to_metadata) {
  auto out = describe(R"({"type": "audio", "audio": {"id": "A", "voice": true},
                          "kapso": {"transcript": {"text": "hola"}}})");
  BOOST_TEST(out.metadata["transcript"]["text"] == "hola");
}

BOOST_AUTO_TEST_CASE(document_with_and_without_filename) {
  auto named = describe(R"({"type": "document",
    "document": {"id": "D", "filename": "invoice.pdf", "mime_type": "application/pdf"}})");
  BOOST_TEST(named.content == "[Document: invoice.pdf]");
  BOOST_TEST(named.preview == "[Document: invoice.pdf]");
  BOOST_TEST(named.metadata["media"]["filename"] == "invoice.pdf");
  BOOST_TEST(describe(R"({"type": "document", "document": {"id": "D"}})").content
             == "[Document]");
  auto captioned = describe(R"({"type": "document",
    "document": {"filename": "a.pdf", "caption": "Your invoice"}})");
  BOOST_TEST(captioned.content == "Your invoice");
}

BOOST_AUTO_TEST_CASE(document_filename_from_kapso_media_data) {
  auto out = describe(R"({"type": "document", "document": {"id": "D"},
                          "kapso": {"media_data": {"filename": "k.pdf"}}})");
  BOOST_TEST(out.content == "[Document: k.pdf]");
}

BOOST_AUTO_TEST_CASE(sticker) {
  auto out = describe(R"({"type": "sticker", "sticker": {"id": "S", "animated": false}})");
  BOOST_TEST(out.content == "[Sticker]");
  BOOST_TEST(out.metadata["media"]["animated"] == false);
}

BOOST_AUTO_TEST_CASE(location) {
  auto named = describe(R"({"type": "location", "location": {"latitude": -33.45,
    "longitude": -70.66, "name": "Plaza", "address": "Av. 1"}})");
  BOOST_TEST(named.content == "[Location: Plaza]");
  BOOST_TEST(named.metadata["location"]
             == json({{"latitude", -33.45}, {"longitude", -70.66}, {"name", "Plaza"},
                      {"address", "Av. 1"}}));
  BOOST_TEST(describe(R"({"type": "location", "location": {"address": "Av. 1"}})").content
             == "[Location: Av. 1]");
  auto bare = describe(R"({"type": "location", "location": {"latitude": 1, "longitude": 2}})");
  BOOST_TEST(bare.content == "[Location]");
  BOOST_TEST(bare.metadata["location"]["latitude"] == 1);
}

BOOST_AUTO_TEST_CASE(contacts) {
  auto one = describe(R"({"type": "contacts", "contacts": [
    {"name": {"formatted_name": "Juan Perez", "first_name": "Juan"},
     "phones": [{"phone": "+15550001111", "type": "CELL"}]}]})");
  BOOST_TEST(one.content == "[Contact: Juan Perez]");
  BOOST_TEST(one.metadata["contacts"].size() == 1u);
  BOOST_TEST(one.metadata["contacts"][0]["name"]["formatted_name"] == "Juan Perez");
  auto from_parts = describe(R"({"type": "contacts", "contacts": [
    {"name": {"first_name": "Ana", "last_name": "Diaz"}}]})");
  BOOST_TEST(from_parts.content == "[Contact: Ana Diaz]");
  auto two = describe(R"({"type": "contacts", "contacts": [{"name": {}}, {"name": {}}]})");
  BOOST_TEST(two.content == "[Contacts: 2]");
  BOOST_TEST(two.metadata["contacts"].size() == 2u);
}

BOOST_AUTO_TEST_CASE(interactive_replies) {
  auto button = describe(R"({"type": "interactive", "interactive": {"type": "button_reply",
    "button_reply": {"id": "yes_1", "title": "Yes"}}})");
  BOOST_TEST(button.content == "Yes");
  BOOST_TEST(button.metadata["interactive"]
             == json({{"type", "button_reply"}, {"id", "yes_1"}, {"title", "Yes"}}));
  auto list = describe(R"({"type": "interactive", "interactive": {"type": "list_reply",
    "list_reply": {"id": "row_2", "title": "Option 2", "description": "Second"}}})");
  BOOST_TEST(list.content == "Option 2");
  BOOST_TEST(list.metadata["interactive"]["id"] == "row_2");
  BOOST_TEST(list.metadata["interactive"]["description"] == "Second");
  auto form = describe(R"({"type": "interactive", "interactive": {"type": "nfm_reply",
    "nfm_reply": {"name": "flow", "response_json": "{\"a\":1}"}}})");
  BOOST_TEST(form.content == "[Form response]");
  BOOST_TEST(form.metadata["interactive"]["type"] == "nfm_reply");
  BOOST_TEST(form.metadata["interactive"]["response_json"] == "{\"a\":1}");
}

BOOST_AUTO_TEST_CASE(outbound_interactive_uses_its_body) {
  auto out = describe(R"({"type": "interactive", "interactive": {"type": "button",
    "body": {"text": "Pick one"}, "action": {"buttons": []}}})");
  BOOST_TEST(out.content == "Pick one");
  BOOST_TEST(describe(R"({"type": "interactive", "interactive": {"type": "flow"}})").content
             == "[Interactive message]");
}

BOOST_AUTO_TEST_CASE(button) {
  auto out = describe(R"({"type": "button", "button": {"text": "Stop promos",
                                                       "payload": "STOP"}})");
  BOOST_TEST(out.content == "Stop promos");
  BOOST_TEST(out.metadata["button"] == json({{"text", "Stop promos"}, {"payload", "STOP"}}));
}

BOOST_AUTO_TEST_CASE(reaction_and_removal) {
  auto added = describe(R"({"type": "reaction",
    "reaction": {"message_id": "wamid.T", "emoji": "\ud83d\udc4d"}})");
  BOOST_TEST(added.content == "\xF0\x9F\x91\x8D");
  BOOST_TEST(added.preview == "\xF0\x9F\x91\x8D");
  BOOST_TEST(added.metadata["reaction"]
             == json({{"message_id", "wamid.T"}, {"emoji", "\xF0\x9F\x91\x8D"}}));
  auto removed = describe(R"({"type": "reaction",
    "reaction": {"message_id": "wamid.T", "emoji": ""}})");
  BOOST_TEST(removed.content == "[Reaction removed]");
  BOOST_TEST(removed.metadata["reaction"]["emoji"] == "");
}

BOOST_AUTO_TEST_CASE(order) {
  auto out = describe(R"({"type": "order", "order": {"catalog_id": "C1",
    "product_items": [{"product_retailer_id": "p1", "quantity": 1},
                      {"product_retailer_id": "p2", "quantity": 3}]}})");
  BOOST_TEST(out.content == "[Order: 2 items]");
  BOOST_TEST(out.metadata["order"]["catalog_id"] == "C1");
  BOOST_TEST(describe(R"({"type": "order", "order": {"product_items": [{}]}})").content
             == "[Order: 1 item]");
}

BOOST_AUTO_TEST_CASE(template_echo) {
  auto named = describe(R"({"type": "template", "template": {"name": "welcome",
                            "language": {"code": "es"}}})");
  BOOST_TEST(named.content == "[Template: welcome]");
  BOOST_TEST(named.metadata["template"] == json({{"name", "welcome"}, {"language", "es"}}));
  auto rendered = describe(R"({"type": "template", "template": {"name": "welcome"},
                               "kapso": {"content": "Bienvenida!"}})");
  BOOST_TEST(rendered.content == "Bienvenida!");
}

BOOST_AUTO_TEST_CASE(unsupported_and_unknown_types) {
  auto unsupported = describe(R"({"type": "unsupported",
    "errors": [{"code": 131051, "title": "Message type unknown"}]})");
  BOOST_TEST(unsupported.content == "[Unsupported message]");
  BOOST_TEST(unsupported.preview == "[Unsupported message]");
  BOOST_TEST(unsupported.metadata["errors"][0]["code"] == 131051);
  auto future = describe(R"({"type": "hologram"})");
  BOOST_TEST(future.type == "hologram");
  BOOST_TEST(future.content == "[Unsupported message]");
  auto with_kapso = describe(R"({"type": "hologram", "kapso": {"content": "3D hi"}})");
  BOOST_TEST(with_kapso.content == "3D hi");
}

BOOST_AUTO_TEST_CASE(reply_context_and_forwarding) {
  auto out = describe(R"({"type": "text", "text": {"body": "yes"},
    "context": {"from": "15550001111", "id": "wamid.prev", "forwarded": true}})");
  BOOST_TEST(out.metadata["context"] == json({{"id", "wamid.prev"}, {"from", "15550001111"}}));
  BOOST_TEST(out.metadata["forwarded"] == true);
  auto none = describe(R"({"type": "text", "text": {"body": "x"}, "context": {}})");
  BOOST_TEST(!none.metadata.contains("context"));
}

BOOST_AUTO_TEST_CASE(referral_is_kept) {
  auto out = describe(R"({"type": "text", "text": {"body": "x"},
    "referral": {"source_type": "ad", "source_id": "AD1"}})");
  BOOST_TEST(out.metadata["referral"]["source_id"] == "AD1");
}

BOOST_AUTO_TEST_CASE(mistyped_fields_do_not_throw) {
  auto out = describe(R"({"type": "image", "image": "oops", "kapso": [],
                          "context": "x", "text": 5})");
  BOOST_TEST(out.content == "[Image]");
  auto text = describe(R"({"type": "text", "text": {"body": 42}})");
  BOOST_TEST(text.content == "");
}

BOOST_AUTO_TEST_SUITE_END()
