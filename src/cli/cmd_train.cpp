#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "config/run_config.h"
#include "data/prepare.h"
#include "data/shard_format.h"
#include "dist/communicator.h"
#include "dist/cpu_setup.h"
#include "dist/runtime.h"
#include "train/trainer.h"

namespace crsm::cli {
namespace {

namespace fs = std::filesystem;

// --data may name a text file: it is prepared once with the byte tokenizer into
// <run>/data and reused while that directory still describes the same file.
std::string prepared_data_dir(const std::string& data, const std::string& run_dir) {
  if (fs::is_directory(data)) return data;
  if (!fs::is_regular_file(data))
    throw std::invalid_argument("--data " + data +
                                ": no such prepared directory or text file");
  const fs::path dir = fs::path(run_dir) / "data";
  if (fs::exists(dir / data::kIndexFile)) {
    std::ifstream in(dir / data::kIndexFile);
    const auto index = nlohmann::json::parse(in, nullptr, false);
    const bool same = index.is_object() && index.contains("inputs") &&
                      index["inputs"].size() == 1 &&
                      index["inputs"][0].value("path", "") == fs::absolute(data).string() &&
                      index["inputs"][0].value("bytes", int64_t(-1)) ==
                          static_cast<int64_t>(fs::file_size(data));
    if (same) return dir.string();
    throw std::invalid_argument(dir.string() + " holds data prepared from another file than " + data +
                                "; remove it or pass a prepared directory with --data");
  }
  data::PrepareOptions prep;
  prep.inputs = {fs::absolute(data).string()};
  prep.output_dir = dir.string();
  const auto summary = data::prepare_corpus(prep);
  std::printf("prepare: %s -> %s (%lld train / %lld val tokens, byte tokenizer)\n", data.c_str(),
              dir.c_str(), static_cast<long long>(summary.train_tokens),
              static_cast<long long>(summary.val_tokens));
  return dir.string();
}

}  // namespace

int train_command(int argc, char** argv) {
  po::options_description o("crsm_train train options (flags override the config file)");
  o.add_options()
      ("config", po::value<std::string>(), "JSON config (SPEC §3 keys); defaults for everything below")
      ("data", po::value<std::string>(), "prepared data directory (crsm_train prepare), or a text file to prepare with the byte tokenizer")
      ("checkpoint-dir", po::value<std::string>()->required(), "run directory: metrics.jsonl, config.json, checkpoints/")
      ("resume", po::value<std::string>(), "auto | checkpoint dir | run dir; a stage-1 checkpoint starts stage 4 (weights only)")
      ("no-value-loss", po::bool_switch(), "stage 1: train the language model alone (default: with value heads, stage 4)")
      ("epochs", po::value<int64_t>(), "epochs over the training split (config: backbone_epochs / finetune_epochs)")
      ("max-steps", po::value<int64_t>(), "stop after exactly this many optimizer steps (overrides --epochs)")
      ("batch-size", po::value<int64_t>(), "global batch (sequences per optimizer step)")
      ("seq-len", po::value<int64_t>(), "tokens per sequence")
      ("vocab-size", po::value<int64_t>(), "model vocabulary; must equal the tokenizer's")
      ("lr", po::value<double>(), "peak learning rate (config: lr, or finetune_lr with value loss)")
      ("min-lr-ratio", po::value<double>()->default_value(0.1, "0.1"), "final learning rate as a fraction of the peak")
      ("warmup-steps", po::value<int64_t>()->default_value(-1), "linear warm-up steps (-1: 5% of the run, at most 200)")
      ("weight-decay", po::value<double>()->default_value(0.1, "0.1"), "AdamW weight decay on matrices")
      ("grad-clip", po::value<double>()->default_value(1.0), "global gradient-norm clip (0: off)")
      ("grad-accum", po::value<int64_t>()->default_value(1), "micro-batches per optimizer step (must divide the batch)")
      ("value-weight", po::value<double>()->default_value(1.0), "weight of the value-head loss")
      ("eval-every", po::value<int64_t>()->default_value(250), "steps between validation passes (0: only at the end)")
      ("eval-batches", po::value<int64_t>()->default_value(20), "validation batches per pass (0: the whole split)")
      ("save-every", po::value<int64_t>()->default_value(0), "steps between checkpoints (0: only at the end)")
      ("keep-last", po::value<int>()->default_value(3), "checkpoints kept (0: all)")
      ("log-every", po::value<int64_t>()->default_value(10), "steps between progress lines")
      ("seed", po::value<int64_t>(), "seed of initialisation and data order (config: seed)")
      ("device", po::value<std::string>(), "cpu | cuda | cuda:N (config: device)")
      ("threads", po::value<int>()->default_value(0), "CPU threads per rank (0: this rank's CPUs / the ranks on its node sharing them)")
      ("zero-stage", po::value<int>(), "0 replicated | 1 optimizer state sharded | 2 gradients sharded too (config: zero_stage)")
      ("bucket-mb", po::value<double>()->default_value(4.0, "4"), "gradient bucket size in MiB for the overlapped all-reduce")
      ("collective-timeout", po::value<int64_t>()->default_value(dist::kDefaultCollectiveTimeout.count()),
       "seconds a rank waits for one MPI collective before the job is ended, naming it (0: forever; must exceed the longest checkpoint save or corpus preparation)")
      ("precision", po::value<std::string>()->default_value("fp32"), "fp32 | bf16 (autocast forward passes to bfloat16; weights, optimizer and losses stay fp32)");
  po::variables_map vm;
  if (!parse_options(argc, argv, "usage: crsm_train train --checkpoint-dir DIR --data DATA [--config FILE] [options]", o, vm))
    return 0;

  RunConfig config = vm.count("config") ? load_run_config(vm["config"].as<std::string>()) : RunConfig{};
  if (vm.count("vocab-size")) config.model.vocab_size = vm["vocab-size"].as<int64_t>();
  if (vm.count("batch-size")) config.train.batch_size = vm["batch-size"].as<int64_t>();
  if (vm.count("seq-len")) config.train.seq_len = vm["seq-len"].as<int64_t>();
  if (vm.count("seed")) config.seed = vm["seed"].as<int64_t>();
  if (vm.count("device")) config.device = vm["device"].as<std::string>();
  if (vm.count("zero-stage")) config.zero_stage = vm["zero-stage"].as<int>();
  // Re-validate: flags obey the same rules as config keys.
  config = parse_run_config(to_json(config), "command line and config");

  train::TrainOptions t;
  t.value_loss = !vm["no-value-loss"].as<bool>();
  t.run_dir = vm["checkpoint-dir"].as<std::string>();
  if (!vm.count("data"))
    throw std::invalid_argument("--data is required: a directory from `crsm_train prepare`, or a text file such as data/tinyshakespeare.txt");
  const auto& rt = dist::runtime();
  const int64_t timeout = vm["collective-timeout"].as<int64_t>();
  if (timeout < 0 || timeout > dist::kMaxCollectiveTimeout.count())
    throw std::invalid_argument("--collective-timeout " + std::to_string(timeout) + ": expected seconds from 0 to " +
                                std::to_string(dist::kMaxCollectiveTimeout.count()));
  auto comm = dist::make_communicator(rt, dist::rank_device(config.device, rt), std::chrono::seconds(timeout));
  // Rank 0 prepares a text corpus once; the others wait and then read what it wrote.
  std::string data_dir;
  if (rt.is_root()) {
    fs::create_directories(t.run_dir);
    data_dir = prepared_data_dir(vm["data"].as<std::string>(), t.run_dir);
  }
  t.data_dir = dist::broadcast_string(*comm, data_dir, 0);
  if (vm.count("resume")) t.resume = vm["resume"].as<std::string>();
  t.epochs = vm.count("epochs") ? vm["epochs"].as<int64_t>()
                                : (t.value_loss ? config.train.finetune_epochs : config.train.backbone_epochs);
  if (vm.count("max-steps")) t.max_steps = vm["max-steps"].as<int64_t>();
  t.lr = vm.count("lr") ? vm["lr"].as<double>() : (t.value_loss ? config.train.finetune_lr : config.train.lr);
  t.min_lr_ratio = vm["min-lr-ratio"].as<double>();
  t.warmup_steps = vm["warmup-steps"].as<int64_t>();
  t.weight_decay = vm["weight-decay"].as<double>();
  t.grad_clip = vm["grad-clip"].as<double>();
  t.grad_accum = vm["grad-accum"].as<int64_t>();
  t.value_weight = vm["value-weight"].as<double>();
  t.eval_every = vm["eval-every"].as<int64_t>();
  t.eval_batches = vm["eval-batches"].as<int64_t>();
  t.save_every = vm["save-every"].as<int64_t>();
  t.keep_last = vm["keep-last"].as<int>();
  t.log_every = std::max<int64_t>(1, vm["log-every"].as<int64_t>());
  t.bucket_bytes = static_cast<int64_t>(vm["bucket-mb"].as<double>() * (1 << 20));
  if (t.bucket_bytes < 4) throw std::invalid_argument("--bucket-mb must be positive");
  t.precision = train::parse_precision(vm["precision"].as<std::string>());
  if (t.epochs <= 0 && t.max_steps <= 0)
    throw std::invalid_argument("nothing to do: --epochs and --max-steps are both 0");
  if (t.grad_accum < 1) throw std::invalid_argument("--grad-accum must be >= 1");
  if (t.lr <= 0 || t.min_lr_ratio < 0 || t.min_lr_ratio > 1)
    throw std::invalid_argument("--lr must be > 0 and --min-lr-ratio in [0, 1]");

  const int threads = dist::configure_threads(vm["threads"].as<int>(), rt.ranks_sharing_cpus);
  if (rt.world_size > 1)
    std::fprintf(stderr, "%slocal rank %d of %d on this node, %d threads, device %s, %s backend\n",
                 dist::rank_prefix().c_str(), rt.local_rank, rt.local_world_size, threads,
                 config.device.c_str(), comm->backend().c_str());
  const auto result = train::run_training(config, t, *comm);
  if (result.exit_status == train::kExitOk && result.steps_run > 0 && rt.is_root())
    std::printf("train: done, %lld steps, val loss %.4f, checkpoint %s\n",
                static_cast<long long>(result.steps), result.final_val_loss,
                result.last_checkpoint.c_str());
  return result.exit_status;
}

}  // namespace crsm::cli
