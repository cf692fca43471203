#include "config/run_config.h"

#include <cmath>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

namespace crsm {
namespace {

using nlohmann::json;

// Reads typed keys out of one JSON object and remembers which keys it consumed,
// so that whatever is left over can be reported as unknown.
class KeyReader {
 public:
  KeyReader(const json& j, std::string source) : j_(j), source_(std::move(source)) {
    if (!j_.is_object()) fail_top("expected a JSON object at the top level");
  }

  void integer(const char* key, int64_t& out, int64_t min) {
    const json* v = take(key);
    if (!v) return;
    if (!v->is_number_integer()) fail(key, "expected an integer", *v);
    const int64_t x = v->get<int64_t>();
    if (x < min) fail(key, "expected an integer >= " + std::to_string(min), *v);
    out = x;
  }

  // A number in [lo, hi) or [lo, hi] depending on hi_inclusive.
  void number(const char* key, double& out, double lo, double hi, bool hi_inclusive,
              bool lo_exclusive = false) {
    const json* v = take(key);
    if (!v) return;
    if (!v->is_number()) fail(key, "expected a number", *v);
    const double x = v->get<double>();
    const bool ok = std::isfinite(x) && (lo_exclusive ? x > lo : x >= lo) &&
                    (hi_inclusive ? x <= hi : x < hi);
    if (!ok) {
      std::ostringstream range;
      range << "expected a number in " << (lo_exclusive ? "(" : "[") << lo << ", " << hi
            << (hi_inclusive ? "]" : ")");
      fail(key, range.str(), *v);
    }
    out = x;
  }

  void boolean(const char* key, bool& out) {
    const json* v = take(key);
    if (!v) return;
    if (!v->is_boolean()) fail(key, "expected true or false", *v);
    out = v->get<bool>();
  }

  void choice(const char* key, std::string& out, const std::set<std::string>& allowed) {
    const json* v = take(key);
    if (!v) return;
    std::string names;
    for (const auto& a : allowed) names += (names.empty() ? "\"" : ", \"") + a + "\"";
    if (!v->is_string() || !allowed.count(v->get<std::string>()))
      fail(key, "expected one of " + names, *v);
    out = v->get<std::string>();
  }

  void dt_rank(const char* key, int64_t& out) {
    const json* v = take(key);
    if (!v) return;
    if (v->is_string() && v->get<std::string>() == "auto") {
      out = 0;
      return;
    }
    if (!v->is_number_integer() || v->get<int64_t>() < 1)
      fail(key, "expected \"auto\" or an integer >= 1", *v);
    out = v->get<int64_t>();
  }

  void device(const char* key, std::string& out) {
    const json* v = take(key);
    if (!v) return;
    static const std::regex pattern("cpu|cuda(:[0-9]+)?");
    if (!v->is_string() || !std::regex_match(v->get<std::string>(), pattern))
      fail(key, "expected \"cpu\", \"cuda\" or \"cuda:N\"", *v);
    out = v->get<std::string>();
  }

  void finish() const {
    for (const auto& item : j_.items()) {
      if (seen_.count(item.key())) continue;
      std::string known;
      for (const auto& k : seen_all_) known += (known.empty() ? "" : ", ") + k;
      throw ConfigError(source_ + ": unknown key '" + item.key() + "' (known keys: " + known +
                        ")");
    }
  }

  [[noreturn]] void fail(const std::string& key, const std::string& expected,
                         const json& got) const {
    throw ConfigError(source_ + ": key '" + key + "': " + expected + ", got " + got.dump());
  }

 private:
  const json* take(const char* key) {
    seen_all_.insert(key);
    auto it = j_.find(key);
    if (it == j_.end()) return nullptr;
    seen_.insert(key);
    return &*it;
  }

  [[noreturn]] void fail_top(const std::string& what) const {
    throw ConfigError(source_ + ": " + what);
  }

  const json& j_;
  std::string source_;
  std::set<std::string> seen_;
  std::set<std::string> seen_all_;
};

}  // namespace

RunConfig parse_run_config(const json& j, const std::string& source) {
  RunConfig c;
  KeyReader r(j, source);
  auto& m = c.model;
  r.integer("vocab_size", m.vocab_size, 2);
  r.integer("d_model", m.d_model, 1);
  r.integer("d_state", m.d_state, 1);
  r.integer("d_ffn", m.d_ffn, 1);
  r.integer("num_layers", m.num_layers, 1);
  r.number("dropout", m.dropout, 0.0, 1.0, /*hi_inclusive=*/false);
  r.integer("expand", m.expand, 1);
  r.integer("d_conv", m.d_conv, 1);
  r.dt_rank("dt_rank", m.dt_rank);
  r.boolean("tie_embeddings", m.tie_embeddings);
  r.choice("norm", m.norm, {"rmsnorm"});

  auto& t = c.train;
  r.integer("backbone_epochs", t.backbone_epochs, 0);
  r.integer("finetune_epochs", t.finetune_epochs, 0);
  r.integer("batch_size", t.batch_size, 1);
  r.integer("seq_len", t.seq_len, 1);
  r.number("lr", t.lr, 0.0, 10.0, true, /*lo_exclusive=*/true);
  r.number("finetune_lr", t.finetune_lr, 0.0, 10.0, true, true);

  r.integer("dynamics_samples", c.dynamics.samples, 1);
  r.integer("dynamics_epochs", c.dynamics.epochs, 0);
  r.number("dynamics_lr", c.dynamics.lr, 0.0, 10.0, true, true);

  r.number("c_puct", c.search.c_puct, 0.0, 1e6, true);
  r.integer("n_simulations", c.search.n_simulations, 1);

  r.integer("seed", c.seed, 0);
  r.device("device", c.device);
  r.integer("zero_stage", c.zero_stage, 0);
  r.finish();
  if (c.zero_stage > 2) r.fail("zero_stage", "expected 0, 1 or 2", json(c.zero_stage));

  if (m.dt_rank > m.d_inner())
    r.fail("dt_rank", "expected at most expand*d_model = " + std::to_string(m.d_inner()),
           json(m.dt_rank));
  return c;
}

RunConfig load_run_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot open config file");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::parse_error& e) {
    throw ConfigError(path + ": malformed JSON: " + e.what());
  }
  return parse_run_config(j, path);
}

json to_json(const RunConfig& c) {
  const auto& m = c.model;
  json j = {
      {"vocab_size", m.vocab_size},
      {"d_model", m.d_model},
      {"d_state", m.d_state},
      {"d_ffn", m.d_ffn},
      {"num_layers", m.num_layers},
      {"dropout", m.dropout},
      {"expand", m.expand},
      {"d_conv", m.d_conv},
      {"tie_embeddings", m.tie_embeddings},
      {"norm", m.norm},
      {"backbone_epochs", c.train.backbone_epochs},
      {"finetune_epochs", c.train.finetune_epochs},
      {"batch_size", c.train.batch_size},
      {"seq_len", c.train.seq_len},
      {"lr", c.train.lr},
      {"finetune_lr", c.train.finetune_lr},
      {"dynamics_samples", c.dynamics.samples},
      {"dynamics_epochs", c.dynamics.epochs},
      {"dynamics_lr", c.dynamics.lr},
      {"c_puct", c.search.c_puct},
      {"n_simulations", c.search.n_simulations},
      {"seed", c.seed},
      {"device", c.device},
      {"zero_stage", c.zero_stage},
  };
  if (m.dt_rank > 0)
    j["dt_rank"] = m.dt_rank;
  else
    j["dt_rank"] = "auto";
  return j;
}

}  // namespace crsm
