// The repair of what the Next.js route left in its database: the steps of
// migration 0002 that need C++ (phones to E.164), and `repair-route`.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "persistence/pg_session.hpp"

namespace kapso {

// A raw phone to its E.164 form, "" when it is no phone number: the
// server's own normalisation (http/phone.hpp) with the configured default
// region, handed in by whoever assembles the program.
using phone_normaliser = std::function<std::string(std::string_view)>;

struct route_repair_report {
  int64_t phones_rewritten = 0;        // kept contacts whose phone became E.164
  int64_t contacts_merged = 0;         // contacts merged into another and gone
  int64_t conversations_merged = 0;    // conversations merged into another and gone
  int64_t message_copies_merged = 0;   // second copies of a message, gone
  int64_t conversations_recounted = 0; // unread count or preview changed
  std::chrono::milliseconds longest_batch{0}; // the longest transaction, row locks held
};

// One line for logs and the CLI: the counts, no phone numbers.
std::string describe(const route_repair_report& report);

// Every contact's phone to E.164; the contacts that are then one customer
// (forms of one number, or rows the route's races doubled) merged with their
// conversations, and the conversations a contact has more than one of; then
// the message copies. Short transactions with row locks only, so the route
// may go on writing meanwhile. Idempotent. Throws db_error / db_timeout.
void merge_route_duplicates(pg_session& session, const phone_normaliser& normalise,
                            pg_deadline deadline, route_repair_report& report);

// Unread counts and previews of every conversation from its messages
// (kapso_recount_conversations: the rule is explained there), in batches.
void recount_route_conversations(pg_session& session, pg_deadline deadline,
                                 route_repair_report& report);

} // namespace kapso
