// HMAC-SHA256 webhook signatures with OpenSSL 3's one-shot HMAC().
#include "actors/signature.hpp"

#include <array>
#include <cctype>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

namespace kapso {

namespace {

constexpr size_t digest_size = 32;

using digest = std::array<unsigned char, digest_size>;

// False only when OpenSSL refuses (e.g. a FIPS provider and a short key):
// the caller must then treat the signature as wrong, never as all zeros.
bool hmac_sha256(std::string_view secret, std::string_view body, digest& out) {
  unsigned int out_len = 0;
  // A null key pointer is not accepted even with length 0.
  static const char empty_key = 0;
  const char* key = secret.empty() ? &empty_key : secret.data();
  auto* mac = HMAC(EVP_sha256(), key, static_cast<int>(secret.size()),
                   reinterpret_cast<const unsigned char*>(body.data()), body.size(),
                   out.data(), &out_len);
  return mac != nullptr && out_len == digest_size;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front())))
    text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
    text.remove_suffix(1);
  return text;
}

bool starts_with_ci(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size())
    return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(text[i])) != prefix[i])
      return false;
  return true;
}

} // namespace

std::string hmac_sha256_hex(std::string_view secret, std::string_view body) {
  static constexpr char digits[] = "0123456789abcdef";
  digest mac{};
  if (!hmac_sha256(secret, body, mac))
    return {};
  std::string out;
  out.reserve(digest_size * 2);
  for (auto byte : mac) {
    out += digits[byte >> 4];
    out += digits[byte & 0x0f];
  }
  return out;
}

bool signature_matches(std::string_view body, std::string_view signature_hex,
                       const std::vector<std::string>& secrets) {
  auto hex = trim(signature_hex);
  if (starts_with_ci(hex, "sha256="))
    hex.remove_prefix(7);
  if (hex.size() != digest_size * 2)
    return false;
  // Comparing raw bytes makes the check case-insensitive for free.
  digest claimed{};
  for (size_t i = 0; i < digest_size; ++i) {
    auto hi = hex_value(hex[2 * i]);
    auto lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return false;
    claimed[i] = static_cast<unsigned char>((hi << 4) | lo);
  }
  for (const auto& secret : secrets) {
    // Anyone can compute an HMAC under the empty key: it proves nothing.
    if (secret.empty())
      continue;
    digest expected{};
    if (!hmac_sha256(secret, body, expected))
      continue;
    if (CRYPTO_memcmp(expected.data(), claimed.data(), digest_size) == 0)
      return true;
  }
  return false;
}


} // namespace kapso
