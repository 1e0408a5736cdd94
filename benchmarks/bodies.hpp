// Kapso v2 and Meta-forward webhook bodies, as the benchmark tools send them.
#pragma once

#include <cstdint>
#include <string>

namespace kapso::bench {

// Everything one synthetic inbound text message needs. All strings are plain
// ASCII without quotes or backslashes, so they go into JSON unescaped.
struct message_fields {
  std::string message_id;      // wamid...
  int64_t timestamp = 0;       // unix seconds
  std::string text;            // body and kapso.content; also the expected preview
  std::string customer_digits; // "1555xxxxxxx": wa_id / from form, no '+'
  std::string contact_name;
  std::string kapso_conversation_id;
  std::string phone_number_id; // the business number: selects the workspace
  bool new_conversation = false;
};

// Appends one Kapso v2 `whatsapp.message.received` event object to `out`.
void append_kapso_event(std::string& out, const message_fields& msg);

// Opens and closes a Kapso v2 batch body; events go between, comma-separated.
void append_batch_head(std::string& out);
void append_batch_tail(std::string& out);

// Appends a Meta-forward body carrying exactly one message.
void append_meta_forward(std::string& out, const message_fields& msg);

} // namespace kapso::bench
