// The pipeline's counters, gauges and histograms (events, batches, spool,
// writers, workspace cache) and the exposition helpers /metrics is written
// with; the HTTP layer adds its own and renders the page (http/http_metrics).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "domain/event.hpp"

namespace kapso {

// Prometheus text exposition format 0.0.4.
namespace exposition {
// A label value with \\, \" and \n escaped.
void append_label_value(std::string& out, std::string_view value);
// The shortest text that reads back as `value`.
void append_number(std::string& out, double value);
void header(std::string& out, std::string_view name, std::string_view help,
            std::string_view type);
// One sample without labels, with its HELP and TYPE lines.
void gauge(std::string& out, std::string_view name, std::string_view help, int64_t value);
void counter(std::string& out, std::string_view name, std::string_view help, uint64_t value);

// Orders (label, label) keys of any string type, so a count looks up its key
// without building strings; they are built once, on first insert.
struct label_pair_less {
  using is_transparent = void;
  template <class A, class B>
  bool operator()(const A& x, const B& y) const {
    int order = std::string_view{x.first}.compare(std::string_view{y.first});
    if (order != 0)
      return order < 0;
    return second_less(x.second, y.second);
  }
  static bool second_less(int x, int y) { return x < y; }
  static bool second_less(std::string_view x, std::string_view y) { return x < y; }
};
} // namespace exposition

// A Prometheus histogram with fixed upper bounds; lock-free to observe.
class histogram {
public:
  explicit histogram(std::vector<double> bounds);
  void observe(double value) noexcept;
  void render(std::string& out, std::string_view name, std::string_view help) const;
  // The samples only, each with `labels` (`a="x",b="y"`, already escaped) first.
  void render_samples(std::string& out, std::string_view name, std::string_view labels) const;

private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_; // one per bound + +Inf
  std::atomic<uint64_t> sum_micros_{0};              // sum * 1e6
};

class pipeline_metrics {
public:
  static pipeline_metrics& global();

  // An event type that is not one of Kapso's is counted as type="other": the
  // type comes from the wire, and every label value is a series kept forever.
  void count_event(std::string_view type, write_outcome result, uint64_t n = 1);
  void count_event(std::string_view type, std::string_view result, uint64_t n = 1);

  histogram batch_size{{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000}};
  histogram commit_seconds{{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                            0.1, 0.25, 0.5, 1, 2.5, 5}};
  std::atomic<int64_t> conversations_active{0}; // writers' per-conversation states
  std::atomic<int64_t> writer_queue{0};        // events waiting in writer batches
  std::atomic<int64_t> spool_bytes{0};
  std::atomic<int64_t> spool_records{0};
  std::atomic<uint64_t> spooled_events_total{0};
  std::atomic<uint64_t> replayed_events_total{0};
  std::atomic<uint64_t> spool_corrupt_records_total{0};
  std::atomic<uint64_t> spool_dropped_events_total{0};
  std::atomic<uint64_t> quarantined_events_total{0};
  std::atomic<int64_t> quarantine_events{0}; // in the writers' quarantine files
  std::atomic<uint64_t> commit_failures_total{0};
  std::atomic<int64_t> workspace_cache_entries{0};

  // Appends every pipeline metric to a /metrics page.
  void render(std::string& out) const;

private:
  mutable std::mutex mtx_;
  std::map<std::pair<std::string, std::string>, uint64_t, exposition::label_pair_less> events_;
};

} // namespace kapso
