// The route's check-then-insert and read-modify-write, one statement per round trip.
#include "tests/integration/route_model.hpp"

#include <deque>
#include <fstream>
#include <random>
#include <stdexcept>

namespace kapso_test {

std::string route_schema(bool contacts_unique) {
  std::ifstream file{std::string{KAPSO_SOURCE_DIR} + "/tests/integration/route_schema.sql"};
  if (!file)
    throw std::runtime_error("tests/integration/route_schema.sql cannot be read");
  std::string schema;
  for (std::string line; std::getline(file, line);)
    if (contacts_unique || line.find("-- contacts-unique") == std::string::npos)
      schema += line + "\n";
  return schema;
}

namespace {

// A statement's single value, or "" when it returned no row.
std::string first_value(const pqxx::result& rows) {
  return rows.empty() || rows[0][0].is_null() ? std::string{} : rows[0][0].c_str();
}

std::optional<std::string> name_of(const route_event& ev) {
  if (ev.name && !ev.name->empty())
    return ev.name;
  return std::nullopt;
}

} // namespace

// contact by phone -> insert; conversation by contact -> insert; message by id -> insert;
// read the unread count -> write it + 1 with now() and the preview.
int route_delivery::message_step(pqxx::nontransaction& tx) {
  const auto& ev = event_;
  bool inbound = ev.what == route_event::kind::inbound;
  switch (next_) {
    case 0:
      contact_id_ = first_value(tx.exec_params(
        "SELECT id FROM contacts WHERE workspace_id = $1 AND phone = $2 LIMIT 1",
        ev.workspace_id, ev.phone));
      return contact_id_.empty() ? 1 : 2;
    case 1:
      contact_id_ = first_value(tx.exec_params(
        "INSERT INTO contacts (workspace_id, phone, name) VALUES ($1, $2, $3) RETURNING id",
        ev.workspace_id, ev.phone, name_of(ev)));
      return 2;
    case 2:
      conversation_id_ = first_value(tx.exec_params(
        "SELECT id FROM conversations WHERE workspace_id = $1 AND contact_id = $2 "
        "ORDER BY created_at DESC LIMIT 1",
        ev.workspace_id, contact_id_));
      return conversation_id_.empty() ? 3 : 4;
    case 3:
      conversation_id_ = first_value(tx.exec_params(
        "INSERT INTO conversations (workspace_id, contact_id) VALUES ($1, $2) RETURNING id",
        ev.workspace_id, contact_id_));
      return 4;
    case 4:
      message_row_ = first_value(tx.exec_params(
        "SELECT id FROM messages WHERE kapso_message_id = $1 LIMIT 1", ev.message_id));
      return message_row_.empty() ? 5 : 6;
    case 5:
      tx.exec_params("INSERT INTO messages (conversation_id, workspace_id, direction, "
                     "sender_type, content, kapso_message_id, created_at, status) "
                     "VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7), $8)",
                     conversation_id_, ev.workspace_id, inbound ? "inbound" : "outbound",
                     ev.sender_type, ev.text, ev.message_id, ev.timestamp,
                     inbound ? "received" : "sent");
      return 6;
    case 6:
      unread_ = std::stoll(first_value(tx.exec_params(
        "SELECT coalesce(unread_count, 0) FROM conversations WHERE id = $1", conversation_id_)));
      return 7;
    default:
      tx.exec_params("UPDATE conversations SET unread_count = $2, last_message_at = now(), "
                     "last_message_preview = left($3, 100), updated_at = now() WHERE id = $1",
                     conversation_id_, unread_ + (inbound ? 1 : 0), ev.text);
      return -1;
  }
}

// The message by id (any copy), its status overwritten: no order, so it may go back.
int route_delivery::status_step(pqxx::nontransaction& tx) {
  if (next_ == 0) {
    message_row_ = first_value(tx.exec_params(
      "SELECT id FROM messages WHERE kapso_message_id = $1 LIMIT 1", event_.message_id));
    return message_row_.empty() ? -1 : 1;
  }
  tx.exec_params("UPDATE messages SET status = $2 WHERE id = $1", message_row_, event_.status);
  return -1;
}

// The inbox application works on the conversation it shows: the contact's newest.
int route_delivery::app_step(pqxx::nontransaction& tx) {
  const auto& ev = event_;
  using kind = route_event::kind;
  if (next_ == 0 && ev.what == kind::app_star) {
    message_row_ = first_value(tx.exec_params(
      "SELECT id FROM messages WHERE kapso_message_id = $1 LIMIT 1", ev.message_id));
    return message_row_.empty() ? -1 : 1;
  }
  if (next_ == 0) {
    auto row = tx.exec_params(
      "SELECT c.id, v.id FROM contacts c LEFT JOIN conversations v ON v.contact_id = c.id "
      "WHERE c.workspace_id = $1 AND c.phone = $2 ORDER BY v.created_at DESC NULLS LAST LIMIT 1",
      ev.workspace_id, ev.phone);
    if (row.empty())
      return -1;
    contact_id_ = row[0][0].c_str();
    conversation_id_ = row[0][1].is_null() ? "" : row[0][1].c_str();
    return ev.what != kind::app_note && conversation_id_.empty() ? -1 : 1;
  }
  if (ev.what == kind::app_star)
    tx.exec_params("INSERT INTO message_stars (message_id) VALUES ($1)", message_row_);
  else if (ev.what == kind::app_note)
    tx.exec_params("INSERT INTO notes (contact_id, body) VALUES ($1, $2)", contact_id_, ev.text);
  else if (ev.what == kind::mark_read)
    tx.exec_params("UPDATE conversations SET unread_count = 0 WHERE id = $1", conversation_id_);
  else if (next_ == 1)
    tx.exec_params("INSERT INTO messages (conversation_id, workspace_id, direction, sender_type, "
                   "content, created_at) VALUES ($1, $2, 'outbound', 'user', $3, to_timestamp($4))",
                   conversation_id_, ev.workspace_id, ev.text, ev.timestamp);
  else
    tx.exec_params("UPDATE conversations SET last_message_at = now(), "
                   "last_message_preview = left($2, 100), updated_at = now() WHERE id = $1",
                   conversation_id_, ev.text);
  return ev.what == kind::app_reply && next_ == 1 ? 2 : -1;
}

bool route_delivery::step(pqxx::connection& connection) {
  if (next_ < 0)
    return false;
  pqxx::nontransaction tx{connection};
  try {
    switch (event_.what) {
      case route_event::kind::inbound:
      case route_event::kind::echo:
        next_ = message_step(tx);
        break;
      case route_event::kind::status:
        next_ = status_step(tx);
        break;
      default:
        next_ = app_step(tx);
        break;
    }
  } catch (const pqxx::sql_error&) {
    failed_ = true;
    next_ = -1;
  }
  return next_ >= 0;
}

void route_model::finish(route_delivery& delivery, std::vector<route_event>& redeliver) {
  ++deliveries_;
  if (delivery.failed()) {
    ++failures_;
    redeliver.push_back(delivery.event());
  }
}

void route_model::interleave(const route_event& a, const route_event& b, size_t lead) {
  route_delivery first{a};
  route_delivery second{b};
  std::vector<route_event> redeliver;
  for (size_t i = 0; i < lead && first.step(connection_); ++i) {
  }
  bool first_open = true;
  bool second_open = true;
  // The second catches up first: after the lead both make the same round trip in turn.
  while (first_open || second_open) {
    second_open = second_open && second.step(connection_);
    first_open = first_open && first.step(connection_);
  }
  finish(first, redeliver);
  finish(second, redeliver);
  for (auto& ev : redeliver) {
    route_delivery again{ev};
    while (again.step(connection_)) {
    }
    finish(again, redeliver);
  }
}

void route_model::run(const std::vector<route_event>& events, uint32_t seed,
                      size_t concurrency, double retry_share) {
  std::mt19937 random{seed};
  std::uniform_real_distribution<double> unit{0.0, 1.0};
  std::deque<route_event> arriving(events.begin(), events.end());
  std::vector<route_delivery> in_flight;
  std::vector<route_event> later; // retries after an answer, and redeliveries
  while (!arriving.empty() || !in_flight.empty() || !later.empty()) {
    bool room = in_flight.size() < concurrency;
    if (room && (!arriving.empty() || !later.empty()) && (in_flight.empty() || unit(random) < 0.4)) {
      bool take_later = !later.empty() && (arriving.empty() || unit(random) < 0.3);
      route_event ev = take_later ? later.front() : arriving.front();
      if (take_later)
        later.erase(later.begin());
      else
        arriving.pop_front();
      bool message = ev.what == route_event::kind::inbound || ev.what == route_event::kind::echo;
      if (!take_later && message && unit(random) < retry_share) {
        if (unit(random) < 0.5)
          in_flight.emplace_back(ev); // Kapso's retry while the first is in flight
        else
          later.push_back(ev);
      }
      in_flight.emplace_back(std::move(ev));
      continue;
    }
    size_t pick = std::uniform_int_distribution<size_t>{0, in_flight.size() - 1}(random);
    if (!in_flight[pick].step(connection_)) {
      finish(in_flight[pick], later);
      in_flight.erase(in_flight.begin() + static_cast<std::ptrdiff_t>(pick));
    }
  }
}

} // namespace kapso_test
