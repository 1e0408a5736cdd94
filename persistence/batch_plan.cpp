// Deduplication and grouping of a batch's events, statement by statement.
#include "persistence/batch_plan.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "domain/contact_key.hpp"

namespace kapso {

namespace {

using pair_key = std::pair<std::string_view, std::string_view>;

} // namespace

std::vector<size_t> bsuid_only_entries(const std::vector<batch_entry>& entries) {
  std::vector<size_t> out;
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& ev = *entries[i].ev;
    if (needs_conversation(ev.kind) && ev.contact_phone.empty() && !ev.contact_bsuid.empty())
      out.push_back(i);
  }
  return out;
}

batch_plan plan_batch(const std::vector<batch_entry>& entries,
                      const std::vector<std::string_view>& keys) {
  batch_plan plan;
  plan.outcome_of.resize(entries.size());
  std::map<pair_key, size_t> contact_at;  // -> index in plan.contacts
  std::map<pair_key, size_t> first_message;
  std::set<pair_key> linked;
  std::set<pair_key> closed;
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& entry = entries[i];
    const auto& ev = *entry.ev;
    plan.outcome_of[i] = i;
    if (ev.kind == event_kind::message_status) {
      plan.statuses.push_back(i);
      continue;
    }
    if (!needs_conversation(ev.kind))
      continue;
    pair_key contact{entry.workspace_id, keys[i]};
    auto [at, added] = contact_at.emplace(contact, plan.contacts.size());
    if (added)
      plan.contacts.push_back({entry.workspace_id, keys[i], ev.contact_name, ev.contact_bsuid});
    auto& c = plan.contacts[at->second];
    if (c.name.empty())
      c.name = ev.contact_name;
    if (c.bsuid.empty())
      c.bsuid = ev.contact_bsuid;
    if (!ev.contact_bsuid.empty() && !ev.contact_phone.empty()
        && linked.emplace(entry.workspace_id, ev.contact_phone).second)
      plan.bsuid_links.push_back({entry.workspace_id, ev.contact_phone, bsuid_key(ev.contact_bsuid)});
    if (ev.kind == event_kind::conversation_ended && closed.insert(contact).second)
      plan.closings.push_back(i);
    if (!is_message(ev.kind))
      continue;
    auto [first, fresh] = first_message.emplace(pair_key{entry.workspace_id, ev.message_id}, i);
    if (!fresh) {
      plan.outcome_of[i] = first->second;
      continue;
    }
    plan.messages.push_back(i);
    if (ev.direction != "inbound")
      plan.outbound.push_back(i);
  }
  // Rows are written in key order so that concurrent batches lock them in
  // the same order and cannot deadlock each other.
  std::sort(plan.contacts.begin(), plan.contacts.end(), [](const auto& x, const auto& y) {
    return std::tie(x.workspace_id, x.key) < std::tie(y.workspace_id, y.key);
  });
  return plan;
}

} // namespace kapso
