// HMAC-SHA256 webhook signatures: known vectors, acceptance and rejection.
#include "domain/signature.hpp"
#include "config/secrets.hpp"

#include <algorithm>
#include <cctype>

#include <boost/test/unit_test.hpp>

using namespace kapso;

namespace {

const std::string body = R"({"message":{"id":"wamid.1"}})";

std::string upper(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return text;
}

} // namespace

BOOST_AUTO_TEST_SUITE(signature)

BOOST_AUTO_TEST_CASE(rfc_4231_case_2) {
  BOOST_TEST(hmac_sha256_hex("Jefe", "what do ya want for nothing?")
             == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

BOOST_AUTO_TEST_CASE(rfc_4231_case_1) {
  // Binary key: twenty 0x0b bytes.
  BOOST_TEST(hmac_sha256_hex(std::string(20, '\x0b'), "Hi There")
             == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

BOOST_AUTO_TEST_CASE(hex_is_lowercase_and_64_chars) {
  auto mac = hmac_sha256_hex("secret", body);
  BOOST_TEST(mac.size() == 64u);
  BOOST_TEST(mac != upper(mac));
  BOOST_TEST(std::all_of(mac.begin(), mac.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  }));
}

BOOST_AUTO_TEST_CASE(accepts_the_right_secret) {
  auto mac = hmac_sha256_hex("secret", body);
  BOOST_TEST(signature_matches(body, mac, {"secret"}));
}

BOOST_AUTO_TEST_CASE(rejects_a_wrong_secret) {
  auto mac = hmac_sha256_hex("secret", body);
  BOOST_TEST(!signature_matches(body, mac, {"other"}));
  BOOST_TEST(!signature_matches(body, mac, {}));
}

BOOST_AUTO_TEST_CASE(rejects_a_tampered_body) {
  auto mac = hmac_sha256_hex("secret", body);
  auto tampered = body;
  tampered[tampered.size() - 3] = '2';
  BOOST_TEST(!signature_matches(tampered, mac, {"secret"}));
  BOOST_TEST(!signature_matches(body + " ", mac, {"secret"}));
}

BOOST_AUTO_TEST_CASE(rejects_a_tampered_signature) {
  auto mac = hmac_sha256_hex("secret", body);
  mac[10] = mac[10] == 'a' ? 'b' : 'a';
  BOOST_TEST(!signature_matches(body, mac, {"secret"}));
}

BOOST_AUTO_TEST_CASE(accepts_sha256_prefix) {
  auto mac = hmac_sha256_hex("secret", body);
  BOOST_TEST(signature_matches(body, "sha256=" + mac, {"secret"}));
  BOOST_TEST(signature_matches(body, "SHA256=" + mac, {"secret"}));
  BOOST_TEST(!signature_matches(body, "sha1=" + mac, {"secret"}));
}

BOOST_AUTO_TEST_CASE(accepts_uppercase_hex) {
  auto mac = hmac_sha256_hex("secret", body);
  BOOST_TEST(signature_matches(body, upper(mac), {"secret"}));
  BOOST_TEST(signature_matches(body, "sha256=" + upper(mac), {"secret"}));
}

BOOST_AUTO_TEST_CASE(rejects_wrong_length_and_non_hex) {
  auto mac = hmac_sha256_hex("secret", body);
  BOOST_TEST(!signature_matches(body, "", {"secret"}));
  BOOST_TEST(!signature_matches(body, mac.substr(0, 63), {"secret"}));
  BOOST_TEST(!signature_matches(body, mac + "0", {"secret"}));
  BOOST_TEST(!signature_matches(body, mac + mac, {"secret"}));
  auto bad = mac;
  bad[0] = 'g';
  BOOST_TEST(!signature_matches(body, bad, {"secret"}));
}

BOOST_AUTO_TEST_CASE(any_secret_of_a_rotation_list_matches) {
  auto old_mac = hmac_sha256_hex("old-secret", body);
  auto new_mac = hmac_sha256_hex("new-secret", body);
  std::vector<std::string> secrets{"new-secret", "old-secret"};
  BOOST_TEST(signature_matches(body, old_mac, secrets));
  BOOST_TEST(signature_matches(body, new_mac, secrets));
  BOOST_TEST(!signature_matches(body, hmac_sha256_hex("retired", body), secrets));
}

BOOST_AUTO_TEST_CASE(empty_secret_never_matches) {
  // The HMAC under an empty key is computable by anyone.
  auto mac = hmac_sha256_hex("", body);
  BOOST_TEST(!signature_matches(body, mac, {""}));
}

BOOST_AUTO_TEST_CASE(split_secrets_on_commas_and_whitespace) {
  auto secrets = split_secrets(" a,b  c\t,\nd,, ");
  BOOST_TEST(secrets == (std::vector<std::string>{"a", "b", "c", "d"}),
             boost::test_tools::per_element());
  BOOST_TEST(split_secrets("").empty());
  BOOST_TEST(split_secrets(" , ,").empty());
  BOOST_TEST(split_secrets("only") == std::vector<std::string>{"only"},
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_SUITE_END()
