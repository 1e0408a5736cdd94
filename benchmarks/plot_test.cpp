// kapso-bench's --plot image: well-formed XML, one point per sample and series.
#define BOOST_TEST_MODULE bench_plot
#include <boost/test/unit_test.hpp>

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "benchmarks/plot.hpp"

using kapso::bench::plot_point;
using kapso::bench::plot_spec;
using kapso::bench::render_svg;

namespace {

// A strict reader for the XML subset an SVG image needs (prolog, elements,
// attributes, text, character and the five predefined entity references,
// comments). Anything else -- an unescaped '&' or '<', a tag closed by
// another name, a duplicate attribute, two roots -- throws.
struct element {
  std::string name;
  std::map<std::string, std::string> attributes;
  std::vector<std::unique_ptr<element>> children;
  std::string text;
};

class xml_reader {
public:
  explicit xml_reader(const std::string& input) : in_(input) {
    // nop
  }

  std::unique_ptr<element> document() {
    if (in_.compare(0, 5, "<?xml") == 0) {
      auto end = in_.find("?>");
      if (end == std::string::npos)
        fail("unterminated XML declaration");
      pos_ = end + 2;
    }
    misc();
    if (pos_ >= in_.size() || in_[pos_] != '<')
      fail("no root element");
    auto root = parse_element();
    misc();
    if (pos_ != in_.size())
      fail("content after the root element");
    return root;
  }

private:
  [[noreturn]] void fail(const std::string& why) const {
    throw std::runtime_error(why + " at byte " + std::to_string(pos_));
  }

  void skip_space() {
    while (pos_ < in_.size() && std::isspace(static_cast<unsigned char>(in_[pos_])))
      ++pos_;
  }

  // Whitespace and comments outside the root.
  void misc() {
    for (;;) {
      skip_space();
      if (in_.compare(pos_, 4, "<!--") != 0)
        return;
      comment();
    }
  }

  void comment() {
    auto end = in_.find("-->", pos_ + 4);
    if (end == std::string::npos)
      fail("unterminated comment");
    pos_ = end + 3;
  }

  static bool name_start(char c) {
    return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':';
  }

  static bool name_char(char c) {
    return name_start(c) || std::isdigit(static_cast<unsigned char>(c)) || c == '-'
           || c == '.';
  }

  std::string name() {
    if (pos_ >= in_.size() || !name_start(in_[pos_]))
      fail("expected a name");
    auto start = pos_;
    while (pos_ < in_.size() && name_char(in_[pos_]))
      ++pos_;
    return in_.substr(start, pos_ - start);
  }

  // After '&': one reference, appended decoded (numeric ones as '?').
  void reference(std::string& out) {
    auto end = in_.find(';', pos_);
    if (end == std::string::npos || end - pos_ > 10)
      fail("bare '&'");
    auto ref = in_.substr(pos_, end - pos_);
    static const std::map<std::string, char> named{
      {"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}};
    auto found = named.find(ref);
    if (found != named.end()) {
      out += found->second;
    } else if (ref.size() > 1 && ref[0] == '#') {
      bool hex = ref[1] == 'x';
      auto digits = ref.substr(hex ? 2 : 1);
      if (digits.empty())
        fail("empty character reference");
      for (char c : digits)
        if (!(hex ? std::isxdigit(static_cast<unsigned char>(c))
                  : std::isdigit(static_cast<unsigned char>(c))))
          fail("bad character reference");
      out += '?';
    } else {
      fail("unknown entity &" + ref + ";");
    }
    pos_ = end + 1;
  }

  std::unique_ptr<element> parse_element() {
    ++pos_; // '<'
    auto el = std::make_unique<element>();
    el->name = name();
    for (;;) {
      auto before = pos_;
      skip_space();
      if (pos_ >= in_.size())
        fail("unterminated start tag");
      if (in_.compare(pos_, 2, "/>") == 0) {
        pos_ += 2;
        return el;
      }
      if (in_[pos_] == '>') {
        ++pos_;
        break;
      }
      if (pos_ == before)
        fail("attributes must be separated by whitespace");
      auto key = name();
      skip_space();
      if (pos_ >= in_.size() || in_[pos_] != '=')
        fail("attribute without '='");
      ++pos_;
      skip_space();
      if (pos_ >= in_.size() || (in_[pos_] != '"' && in_[pos_] != '\''))
        fail("unquoted attribute value");
      char quote = in_[pos_++];
      std::string value;
      while (pos_ < in_.size() && in_[pos_] != quote) {
        char c = in_[pos_];
        if (c == '<')
          fail("'<' in an attribute value");
        if (c == '&') {
          ++pos_;
          reference(value);
          continue;
        }
        value += c;
        ++pos_;
      }
      if (pos_ >= in_.size())
        fail("unterminated attribute value");
      ++pos_;
      if (!el->attributes.emplace(key, value).second)
        fail("duplicate attribute " + key);
    }
    for (;;) {
      if (pos_ >= in_.size())
        fail("element " + el->name + " is not closed");
      char c = in_[pos_];
      if (c == '&') {
        ++pos_;
        reference(el->text);
      } else if (c != '<') {
        if (c == '>' && pos_ >= 2 && in_.compare(pos_ - 2, 2, "]]") == 0)
          fail("']]>' in text");
        el->text += c;
        ++pos_;
      } else if (in_.compare(pos_, 4, "<!--") == 0) {
        comment();
      } else if (in_.compare(pos_, 2, "</") == 0) {
        pos_ += 2;
        auto closing = name();
        if (closing != el->name)
          fail("</" + closing + "> closes <" + el->name + ">");
        skip_space();
        if (pos_ >= in_.size() || in_[pos_] != '>')
          fail("bad end tag");
        ++pos_;
        return el;
      } else if (in_.compare(pos_, 2, "<!") == 0 || in_.compare(pos_, 2, "<?") == 0) {
        fail("markup this reader does not accept");
      } else {
        el->children.push_back(parse_element());
      }
    }
  }

  const std::string& in_;
  size_t pos_ = 0;
};

std::unique_ptr<element> parse(const std::string& xml) {
  return xml_reader{xml}.document();
}

void collect(const element& el, const std::string& name, std::vector<const element*>& out) {
  if (el.name == name)
    out.push_back(&el);
  for (auto& child : el.children)
    collect(*child, name, out);
}

std::vector<const element*> all(const element& root, const std::string& name) {
  std::vector<const element*> out;
  collect(root, name, out);
  return out;
}

struct xy {
  double x;
  double y;
};

std::vector<xy> points_of(const element& polyline) {
  std::vector<xy> out;
  auto& list = polyline.attributes.at("points");
  size_t pos = 0;
  while (pos < list.size()) {
    auto end = list.find(' ', pos);
    if (end == std::string::npos)
      end = list.size();
    auto pair = list.substr(pos, end - pos);
    auto comma = pair.find(',');
    BOOST_REQUIRE_MESSAGE(comma != std::string::npos, "point without a comma: " + pair);
    char* rest = nullptr;
    auto x = std::strtod(pair.c_str(), &rest);
    BOOST_REQUIRE(rest == pair.c_str() + comma);
    auto y = std::strtod(pair.c_str() + comma + 1, &rest);
    BOOST_REQUIRE(*rest == '\0');
    out.push_back({x, y});
    pos = end + 1;
  }
  return out;
}

std::map<std::string, std::vector<xy>> series_of(const element& root) {
  std::map<std::string, std::vector<xy>> out;
  for (auto* line : all(root, "polyline"))
    out[line->attributes.at("data-series")] = points_of(*line);
  return out;
}

// 40 seconds: warm-up, a window with three seconds without any answer, a drain.
std::vector<plot_point> fake_run() {
  std::vector<plot_point> points;
  for (int s = 0; s < 40; ++s) {
    plot_point p;
    p.t = s + 0.5;
    bool stalled = s == 10 || s == 11 || s == 25;
    p.deliveries_per_second = stalled ? 0 : 500 + 10 * s;
    p.events_per_second = 50 * p.deliveries_per_second;
    p.has_latency = !stalled;
    p.p50_ms = 100 + s;
    p.p99_ms = 200 + 3 * s;
    points.push_back(p);
  }
  return points;
}

plot_spec fake_spec() {
  plot_spec spec;
  spec.title = "batch50-new10k <10k> & \"new\"";
  spec.arguments = "--form batch --batch-size 50 --label 'quoted'";
  spec.summary = "run 1: 25315 events/s";
  spec.window_from = 2;
  spec.window_until = 39.5;
  return spec;
}

} // namespace

BOOST_AUTO_TEST_CASE(the_reader_rejects_malformed_xml) {
  BOOST_CHECK_NO_THROW(parse("<a x=\"1\"><b/>t &amp; &#38; &#x26;</a>"));
  BOOST_CHECK_THROW(parse("<a>x & y</a>"), std::runtime_error);
  BOOST_CHECK_THROW(parse("<a><b></a></b>"), std::runtime_error);
  BOOST_CHECK_THROW(parse("<a x=\"1\" x=\"2\"/>"), std::runtime_error);
  BOOST_CHECK_THROW(parse("<a x=1/>"), std::runtime_error);
  BOOST_CHECK_THROW(parse("<a x=\"<\"/>"), std::runtime_error);
  BOOST_CHECK_THROW(parse("<a/><b/>"), std::runtime_error);
  BOOST_CHECK_THROW(parse("<a>"), std::runtime_error);
  BOOST_CHECK_THROW(parse("<a>&bogus;</a>"), std::runtime_error);
}

BOOST_AUTO_TEST_CASE(a_plot_is_well_formed_svg_with_one_point_per_sample) {
  auto points = fake_run();
  auto svg = render_svg(fake_spec(), points);
  std::unique_ptr<element> root;
  BOOST_REQUIRE_NO_THROW(root = parse(svg));
  BOOST_TEST(root->name == "svg");
  BOOST_TEST(root->attributes.at("xmlns") == "http://www.w3.org/2000/svg");

  auto series = series_of(*root);
  BOOST_TEST(series.size() == 4u);
  BOOST_TEST(series["deliveries"].size() == points.size());
  BOOST_TEST(series["events"].size() == points.size());
  BOOST_TEST(series["p50"].size() == points.size() - 3); // the stalled seconds
  BOOST_TEST(series["p99"].size() == points.size() - 3);

  // Inside the image, time increasing left to right, and a larger value higher.
  auto width = std::stod(root->attributes.at("width"));
  auto height = std::stod(root->attributes.at("height"));
  for (auto& [name, list] : series) {
    for (size_t i = 0; i < list.size(); ++i) {
      BOOST_TEST((list[i].x >= 0 && list[i].x <= width && list[i].y >= 0
                  && list[i].y <= height),
                 name << " point " << i << " outside the image");
      if (i > 0)
        BOOST_TEST(list[i].x > list[i - 1].x, name << " x not increasing at " << i);
    }
  }
  auto& deliveries = series["deliveries"];
  BOOST_TEST(deliveries.back().y < deliveries.front().y);
  BOOST_TEST(series["p99"].front().y < series["p50"].front().y);
}

BOOST_AUTO_TEST_CASE(titles_and_axis_labels_are_escaped_text) {
  auto svg = render_svg(fake_spec(), fake_run());
  auto root = parse(svg);
  std::vector<std::string> texts;
  for (auto* text : all(*root, "text"))
    texts.push_back(text->text);
  auto has = [&](const std::string& wanted) {
    for (auto& t : texts)
      if (t == wanted)
        return true;
    return false;
  };
  BOOST_TEST(has(fake_spec().title));
  BOOST_TEST(has(fake_spec().arguments));
  BOOST_TEST(has(fake_spec().summary));
  BOOST_TEST(has("deliveries/s"));
  BOOST_TEST(has("events/s"));
  BOOST_TEST(has("latency ms"));
  BOOST_TEST(has("seconds since the run started"));
}

BOOST_AUTO_TEST_CASE(no_samples_still_give_a_well_formed_image) {
  plot_spec spec;
  spec.title = "empty";
  std::unique_ptr<element> root;
  BOOST_REQUIRE_NO_THROW(root = parse(render_svg(spec, {})));
  auto series = series_of(*root);
  BOOST_TEST(series.size() == 4u);
  for (auto& [name, list] : series)
    BOOST_TEST(list.empty(), name << " has points");
}
