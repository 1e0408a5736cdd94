// libFuzzer target: signature headers and bodies through the HMAC check.
// Input: secret '\n' header '\n' body.
#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "config/secrets.hpp"
#include "domain/signature.hpp"
#include "tests/fuzz/fuzz_checks.hpp"

using namespace kapso;
using kapso_fuzz::require;

namespace {

std::string_view take_line(std::string_view& rest) {
  auto end = rest.find('\n');
  auto line = rest.substr(0, end);
  rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
  return line;
}

// The hex digits of a header as the check reads them: trimmed, without a
// "sha256=" prefix, lowercase.
std::string claimed_hex(std::string_view header) {
  auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!header.empty() && is_space(header.front()))
    header.remove_prefix(1);
  while (!header.empty() && is_space(header.back()))
    header.remove_suffix(1);
  std::string text{header};
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (text.rfind("sha256=", 0) == 0)
    text.erase(0, 7);
  return text;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view rest{reinterpret_cast<const char*>(data), size};
  std::string secret{take_line(rest)};
  auto header = take_line(rest);
  auto body = rest;

  auto secrets = split_secrets(header);
  for (const auto& s : secrets)
    require(!s.empty() && s.find_first_of(", \t\n") == std::string::npos,
            "split secrets are non-empty and separator-free");

  auto expected = hmac_sha256_hex(secret, body);
  require(expected.size() == 64, "HMAC hex is 64 characters");
  bool matches = signature_matches(body, header, {secret});
  // Only the true HMAC under a non-empty secret is ever accepted.
  if (matches)
    require(!secret.empty() && claimed_hex(header) == expected, "accepted only the right MAC");
  if (!secret.empty()) {
    require(signature_matches(body, "sha256=" + expected, {secret}), "the right MAC is accepted");
    std::string upper = expected;
    std::transform(upper.begin(), upper.end(), upper.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    require(signature_matches(body, " SHA256=" + upper + " ", {"", secret}),
            "case and spaces do not matter");
  }
  require(!signature_matches(body, hmac_sha256_hex("", body), {""}), "an empty key proves nothing");
  return 0;
}
