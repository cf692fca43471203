#pragma once

// Stage 2's collection (SPEC §7): the backbone runs over windows of real text and every
// position t of a window gives one transition (h_l(t), a = x_{t+1}, Δh_l = h_l(t+1) − h_l(t)).
// The plan (which windows, in which order) depends on the seed and the split alone, never
// on the world size, so W = 1 and W = 2 collect the same transitions.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "data/token_shards.h"
#include "data/transition_store.h"
#include "dist/communicator.h"
#include "model/backbone.h"

namespace crsm::distill {

// Windows of seq_len + 1 tokens on a grid of stride seq_len + 1 whose offset the seed
// picks, permuted by the seed; the first ceil(num_samples / seq_len) of them are
// collected, the last one only in part. A window's index in this order is its /seq id.
struct CollectionPlan {
  std::string split;
  int64_t num_samples = 0, seq_len = 0;
  uint64_t seed = 0;
  std::vector<int64_t> starts;  // token offset of each collected window, in plan order

  int64_t windows() const { return static_cast<int64_t>(starts.size()); }
  int64_t rows_of(int64_t window) const;  // seq_len, except the last window's remainder
  // The contiguous run of windows rank `rank` of `world` collects, [first, last).
  std::pair<int64_t, int64_t> windows_of_rank(int rank, int world) const;
  int64_t rows_of_rank(int rank, int world) const;
  // Recorded in every file of the collection: a file is resumed only by the same plan.
  std::string describe() const;
};

// What the files of a collection record as its plan: the plan and the number of ranks
// that collect it (rank r's file holds rank r's windows).
std::string collection_plan_text(const CollectionPlan& plan, int world);

// DataError naming `source` when the split is too small for num_samples transitions.
CollectionPlan plan_collection(const std::string& split, int64_t split_tokens, int64_t num_samples,
                               int64_t seq_len, uint64_t seed, const std::string& source);

// The transitions of whole windows, tokens [B, seq_len + 1] (int64, CPU) with plan ids
// seq_ids[B], in parallel mode (no gradients): B * seq_len rows, window by window.
data::TransitionRows compute_transitions(model::Backbone& model, const at::Tensor& windows,
                                         const std::vector<int64_t>& seq_ids);

struct CollectOptions {
  std::string dir;              // <dir>/<split>/rankNNNNN.h5 and the master <dir>/<split>.h5
  int64_t windows_per_batch = 16;
  data::WriterOptions writer;
};

struct CollectResult {
  bool preempted = false;  // a signal stopped it at a block boundary; files keep what they hold
  int64_t rows_total = 0;  // in the master file (when not preempted)
  int64_t rows_resumed = 0;  // this rank's rows found from an earlier run
  int64_t rows_written = 0;  // by this rank in this run
  double seconds = 0;
  data::WriterStats writer;
  std::string master;
};

// Before any work (collective: rank 0 reads, every rank gets its answer): whether the
// rank files an earlier run left in options.dir for `plan` can be continued by this
// collection, with `schema` (its plan: collection_plan_text). DataError naming the file,
// what differs (the backbone, the plan, the number of ranks) and what to do. Returns, on
// rank 0, what continuing changes: a file of another compression is rewritten with
// options.writer's.
std::vector<std::string> check_collection_resumable(const CollectionPlan& plan, const data::TransitionSchema& schema,
                                                    const CollectOptions& options, dist::Communicator& comm);

// Collective. Each rank computes its windows and streams them to its file, resuming a
// file of the same schema after its last committed row; then rank 0 writes the master.
CollectResult collect_transitions(model::Backbone& model, const data::TokenSplit& split,
                                  const CollectionPlan& plan, const data::TransitionSchema& schema,
                                  const CollectOptions& options, dist::Communicator& comm);

// Where collect_transitions puts the files of `split`.
std::string rank_file_path(const std::string& dir, const std::string& split, int rank);
std::string master_file_path(const std::string& dir, const std::string& split);

}  // namespace crsm::distill
