// The fleet of scripts/cluster.sh as the cluster tests see it, and a Kapso-like sender.
#pragma once

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "tests/integration/harness.hpp"

namespace kapso_cluster {

using namespace std::chrono_literals;
using kapso_test::http_client;
using kapso_test::workspace;

// One line of `scripts/cluster.sh status`.
struct component {
  std::string name;
  int pid = -1; // -1 when down
  std::string role;
};

// The cluster in $KAPSO_CLUSTER_DIR (set by CTest, with the secret its instances were
// started with in $KAPSO_WEBHOOK_SECRET).
class topology {
 public:
  // `scripts/cluster.sh up`: starts whatever is not running (a killed instance or node
  // comes back) and waits until the whole fleet is healthy; throws with its output if not.
  static topology ensure_up(std::chrono::seconds timeout = 240s);

  std::vector<component> status() const;
  component find(const std::string& name) const;
  // The live node the monitor calls primary (also wait_primary: a primary without standby)
  // and wants to stay so.
  std::string primary() const;

  uint16_t front_port() const { return port("FRONT_PORT"); }
  uint16_t ingest_port(int n) const { return port("INGEST_PORT_" + std::to_string(n)); }
  uint16_t node_port(const std::string& node) const;
  // The instances' libpq URL: both nodes, target_session_attrs=read-write.
  const std::string& database_url() const { return database_url_; }
  // One node only, read-only sessions allowed (to look at a standby).
  std::string node_url(const std::string& node) const;
  const std::string& secret() const { return secret_; }
  // The pg_auto_failover monitor's database.
  std::string monitor_url() const;

  // kill -9 of an instance.
  void kill_ingest(const std::string& name) const;
  // kill -9 of a whole PostgreSQL node as a machine dies: its pg_autoctl keeper (process
  // group), the postmaster and every backend.
  void kill_node(const std::string& name) const { signal_node(name, SIGKILL); }
  // SIGSTOP of the same processes: a machine that hangs. Its sockets stay open and silent.
  void freeze_node(const std::string& name) const { signal_node(name, SIGSTOP); }
  // kill -9 of the pg_auto_failover monitor the same way.
  void kill_monitor() const { signal_node("monitor", SIGKILL); }
  // kill -9 of HAProxy.
  void kill_haproxy() const;

  // `scripts/cluster.sh roll`; returns its output, throws with it when it fails.
  std::string roll(std::chrono::seconds timeout = 180s) const;

  // The sum of a metric's samples in instance n's /metrics; -1 when it does not answer.
  double metric(int n, const std::string& name) const;
  double spool_records(int n) const { return metric(n, "kapso_spool_records"); }
  // A field of HAProxy's stats CSV (e.g. "wredis", "hrsp_5xx") for a proxy and server
  // ("BACKEND" for the whole backend); -1 when HAProxy does not answer or has no such row.
  double haproxy_counter(const std::string& proxy, const std::string& server,
                         const std::string& field) const;

 private:
  uint16_t port(const std::string& key) const;
  void signal_node(const std::string& name, int signal) const;

  std::string dir_;
  std::map<std::string, std::string> env_;
  std::string database_url_;
  std::string secret_;
};

// sync_state of the one standby that `url`'s node streams to ("quorum" or "sync" for a
// synchronous one), or "N standbys".
std::string replication_state(const std::string& url);

// A workspace inserted on the primary the way other applications do.
workspace insert_workspace(const std::string& url, const std::string& label);

// A signed Kapso v2 inbound text message as one delivery body.
std::string delivery_body(const workspace& ws, const std::string& id, int64_t timestamp,
                          const std::string& text, const std::string& phone);

// What one delivery took to be answered 200.
struct delivery_result {
  int attempts = 0;
  bool delivered = false;            // answered 200 within the deadline
  kapso_test::delivery_counts counts; // of the 200
  std::vector<std::string> failures; // status codes or errors before the 200
};

// Sends like Kapso: again after anything but a 200 (a status, a reset, a timeout), with a
// short pause, until 200 or `deadline`. The client is replaced after a transport error.
delivery_result deliver(http_client& client, uint16_t port, const std::string& body,
                        const std::string& secret,
                        std::chrono::steady_clock::time_point deadline,
                        std::chrono::milliseconds timeout = 10s);

// One message of a load: delivery k goes to conversation k % conversations, with WhatsApp
// timestamp base + k, so the newest message of each conversation is known.
struct sent_message {
  std::string id;
  std::string phone;
  int64_t timestamp = 0;
  std::string text;
  int attempts = 0;
  bool delivered = false;
  bool accepted = false; // its 200 said accepted (not duplicate)
  std::vector<std::string> failures; // what the attempts before the 200 got
  std::chrono::steady_clock::time_point first_sent, answered_at; // answered_at: of the 200
};

struct load_options {
  size_t threads = 8;
  size_t max_deliveries = 1000;
  int conversations = 30;
  std::chrono::milliseconds pause{0};     // between one thread's deliveries
  std::chrono::seconds retry_window{120}; // per delivery, as Kapso's ~2.5 minutes
  std::string label = "load";
};

// Sends signed deliveries through `port` from several threads, each like Kapso (see
// deliver), until max_deliveries were issued or `stop` is set; returns every message
// issued. `answered` counts deliveries answered 200 so far (for a controller thread).
std::vector<sent_message> run_load(uint16_t port, const std::string& secret,
                                   const workspace& ws, const load_options& options,
                                   const std::atomic<bool>& stop,
                                   std::atomic<size_t>& answered);

// Runs a load through HAProxy's front while `scenario` runs on a thread of its own (it gets
// the count of deliveries answered 200 so far, to wait on); the load stops when the scenario
// returns. The scenario's exception, if any, is thrown once the load has stopped.
std::vector<sent_message> load_during(const topology& fleet, const workspace& ws,
                                      const load_options& options,
                                      const std::function<void(const std::atomic<size_t>&)>& scenario);

// For a scenario of load_during: waits until `count` deliveries were answered 200; throws
// after a minute.
void wait_for_answers(const std::atomic<size_t>& answered, size_t count);

// The longest wait between two consecutive 200s of a load that overlaps [from, to].
std::chrono::milliseconds longest_gap_between_answers(
  const std::vector<sent_message>& messages, std::chrono::steady_clock::time_point from,
  std::chrono::steady_clock::time_point to);

// The longest a delivery answered 200 in [from, to] waited from its first attempt.
std::chrono::milliseconds longest_delivery(const std::vector<sent_message>& messages,
                                           std::chrono::steady_clock::time_point from,
                                           std::chrono::steady_clock::time_point to);

// Boost.Test checks that the inbox of `ws` on `url` holds every message answered 200 exactly
// once, nothing that was not sent, each stored message once, exact unread counts and the
// newest message as preview; and that every delivery was answered 200.
void check_inbox(const std::string& url, const workspace& ws,
                 const std::vector<sent_message>& messages);

} // namespace kapso_cluster
