// json_rows and json_string_array: the text PostgreSQL reads back is valid JSON holding exactly
// the values given, whatever characters they contain.
#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>

#include "persistence/json_rows.hpp"

using kapso::json_rows;

BOOST_AUTO_TEST_SUITE(json_rows_text)

BOOST_AUTO_TEST_CASE(an_empty_builder_is_an_empty_array) {
  json_rows rows;
  BOOST_TEST(rows.empty());
  BOOST_TEST(nlohmann::json::parse(rows.str()) == nlohmann::json::array());
}

BOOST_AUTO_TEST_CASE(rows_keep_every_field_and_its_type) {
  json_rows rows;
  rows.row().field("id", "c1").field("n", int64_t{-42}).null_field("gone");
  rows.row().raw_field("meta", R"({"a":[1,2]})").field("n", int64_t{9007199254740993});
  BOOST_TEST(!rows.empty());
  auto parsed = nlohmann::json::parse(rows.str());
  BOOST_REQUIRE(parsed.is_array());
  BOOST_REQUIRE(parsed.size() == 2u);
  BOOST_TEST(parsed[0]["id"] == "c1");
  BOOST_TEST(parsed[0]["n"].get<int64_t>() == -42);
  BOOST_TEST(parsed[0]["gone"].is_null());
  BOOST_TEST(parsed[1]["meta"] == nlohmann::json::parse(R"({"a":[1,2]})"));
  BOOST_TEST(parsed[1]["n"].get<int64_t>() == 9007199254740993);
}

BOOST_AUTO_TEST_CASE(strings_with_quotes_controls_and_unicode_read_back_unchanged) {
  const std::string nasty = std::string{"q\"b\\s/\n\r\t\b\f"} + '\x01' + '\x1f' + "é😀";
  json_rows rows;
  rows.row().field(nasty, nasty);
  auto parsed = nlohmann::json::parse(rows.str());
  BOOST_TEST(parsed[0][nasty].get<std::string>() == nasty);
  std::vector<std::string> values{"", nasty, "+5491112345678"};
  auto array = nlohmann::json::parse(kapso::json_string_array(values));
  BOOST_TEST(array.get<std::vector<std::string>>() == values);
}

BOOST_AUTO_TEST_SUITE_END()
