// Kapso v2 and Meta-forward webhook bodies, as the benchmark tools send them.
#include "benchmarks/bodies.hpp"

namespace kapso::bench {

namespace {

void append_quoted(std::string& out, const std::string& text) {
  out += '"';
  out += text;
  out += '"';
}

// The WhatsApp text message object both forms share, without its closing
// brace: {"from":..,"id":..,"timestamp":..,"type":"text","text":{"body":..}
void append_text_message(std::string& out, const message_fields& msg) {
  out += R"({"from":)";
  append_quoted(out, msg.customer_digits);
  out += R"(,"id":)";
  append_quoted(out, msg.message_id);
  out += R"(,"timestamp":)";
  append_quoted(out, std::to_string(msg.timestamp));
  out += R"(,"type":"text","text":{"body":)";
  append_quoted(out, msg.text);
  out += '}';
}

} // namespace

void append_kapso_event(std::string& out, const message_fields& msg) {
  out += R"({"message":)";
  append_text_message(out, msg);
  out += R"(,"kapso":{"direction":"inbound","status":"received",)"
         R"("origin":"cloud_api","whatsapp_conversation_id":)";
  append_quoted(out, msg.kapso_conversation_id);
  out += R"(,"content":)";
  append_quoted(out, msg.text);
  out += R"(,"contact_name":)";
  append_quoted(out, msg.contact_name);
  out += R"(,"has_media":false}},"conversation":{"id":)";
  append_quoted(out, msg.kapso_conversation_id);
  out += R"(,"phone_number":"+)";
  out += msg.customer_digits;
  out += R"(","phone_number_id":)";
  append_quoted(out, msg.phone_number_id);
  out += R"(,"contact_name":)";
  append_quoted(out, msg.contact_name);
  out += R"(},"phone_number_id":)";
  append_quoted(out, msg.phone_number_id);
  out += R"(,"is_new_conversation":)";
  out += msg.new_conversation ? "true" : "false";
  out += '}';
}

void append_batch_head(std::string& out) {
  out += R"({"type":"whatsapp.message.received","batch":true,"data":[)";
}

void append_batch_tail(std::string& out) {
  out += "]}";
}

void append_meta_forward(std::string& out, const message_fields& msg) {
  out += R"({"object":"whatsapp_business_account","entry":[{"id":)";
  append_quoted(out, "waba-" + msg.phone_number_id);
  out += R"(,"changes":[{"field":"messages","value":{"messaging_product":"whatsapp",)"
         R"("metadata":{"display_phone_number":)";
  append_quoted(out, msg.phone_number_id);
  out += R"(,"phone_number_id":)";
  append_quoted(out, msg.phone_number_id);
  out += R"(},"contacts":[{"wa_id":)";
  append_quoted(out, msg.customer_digits);
  out += R"(,"profile":{"name":)";
  append_quoted(out, msg.contact_name);
  out += R"(}}],"messages":[)";
  append_text_message(out, msg);
  out += "}]}}]}]}";
}

} // namespace kapso::bench
