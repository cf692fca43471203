#pragma once

// The options of a training run, in the groups they are used in. A command fills each
// group straight from its option table (cli/training_flags.h) and the groups reach the
// engine and the loop unchanged. Each default is written here, once: the option tables
// show these values in --help.

#include <cstdint>

#include "dist/zero_policy.h"
#include "train/mixed_precision.h"

namespace crsm::train {

// AdamW and its learning-rate schedule.
struct OptimizerOptions {
  double lr = 1e-3;            // peak learning rate
  double min_lr_ratio = 0.1;   // the cosine's floor, as a fraction of the peak
  double weight_decay = 0.1;   // on matrices (train::decays)
  double grad_clip = 1.0;      // global gradient norm; 0: no clipping
};

// How long a run is.
struct LengthOptions {
  int64_t epochs = 1;
  int64_t max_steps = 0;      // > 0: exactly this many optimizer steps (overrides epochs)
  int64_t warmup_steps = -1;  // -1: a twentieth of the run, at most the stage's cap
};

// The steps of a run and of its warm-up, decided once from its length.
struct Schedule {
  int64_t total_steps = 0, warmup_steps = 0;
};
// UsageError when epochs x batches_per_epoch cannot be counted.
Schedule plan_schedule(const LengthOptions& length, int64_t batches_per_epoch, int64_t warmup_cap);

// When the loop reports, validates and saves.
struct CadenceOptions {
  int64_t log_every = 10;     // steps between progress lines
  int64_t eval_every = 250;   // steps between validation passes; 0: only at the end
  int64_t save_every = 0;     // steps between checkpoints; 0: only at the end
  int keep_last = 3;          // checkpoints kept; 0: all
};

// What the loop measures of its steps besides the losses (README "What a step costs").
struct ProfileOptions {
  double peak_tflops = 0;       // one device's peak, for MFU; 0: a known GPU's (none on the CPU)
  int64_t trace_first = 0;      // a Chrome trace of steps trace_first..trace_last; 0: none
  int64_t trace_last = 0;
  bool sync_timers = false;     // CUDA: synchronize the device at each phase boundary to time it
};
// UsageError naming --profile-steps when its last step lies past the run's `total_steps`.
void check_trace_steps(const ProfileOptions& profile, int64_t total_steps);

// How a step is spread over ranks and threads, and in what precision.
struct ParallelOptions {
  dist::ZeroPolicy zero = dist::ZeroPolicy::for_stage(0);
  int64_t bucket_bytes = 4 << 20;  // gradient buckets of the overlapped reduction
  bool prefetch = true;            // zero stage 3: gather the next unit while one computes
  bool batch_split = true;         // CPU: each thread runs its share of a micro-batch
  int64_t grad_accum = 1;          // micro-batches per optimizer step
  Precision precision = Precision::kFloat32;
};

}  // namespace crsm::train
