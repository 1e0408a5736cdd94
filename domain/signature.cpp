// HMAC-SHA256 webhook signatures with OpenSSL 3's EVP_MAC, keyed once per secret.
#include "domain/signature.hpp"

#include <array>
#include <cctype>
#include <map>
#include <string>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "domain/hex.hpp"

namespace kapso {

namespace {

constexpr size_t digest_size = 32;

using digest = std::array<unsigned char, digest_size>;

// A keyed HMAC-SHA256 context per secret, kept per thread: OpenSSL 3's
// one-shot HMAC() fetches the algorithm from its provider and sets the key
// up again on every call (1.9 us for a 1 KiB body), while re-initialising a
// keyed context only copies its precomputed inner and outer states.
class hmac_contexts {
public:
  ~hmac_contexts() {
    for (auto& [secret, ctx] : keyed_)
      EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac_);
  }

  // A context keyed with `secret`, ready for update; nullptr if OpenSSL
  // refuses (the signature then counts as wrong).
  EVP_MAC_CTX* ready(std::string_view secret) {
    auto found = keyed_.find(secret);
    if (found != keyed_.end())
      return EVP_MAC_init(found->second, nullptr, 0, nullptr) == 1 ? found->second : nullptr;
    if (mac_ == nullptr)
      mac_ = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (mac_ == nullptr)
      return nullptr;
    auto* ctx = EVP_MAC_CTX_new(mac_);
    if (ctx == nullptr)
      return nullptr;
    char digest_name[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest_name, 0),
                           OSSL_PARAM_construct_end()};
    // A null key pointer means "the previous key": an empty secret needs a
    // real (empty) one.
    static const unsigned char empty_key = 0;
    auto* key = secret.empty() ? &empty_key : reinterpret_cast<const unsigned char*>(secret.data());
    if (EVP_MAC_init(ctx, key, secret.size(), params) != 1) {
      EVP_MAC_CTX_free(ctx);
      return nullptr;
    }
    // Secrets come from our own configuration and tables; bounded anyway.
    if (keyed_.size() >= max_secrets) {
      for (auto& [s, c] : keyed_)
        EVP_MAC_CTX_free(c);
      keyed_.clear();
    }
    keyed_.emplace(std::string{secret}, ctx);
    return ctx;
  }

private:
  static constexpr size_t max_secrets = 256;
  EVP_MAC* mac_ = nullptr;
  std::map<std::string, EVP_MAC_CTX*, std::less<>> keyed_;
};

// False only when OpenSSL refuses (e.g. a FIPS provider and a short key):
// the caller must then treat the signature as wrong, never as all zeros.
bool hmac_sha256(std::string_view secret, std::string_view body, digest& out) {
  thread_local hmac_contexts contexts;
  auto* ctx = contexts.ready(secret);
  if (ctx == nullptr)
    return false;
  size_t out_len = 0;
  return EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(body.data()), body.size())
           == 1
         && EVP_MAC_final(ctx, out.data(), &out_len, out.size()) == 1 && out_len == digest_size;
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
  digest mac{};
  if (!hmac_sha256(secret, body, mac))
    return {};
  std::string out;
  out.reserve(digest_size * 2);
  for (auto byte : mac)
    append_hex(out, byte);
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
