// HMAC-SHA256 webhook signatures: compute, compare in constant time.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kapso {

// Lowercase hex HMAC-SHA256 of `body` under `secret` ("" if OpenSSL fails).
std::string hmac_sha256_hex(std::string_view secret, std::string_view body);

// True when `signature_hex` (case-insensitive hex, optional "sha256=" prefix)
// is the HMAC of `body` under any of `secrets`. Constant time per secret.
bool signature_matches(std::string_view body, std::string_view signature_hex,
                       const std::vector<std::string>& secrets);

} // namespace kapso
