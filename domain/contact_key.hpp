// The key a customer is stored under (contacts.phone): the E.164 phone, or
// for a customer known without one a prefixed business-scoped id or username.
#pragma once

#include <string>
#include <string_view>

namespace kapso {

inline constexpr std::string_view bsuid_key_prefix = "bsuid:";
inline constexpr std::string_view username_key_prefix = "username:";

inline std::string prefixed_key(std::string_view prefix, std::string_view id) {
  std::string key;
  key.reserve(prefix.size() + id.size());
  key.append(prefix).append(id);
  return key;
}

// "bsuid:<id>" for a business_scoped_user_id.
inline std::string bsuid_key(std::string_view bsuid) {
  return prefixed_key(bsuid_key_prefix, bsuid);
}

// "username:<name>" for a WhatsApp username.
inline std::string username_key(std::string_view username) {
  return prefixed_key(username_key_prefix, username);
}

// True for a placeholder key made of a business-scoped id, not a phone.
inline bool is_bsuid_key(std::string_view key) {
  return key.substr(0, bsuid_key_prefix.size()) == bsuid_key_prefix;
}

// The phone when there is one, else the bsuid key, else the username key;
// "" when the customer has none of the three.
inline std::string contact_key_of(std::string_view phone, std::string_view bsuid,
                                  std::string_view username) {
  if (!phone.empty())
    return std::string{phone};
  if (!bsuid.empty())
    return bsuid_key(bsuid);
  if (!username.empty())
    return username_key(username);
  return {};
}

} // namespace kapso
