// Body admission: refusals from the headers, where the refused request
// starts, and the byte budget taken and given back.
#include "http/body_admission.hpp"

#include <boost/test/unit_test.hpp>

using namespace kapso;

namespace {

constexpr size_t limit = 1000;

std::string post(size_t content_length, std::string_view body = {}) {
  return "POST /api/webhook/kapso HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         "Content-Length: " + std::to_string(content_length) + "\r\n\r\n" + std::string{body};
}

std::string chunk(size_t size) {
  char head[32];
  std::snprintf(head, sizeof head, "%zx\r\n", size);
  return head + std::string(size, 'x') + "\r\n";
}

struct watched {
  std::shared_ptr<byte_budget> budget;
  request_stream_watch watch;
  explicit watched(size_t budget_bytes = 10 * limit)
    : budget(std::make_shared<byte_budget>(budget_bytes)),
      watch(admission_limits{limit, 1}, budget) {}
  std::optional<admission_refusal> follow(const std::string& bytes) {
    return watch.follow(bytes.data(), bytes.size());
  }
};

} // namespace

BOOST_AUTO_TEST_SUITE(body_admission)

BOOST_AUTO_TEST_CASE(a_body_within_the_limit_holds_budget_until_it_is_whole) {
  watched w;
  BOOST_TEST(!w.follow(post(600, "0123456789")));
  BOOST_TEST(w.watch.held() == 600u);
  BOOST_TEST(w.budget->in_use() == 600u);
  BOOST_TEST(!w.follow(std::string(590, 'x')));
  BOOST_TEST(w.watch.held() == 0u);
  BOOST_TEST(w.budget->in_use() == 0u);
}

BOOST_AUTO_TEST_CASE(content_length_over_the_limit_is_refused_413_from_the_headers) {
  watched w;
  auto refusal = w.follow(post(60'000'000));
  BOOST_TEST_REQUIRE(refusal.has_value());
  BOOST_TEST(refusal->answer.status == 413);
  BOOST_TEST(refusal->answer.retry_after == 0);
  BOOST_TEST(refusal->announced == 60'000'000u);
  BOOST_TEST(refusal->message_offset == 0u);
  BOOST_TEST(refusal->target == "/api/webhook/kapso");
  BOOST_TEST(refusal->answer.body.find("body larger than 1000 bytes") != std::string::npos);
  BOOST_TEST(w.budget->in_use() == 0u);
  // Nothing after a refusal is looked at, whatever it is.
  BOOST_TEST(!w.follow(post(10, "0123456789")));
}

BOOST_AUTO_TEST_CASE(exactly_the_limit_is_admitted) {
  watched w;
  BOOST_TEST(!w.follow(post(limit)));
  BOOST_TEST(w.watch.held() == limit);
}

BOOST_AUTO_TEST_CASE(no_room_in_the_budget_is_refused_503_with_retry_after) {
  auto budget = std::make_shared<byte_budget>(1500);
  request_stream_watch first{admission_limits{limit, 2}, budget};
  request_stream_watch second{admission_limits{limit, 2}, budget};
  auto a = post(900);
  BOOST_TEST(!first.follow(a.data(), a.size()));
  auto refusal = second.follow(a.data(), a.size());
  BOOST_TEST_REQUIRE(refusal.has_value());
  BOOST_TEST(refusal->answer.status == 503);
  BOOST_TEST(refusal->answer.retry_after == 2);
  BOOST_TEST(budget->in_use() == 900u);
}

BOOST_AUTO_TEST_CASE(a_closed_connection_gives_its_budget_back) {
  auto budget = std::make_shared<byte_budget>(5000);
  {
    request_stream_watch w{admission_limits{limit, 1}, budget};
    auto head = post(800, "abc");
    BOOST_TEST(!w.follow(head.data(), head.size()));
    BOOST_TEST(budget->in_use() == 800u);
  }
  BOOST_TEST(budget->in_use() == 0u);
}

BOOST_AUTO_TEST_CASE(a_refused_request_after_others_in_one_read_starts_where_they_end) {
  watched w;
  auto first = std::string{"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"};
  auto second = post(5, "hello");
  auto bytes = first + second + post(5000, "xyz");
  auto refusal = w.follow(bytes);
  BOOST_TEST_REQUIRE(refusal.has_value());
  BOOST_TEST(refusal->answer.status == 413);
  BOOST_TEST(refusal->message_offset == first.size() + second.size());
  BOOST_TEST(w.budget->in_use() == 0u);
}

BOOST_AUTO_TEST_CASE(a_request_begun_in_an_earlier_read_is_refused_at_offset_0) {
  watched w;
  auto bytes = post(5000);
  BOOST_TEST(!w.follow(bytes.substr(0, 40)));
  auto refusal = w.follow(bytes.substr(40));
  BOOST_TEST_REQUIRE(refusal.has_value());
  BOOST_TEST(refusal->message_offset == 0u);
}

BOOST_AUTO_TEST_CASE(a_chunked_body_is_cut_at_the_limit) {
  watched w;
  std::string head = "POST /api/webhook/kapso HTTP/1.1\r\nHost: x\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n";
  BOOST_TEST(!w.follow(head + chunk(400)));
  BOOST_TEST(w.watch.held() >= 400u);
  BOOST_TEST(!w.follow(chunk(600)));
  auto refusal = w.follow(chunk(1));
  BOOST_TEST_REQUIRE(refusal.has_value());
  BOOST_TEST(refusal->answer.status == 413);
  BOOST_TEST(refusal->chunked);
  BOOST_TEST(refusal->announced == 1001u);
  BOOST_TEST(w.budget->in_use() == 0u);
}

BOOST_AUTO_TEST_CASE(a_chunked_body_within_the_limit_gives_its_budget_back_when_whole) {
  watched w;
  std::string head = "POST /api/webhook/kapso HTTP/1.1\r\nHost: x\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n";
  BOOST_TEST(!w.follow(head + chunk(300) + chunk(300) + "0\r\n\r\n"));
  BOOST_TEST(w.budget->in_use() == 0u);
}

BOOST_AUTO_TEST_CASE(bytes_no_parser_can_follow_hold_nothing) {
  watched w;
  BOOST_TEST(!w.follow("\x01\x02 not http at all\r\n\r\n"));
  BOOST_TEST(w.budget->in_use() == 0u);
}

BOOST_AUTO_TEST_CASE(keep_alive_requests_each_hold_only_while_being_read) {
  watched w;
  for (int i = 0; i < 100; ++i)
    BOOST_TEST(!w.follow(post(700, std::string(700, 'b'))));
  BOOST_TEST(w.budget->in_use() == 0u);
}

BOOST_AUTO_TEST_CASE(the_budget_never_passes_its_limit) {
  byte_budget budget{100};
  BOOST_TEST(budget.try_take(60));
  BOOST_TEST(!budget.try_take(41));
  BOOST_TEST(budget.try_take(40));
  BOOST_TEST(!budget.try_take(1));
  BOOST_TEST(!budget.try_take(SIZE_MAX));
  budget.give_back(100);
  BOOST_TEST(budget.in_use() == 0u);
}

BOOST_AUTO_TEST_CASE(the_closing_answer_is_a_complete_http_response) {
  auto raw = raw_closing_response(answer_error(503, "server busy, retry later", 1));
  BOOST_TEST(raw.rfind("HTTP/1.1 503 Service Unavailable\r\n", 0) == 0u);
  BOOST_TEST(raw.find("\r\nRetry-After: 1\r\n") != std::string::npos);
  BOOST_TEST(raw.find("\r\nConnection: close\r\n\r\n") != std::string::npos);
  auto body = raw.substr(raw.find("\r\n\r\n") + 4);
  BOOST_TEST(raw.find("Content-Length: " + std::to_string(body.size()) + "\r\n")
             != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
