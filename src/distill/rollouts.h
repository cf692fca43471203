#pragma once

// Rollouts (SPEC §9): the model's own answers to training tasks, labelled against the
// known answers, for training `outcome` values (SPEC §3). Every test output of the tasks
// is an item; rank r of W takes the contiguous share dist::rank_share(items, r, W) and
// samples K answers per item, the j-th from a seed of (item, j) alone
// (eval::sample_answers), so W = 1 and W = 2 write the same rows in the same order once
// the master joins the rank files. A prompt longer than max_prompt_tokens gives no rows.

#include <cstdint>
#include <string>
#include <vector>

#include "data/rollout_store.h"
#include "data/tokenizer.h"
#include "dist/communicator.h"
#include "eval/eval_items.h"
#include "model/backbone.h"
#include "model/generation.h"

namespace crsm::distill {

struct RolloutOptions {
  int64_t samples = 16;             // K answers per item
  model::SamplingOptions sampling;  // of the answers (temperature 1 by default)
  int64_t max_prompt_tokens = 4096;
  int64_t max_new_tokens = 0;  // 0: twice the known answer's tokens, plus 8
  std::string dir;             // <dir>/rollouts/rankNNNNN.h5 and the master <dir>/rollouts.h5
  data::WriterOptions writer;
};

// What every rank knows of the items before sampling: their prompts, whether each is
// sampled, and the widths and plan of the files.
struct RolloutPlan {
  std::vector<std::vector<int32_t>> prompts;  // per item
  std::vector<int64_t> max_new;               // per item; 0 for a skipped one
  data::RolloutSchema schema;
  int64_t sampled_items() const;
  // Rows of items [first, last).
  int64_t rows_of(int64_t first, int64_t last) const;
};

// The plan of a collection of `items` under `options` on `world` ranks, for the model of
// `model_sha256`; its plan text names the items' digest, the sampling and the world size.
RolloutPlan plan_rollouts(const std::vector<eval::EvalItem>& items, const data::Tokenizer& tokenizer,
                          int64_t vocab_size, const std::string& model_sha256, const RolloutOptions& options, int world);

// Where collect_rollouts puts its files.
std::string rollout_rank_file(const std::string& dir, int rank);
std::string rollout_master_file(const std::string& dir);

// Before any work (collective: rank 0 reads, every rank gets its answer): DataError
// naming a rank file an earlier run left that this collection cannot continue (another
// model, other tasks or sampling, another number of ranks) and what to do.
void check_rollouts_resumable(const RolloutPlan& plan, const RolloutOptions& options, dist::Communicator& comm);

struct RolloutResult {
  bool preempted = false;    // a signal stopped it between items; files keep what they hold
  int64_t rows_resumed = 0;  // this rank's rows found from an earlier run
  int64_t rows_written = 0;  // by this rank in this run
  double seconds = 0;
  std::string master;
};

// Collective. Each rank samples its items and streams their rows to its file, resuming
// after its last committed row (an item cut by a crash is sampled again and its kept
// rows skipped); then rank 0 writes the master.
RolloutResult collect_rollouts(model::Backbone model, const data::Tokenizer& tokenizer,
                               const std::vector<eval::EvalItem>& items, const RolloutPlan& plan,
                               const RolloutOptions& options, dist::Communicator& comm);

// What a rollout file holds: rows, right answers, items and items with a right answer.
struct RolloutSummary {
  int64_t rows = 0, right = 0, items = 0, items_solved = 0;
};
RolloutSummary summarize_rollouts(const std::string& path);

}  // namespace crsm::distill
