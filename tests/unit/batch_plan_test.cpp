// The batch plan: which events each statement gets, and which events share
// the outcome of an earlier copy.
#include "persistence/batch_plan.hpp"

#include <boost/test/unit_test.hpp>

#include "persistence/pg_array.hpp"

using namespace kapso;

namespace {

event message(const std::string& key, const std::string& id, const std::string& direction,
              const std::string& name = "") {
  event ev;
  ev.kind = direction == "inbound" ? event_kind::message_received : event_kind::message_sent;
  ev.contact_key = key;
  ev.contact_phone = key;
  ev.message_id = id;
  ev.direction = direction;
  ev.contact_name = name;
  return ev;
}

std::vector<std::string_view> keys_of(const std::vector<batch_entry>& entries) {
  std::vector<std::string_view> keys;
  for (const auto& e : entries)
    keys.push_back(e.ev->contact_key);
  return keys;
}

} // namespace

BOOST_AUTO_TEST_SUITE(batch_plan_tests)

BOOST_AUTO_TEST_CASE(later_copies_of_a_message_take_the_first_ones_outcome) {
  std::vector<event> events{message("+1", "m1", "inbound"), message("+1", "m2", "inbound"),
                            message("+1", "m1", "inbound"), message("+2", "m1", "inbound")};
  std::vector<batch_entry> entries;
  for (auto& ev : events)
    entries.push_back({&ev, "ws-a", 1});
  // The same id in another workspace is another message.
  entries[3].workspace_id = "ws-b";
  auto plan = plan_batch(entries, keys_of(entries));
  BOOST_TEST(plan.messages == (std::vector<size_t>{0, 1, 3}));
  BOOST_TEST(plan.outcome_of == (std::vector<size_t>{0, 1, 0, 3}));
}

BOOST_AUTO_TEST_CASE(each_contact_is_upserted_once_sorted_with_the_first_name_it_has) {
  std::vector<event> events{message("+3", "a", "inbound"), message("+1", "b", "inbound", "Ana"),
                            message("+3", "c", "inbound", "Bo"),
                            message("+3", "d", "outbound", "Other")};
  std::vector<batch_entry> entries;
  for (auto& ev : events)
    entries.push_back({&ev, "ws", 1});
  auto plan = plan_batch(entries, keys_of(entries));
  BOOST_REQUIRE_EQUAL(plan.contacts.size(), 2u);
  BOOST_TEST(plan.contacts[0].key == "+1");
  BOOST_TEST(plan.contacts[0].name == "Ana");
  BOOST_TEST(plan.contacts[1].key == "+3");
  BOOST_TEST(plan.contacts[1].name == "Bo");
  BOOST_TEST(plan.outbound == std::vector<size_t>{3});
}

BOOST_AUTO_TEST_CASE(statuses_closings_and_bsuid_links_have_their_own_steps) {
  event status;
  status.kind = event_kind::message_status;
  status.message_id = "m1";
  status.status = "read";
  event ended = message("+1", "", "inbound");
  ended.kind = event_kind::conversation_ended;
  event ended_again = ended;
  event linked = message("+2", "m9", "inbound");
  linked.contact_bsuid = "B-1";
  event bsuid_only = message("bsuid:B-2", "m10", "inbound");
  bsuid_only.contact_phone.clear();
  bsuid_only.contact_bsuid = "B-2";
  std::vector<event> events{status, ended, ended_again, linked, bsuid_only};
  std::vector<batch_entry> entries;
  for (auto& ev : events)
    entries.push_back({&ev, "ws", 1});
  auto plan = plan_batch(entries, keys_of(entries));
  BOOST_TEST(plan.statuses == std::vector<size_t>{0});
  BOOST_TEST(plan.closings == std::vector<size_t>{1});
  BOOST_REQUIRE_EQUAL(plan.bsuid_links.size(), 1u);
  BOOST_TEST(plan.bsuid_links[0].phone == "+2");
  BOOST_TEST(plan.bsuid_links[0].bsuid_key == "bsuid:B-1");
  BOOST_TEST(bsuid_only_entries(entries) == std::vector<size_t>{4});
  BOOST_TEST(plan.contacts.size() == 3u); // +1, +2 and bsuid:B-2; none for the status
}

BOOST_AUTO_TEST_CASE(binary_arrays_have_postgres_wire_layout) {
  pg_array ids{pg_type::uuid};
  BOOST_TEST(ids.add_uuid("00112233-4455-6677-8899-aabbccddeeff"));
  BOOST_TEST(!ids.add_uuid("not-a-uuid"));
  BOOST_TEST(!ids.add_uuid("00112233-4455-6677-8899-aabbccddee"));
  ids.add_null();
  auto bytes = std::move(ids).take();
  // ndim 1, has nulls, uuid, 2 elements from 1; then 16 bytes and a NULL.
  BOOST_REQUIRE_EQUAL(bytes.size(), 20u + 4 + 16 + 4);
  BOOST_TEST(bytes.substr(0, 20) == std::string("\0\0\0\1\0\0\0\1\0\0\x0b\x86\0\0\0\2\0\0\0\1", 20));
  BOOST_TEST(static_cast<unsigned char>(bytes[24]) == 0x00u);
  BOOST_TEST(static_cast<unsigned char>(bytes[39]) == 0xffu);
  BOOST_TEST(bytes.substr(40) == std::string("\xff\xff\xff\xff"));

  pg_array empty{pg_type::text};
  BOOST_TEST(std::move(empty).take() == std::string("\0\0\0\0\0\0\0\0\0\0\0\x19", 12));
}

BOOST_AUTO_TEST_SUITE_END()
