// A Kapso-like load for the fault tests: signed v2 deliveries from many threads, every answer recorded.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.hpp"

namespace kapso_fault {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

// How a load signs its deliveries: floods of unsigned or wrongly signed ones
// must be refused (401) and leave nothing behind.
enum class signing { valid, wrong_secret, none };

struct load_options {
  std::string tag = "load";             // in every message id: unique per test
  std::vector<kapso_test::workspace> workspaces; // deliveries are spread over these
  size_t conversations = 300;           // distinct customer phones, over all workspaces
  size_t threads = 6;
  double batch_share = 0.3;             // share of deliveries that are Kapso batches
  size_t batch_min = 2;                 // events in a batch: batch_min..batch_max
  size_t batch_max = 6;
  size_t text_bytes = 60;               // message text length
  std::chrono::milliseconds client_timeout = 12s;
  std::chrono::milliseconds pause = 0ms; // between two requests of one thread
  size_t max_deliveries_per_thread = SIZE_MAX;
  signing sign = signing::valid;
};

// One message of a delivery; its conversation decides workspace and phone.
struct message_ref {
  std::string id;
  size_t conversation = 0;
  int64_t timestamp = 0;
};

// One try to deliver: what the client saw.
struct attempt {
  clock_type::time_point sent;
  std::chrono::milliseconds latency{0};
  int status = 0;                      // 0: no HTTP answer, see `error`
  std::optional<kapso_test::http_error::kind> error;
  bool reused_connection = false;      // sent on a kept-alive connection
  bool retry_after = false;            // the answer carried Retry-After
  int64_t accepted = -1;
  int64_t duplicates = -1;
  int64_t ignored = -1;
  std::string detail;                  // error text, or the body of a non-200
};

struct delivery {
  size_t workspace = 0;
  bool batch = false;
  std::vector<message_ref> messages;
  std::vector<attempt> attempts;

  bool acknowledged() const;           // some attempt was answered 200
};

// What a set of deliveries saw, for assertions and for the log.
struct load_summary {
  size_t deliveries = 0;
  size_t messages = 0;
  size_t requests = 0;
  size_t acknowledged_deliveries = 0;
  size_t acknowledged_messages = 0;
  std::map<int, size_t> by_status;                 // 0 = no answer
  std::map<std::string, size_t> errors;            // by http_error kind
  size_t ignored_in_200 = 0;                       // 200 answers with ignored > 0
  size_t wrong_counts_in_200 = 0;                  // accepted + duplicates + ignored != events
  size_t status_503_without_retry_after = 0;
  std::chrono::milliseconds max_latency{0};
  std::chrono::milliseconds max_latency_200{0};
  std::vector<std::string> examples;               // a few odd answers, for messages

  std::string describe() const;
};

load_summary summarize(const std::vector<delivery>& deliveries);

// The body of `d` exactly as it was (and will be re-)sent.
std::string body_of(const delivery& d, const load_options& options);
// The text of message `m` and its customer's phone (E.164).
std::string text_of(const message_ref& m, const load_options& options);
std::string phone_of(size_t conversation);
size_t workspace_of(size_t conversation, const load_options& options);

// N threads, each with its own keep-alive client, posting new deliveries
// until stop(): no retries here (every answer is recorded as it came); the
// re-sender does what Kapso does afterwards.
class load_driver {
 public:
  load_driver(uint16_t port, load_options options);
  ~load_driver();
  load_driver(const load_driver&) = delete;
  load_driver& operator=(const load_driver&) = delete;

  // Starts the threads; a driver can be started again after stop() (new
  // message ids each round).
  void start();
  // Lets every thread finish its current request, joins them and gathers
  // their deliveries.
  void stop();
  // Where new requests go (a restarted server may listen elsewhere).
  void set_port(uint16_t port) { port_ = port; }

  size_t requests() const { return requests_.load(); }
  size_t acknowledged() const { return acknowledged_.load(); }
  // Blocks until `n` requests were answered 200 or `timeout` passed.
  bool wait_acknowledged(size_t n, std::chrono::milliseconds timeout) const;

  const load_options& options() const { return options_; }
  std::vector<delivery>& deliveries() { return deliveries_; }

 private:
  void run(size_t thread);

  load_options options_;
  std::atomic<uint16_t> port_;
  std::atomic<bool> stopping_{false};
  size_t round_ = 0;
  std::atomic<size_t> requests_{0};
  std::atomic<size_t> acknowledged_{0};
  std::vector<std::thread> threads_;
  std::vector<std::vector<delivery>> per_thread_;
  std::vector<delivery> deliveries_;
};

// Sends `d` once on `client`, appending what happened to d.attempts.
void send_once(kapso_test::http_client& client, delivery& d, const load_options& options);

// Kapso's retries: every delivery not yet answered 200 is re-sent (a pause
// between tries of one delivery) until it is, or `budget` runs out. Returns
// how many are still unacknowledged.
size_t resend_unacknowledged(std::vector<delivery>& deliveries, const load_options& options,
                             uint16_t port, std::chrono::milliseconds budget,
                             size_t threads = 4);

} // namespace kapso_fault
