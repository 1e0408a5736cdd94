// A run's throughput and latency per second as one self-contained SVG image.
#include "benchmarks/plot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>

namespace kapso::bench {

namespace {

constexpr double image_width = 960;
constexpr double image_height = 660;
constexpr double plot_left = 90;
constexpr double plot_right = 870;

struct panel {
  double top;
  double bottom;
};

constexpr panel throughput_panel{110, 340};
constexpr panel latency_panel{410, 600};

constexpr size_t max_dotted_points = 120;

constexpr const char* deliveries_colour = "#1f77b4";
constexpr const char* events_colour = "#ff7f0e";
constexpr const char* p50_colour = "#2ca02c";
constexpr const char* p99_colour = "#d62728";

// An axis from 0 to `top` with a tick every `step`: 1, 2, 2.5 or 5 times a
// power of ten, about five ticks, so the labels are round numbers.
struct axis {
  double top = 1;
  double step = 0.2;
};

axis nice_axis(double largest) {
  if (!std::isfinite(largest) || largest <= 0)
    largest = 1;
  auto raw = largest / 5;
  auto magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  auto normalised = raw / magnitude;
  double step = normalised <= 1     ? 1
                : normalised <= 2   ? 2
                : normalised <= 2.5 ? 2.5
                : normalised <= 5   ? 5
                                    : 10;
  step *= magnitude;
  return {std::ceil(largest / step - 1e-9) * step, step};
}

std::string coordinate(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", v);
  return buf;
}

std::string label(double v) {
  char buf[32];
  if (std::fabs(v) >= 1e6)
    std::snprintf(buf, sizeof(buf), "%.10gM", v / 1e6);
  else if (std::fabs(v) >= 1e4)
    std::snprintf(buf, sizeof(buf), "%.10gk", v / 1e3);
  else
    std::snprintf(buf, sizeof(buf), "%.10g", v);
  return buf;
}

std::string escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    switch (ch) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        // Control characters are not allowed in XML 1.0 text at all.
        if (static_cast<unsigned char>(ch) >= 0x20 || ch == '\t')
          out += ch;
        else
          out += ' ';
    }
  }
  return out;
}

double finite_or_zero(double v) {
  return std::isfinite(v) ? v : 0;
}

class svg_writer {
public:
  void line(double x1, double y1, double x2, double y2, const char* stroke,
            const char* extra = "") {
    out_ += "<line x1=\"" + coordinate(x1) + "\" y1=\"" + coordinate(y1) + "\" x2=\""
            + coordinate(x2) + "\" y2=\"" + coordinate(y2) + "\" stroke=\"" + stroke + "\""
            + extra + "/>\n";
  }

  void text(double x, double y, const std::string& content, const char* attributes) {
    out_ += "<text x=\"" + coordinate(x) + "\" y=\"" + coordinate(y) + "\"" + attributes
            + ">" + escape(content) + "</text>\n";
  }

  void raw(const std::string& markup) {
    out_ += markup;
  }

  std::string take() {
    return std::move(out_);
  }

private:
  std::string out_;
};

struct frame {
  double x_top;
  const panel& area;

  double x(double t) const {
    return plot_left + (plot_right - plot_left) * std::clamp(t / x_top, 0.0, 1.0);
  }

  double y(double v, const axis& a) const {
    return area.bottom - (area.bottom - area.top) * std::clamp(v / a.top, 0.0, 1.0);
  }
};

void draw_window(svg_writer& svg, const frame& f, const plot_spec& spec) {
  if (!(spec.window_until > spec.window_from))
    return;
  auto x1 = f.x(spec.window_from);
  auto x2 = f.x(spec.window_until);
  svg.raw("<rect x=\"" + coordinate(x1) + "\" y=\"" + coordinate(f.area.top) + "\" width=\""
          + coordinate(x2 - x1) + "\" height=\"" + coordinate(f.area.bottom - f.area.top)
          + "\" fill=\"#eef3fb\"/>\n");
}

void draw_time_axis(svg_writer& svg, const frame& f, const axis& time) {
  for (double t = 0; t <= time.top + time.step / 2; t += time.step) {
    auto x = f.x(t);
    svg.line(x, f.area.top, x, f.area.bottom, "#e5e5e5");
    svg.line(x, f.area.bottom, x, f.area.bottom + 5, "#333333");
    svg.text(x, f.area.bottom + 18, label(t), " text-anchor=\"middle\"");
  }
  svg.line(plot_left, f.area.bottom, plot_right, f.area.bottom, "#333333");
}

// A vertical value axis on the left (side < 0) or right (side > 0) edge.
void draw_value_axis(svg_writer& svg, const frame& f, const axis& a, int side,
                     const std::string& title, const char* colour) {
  auto edge = side < 0 ? plot_left : plot_right;
  auto tick_end = edge + 5.0 * side;
  auto anchor = side < 0 ? " text-anchor=\"end\"" : " text-anchor=\"start\"";
  svg.line(edge, f.area.top, edge, f.area.bottom, "#333333");
  for (double v = 0; v <= a.top + a.step / 2; v += a.step) {
    auto y = f.y(v, a);
    if (side < 0)
      svg.line(plot_left, y, plot_right, y, "#e5e5e5");
    svg.line(edge, y, tick_end, y, "#333333");
    svg.text(edge + 8.0 * side, y + 4, label(v), anchor);
  }
  auto x = side < 0 ? 24.0 : image_width - 24.0;
  auto y = (f.area.top + f.area.bottom) / 2;
  svg.raw("<text x=\"" + coordinate(x) + "\" y=\"" + coordinate(y)
          + "\" text-anchor=\"middle\" fill=\"" + colour + "\" transform=\"rotate(-90 "
          + coordinate(x) + " " + coordinate(y) + ")\">" + escape(title) + "</text>\n");
}

void draw_series(svg_writer& svg, const frame& f, const axis& a,
                 const std::vector<plot_point>& points, const char* name,
                 const char* colour, const char* dash,
                 const std::function<bool(const plot_point&, double&)>& value_of) {
  std::string list;
  std::string markers;
  // A short run has few seconds: dots show where each one is, and a run of
  // one second is not an invisible one-point line.
  bool dots = points.size() <= max_dotted_points;
  for (auto& p : points) {
    double v = 0;
    if (!value_of(p, v))
      continue;
    auto x = coordinate(f.x(finite_or_zero(p.t)));
    auto y = coordinate(f.y(finite_or_zero(v), a));
    if (!list.empty())
      list += ' ';
    list += x + ',' + y;
    if (dots)
      markers += "<circle cx=\"" + x + "\" cy=\"" + y + "\" r=\"2.5\" fill=\"" + colour + "\"/>\n";
  }
  svg.raw(std::string{"<polyline data-series=\""} + name + "\" fill=\"none\" stroke=\""
          + colour + "\" stroke-width=\"1.5\"" + dash + " points=\"" + list + "\"/>\n");
  svg.raw(markers);
}

void draw_legend(svg_writer& svg, double x, double y, const char* colour, const char* dash,
                 const std::string& text) {
  svg.line(x, y - 4, x + 24, y - 4, colour,
           (std::string{" stroke-width=\"2\""} + dash).c_str());
  svg.text(x + 30, y, text, "");
}

} // namespace

std::string render_svg(const plot_spec& spec, const std::vector<plot_point>& points) {
  double last_t = spec.window_until;
  double max_deliveries = 0;
  double max_events = 0;
  double max_latency = 0;
  for (auto& p : points) {
    last_t = std::max(last_t, finite_or_zero(p.t));
    max_deliveries = std::max(max_deliveries, finite_or_zero(p.deliveries_per_second));
    max_events = std::max(max_events, finite_or_zero(p.events_per_second));
    if (p.has_latency)
      max_latency = std::max({max_latency, finite_or_zero(p.p50_ms), finite_or_zero(p.p99_ms)});
  }
  auto time = nice_axis(last_t);
  auto deliveries = nice_axis(max_deliveries);
  auto events = nice_axis(max_events);
  auto latency = nice_axis(max_latency);
  frame upper{time.top, throughput_panel};
  frame lower{time.top, latency_panel};

  svg_writer svg;
  svg.raw("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\""
          + coordinate(image_width) + "\" height=\"" + coordinate(image_height)
          + "\" viewBox=\"0 0 " + coordinate(image_width) + " " + coordinate(image_height)
          + "\" font-family=\"sans-serif\" font-size=\"12\">\n");
  svg.raw("<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n");
  svg.text(image_width / 2, 24, spec.title,
           " text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\"");
  svg.text(image_width / 2, 44, spec.arguments, " text-anchor=\"middle\"");
  svg.text(image_width / 2, 62, spec.summary, " text-anchor=\"middle\" fill=\"#555555\"");

  // Throughput: deliveries/s on the left axis, events/s on the right one.
  draw_window(svg, upper, spec);
  draw_time_axis(svg, upper, time);
  draw_value_axis(svg, upper, deliveries, -1, "deliveries/s", deliveries_colour);
  draw_value_axis(svg, upper, events, 1, "events/s", events_colour);
  draw_series(svg, upper, deliveries, points, "deliveries", deliveries_colour, "",
              [](const plot_point& p, double& v) {
                v = p.deliveries_per_second;
                return true;
              });
  draw_series(svg, upper, events, points, "events", events_colour,
              " stroke-dasharray=\"6 3\"", [](const plot_point& p, double& v) {
                v = p.events_per_second;
                return true;
              });
  draw_legend(svg, plot_left + 10, throughput_panel.top - 12, deliveries_colour, "",
              "deliveries/s (left axis)");
  draw_legend(svg, plot_left + 230, throughput_panel.top - 12, events_colour,
              " stroke-dasharray=\"6 3\"", "events/s (right axis)");
  if (spec.window_until > spec.window_from)
    svg.text(plot_right, throughput_panel.top - 12, "shaded: measured window",
             " text-anchor=\"end\" fill=\"#555555\"");

  // Latency of the answers that completed in each second.
  draw_window(svg, lower, spec);
  draw_time_axis(svg, lower, time);
  draw_value_axis(svg, lower, latency, -1, "latency ms", "#333333");
  draw_series(svg, lower, latency, points, "p50", p50_colour, "",
              [](const plot_point& p, double& v) {
                v = p.p50_ms;
                return p.has_latency;
              });
  draw_series(svg, lower, latency, points, "p99", p99_colour, "",
              [](const plot_point& p, double& v) {
                v = p.p99_ms;
                return p.has_latency;
              });
  draw_legend(svg, plot_left + 10, latency_panel.top - 12, p50_colour, "", "p50 ms");
  draw_legend(svg, plot_left + 130, latency_panel.top - 12, p99_colour, "", "p99 ms");
  if (points.empty())
    svg.text((plot_left + plot_right) / 2, (throughput_panel.top + throughput_panel.bottom) / 2,
             "no samples", " text-anchor=\"middle\" fill=\"#555555\"");

  svg.text((plot_left + plot_right) / 2, image_height - 20, "seconds since the run started",
           " text-anchor=\"middle\"");
  svg.raw("</svg>\n");
  return svg.take();
}

} // namespace kapso::bench
