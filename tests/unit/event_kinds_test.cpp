// What each event kind is (domain/event.hpp), pinned for every kind, and the
// contact keys of customers without a phone (domain/contact_key.hpp).
#include "domain/contact_key.hpp"
#include "domain/event.hpp"

#include <map>
#include <string>

#include <boost/test/unit_test.hpp>

using namespace kapso;

namespace {

struct expected_facts {
  bool message;
  bool message_or_status;
  bool message_change;
  bool change;
  bool conversation;
  bool contact;
};

// Written out again on purpose: a row here is a second, independent
// statement of each decision. A kind added to the enum without a row fails
// every_kind_has_its_decisions.
const std::map<event_kind, expected_facts>& expected() {
  using k = event_kind;
  static const std::map<event_kind, expected_facts> table{
    //                                message msg|status m.change change  conv.  contact
    {k::message_received,         {true,  true,  false, false, true,  true}},
    {k::message_sent,             {true,  true,  false, false, true,  true}},
    {k::message_status,           {false, true,  false, false, false, false}},
    {k::conversation_created,     {false, false, false, false, true,  true}},
    {k::conversation_ended,       {false, false, false, false, true,  true}},
    {k::conversation_inactive,    {false, false, false, false, false, false}},
    {k::unknown,                  {false, false, false, false, false, false}},
    {k::message_edit,             {false, false, true,  true,  false, false}},
    {k::message_revoke,           {false, false, true,  true,  false, false}},
    {k::contact_number_changed,   {false, false, false, true,  false, false}},
    {k::contact_identity_changed, {false, false, false, true,  false, true}},
  };
  return table;
}

} // namespace

BOOST_AUTO_TEST_SUITE(event_kinds)

BOOST_AUTO_TEST_CASE(every_kind_has_its_decisions) {
  auto last = static_cast<unsigned>(last_event_kind);
  BOOST_TEST(expected().size() == last + 1);
  for (unsigned n = 0; n <= last; ++n) {
    auto kind = static_cast<event_kind>(n);
    BOOST_TEST_CONTEXT(to_string(kind)) {
      auto row = expected().find(kind);
      BOOST_TEST_REQUIRE((row != expected().end()), "no expected row for this kind");
      const auto& want = row->second;
      BOOST_TEST(is_message(kind) == want.message);
      BOOST_TEST(is_message_or_status(kind) == want.message_or_status);
      BOOST_TEST(is_message_change(kind) == want.message_change);
      BOOST_TEST(is_change(kind) == want.change);
      BOOST_TEST(needs_conversation(kind) == want.conversation);
      BOOST_TEST(touches_contact(kind) == want.contact);
    }
  }
}

BOOST_AUTO_TEST_CASE(the_predicates_nest_as_their_names_say) {
  for (unsigned n = 0; n <= static_cast<unsigned>(last_event_kind); ++n) {
    auto kind = static_cast<event_kind>(n);
    BOOST_TEST_CONTEXT(to_string(kind)) {
      if (is_message(kind)) {
        BOOST_TEST(is_message_or_status(kind));
        BOOST_TEST(needs_conversation(kind));
      }
      if (is_message_change(kind))
        BOOST_TEST(is_change(kind));
      if (needs_conversation(kind))
        BOOST_TEST(touches_contact(kind));
      BOOST_TEST(!(is_change(kind) && needs_conversation(kind)));
    }
  }
}

BOOST_AUTO_TEST_CASE(every_kind_has_its_own_name) {
  std::map<std::string, event_kind> seen;
  for (unsigned n = 0; n <= static_cast<unsigned>(last_event_kind); ++n) {
    auto kind = static_cast<event_kind>(n);
    BOOST_TEST(seen.emplace(to_string(kind), kind).second, to_string(kind));
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(contact_keys)

BOOST_AUTO_TEST_CASE(keys_of_customers_without_a_phone_are_prefixed) {
  BOOST_TEST(bsuid_key("US.1001") == "bsuid:US.1001");
  BOOST_TEST(username_key("@ana.w") == "username:@ana.w");
  BOOST_TEST(is_bsuid_key(bsuid_key("US.1001")));
  BOOST_TEST(is_bsuid_key("bsuid:"));
  BOOST_TEST(!is_bsuid_key("+15551234567"));
  BOOST_TEST(!is_bsuid_key(username_key("bsuid:x")));
  BOOST_TEST(!is_bsuid_key("bsuid"));
  BOOST_TEST(!is_bsuid_key(""));
}

BOOST_AUTO_TEST_CASE(the_phone_wins_then_the_bsuid_then_the_username) {
  BOOST_TEST(contact_key_of("+15551234567", "US.1", "ana") == "+15551234567");
  BOOST_TEST(contact_key_of("", "US.1", "ana") == "bsuid:US.1");
  BOOST_TEST(contact_key_of("", "", "ana") == "username:ana");
  BOOST_TEST(contact_key_of("", "", "").empty());
}

BOOST_AUTO_TEST_SUITE_END()
