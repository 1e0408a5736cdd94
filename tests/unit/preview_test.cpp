// Preview cutting: code points, never half a UTF-8 sequence, one line.
#include "http/preview.hpp"

#include <boost/test/unit_test.hpp>

using namespace kapso;

namespace {

// Counts code points of valid UTF-8 (continuation bytes are not counted).
size_t code_points(const std::string& text) {
  size_t n = 0;
  for (unsigned char c : text)
    if ((c & 0xc0) != 0x80)
      ++n;
  return n;
}

std::string repeat(const std::string& unit, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i)
    out += unit;
  return out;
}

} // namespace

BOOST_AUTO_TEST_SUITE(preview)

BOOST_AUTO_TEST_CASE(short_ascii_is_unchanged) {
  BOOST_TEST(cut_utf8("Hola") == "Hola");
  BOOST_TEST(cut_utf8("") == "");
}

BOOST_AUTO_TEST_CASE(exactly_100_is_kept_101_is_cut) {
  auto hundred = repeat("a", 100);
  BOOST_TEST(cut_utf8(hundred) == hundred);
  BOOST_TEST(cut_utf8(hundred + "b") == hundred);
  BOOST_TEST(cut_utf8(repeat("a", 99) + "bc") == repeat("a", 99) + "b");
}

BOOST_AUTO_TEST_CASE(emoji_are_one_code_point_each) {
  // U+1F600 is four bytes.
  auto emoji = std::string("\xF0\x9F\x98\x80");
  auto cut = cut_utf8(repeat(emoji, 101));
  BOOST_TEST(cut == repeat(emoji, 100));
  BOOST_TEST(cut.size() == 400u);
  BOOST_TEST(cut_utf8(repeat("a", 99) + emoji + emoji) == repeat("a", 99) + emoji);
}

BOOST_AUTO_TEST_CASE(accented_and_cjk_text) {
  auto accented = std::string("\xC3\xA9"); // é
  auto cjk = std::string("\xE4\xB8\xAD");  // 中
  auto text = repeat(accented, 60) + repeat(cjk, 60);
  auto cut = cut_utf8(text);
  BOOST_TEST(code_points(cut) == 100u);
  BOOST_TEST(cut == repeat(accented, 60) + repeat(cjk, 40));
  BOOST_TEST(cut_utf8(repeat(cjk, 3), 2) == repeat(cjk, 2));
}

BOOST_AUTO_TEST_CASE(custom_limit) {
  BOOST_TEST(cut_utf8("abcdef", 3) == "abc");
  BOOST_TEST(cut_utf8("abcdef", 0) == "");
}

BOOST_AUTO_TEST_CASE(invalid_bytes_are_dropped) {
  BOOST_TEST(cut_utf8("a\xFF" "b") == "ab");
  BOOST_TEST(cut_utf8("a\xC3") == "a");              // truncated sequence
  BOOST_TEST(cut_utf8("\xC0\xAF" "x") == "x");       // overlong '/'
  BOOST_TEST(cut_utf8("\xED\xA0\x80" "y") == "y");   // UTF-16 surrogate
  BOOST_TEST(cut_utf8("\xF4\x90\x80\x80" "z") == "z"); // past U+10FFFF
  BOOST_TEST(cut_utf8("\x80\x80" "ok") == "ok");     // stray continuation
  // Dropped bytes do not count against the limit.
  BOOST_TEST(cut_utf8("\xFF\xFF" "abc", 3) == "abc");
}

BOOST_AUTO_TEST_CASE(newlines_become_spaces_and_ends_are_trimmed) {
  BOOST_TEST(cut_utf8("  Hola\nque tal  \n") == "Hola que tal");
  BOOST_TEST(cut_utf8("a\r\nb") == "a b");
  BOOST_TEST(cut_utf8("a\tb") == "a b");
  BOOST_TEST(cut_utf8(" \n\t ") == "");
  // Leading whitespace does not count against the limit.
  BOOST_TEST(cut_utf8("   abcdef", 3) == "abc");
}

BOOST_AUTO_TEST_CASE(long_text_is_cheap_and_correct) {
  auto text = repeat("\xC3\xB1", 100000); // ñ
  auto cut = cut_utf8(text);
  BOOST_TEST(cut == repeat("\xC3\xB1", 100));
}

BOOST_AUTO_TEST_SUITE_END()
