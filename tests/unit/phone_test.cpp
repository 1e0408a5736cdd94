// Phone normalisation to E.164 and masking for logs.
#include "http/phone.hpp"

#include <random>

#include <boost/test/unit_test.hpp>
#include <phonenumbers/phonenumber.pb.h>
#include <phonenumbers/phonenumberutil.h>

using namespace kapso;

BOOST_AUTO_TEST_SUITE(phone)

BOOST_AUTO_TEST_CASE(variants_of_one_number_normalise_alike) {
  for (auto raw : {"+15551234567", "15551234567", "+1 (555) 123-4567",
                   "+1-555-123-4567", "001 555 123 4567", "(555) 123-4567",
                   "555.123.4567", "5551234567", " +1 555 123 4567 "}) {
    BOOST_TEST_CONTEXT("raw " << raw) {
      BOOST_TEST(normalise_phone(raw, "US") == "+15551234567");
    }
  }
}

BOOST_AUTO_TEST_CASE(test_numbers_are_accepted) {
  // 555 numbers are possible but not valid: they must still normalise.
  BOOST_TEST(normalise_phone("15550001111", "US") == "+15550001111");
  BOOST_TEST(normalise_phone("+15551234567", "US") == "+15551234567");
}

BOOST_AUTO_TEST_CASE(wa_id_form_wins_over_the_region) {
  // Digits-only longer than 10 are international, whatever the region.
  BOOST_TEST(normalise_phone("447911123456", "US") == "+447911123456");
  BOOST_TEST(normalise_phone("15551234567", "GB") == "+15551234567");
  BOOST_TEST(normalise_phone("5511987654321", "US") == "+5511987654321");
}

BOOST_AUTO_TEST_CASE(default_region_is_honoured) {
  BOOST_TEST(normalise_phone("07911 123456", "GB") == "+447911123456");
  BOOST_TEST(normalise_phone("07911 123456", "US") == "");
  BOOST_TEST(normalise_phone("5551234567", "US") == "+15551234567");
  BOOST_TEST(normalise_phone("(11) 98765-4321", "BR") == "+5511987654321");
}

BOOST_AUTO_TEST_CASE(international_prefix_00) {
  BOOST_TEST(normalise_phone("0044 7911 123456", "US") == "+447911123456");
}

BOOST_AUTO_TEST_CASE(garbage_is_empty) {
  for (auto raw : {"", " ", "+", "abc", "1-800-FLOWERS", "12", "+1", "5551234567x",
                   "hello@example.com", "++15551234567", "1+5551234567",
                   "bsuid:US.123", "12345678901234567890123456789012345678901234"}) {
    BOOST_TEST_CONTEXT("raw " << raw) {
      BOOST_TEST(normalise_phone(raw, "US") == "");
    }
  }
}

BOOST_AUTO_TEST_CASE(unknown_region_only_reads_international_numbers) {
  BOOST_TEST(normalise_phone("5551234567", "XX") == "");
  BOOST_TEST(normalise_phone("+15551234567", "XX") == "+15551234567");
}

// International numbers skip libphonenumber's regular expressions; the answer
// must be the parser's, number for number (a customer stored under one form
// must be found again under it).
BOOST_AUTO_TEST_CASE(international_numbers_normalise_as_the_parser_does) {
  using i18n::phonenumbers::PhoneNumber;
  using i18n::phonenumbers::PhoneNumberUtil;
  const auto& util = *PhoneNumberUtil::GetInstance();
  std::mt19937_64 rng{20261202};
  size_t accepted = 0;
  for (int i = 0; i < 200000; ++i) {
    std::string number = "+";
    number += static_cast<char>('1' + rng() % 9);
    auto digits = 7 + rng() % 9;
    for (size_t k = 1; k < digits; ++k)
      number += static_cast<char>('0' + rng() % 10);
    PhoneNumber parsed;
    std::string expected;
    if (util.Parse(number, "ZZ", &parsed) == PhoneNumberUtil::NO_PARSING_ERROR
        && util.IsPossibleNumber(parsed))
      util.Format(parsed, PhoneNumberUtil::E164, &expected);
    auto got = normalise_phone(number, "US");
    accepted += got.empty() ? 0 : 1;
    BOOST_TEST_REQUIRE(got == expected, number);
  }
  BOOST_TEST(accepted > 50000u);
  // Where the parser rewrites international numbers, its answer stands.
  BOOST_TEST(normalise_phone("+5215512345678", "US") == "+525512345678");
}

BOOST_AUTO_TEST_SUITE_END()
