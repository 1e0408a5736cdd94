// The outage spool keeps what edits, revokes and account changes need.
#include "persistence/spool.hpp"

#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>

using namespace kapso;

BOOST_AUTO_TEST_SUITE(spool_lifecycle_fields)

BOOST_AUTO_TEST_CASE(a_record_keeps_every_lifecycle_field) {
  std::vector<routed_event> batch(3);
  batch[0].workspace_id = "ws-1";
  batch[0].ev.kind = event_kind::message_edit;
  batch[0].ev.message_id = "wamid.EDIT";
  batch[0].ev.original_message_id = "wamid.ORIGINAL";
  batch[0].ev.content = "new text";
  batch[1].workspace_id = "ws-1";
  batch[1].ev.kind = event_kind::contact_number_changed;
  batch[1].ev.contact_key = "+15551230001";
  batch[1].ev.new_contact_phone = "+15551230002";
  batch[2].workspace_id = "ws-1";
  batch[2].ev.kind = event_kind::contact_identity_changed;
  batch[2].ev.identity_hash = "aGFzaA==";

  std::vector<routed_event> read;
  BOOST_REQUIRE(decode_spool_batch(encode_spool_batch(batch), read));
  BOOST_REQUIRE_EQUAL(read.size(), 3u);
  BOOST_TEST((read[0].ev.kind == event_kind::message_edit));
  BOOST_TEST(read[0].ev.original_message_id == "wamid.ORIGINAL");
  BOOST_TEST(read[0].ev.content == "new text");
  BOOST_TEST((read[1].ev.kind == event_kind::contact_number_changed));
  BOOST_TEST(read[1].ev.new_contact_phone == "+15551230002");
  BOOST_TEST((read[2].ev.kind == event_kind::contact_identity_changed));
  BOOST_TEST(read[2].ev.identity_hash == "aGFzaA==");
}

BOOST_AUTO_TEST_SUITE_END()
