// The HTTP layer's metrics (requests by route and code, their durations,
// deliveries in flight) and the /metrics page: these, the pipeline's
// (metrics/pipeline_metrics), the standard process_* metrics and the build.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "metrics/pipeline_metrics.hpp"

namespace kapso {

class http_metrics {
public:
  static http_metrics& global();

  void count_request(std::string_view route, int status);
  // Counts the request and adds its duration (handler saw it -> answer sent)
  // to kapso_http_request_duration_seconds{route,code}.
  void count_request(std::string_view route, int status, double seconds);

  std::atomic<int64_t> in_flight_deliveries{0};
  // Bytes held by bodies being read and deliveries waiting (one budget).
  std::atomic<int64_t> in_flight_bytes{0};
  // Accepts armed again after an accept error had stopped them.
  std::atomic<uint64_t> accept_restarts_total{0};

  // The whole page, Prometheus text exposition format 0.0.4, with the
  // pipeline metrics of `pipeline`.
  std::string render(const pipeline_metrics& pipeline = pipeline_metrics::global()) const;

private:
  mutable std::mutex mtx_;
  std::map<std::pair<std::string, int>, uint64_t, exposition::label_pair_less> requests_;
  // Never erased, so an observation may use its histogram outside the lock.
  std::map<std::pair<std::string, int>, std::unique_ptr<histogram>, exposition::label_pair_less>
    request_seconds_;
};

} // namespace kapso
