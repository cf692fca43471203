#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/search_setup.h"
#include "data/tokenizer.h"
#include "checkpoint/store.h"
#include "dist/communicator.h"
#include "dist/cpu_setup.h"
#include "dist/runtime.h"
#include "model/generation.h"
#include "search/deliberation.h"
#include "checkpoint/training_checkpoint.h"

namespace crsm::cli {
namespace {

const std::vector<Option>& generate_options() {
  static const std::vector<Option> table = with_search_flags({
      Option("model", Constraint::path(), "checkpoint directory, or a run directory (its newest complete checkpoint)").mandatory(),
      Option("prompt", Constraint::text(), "text to continue (empty: start from <bos>)").with_default(""),
      Option("max-length", Constraint::integer(0, 1 << 24), "new tokens to generate at most").with_default("200"),
      Option::for_key("temperature", "temperature", "softmax temperature (0: greedy; default: the checkpoint's config, 0.8)"),
      Option("top-k", Constraint::integer(0, (int64_t{1} << 31) - 1), "sample among the k most likely tokens (0: all)").with_default("0"),
      Option::for_key("top-p", "top_p", "sample within the smallest set of this probability mass (default: the config's, 1)"),
      Option("seed", config_constraint("seed"), "sampling seed (same seed, same text)").with_default("0"),
      Option("device", config_constraint("device"), "cpu | cuda | cuda:N").with_default("cpu"),
      Option("threads", Constraint::integer(0, 4096), "CPU threads (0: all cores)").with_default("0"),
      Option("deliberate", Constraint::boolean(), "plan tokens with MCTS in latent space and inject the plans (SPEC §9)"),
      Option("sync", Constraint::boolean(), "with --deliberate: plan every position and wait for it (deterministic)"),
      Option("no-dynamics", Constraint::boolean(), "with --deliberate: plan with exact backbone steps, not the dynamics model"),
      Option("exact", Constraint::boolean(), "the same as --no-dynamics"),
      Option("stats", Constraint::boolean(), "with --deliberate: print planner statistics to stderr"),
      Option::for_key("delta-decay", "delta_decay", "decay of the injection per step of lag"),
      Option::for_key("max-lag", "max_lag", "asynchronous plans further ahead than this are dropped"),
  });
  return table;
}

// The planner: the checkpoint's dynamics model, or exact backbone steps when asked to
// or when the checkpoint has none (said on stderr).
std::unique_ptr<search::Deliberator> make_deliberator(const ParsedOptions& o, const std::string& dir, model::Backbone& model,
                                     const RunConfig& config, const model::SamplingOptions& sampling,
                                     const torch::Device& device) {
  const bool exact = o.is_set("no-dynamics") || o.is_set("exact");
  const Planner planner = make_planner(dir, model, device, exact);
  if (!exact && planner.name == "exact")
    std::fprintf(stderr, "generate: %s has no dynamics model (assemble one, SPEC §8): planning with exact backbone steps\n",
                 dir.c_str());
  search::DeliberationOptions d;
  d.timing = o.is_set("sync") ? search::PlanTiming::kSync : search::PlanTiming::kAsync;
  d.search = search_options(o, config);
  d.injection_rate = config.search.injection_rate;
  d.delta_decay = config.search.delta_decay;
  d.max_lag = config.search.max_lag;
  d.sampling = sampling;
  return std::make_unique<search::Deliberator>(model, planner.model, d);
}

void print_stats(const search::DeliberationStats& s) {
  std::fprintf(stderr, "deliberation: %lld tokens, %lld chosen by the planner; %lld injections applied, %lld plans dropped "
               "(%lld from another generation, %lld beyond max_lag, %lld late)\n",
               (long long)s.tokens, (long long)s.planned_tokens, (long long)s.injections, (long long)s.dropped(),
               (long long)s.dropped_generation, (long long)s.dropped_lag, (long long)s.dropped_late);
  std::string lags;
  for (const auto& [lag, count] : s.lags) lags += " " + std::to_string(lag) + ":" + std::to_string(count);
  std::fprintf(stderr, "  lags of the applied plans (lag:count):%s\n", lags.empty() ? " none" : lags.c_str());
  std::string norms;
  for (double n : s.injected_norm) norms += " " + std::to_string(s.injections ? n / s.injections : 0.0);
  std::fprintf(stderr, "  mean ||delta h|| injected per layer:%s\n", norms.empty() ? " none" : norms.c_str());
  const double rate = s.search_seconds > 0 ? s.simulations / s.search_seconds : 0;
  std::fprintf(stderr, "  search: %lld searches, %lld simulations, %.0f simulations/s, max depth %lld, mean depth %.2f, "
               "%lld nodes reused\n",
               (long long)s.searches, (long long)s.simulations, rate, (long long)s.max_depth,
               s.simulations ? s.depth_sum / s.simulations : 0.0, (long long)s.reused_nodes);
}

// A token as text, with line ends and quotes visible.
std::string shown(const data::Tokenizer& tokenizer, int64_t token) {
  std::string out;
  for (char c : tokenizer.decode({static_cast<int32_t>(token)})) out += c == '\n' ? "\\n" : c == '\'' ? "\\'" : std::string(1, c);
  return "'" + out + "'";
}

// The root's children of the search that chose the token at `position`: token, prior,
// visits and Q, most likely first.
std::string root_line(size_t position, const search::Plan& plan, const data::Tokenizer& tokenizer) {
  std::string line = "  token " + std::to_string(position) + " " + shown(tokenizer, plan.action) + ":";
  for (const auto& c : plan.search.root) {
    char figures[80];
    std::snprintf(figures, sizeof figures, " p=%.3f n=%lld q=%.3f", c.prior, static_cast<long long>(c.visits), c.q);
    line += " " + shown(tokenizer, c.action) + figures;
  }
  return line + "\n";
}

}  // namespace

int generate_command(int argc, char** argv) {
  const auto parsed = parse_options(argc, argv, "usage: crsm_train generate --model DIR --prompt TEXT [options]",
                                    generate_options());
  if (!parsed) return 0;
  const ParsedOptions& o = *parsed;
  dist::stop_if_preempted("generate", "before generating anything: rerun the command");
  for (const char* flag : {"sync", "no-dynamics", "exact", "stats"})
    if (o.is_set(flag) && !o.is_set("deliberate"))
      throw UsageError(std::string("--") + flag + " applies to deliberative generation: add --deliberate");
  const torch::Device device = dist::rank_device(o.text("device"), dist::runtime());
  dist::configure_threads(static_cast<int>(o.integer("threads")), 1);

  const auto spec = o.text("model");
  std::vector<std::string> skipped;
  const std::string dir = checkpoint::resolve_checkpoint(spec, "--model", &skipped);
  for (const auto& note : skipped) std::fprintf(stderr, "generate: %s\n", note.c_str());
  auto tokenizer = data::load_tokenizer(dir);
  RunConfig config;
  auto model = checkpoint::load_checkpoint_model(dir, &config);
  data::check_vocab_matches(*tokenizer, config.model.vocab_size, dir);
  model->to(device);

  o.apply_to(config);
  const model::SamplingOptions sampling{config.search.temperature, o.integer("top-k"), config.search.top_p};
  // Made (and its search's size checked) before anything is printed.
  std::unique_ptr<search::Deliberator> deliberator;
  if (o.is_set("deliberate")) deliberator = make_deliberator(o, dir, model, config, sampling, device);
  const std::string prompt_text = o.text("prompt");
  std::vector<int64_t> prompt{tokenizer->bos_id()};
  for (int32_t id : tokenizer->encode(prompt_text)) prompt.push_back(id);
  std::fputs(prompt_text.c_str(), stdout);
  // Decoding the whole continuation each time and printing what is new keeps
  // tokenizers that merge pieces across token boundaries (SentencePiece spaces) right.
  std::vector<int32_t> generated;
  size_t printed = 0;
  // A safe point before every token: what was printed stays printed.
  const auto print_token = [&](int64_t token) {
    if (dist::preemption_signalled()) {
      std::fputs("\n", stdout);
      dist::stop_if_preempted("generate", "after " + std::to_string(generated.size()) + " of at most " +
                                              std::to_string(o.integer("max-length")) + " new tokens (printed above)");
    }
    generated.push_back(static_cast<int32_t>(token));
    const std::string text = tokenizer->decode(generated);
    if (text.size() > printed) {
      std::fwrite(text.data() + printed, 1, text.size() - printed, stdout);
      std::fflush(stdout);
      printed = text.size();
    }
  };
  const auto seed = static_cast<uint64_t>(o.integer("seed"));
  if (!deliberator) {
    model::generate(model, prompt, o.integer("max-length"), sampling, seed, tokenizer->eos_id(), print_token);
  } else {
    std::vector<std::string> roots;  // printed after the text, which goes to stdout as it comes
    deliberator->generate(prompt, o.integer("max-length"), seed, [&](const search::TokenStep& s) {
      if (s.token == tokenizer->eos_id()) return search::StepVerdict::kStop;
      if (s.plan) roots.push_back(root_line(generated.size(), *s.plan, *tokenizer));
      print_token(s.token);
      return search::StepVerdict::kTake;
    });
    if (o.is_set("stats")) {
      print_stats(deliberator->stats());
      for (const auto& line : roots) std::fputs(line.c_str(), stderr);
    }
  }
  std::fputs("\n", stdout);
  return 0;
}

}  // namespace crsm::cli
