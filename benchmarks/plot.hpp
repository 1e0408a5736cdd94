// A run's throughput and latency per second as one self-contained SVG image.
#pragma once

#include <string>
#include <vector>

namespace kapso::bench {

// One second of a run (or one sample of any series over time).
struct plot_point {
  double t = 0; // seconds since the run started: the x coordinate
  double deliveries_per_second = 0;
  double events_per_second = 0;
  bool has_latency = false; // false when no answer completed in that second
  double p50_ms = 0;
  double p99_ms = 0;
};

struct plot_spec {
  std::string title;     // the scenario's name
  std::string arguments; // the scenario's arguments, one line under the title
  std::string summary;   // what the run measured, one line under those
  // The measured window, shaded in both panels; nothing is shaded when
  // window_until <= window_from.
  double window_from = 0;
  double window_until = 0;
};

// Two panels over the same time axis: deliveries/s (left axis) and events/s
// (right axis) above, p50 and p99 latency in ms below. Each series is one
// <polyline data-series="deliveries|events|p50|p99"> with one point per
// sample (the latency ones skip samples without latency), so scripts and
// tests can read the image back. Text is XML-escaped.
std::string render_svg(const plot_spec& spec, const std::vector<plot_point>& points);

} // namespace kapso::bench
