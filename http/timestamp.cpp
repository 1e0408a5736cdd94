// WhatsApp timestamps (unix seconds as text, or ISO-8601) to unix seconds.
#include "http/timestamp.hpp"

#include <charconv>

namespace kapso {

namespace {

// Past this, a number is milliseconds: in seconds it would be year 5138.
constexpr int64_t max_plausible_seconds = 100'000'000'000;

// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

// Reads exactly `n` digits at `pos`; -1 when they are not all digits.
int digits_at(std::string_view text, size_t pos, size_t n) {
  if (pos + n > text.size())
    return -1;
  int value = 0;
  for (size_t i = 0; i < n; ++i) {
    auto c = text[pos + i];
    if (c < '0' || c > '9')
      return -1;
    value = value * 10 + (c - '0');
  }
  return value;
}

int64_t iso_8601_seconds(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS
  auto year = digits_at(text, 0, 4);
  auto month = digits_at(text, 5, 2);
  auto day = digits_at(text, 8, 2);
  auto hour = digits_at(text, 11, 2);
  auto minute = digits_at(text, 14, 2);
  auto second = digits_at(text, 17, 2);
  if (year < 0 || month < 1 || month > 12 || day < 1 || day > 31 || hour < 0
      || hour > 23 || minute < 0 || minute > 59 || second < 0 || second > 60)
    return 0;
  if (text[4] != '-' || text[7] != '-' || (text[10] != 'T' && text[10] != 't'
      && text[10] != ' ') || text[13] != ':' || text[16] != ':')
    return 0;
  size_t pos = 19;
  if (pos < text.size() && (text[pos] == '.' || text[pos] == ',')) {
    ++pos;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9')
      ++pos;
  }
  int64_t offset = 0;
  if (pos < text.size()) {
    auto zone = text[pos];
    if (zone == 'Z' || zone == 'z') {
      ++pos;
    } else if (zone == '+' || zone == '-') {
      auto zone_hours = digits_at(text, pos + 1, 2);
      auto minutes_at = pos + 3 < text.size() && text[pos + 3] == ':' ? pos + 4 : pos + 3;
      auto zone_minutes = minutes_at < text.size() ? digits_at(text, minutes_at, 2) : 0;
      if (zone_hours < 0 || zone_minutes < 0)
        return 0;
      offset = (zone_hours * 3600 + zone_minutes * 60) * (zone == '+' ? 1 : -1);
      pos = minutes_at < text.size() ? minutes_at + 2 : text.size();
    }
  }
  if (pos != text.size())
    return 0;
  auto days = days_from_civil(year, static_cast<unsigned>(month),
                              static_cast<unsigned>(day));
  return epoch_seconds(days * 86400 + hour * 3600 + minute * 60 + second - offset);
}

} // namespace

int64_t epoch_seconds(int64_t value) {
  if (value <= 0)
    return 0;
  return value > max_plausible_seconds ? value / 1000 : value;
}

int64_t unix_seconds(std::string_view text) {
  while (!text.empty() && text.front() == ' ')
    text.remove_prefix(1);
  while (!text.empty() && text.back() == ' ')
    text.remove_suffix(1);
  if (text.empty())
    return 0;
  if (text.size() >= 19 && text[4] == '-')
    return iso_8601_seconds(text);
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{})
    return 0;
  // A fractional part ("1730092801.5") is dropped; anything else is garbage.
  if (end != text.data() + text.size()) {
    if (*end != '.')
      return 0;
    for (++end; end != text.data() + text.size(); ++end)
      if (*end < '0' || *end > '9')
        return 0;
  }
  return epoch_seconds(value);
}

} // namespace kapso
