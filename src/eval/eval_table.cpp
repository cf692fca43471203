// format_eval_report: the planning evaluation's report as the tables a user reads.
#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <set>
#include <string>

#include "eval/planning_eval.h"

namespace crsm::eval {
namespace {

using nlohmann::json;

std::string printf_string(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string printf_string(const char* format, ...) {
  va_list args, again;
  va_start(args, format);
  va_copy(again, args);
  const int n = std::vsnprintf(nullptr, 0, format, args);
  va_end(args);
  std::string out(static_cast<size_t>(std::max(n, 0)) + 1, '\0');
  std::vsnprintf(out.data(), out.size(), format, again);
  va_end(again);
  out.pop_back();
  return out;
}

std::string percent(const json& rate) {
  return printf_string("%3lld/%-4lld %5.1f%% [%4.1f, %4.1f]", rate["solved"].get<long long>(),
                       rate["tasks"].get<long long>(), 100 * rate["accuracy"].get<double>(),
                       100 * rate["ci95"][0].get<double>(), 100 * rate["ci95"][1].get<double>());
}

std::string layers(const json& values) {
  std::string s;
  for (const auto& v : values) s += printf_string("%s%.3g", s.empty() ? "" : " ", v.get<double>());
  return s.empty() ? "-" : s;
}

// Rows of one breakdown ("by_family" or "by_file"): accuracy of each mode per group.
std::string breakdown(const json& report, const std::string& key, const std::string& title) {
  const json& modes = report["modes"];
  std::string out = printf_string("\n%-28s", title.c_str());
  for (const auto& [mode, _] : modes.items()) out += printf_string(" %-28s", mode.c_str());
  out += "\n";
  for (const auto& [group, _] : modes.begin()->at(key).items()) {
    out += printf_string("%-28s", group.size() > 28 ? ("..." + group.substr(group.size() - 25)).c_str() : group.c_str());
    for (const auto& [mode, m] : modes.items()) out += " " + percent(m[key][group]);
    out += "\n";
  }
  return out;
}

// "+5/-1 p=0.22": tasks only this mode solved, only the other did, and the exact McNemar
// p-value; "-" when the run has no such comparison.
std::string comparison(const json& mcnemar, const char* key) {
  if (!mcnemar.contains(key)) return "-";
  const json& c = mcnemar[key];
  return printf_string("+%lld/-%lld p=%.3g", c["better"].get<long long>(), c["worse"].get<long long>(),
                       c["p"].get<double>());
}

// Every mode against the best equal-budget baseline, when the run has one.
std::string baseline_comparisons(const json& report) {
  std::string out;
  for (const auto& [mode, m] : report["modes"].items())
    if (m["mcnemar"].contains("vs_baseline"))
      out += printf_string("%-14s vs %s: %s\n", mode.c_str(), m["mcnemar"]["vs_baseline"]["against"].get<std::string>().c_str(),
                           comparison(m["mcnemar"], "vs_baseline").c_str());
  return out.empty() ? out : "\nagainst the best baseline (vote or log-probability):\n" + out;
}

// The answers differ between modes, or else one is right: the item that says the most.
int interest(const json& item) {
  if (item["skipped"].get<bool>()) return -1;
  std::set<std::string> texts;
  bool right = false;
  for (const auto& [mode, answer] : item["answers"].items()) {
    texts.insert(answer["text"].get<std::string>());
    right = right || answer["exact"].get<bool>();
  }
  return texts.size() > 1 ? 2 : right ? 1 : 0;
}

std::string sample(const json& report) {
  const json* best = nullptr;
  for (const auto& item : report["items"])
    if (!best || interest(item) > interest(*best)) best = &item;
  if (!best || interest(*best) < 0) return "";
  const json& item = *best;
  std::string out = "\nsample: task " + item["task"].get<std::string>() + " (" + item["family"].get<std::string>() + ")\n";
  out += printf_string("  %-14s        %s\n", "expected", dump_text(item["expected"]).c_str());
  for (const auto& [mode, answer] : item["answers"].items())
    out += printf_string("  %-14s %s: %s\n", mode.c_str(), answer["exact"].get<bool>() ? "right" : "wrong",
                         dump_text(answer["text"]).c_str());
  return out;
}

}  // namespace

std::string format_eval_report(const json& report) {
  const json& setup = report["setup"];
  std::string out = printf_string(
      "planning evaluation: %lld test outputs, planner %s (%lld simulations, c_puct %g, injection rate %g), %d ranks\n\n",
      report["items_total"].get<long long>(), setup.value("planner", std::string("-")).c_str(),
      setup.value("n_simulations", 0LL), setup.value("c_puct", 0.0), setup.value("injection_rate", 0.0),
      report["timing"]["world_size"].get<int>());
  out += printf_string("%-14s %-28s %7s %7s %7s %7s %7s %9s %8s %9s  %s\n", "mode", "exact tasks (95% CI)", "cells",
                       "skipped", "ECE", "depth", "nodes", "sims/s", "wall s", "decoding", "vs greedy (tasks +/-, McNemar p)");
  for (const auto& [mode, m] : report["modes"].items()) {
    const json& s = m["search"];
    const bool searched = s["searches"].get<int64_t>() > 0;
    const json& c = m["compute"];
    out += printf_string("%-14s %-28s %6.1f%% %7lld %7s %7s %7s %9s %8.1f %9s  %s\n", mode.c_str(), percent(m).c_str(),
                         100 * m["cell_accuracy"].get<double>(), m["skipped"].get<long long>(),
                         m["calibration"]["tokens"].get<int64_t>() > 0
                             ? printf_string("%.3f", m["calibration"]["ece"].get<double>()).c_str()
                             : "-",
                         searched ? printf_string("%.2f", s["mean_depth"].get<double>()).c_str() : "-",
                         searched ? printf_string("%.0f", s["mean_nodes"].get<double>()).c_str() : "-",
                         searched ? printf_string("%.0f", m["timing"]["simulations_per_s"].get<double>()).c_str() : "-",
                         m["timing"]["wall_seconds"].get<double>(),
                         c.contains("vs_greedy") ? printf_string("%.1fx", c["vs_greedy"].get<double>()).c_str()
                                                 : printf_string("%.0f/item", c["decoding_steps_per_item"].get<double>()).c_str(),
                         comparison(m["mcnemar"], "vs_greedy").c_str());
  }
  out += baseline_comparisons(report);
  out += breakdown(report, "by_family", "by family");
  if (report["modes"].begin()->at("by_file").size() > 1) out += breakdown(report, "by_file", "by file");
  out += "\n";
  std::set<int64_t> sample_sets;  // modes that share samples would print the same line
  for (const auto& [mode, m] : report["modes"].items()) {
    if (!m.contains("outcome_calibration")) continue;
    const json& o = m["outcome_calibration"];
    if (!sample_sets.insert(o["answers"].get<int64_t>()).second) continue;
    out += printf_string("%-14s value against outcomes: AUC %s, ECE %.3f over %lld sampled answers (%lld right, mean value %.3f)\n",
                         mode.c_str(), o["auc"].is_null() ? "-" : printf_string("%.3f", o["auc"].get<double>()).c_str(),
                         o["ece"].get<double>(), o["answers"].get<long long>(), o["right"].get<long long>(),
                         o["mean_value"].get<double>());
    for (const auto& [family, f] : o["by_family"].items())
      out += printf_string("  %-26s AUC %s, ECE %.3f over %lld answers (%lld right)\n", family.c_str(),
                           f["auc"].is_null() ? "-" : printf_string("%.3f", f["auc"].get<double>()).c_str(),
                           f["ece"].get<double>(), f["answers"].get<long long>(), f["right"].get<long long>());
  }
  for (const auto& [mode, m] : report["modes"].items()) {
    const json& c = m["calibration"];
    if (c["tokens"].get<int64_t>() == 0) continue;  // a sampling mode: no token followed the answer
    out += printf_string("%-14s value calibration: ECE %.3f over %lld tokens (token accuracy %.3f, mean value %.3f)\n",
                         mode.c_str(), c["ece"].get<double>(), c["tokens"].get<long long>(),
                         c["token_accuracy"].get<double>(), c["mean_value"].get<double>());
    if (m["search"]["searches"].get<int64_t>() > 0)
      out += printf_string("%-14s ||target - h_l|| %s; injected ||delta h_l|| %s (%lld injections)\n", "",
                           layers(m["search"]["mean_target_delta"]).c_str(),
                           layers(m["search"]["mean_injected_delta"]).c_str(),
                           m["search"]["injections"].get<long long>());
  }
  return out + sample(report);
}

}  // namespace crsm::eval
