// A small model of the Next.js route kapso-ingest replaces, and of the inbox application
// beside it, that builds the database they leave behind: every round trip of theirs is a
// real statement on its own, and deliveries interleave the way concurrent requests do.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <pqxx/pqxx>

namespace kapso_test {

// tests/integration/route_schema.sql: the route's tables, and two of the inbox application
// that refer to contacts and messages. `contacts_unique`: whether contacts had
// unique(workspace_id, phone), as the SPEC's schema does (an older one may not).
std::string route_schema(bool contacts_unique);

struct route_event {
  enum class kind {
    inbound,   // whatsapp.message.received
    echo,      // whatsapp.message.sent: sender_type "user" (business app) or "bot"
    status,    // whatsapp.message.delivered/read/failed
    app_reply, // the inbox application sends a message (no Kapso id)
    mark_read, // the inbox application's "mark as read"
    app_note,  // the inbox application adds a note to the contact
    app_star,  // the inbox application stars a message
  };
  kind what = kind::inbound;
  std::string workspace_id;
  std::string phone;               // as this payload carried it
  std::optional<std::string> name; // the payload's contact name
  std::string message_id;          // Kapso's id; status, app_star: the message it is about
  int64_t timestamp = 0;           // WhatsApp's
  std::string text;                // content; app_note: the note
  std::string sender_type = "contact";
  std::string status;              // status events
};

// One delivery of an event, or one action of the inbox application, as its round trips.
class route_delivery {
 public:
  explicit route_delivery(route_event event) : event_(std::move(event)) {}

  // Makes the next round trip on `connection`, autocommitted; false once it is answered.
  bool step(pqxx::connection& connection);
  // Answered 500 (a statement failed): Kapso delivers it again.
  bool failed() const { return failed_; }
  const route_event& event() const { return event_; }

 private:
  int message_step(pqxx::nontransaction& tx);
  int status_step(pqxx::nontransaction& tx);
  int app_step(pqxx::nontransaction& tx);

  route_event event_;
  int next_ = 0;   // the next round trip; -1 when answered
  std::string contact_id_;
  std::string conversation_id_;
  std::string message_row_;
  int64_t unread_ = 0;
  bool failed_ = false;
};

class route_model {
 public:
  explicit route_model(const std::string& url) : connection_(url) {}

  // Two deliveries stepped alternately, `b` first, after `lead` steps of `a` alone.
  void interleave(const route_event& a, const route_event& b, size_t lead = 0);

  // The events in order of arrival, up to `concurrency` deliveries in flight, each step
  // made by one picked at random (seeded). Kapso delivers `retry_share` of the message
  // events again, half of them while the first delivery is in flight; a delivery answered
  // 500 is delivered again until one succeeds.
  void run(const std::vector<route_event>& events, uint32_t seed, size_t concurrency,
           double retry_share);

  size_t deliveries() const { return deliveries_; }
  size_t failures() const { return failures_; }

 private:
  void finish(route_delivery& delivery, std::vector<route_event>& redeliver);

  pqxx::connection connection_;
  size_t deliveries_ = 0;
  size_t failures_ = 0;
};

} // namespace kapso_test
