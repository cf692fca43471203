#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <vector>

#include "../support/file_size_limit.h"
#include "../support/scratch_dir.h"
#include "metrics/loss_plot.h"
#include "metrics/metrics_log.h"

// In the library's namespace so that std::vector's == and GoogleTest's printer find them.
namespace crsm::metrics {
bool operator==(const LossPoint& a, const LossPoint& b) {
  return a.step == b.step && a.loss == b.loss;
}
void PrintTo(const LossPoint& p, std::ostream* os) {
  *os << "{" << p.step << ", " << p.loss << "}";
}
}  // namespace crsm::metrics

namespace {

namespace fs = std::filesystem;
using crsm::metrics::LossPoint;
using crsm::metrics::read_metrics;
using crsm::metrics::RunMetrics;
using crsm::metrics::write_loss_plot;

class PlotTempDir : public crsm::testing::ScratchDirTest {
 protected:

  std::string run_with(const std::string& name, const std::string& jsonl) {
    const fs::path run = dir / name;
    fs::create_directories(run);
    std::ofstream(run / "metrics.jsonl", std::ios::binary) << jsonl;
    return run.string();
  }

  template <typename Fn>
  static std::string error_of(Fn fn) {
    try {
      fn();
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    ADD_FAILURE() << "expected std::runtime_error";
    return "";
  }

  static std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

};

class PlotMetrics : public PlotTempDir {};
class PlotSvg : public PlotTempDir {
 protected:
  std::string render(const std::vector<RunMetrics>& runs) {
    const fs::path out = dir / "loss.svg";
    write_loss_plot(runs, out.string(), "my title");
    return slurp(out);
  }
};
class PlotWrite : public PlotTempDir {};

TEST_F(PlotMetrics, SeparatesSplitsAndIgnoresOtherKeys) {
  const auto m = read_metrics(run_with("run-a",
      R"({"step": 10, "split": "train", "loss": 2.5, "lr": 0.001, "tokens_per_s": 900})" "\n"
      R"({"step": 20, "split": "train", "loss": 2.0, "lr": 0.001, "grad_norm": 1.5})" "\n"
      R"({"step": 20, "split": "val", "loss": 2.25, "lr": 0.001, "tokens_per_s": 0})" "\n"
      R"({"step": 30, "split": "train", "loss": 1.75, "extra": {"nested": [1, 2]}})" "\n"));
  EXPECT_EQ(m.name, "run-a");
  EXPECT_EQ(m.train, (std::vector<LossPoint>{{10, 2.5}, {20, 2.0}, {30, 1.75}}));
  EXPECT_EQ(m.val, (std::vector<LossPoint>{{20, 2.25}}));
}

TEST_F(PlotMetrics, NameIsTheLastComponentEvenWithATrailingSlash) {
  const std::string run = run_with("run-b", R"({"step": 1, "split": "val", "loss": 1})" "\n");
  EXPECT_EQ(read_metrics(run + "/").name, "run-b");
}

TEST_F(PlotMetrics, SkipsATruncatedLastLine) {
  const auto m = read_metrics(run_with("r",
      R"({"step": 1, "split": "train", "loss": 3.0})" "\n"
      R"({"step": 2, "split": "train", "loss": 2.0})" "\n"
      R"({"step": 3, "split": "train", "lo)"));
  EXPECT_EQ(m.train, (std::vector<LossPoint>{{1, 3.0}, {2, 2.0}}));
}

TEST_F(PlotMetrics, SkipsANullLossFromADivergedRun) {
  const auto m = read_metrics(run_with("r",
      R"({"step": 1, "split": "train", "loss": 3.0})" "\n"
      R"({"step": 2, "split": "train", "loss": null})" "\n"));
  EXPECT_EQ(m.train, (std::vector<LossPoint>{{1, 3.0}}));
}

TEST_F(PlotMetrics, MalformedMiddleLineNamesFileAndLine) {
  const std::string run = run_with("r",
      R"({"step": 1, "split": "train", "loss": 3.0})" "\n"
      "\n"
      R"({"step": 2, "split": "train", "loss": 2.)" "\n"
      R"({"step": 3, "split": "train", "loss": 1.0})" "\n");
  const std::string err = error_of([&] { read_metrics(run); });
  EXPECT_NE(err.find(run + "/metrics.jsonl:3: malformed JSON"), std::string::npos) << err;
}

TEST_F(PlotMetrics, BadFieldsNameTheLine) {
  const std::string good = R"({"step": 1, "split": "train", "loss": 3.0})" "\n";
  const std::pair<const char*, const char*> cases[] = {
      {R"({"step": 2.5, "split": "train", "loss": 1})", "integer \"step\""},
      {R"({"split": "train", "loss": 1})", "integer \"step\""},
      {R"({"step": 2, "split": "test", "loss": 1})", "\"split\""},
      {R"({"step": 2, "split": "train", "loss": "1"})", "number \"loss\""},
      {R"({"step": 2, "split": "train"})", "number \"loss\""},
      {R"([1, 2])", "JSON object"},
  };
  for (const auto& [line, expected] : cases) {
    const std::string run = run_with("r", good + line + "\n" + good);
    const std::string err = error_of([&] { read_metrics(run); });
    EXPECT_NE(err.find("metrics.jsonl:2: "), std::string::npos) << line << ": " << err;
    EXPECT_NE(err.find(expected), std::string::npos) << line << ": " << err;
  }
}

TEST_F(PlotMetrics, MissingFileIsNamed) {
  const std::string run = (dir / "nowhere").string();
  const std::string err = error_of([&] { read_metrics(run); });
  EXPECT_NE(err.find(run + "/metrics.jsonl"), std::string::npos) << err;
}

TEST_F(PlotMetrics, NoLossRecordsIsAnError) {
  for (const char* text : {"", "\n\n", R"({"step": 1, "split": "tr)"}) {
    const std::string run = run_with("r", text);
    const std::string err = error_of([&] { read_metrics(run); });
    EXPECT_NE(err.find("metrics.jsonl: no loss records"), std::string::npos) << err;
  }
}

// Every <polyline> with the point count and the series name from its <title>. Plain
// string search: std::regex recurses once per character and overflows the stack on a
// points attribute of thousands of points (under AddressSanitizer's larger frames).
std::vector<std::pair<std::string, size_t>> polylines(const std::string& svg) {
  std::vector<std::pair<std::string, size_t>> out;
  const auto between = [&](size_t from, const std::string& open, const std::string& close) {
    const size_t begin = svg.find(open, from) + open.size();
    return svg.substr(begin, svg.find(close, begin) - begin);
  };
  for (size_t at = svg.find("<polyline"); at != std::string::npos; at = svg.find("<polyline", at + 1)) {
    std::istringstream pts(between(at, " points=\"", "\""));
    size_t n = 0;
    for (std::string p; pts >> p;) ++n;
    out.emplace_back(between(at, "<title>", "</title>"), n);
  }
  return out;
}

// Text of the tick labels inside <g class="{cls}">.
std::vector<std::string> tick_labels(const std::string& svg, const std::string& cls) {
  const size_t begin = svg.find("<g class=\"" + cls + "\"");
  const size_t end = svg.find("</g>", begin);
  const std::string group = svg.substr(begin, end - begin);
  std::vector<std::string> out;
  const std::regex re(R"(<text[^>]*>([^<]*)</text>)");
  for (auto it = std::sregex_iterator(group.begin(), group.end(), re);
       it != std::sregex_iterator(); ++it)
    out.push_back((*it)[1].str());
  return out;
}

// Empty if every tag is closed in order (enough to catch broken markup), else the problem.
std::string unbalanced_tag(const std::string& svg) {
  std::vector<std::string> open;
  const std::regex tag(R"(<(/?)([a-zA-Z]+)[^>]*?(/?)>)");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), tag); it != std::sregex_iterator();
       ++it) {
    const std::string name = (*it)[2].str();
    if ((*it)[3].length() > 0) continue;
    if ((*it)[1].length() == 0) {
      open.push_back(name);
    } else {
      if (open.empty() || open.back() != name) return "unexpected </" + name + ">";
      open.pop_back();
    }
  }
  return open.empty() ? "" : "unclosed <" + open.back() + ">";
}

RunMetrics run(const std::string& name, std::vector<LossPoint> train, std::vector<LossPoint> val) {
  return {name, std::move(train), std::move(val)};
}

TEST_F(PlotSvg, OnePolylinePerSeriesWithEveryPoint) {
  const std::string svg = render({run("a", {{0, 3}, {10, 2.5}, {20, 2}}, {{10, 2.7}, {20, 2.2}}),
                                  run("b", {{0, 3.1}, {5, 2.9}}, {})});
  const std::vector<std::pair<std::string, size_t>> expected = {
      {"a train", 3}, {"a val", 2}, {"b train", 2}};
  EXPECT_EQ(polylines(svg), expected);
  EXPECT_NE(svg.find(">a train</text>"), std::string::npos);
  EXPECT_NE(svg.find(">a val</text>"), std::string::npos);
  EXPECT_NE(svg.find(">b train</text>"), std::string::npos);
  EXPECT_EQ(svg.find("b val"), std::string::npos);
  EXPECT_NE(svg.find(">my title</text>"), std::string::npos);
  EXPECT_NE(svg.find(">step</text>"), std::string::npos);
  EXPECT_NE(svg.find(">loss</text>"), std::string::npos);
}

TEST_F(PlotSvg, IsWellFormedAndEscapesNames) {
  const std::string svg = render({run("x<&>y", {{1, 1.0}, {2, 0.5}}, {{2, 0.7}})});
  EXPECT_EQ(svg.rfind("<svg ", 0), 0u);
  EXPECT_EQ(svg.substr(svg.find_last_not_of(" \n") - 5, 6), "</svg>");
  EXPECT_NE(svg.find("x&lt;&amp;&gt;y train"), std::string::npos);
  EXPECT_EQ(svg.find("x<&>y"), std::string::npos);
  EXPECT_EQ(unbalanced_tag(svg), "");
  EXPECT_EQ(unbalanced_tag("<svg><g></svg>"), "unexpected </svg>");
  EXPECT_EQ(unbalanced_tag("<svg><g/>"), "unclosed <svg>");
}

TEST_F(PlotSvg, FlatLossGetsARangeAroundIt) {
  const std::string svg = render({run("flat", {{0, 2.0}, {100, 2.0}, {200, 2.0}}, {})});
  const auto labels = tick_labels(svg, "y-ticks");
  ASSERT_GE(labels.size(), 3u);
  EXPECT_LT(std::stod(labels.front()), 2.0);
  EXPECT_GT(std::stod(labels.back()), 2.0);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(svg.find("inf"), std::string::npos);
}

TEST_F(PlotSvg, SinglePointIsDrawnInsideTheAxes) {
  const std::string svg = render({run("one", {{500, 0.0}}, {})});
  EXPECT_EQ(polylines(svg), (std::vector<std::pair<std::string, size_t>>{{"one train", 1}}));
  EXPECT_NE(svg.find("<circle"), std::string::npos) << "a lone point needs a marker";
  for (const char* cls : {"x-ticks", "y-ticks"}) {
    const auto labels = tick_labels(svg, cls);
    ASSERT_GE(labels.size(), 2u) << cls;
    EXPECT_NE(labels.front(), labels.back()) << cls;
  }
  const auto x = tick_labels(svg, "x-ticks");
  EXPECT_LE(std::stod(x.front()), 500);
  EXPECT_GE(std::stod(x.back()), 500);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
}

TEST_F(PlotSvg, LargeStepCountsGetShortRoundTicks) {
  std::vector<LossPoint> train;
  for (int64_t s = 0; s <= 2'000'000; s += 1000) train.push_back({s, 4.0 / (1 + s * 1e-5)});
  const std::string svg = render({run("long", train, {{1'000'000, 0.5}, {2'000'000, 0.4}})});
  const auto x = tick_labels(svg, "x-ticks");
  EXPECT_GE(x.size(), 4u);
  EXPECT_LE(x.size(), 7u);
  EXPECT_EQ(x.front(), "0");
  EXPECT_EQ(x.back(), "2M");
  for (const auto& label : x) EXPECT_LE(label.size(), 5u) << label;
  EXPECT_EQ(polylines(svg)[0].second, train.size());
}

TEST_F(PlotSvg, NothingToPlotIsAnError) {
  const std::string out = (dir / "x.svg").string();
  EXPECT_NE(error_of([&] { write_loss_plot({}, out); }).find("no runs"), std::string::npos);
  EXPECT_NE(error_of([&] { write_loss_plot({run("e", {}, {})}, out); }).find("no run has"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(PlotWrite, ReplacesAnExistingFileAndLeavesNoTemporary) {
  const fs::path out = dir / "loss.svg";
  std::ofstream(out) << "old";
  write_loss_plot({run("a", {{1, 1.0}, {2, 0.5}}, {})}, out.string());
  EXPECT_EQ(slurp(out).rfind("<svg", 0), 0u);
  EXPECT_EQ(crsm::testing::names_in(dir), std::set<std::string>{"loss.svg"});
}

TEST_F(PlotWrite, FailedWriteLeavesTheOldFile) {
  const fs::path out = dir / "loss.svg";
  std::ofstream(out) << "old";
  {
    // The chart is far larger than 100 bytes: its write fails half-way, like on a full disk.
    crsm::testing::FileSizeLimit limit(100);
    EXPECT_NE(error_of([&] { write_loss_plot({run("a", {{1, 1.0}}, {})}, out.string()); }).find(out.string()),
              std::string::npos);
  }
  EXPECT_EQ(slurp(out), "old");
  EXPECT_EQ(crsm::testing::names_in(dir), std::set<std::string>{"loss.svg"});
}

TEST_F(PlotWrite, InvalidInputLeavesTheOldFile) {
  const fs::path out = dir / "loss.svg";
  std::ofstream(out) << "old";
  EXPECT_THROW(write_loss_plot({run("e", {}, {})}, out.string()), std::runtime_error);
  EXPECT_EQ(slurp(out), "old");
  EXPECT_EQ(crsm::testing::names_in(dir), std::set<std::string>{"loss.svg"});
}

}  // namespace
