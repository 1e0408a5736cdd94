// The route's data repaired: phones normalised here, merges and counts by
// the functions of migration 0002, one short transaction per batch.
#include "persistence/route_repair.hpp"

#include <algorithm>
#include <map>
#include <sstream>
#include <tuple>
#include <vector>

#include <spdlog/spdlog.h>

#include "persistence/json_rows.hpp"
#include "persistence/statements.hpp"

namespace kapso {

namespace {

// Rows one transaction locks at most: customers (each a few contacts and
// conversations), messages stored more than once, conversations to recount.
// The route's writes to those rows wait for the transaction: at one million
// messages a batch takes about 100 ms (benchmarks/route_migration.sh).
constexpr size_t customers_per_batch = 100;
constexpr size_t message_keys_per_batch = 200;
constexpr size_t conversations_per_batch = 500;

// A batch that meets a concurrent writer (a deadlock, or a row the route
// inserted between our read and our write) is tried again.
constexpr int batch_attempts = 3;

bool is_conflict(const db_error& e) {
  return e.sqlstate() == "40P01" || e.sqlstate() == "40001" || e.sqlstate() == "23505";
}

pg_rows run_batch(pg_session& session, const char* sql, const std::string& param,
                  pg_deadline deadline, route_repair_report& report) {
  for (int attempt = 1;; ++attempt) {
    auto started = pg_clock::now();
    try {
      auto rows = session.exec_params(sql, {pg_param{param}}, deadline);
      auto took = std::chrono::duration_cast<std::chrono::milliseconds>(pg_clock::now() - started);
      report.longest_batch = std::max(report.longest_batch, took);
      return rows;
    } catch (const db_error& e) {
      if (!is_conflict(e) || e.connection_lost() || attempt == batch_attempts)
        throw;
      spdlog::info("route repair: a batch met a concurrent writer (SQLSTATE {}), trying it again",
                   e.sqlstate());
    }
  }
}

// A customer as the route may have split it: every contact of one
// workspace whose phone has the same E.164 form (or the same text, when it
// is no number).
struct customer_key {
  std::string workspace_id;
  std::string phone;
  bool operator<(const customer_key& o) const {
    return std::tie(workspace_id, phone) < std::tie(o.workspace_id, o.phone);
  }
};

struct customer {
  std::vector<std::string> contact_ids;
  bool needs_work = false; // several contacts, a phone to rewrite, or split conversations
};

std::map<customer_key, customer> customers_of(pg_session& session,
                                              const phone_normaliser& normalise,
                                              pg_deadline deadline) {
  std::map<customer_key, customer> customers;
  std::map<std::string, customer_key> key_of_contact;
  auto rows = session.exec(sql::repair_select_contacts, deadline);
  for (size_t r = 0; r < rows.size(); ++r) {
    std::string phone{rows.text(r, 2)};
    auto e164 = normalise(phone);
    customer_key key{std::string{rows.text(r, 1)}, e164.empty() ? phone : e164};
    auto& c = customers[key];
    c.contact_ids.emplace_back(rows.text(r, 0));
    c.needs_work = c.needs_work || c.contact_ids.size() > 1 || key.phone != phone;
    key_of_contact.emplace(rows.text(r, 0), key);
  }
  auto split = session.exec(sql::repair_select_split_conversations, deadline);
  for (size_t r = 0; r < split.size(); ++r) {
    auto found = key_of_contact.find(std::string{split.text(r, 0)});
    if (found != key_of_contact.end())
      customers[found->second].needs_work = true;
  }
  return customers;
}

void merge_customer_batch(pg_session& session, const json_rows& members, pg_deadline deadline,
                          route_repair_report& report) {
  auto rows = run_batch(session, sql::repair_merge_customers, members.str(), deadline, report);
  report.contacts_merged += rows.integer(0, 0);
  report.phones_rewritten += rows.integer(0, 1);
  report.conversations_merged += rows.integer(0, 2);
}

void merge_customers(pg_session& session, const phone_normaliser& normalise,
                     pg_deadline deadline, route_repair_report& report) {
  auto customers = customers_of(session, normalise, deadline);
  json_rows members;
  size_t in_batch = 0;
  for (const auto& [key, c] : customers) {
    if (!c.needs_work)
      continue;
    for (const auto& id : c.contact_ids)
      members.row().field("id", id).field("phone", key.phone);
    if (++in_batch == customers_per_batch) {
      merge_customer_batch(session, members, deadline, report);
      members = json_rows{};
      in_batch = 0;
    }
  }
  if (!members.empty())
    merge_customer_batch(session, members, deadline, report);
}

// "{a,b,c}": uuids need no quoting in an array literal.
std::string uuid_array(const std::vector<std::string>& ids, size_t from, size_t to) {
  std::string out = "{";
  for (size_t i = from; i < to; ++i) {
    if (i > from)
      out += ',';
    out += ids[i];
  }
  out += '}';
  return out;
}

void merge_message_copies(pg_session& session, pg_deadline deadline,
                          route_repair_report& report) {
  // One entry per message: the ids of its copies, "id,id".
  auto rows = session.exec(sql::repair_select_message_copies, deadline);
  for (size_t first = 0; first < rows.size(); first += message_keys_per_batch) {
    std::string ids = "{";
    for (size_t r = first; r < std::min(rows.size(), first + message_keys_per_batch); ++r) {
      if (r > first)
        ids += ',';
      ids += rows.text(r, 0);
    }
    ids += '}';
    auto merged = run_batch(session, sql::repair_merge_message_copies, ids, deadline, report);
    report.message_copies_merged += merged.integer(0, 0);
  }
}

std::chrono::milliseconds since(pg_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(pg_clock::now() - start);
}

} // namespace

std::string describe(const route_repair_report& report) {
  std::ostringstream out;
  out << report.phones_rewritten << " phones rewritten to E.164, " << report.contacts_merged
      << " contacts and " << report.conversations_merged << " conversations merged, "
      << report.message_copies_merged << " message copies merged, "
      << report.conversations_recounted << " conversations recounted (longest transaction "
      << report.longest_batch.count() << " ms)";
  return out.str();
}

void merge_route_duplicates(pg_session& session, const phone_normaliser& normalise,
                            pg_deadline deadline, route_repair_report& report) {
  auto start = pg_clock::now();
  merge_customers(session, normalise, deadline, report);
  spdlog::info("route repair: customers merged in {} ms ({} contacts, {} conversations, "
               "{} phones rewritten)",
               since(start).count(), report.contacts_merged, report.conversations_merged,
               report.phones_rewritten);
  start = pg_clock::now();
  merge_message_copies(session, deadline, report);
  spdlog::info("route repair: {} message copies merged in {} ms", report.message_copies_merged,
               since(start).count());
}

void recount_route_conversations(pg_session& session, pg_deadline deadline,
                                 route_repair_report& report) {
  auto start = pg_clock::now();
  auto rows = session.exec(sql::repair_select_conversations, deadline);
  std::vector<std::string> ids;
  ids.reserve(rows.size());
  for (size_t r = 0; r < rows.size(); ++r)
    ids.emplace_back(rows.text(r, 0));
  for (size_t first = 0; first < ids.size(); first += conversations_per_batch) {
    auto batch = uuid_array(ids, first, std::min(ids.size(), first + conversations_per_batch));
    auto changed = run_batch(session, sql::repair_recount_conversations, batch, deadline, report);
    report.conversations_recounted += changed.integer(0, 0);
  }
  spdlog::info("route repair: {} of {} conversations recounted in {} ms",
               report.conversations_recounted, ids.size(), since(start).count());
}

} // namespace kapso
