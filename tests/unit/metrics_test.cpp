// Metrics rendering: escaped label values, bounded event types, labelled histograms.
#include "http/http_metrics.hpp"

#include <boost/test/unit_test.hpp>

#include "config/version.hpp"

using namespace kapso;

BOOST_AUTO_TEST_SUITE(metrics_rendering)

BOOST_AUTO_TEST_CASE(label_values_are_escaped) {
  http_metrics m;
  pipeline_metrics pipeline;
  m.count_request("a\"b\\c\nd", 200, 0.002);
  auto text = m.render(pipeline);
  BOOST_TEST(text.find(R"(kapso_http_requests_total{route="a\"b\\c\nd",code="200"} 1)")
               != std::string::npos,
             text);
  BOOST_TEST(text.find("a\"b\\c\nd") == std::string::npos, "an unescaped value in:\n" << text);
}

BOOST_AUTO_TEST_CASE(unknown_event_types_are_counted_as_other) {
  http_metrics page;
  pipeline_metrics m;
  m.count_event("whatsapp.message.received", write_outcome::accepted);
  m.count_event("whatsapp.message.received", write_outcome::accepted);
  m.count_event("something.new", write_outcome::ignored);
  m.count_event(std::string(300 * 1024, 'x'), write_outcome::ignored, 2);
  auto text = page.render(m);
  BOOST_TEST(text.find("kapso_events_total{type=\"whatsapp.message.received\",result=\"accepted\"} 2\n")
               != std::string::npos,
             text);
  BOOST_TEST(text.find("kapso_events_total{type=\"other\",result=\"ignored\"} 3\n")
               != std::string::npos,
             text);
  BOOST_TEST(text.find("something.new") == std::string::npos);
  BOOST_TEST(text.size() < 16 * 1024);
}

BOOST_AUTO_TEST_CASE(request_durations_by_route_and_code) {
  http_metrics m;
  pipeline_metrics pipeline;
  m.count_request("webhook", 200, 0.003);
  m.count_request("webhook", 200, 0.3);
  m.count_request("webhook", 503, 12);
  auto text = m.render(pipeline);
  const std::string name = "kapso_http_request_duration_seconds";
  for (auto line : {
         name + "_bucket{route=\"webhook\",code=\"200\",le=\"0.0025\"} 0\n",
         name + "_bucket{route=\"webhook\",code=\"200\",le=\"0.005\"} 1\n",
         name + "_bucket{route=\"webhook\",code=\"200\",le=\"0.5\"} 2\n",
         name + "_bucket{route=\"webhook\",code=\"200\",le=\"+Inf\"} 2\n",
         name + "_sum{route=\"webhook\",code=\"200\"} 0.303\n",
         name + "_count{route=\"webhook\",code=\"200\"} 2\n",
         name + "_bucket{route=\"webhook\",code=\"503\",le=\"10\"} 0\n",
         name + "_count{route=\"webhook\",code=\"503\"} 1\n",
         std::string{"# TYPE "} + name + " histogram\n",
       })
    BOOST_TEST(text.find(line) != std::string::npos, "no line " << line << "in:\n" << text);
}

BOOST_AUTO_TEST_CASE(build_info_and_process_metrics) {
  http_metrics m;
  pipeline_metrics pipeline;
  auto text = m.render(pipeline);
  BOOST_TEST(text.find("kapso_build_info{version=\"" + std::string{kapso_version} + "\"} 1\n")
               != std::string::npos);
  for (auto name : {"process_cpu_seconds_total ", "process_resident_memory_bytes ",
                    "process_virtual_memory_bytes ", "process_open_fds ", "process_max_fds ",
                    "process_start_time_seconds "})
    BOOST_TEST(text.find(std::string{"\n"} + name) != std::string::npos, name << "missing");
}

BOOST_AUTO_TEST_SUITE_END()
