// The RESTinio front end: turns requests into verified-to-be-JSON, parsed
// deliveries for the router and answers when the actors answer.
#pragma once

#include <atomic>
#include <memory>

#include <caf/all.hpp>

#include "config/settings.hpp"

namespace kapso {

class http_server {
public:
  http_server(caf::actor_system& sys, caf::actor router, caf::actor directory,
              settings cfg);
  ~http_server();

  // Binds and starts serving on cfg.host:cfg.port; throws when it cannot.
  void start();

  // New deliveries get 503 from now on; health and metrics still answer.
  void begin_shutdown();

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
