// The RESTinio front end: turns requests into verified-to-be-JSON, parsed
// deliveries for the router and answers when the actors answer.
#pragma once

#include <atomic>
#include <memory>

#include <caf/all.hpp>

#include "actors/protocol.hpp"
#include "config/settings.hpp"

namespace kapso {

class http_server {
public:
  http_server(caf::actor_system& sys, settings cfg);
  ~http_server();

  // Where the actors answer deliveries: give it to the router and writers.
  answer_sink_ptr sink() const;

  // Binds and starts serving on cfg.host:cfg.port, handing deliveries to
  // `router`; throws when it cannot.
  void start(router_actor router, directory_actor directory);

  // New deliveries get 503 from now on; health and metrics still answer.
  void begin_shutdown();

  // Withdrawn, /readyz answers 503 so that load balancers stop sending here,
  // while deliveries that still arrive are served as before: the first step
  // of a rolling restart, ahead of the SIGTERM drain. Reversible.
  void withdraw(bool withdrawn);

  // Deliveries accepted and not yet answered.
  size_t in_flight() const;

  // Answers every delivery still waiting with 503; how many there were.
  size_t fail_waiting();

  // Stops listening and closes connections.
  void stop();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace kapso
