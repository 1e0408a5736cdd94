// Status order: a message's status only ever moves forward.
#include <boost/test/unit_test.hpp>

#include "persistence/inbox_rules.hpp"

using kapso::status_advances;
using kapso::status_rank;

BOOST_AUTO_TEST_SUITE(inbox_rules)

BOOST_AUTO_TEST_CASE(sent_delivered_read_in_order) {
  BOOST_TEST(status_rank("sent") < status_rank("delivered"));
  BOOST_TEST(status_rank("delivered") < status_rank("read"));
  BOOST_TEST(status_rank("received") == status_rank("sent"));
}

BOOST_AUTO_TEST_CASE(failed_is_terminal) {
  for (const char* other : {"received", "sent", "delivered", "read"}) {
    BOOST_TEST(status_advances(other, "failed"), other);
    BOOST_TEST(!status_advances("failed", other), other);
  }
  BOOST_TEST(!status_advances("failed", "failed"));
}

BOOST_AUTO_TEST_CASE(never_backwards_or_sideways) {
  BOOST_TEST(status_advances("sent", "read"));
  BOOST_TEST(!status_advances("read", "delivered"));
  BOOST_TEST(!status_advances("delivered", "sent"));
  BOOST_TEST(!status_advances("read", "read"));
}

BOOST_AUTO_TEST_CASE(unknown_and_missing_rank_lowest) {
  BOOST_TEST(status_rank("") == 0);
  BOOST_TEST(status_rank("deleted") == 0);
  BOOST_TEST(status_advances("", "sent"));
  BOOST_TEST(!status_advances("sent", "deleted"));
}

BOOST_AUTO_TEST_SUITE_END()
