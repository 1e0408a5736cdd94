// Phone numbers to E.164 with libphonenumber; masking for logs.
#include "http/phone.hpp"

#include <optional>
#include <unordered_map>

#include <phonenumbers/logger.h>
#include <phonenumbers/phonenumber.pb.h>
#include <phonenumbers/phonenumberutil.h>

namespace kapso {

namespace {

using i18n::phonenumbers::NullLogger;
using i18n::phonenumbers::PhoneNumber;
using i18n::phonenumbers::PhoneNumberUtil;

// Longer input is not a phone number; bounding it keeps parsing cheap.
constexpr size_t max_raw_length = 40;

// WhatsApp's wa_id is the international number without "+": bare digits
// longer than a national (10-digit) number are read that way. Formatted
// input ("(11) 98765-4321") was written by a person and is national.
constexpr size_t max_national_digits = 10;

const PhoneNumberUtil& phone_util() {
  // Silence the library's stdout logger once, before first use; the magic
  // static makes this thread-safe.
  static const PhoneNumberUtil* util = [] {
    auto* instance = PhoneNumberUtil::GetInstance();
    instance->SetLogger(new NullLogger);
    return instance;
  }();
  return *util;
}

bool is_ignorable(char c) {
  return c == ' ' || c == '-' || c == '(' || c == ')' || c == '.' || c == '\t';
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// "+digits" or "digits", or "" when `raw` holds anything but digits, one
// leading plus and the usual separators (letters would otherwise be read as
// a vanity number by libphonenumber).
std::string strip(std::string_view raw) {
  std::string out;
  for (auto c : raw) {
    if (is_digit(c))
      out += c;
    else if (c == '+' && out.empty())
      out += c;
    else if (!is_ignorable(c))
      return {};
  }
  return out;
}

std::string parse_e164(const std::string& number, const std::string& region) {
  const auto& util = phone_util();
  PhoneNumber parsed;
  if (util.Parse(number, region, &parsed) != PhoneNumberUtil::NO_PARSING_ERROR)
    return {};
  // Test and fictional numbers (555) are possible but not valid: accept them.
  if (!util.IsPossibleNumber(parsed))
    return {};
  std::string out;
  util.Format(parsed, PhoneNumberUtil::E164, &out);
  return out;
}

// Country codes whose national numbers libphonenumber's parser rewrites even
// in international form (national prefixes for parsing and transform rules:
// Mexico's mobile 1, Madagascar's and Norfolk Island's added digits, ...);
// 40 million random numbers agree with the parser everywhere else.
bool rewrites_national_numbers(int country_code) {
  switch (country_code) {
    case 52: case 54: case 55: case 61: case 86: case 261: case 352: case 375: case 378:
    case 672:
      return true;
    default:
      return false;
  }
}

// "+<digits>" already in international form, checked without libphonenumber's
// regular expressions: the country code found in its metadata and the length
// against the country's possible lengths (what IsPossibleNumber checks).
// nullopt when the digits need the full parser (a national significant
// number with a leading zero, an unknown country code, odd lengths).
std::optional<std::string> canonical_e164(const std::string& number) {
  // E.164: at most 15 digits; the shortest possible numbers have 7.
  if (number.size() < 8 || number.size() > 16 || number[0] != '+' || number[1] == '0')
    return std::nullopt;
  const auto& util = phone_util();
  for (size_t length = 1; length <= 3; ++length) {
    int country_code = std::stoi(number.substr(1, length));
    std::string region;
    util.GetRegionCodeForCountryCode(country_code, &region);
    if (region == "ZZ")
      continue;
    if (rewrites_national_numbers(country_code))
      return std::nullopt;
    auto national = number.substr(1 + length);
    if (national.empty() || national[0] == '0' || national.size() > 17)
      return std::nullopt;
    PhoneNumber parsed;
    parsed.set_country_code(country_code);
    parsed.set_national_number(std::stoull(national));
    if (!util.IsPossibleNumber(parsed))
      return std::nullopt;
    return number;
  }
  return std::nullopt;
}

} // namespace

namespace {

std::string normalise_uncached(std::string_view raw, const std::string& default_region) {
  while (!raw.empty() && (raw.front() == ' ' || raw.front() == '\t'))
    raw.remove_prefix(1);
  while (!raw.empty() && (raw.back() == ' ' || raw.back() == '\t'))
    raw.remove_suffix(1);
  if (raw.size() > max_raw_length)
    return {};
  auto number = strip(raw);
  if (number.empty() || number == "+")
    return {};
  if (number.compare(0, 2, "00") == 0)
    number.replace(0, 2, "+");
  if (number.front() == '+') {
    if (auto canonical = canonical_e164(number))
      return *canonical;
    return parse_e164(number, "ZZ");
  }
  if (number.size() > max_national_digits && number.size() == raw.size()) {
    if (auto canonical = canonical_e164("+" + number))
      return *canonical;
    auto international = parse_e164("+" + number, "ZZ");
    if (!international.empty())
      return international;
  }
  return parse_e164(number, default_region);
}

// libphonenumber's regex matching costs microseconds per call and the same
// customers write again and again: remember recent answers per thread.
constexpr size_t phone_cache_capacity = 65536;

} // namespace

std::string normalise_phone(std::string_view raw, const std::string& default_region) {
  // Only what can be a phone number is remembered, so the cache is bounded
  // in bytes as well as entries whatever arrives on the wire.
  if (raw.size() > max_raw_length)
    return normalise_uncached(raw, default_region);
  thread_local std::unordered_map<std::string, std::string> cache;
  std::string key;
  key.reserve(raw.size() + default_region.size() + 1);
  key.append(default_region).append(1, '|').append(raw);
  auto found = cache.find(key);
  if (found != cache.end())
    return found->second;
  auto normalised = normalise_uncached(raw, default_region);
  if (cache.size() >= phone_cache_capacity)
    cache.clear();
  cache.emplace(std::move(key), normalised);
  return normalised;
}

} // namespace kapso
