// WhatsApp timestamps: unix seconds as text, ISO-8601, milliseconds.
#include "http/timestamp.hpp"

#include <boost/test/unit_test.hpp>

using namespace kapso;

BOOST_AUTO_TEST_SUITE(timestamp)

BOOST_AUTO_TEST_CASE(unix_seconds_as_text) {
  BOOST_TEST(unix_seconds("1730092801") == 1730092801);
  BOOST_TEST(unix_seconds(" 1730092801 ") == 1730092801);
  BOOST_TEST(unix_seconds("1730092801.75") == 1730092801);
}

BOOST_AUTO_TEST_CASE(iso_8601) {
  BOOST_TEST(unix_seconds("2024-10-28T05:20:01Z") == 1730092801);
  BOOST_TEST(unix_seconds("2024-10-28T05:20:01.123Z") == 1730092801);
  BOOST_TEST(unix_seconds("2024-10-28T07:20:01+02:00") == 1730092801);
  BOOST_TEST(unix_seconds("2024-10-28T00:50:01-0430") == 1730092801);
  BOOST_TEST(unix_seconds("2024-10-28T05:20:01") == 1730092801);
  BOOST_TEST(unix_seconds("2024-10-28 05:20:01Z") == 1730092801);
  BOOST_TEST(unix_seconds("1970-01-01T00:00:01Z") == 1);
  BOOST_TEST(unix_seconds("2000-03-01T00:00:00Z") == 951868800); // leap year
}

BOOST_AUTO_TEST_CASE(milliseconds_are_scaled) {
  BOOST_TEST(unix_seconds("1730092801123") == 1730092801);
  BOOST_TEST(epoch_seconds(1730092801123) == 1730092801);
  BOOST_TEST(epoch_seconds(1730092801) == 1730092801);
}

BOOST_AUTO_TEST_CASE(garbage_is_zero) {
  for (auto text : {"", "abc", "17300x", "-5", "2024-13-28T05:20:01Z",
                    "2024-10-28T05:20:01Q", "2024-10-28", "2024/10/28T05:20:01Z"}) {
    BOOST_TEST_CONTEXT("text " << text) {
      BOOST_TEST(unix_seconds(text) == 0);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
