// crsm_train distill: stage 2 (SPEC §7). Collects latent transitions of a trained backbone
// into HDF5 (one file per rank, a master file joining them), then trains the dynamics
// model on them. Rerunning the same command resumes whichever part was interrupted.
#include <chrono>
#include <cstdio>
#include <filesystem>

#include <torch/torch.h>

#include "base/file_read.h"
#include "cli/commands.h"
#include "cli/run_record.h"
#include "cli/session.h"
#include "cli/stages.h"
#include "cli/options.h"
#include "cli/outputs.h"
#include "cli/profile_flags.h"
#include "data/data_error.h"
#include "data/prepared_corpus.h"
#include "checkpoint/store.h"
#include "dist/communicator.h"
#include "dist/cpu_setup.h"
#include "dist/runtime.h"
#include "checkpoint/assembled_checkpoint.h"
#include "checkpoint/run_dir.h"
#include "distill/distill_collect.h"
#include "distill/dynamics_training.h"
#include "base/exit_status.h"
#include "config/memory_plan.h"
#include "checkpoint/training_checkpoint.h"
#include "train/training_data.h"
#include "train/training_loop.h"

namespace crsm::cli {

const std::vector<Option>& distill_options() {
  static const std::vector<Option> table = with_config_flags(with_session_flags(with_profile_flags(with_tensorboard_flags({
      Option("model-path", Constraint::path(), "backbone checkpoint, or a run directory (its newest complete checkpoint)").mandatory(),
      Option("output-path", Constraint::path(), "directory: transitions/, checkpoints/, metrics.jsonl, tensorboard/, dynamics.safetensors, dynamics.json").mandatory(),
      Option("data", Constraint::path(), "text file or prepared directory; transitions come from its train split, validation from its val split"),
      Option("transitions", Constraint::path(), "train on an existing collection (a directory with train.h5 and val.h5) instead of collecting"),
      Option("collect-only", Constraint::boolean(), "stop after collecting the transitions"),
      Option("config", Constraint::path(), "JSON config: its dynamics_* keys and seed (its model keys must match the checkpoint's)"),
      Option::for_key("num-samples", "dynamics_samples", "training transitions to collect, over all ranks"),
      Option("val-samples", Constraint::integer(1, int64_t{1} << 40).or_word("auto"), "held-out transitions to collect (auto: a tenth of --num-samples, at least one window)").with_default("auto"),
      Option::for_key("epochs", "dynamics_epochs", "epochs of dynamics training over the collected transitions"),
      Option("max-steps", Constraint::integer(1), "stop dynamics training after exactly this many steps (overrides --epochs)"),
      Option::for_key("lr", "dynamics_lr", "peak learning rate of dynamics training"),
      Option::for_key("batch-size", "dynamics_batch_size", "transitions per optimizer step (global)"),
      Option::for_key("arch", "dynamics_arch", "shared | per_layer | mlp (SPEC §4)"),
      Option::for_key("hidden", "dynamics_hidden", "hidden width of the dynamics model (auto: the architecture's default)"),
      Option("seq-len", Constraint::integer(1, 1 << 24), "tokens of context per collection window (default: the backbone's seq_len)"),
      Option("dtype", Constraint::word({"float32", "float16"}), "how /state and /delta are stored").with_default("float32"),
      Option("compression", Constraint::word({"none", "gzip"}), "HDF5 filter of the transition files").with_default("none"),
      Option("chunk-rows", Constraint::integer(1, 1 << 24).or_word("auto"), "rows per HDF5 chunk; files are flushed every chunk (auto: about 4 MiB of rows)").with_default("auto"),
      Option("vocab-size", config_constraint("vocab_size"), "the seed's flag: checked against the checkpoint"),
      Option("d-model", config_constraint("d_model"), "the seed's flag: checked against the checkpoint"),
      Option("num-layers", config_constraint("num_layers"), "the seed's flag: checked against the checkpoint"),
      Option::for_key("seed", "seed", "seed of the collection plan, the initialisation and the batch order"),
      Option("log-every", Constraint::integer(1), "steps between progress lines").with_default("10"),
      Option("save-every", Constraint::integer(0), "steps between checkpoints of dynamics training (0: only at the end)").with_default("0"),
      Option("keep-last", Constraint::integer(0, 1 << 30), "checkpoints kept (0: all)").with_default("2"),
  }))));
  return table;
}

namespace {

namespace fs = std::filesystem;

const char* const kModelKeys[] = {"vocab_size", "d_model", "d_state", "d_ffn", "num_layers", "expand", "d_conv",
                                  "dt_rank", "tie_embeddings"};

// The run config: the checkpoint's, with the --config file's dynamics keys and seed and
// then the flags. A --config whose model differs from the checkpoint's is refused.
RunConfig distill_config(const ParsedOptions& o, const RunConfig& saved, const std::string& ckpt) {
  RunConfig config = saved;
  if (o.has("config")) {
    const RunConfig file = load_run_config(o.text("config"));
    // Only the model keys the file sets are compared: the others take the checkpoint's.
    const auto written = base::read_json_file(o.text("config"));
    const auto a = to_json(file), b = to_json(saved);
    for (const char* key : kModelKeys)
      if (written.contains(key) && a[key] != b[key])
        throw UsageError("--config " + o.text("config") + ": key '" + key + "' is " + a[key].dump() + ", but the backbone " +
                         ckpt + " has " + b[key].dump());
    config.dynamics = file.dynamics;
    if (written.contains("seed")) config.seed = file.seed;
  }
  o.apply_to(config);
  for (const auto& [flag, key] : {std::pair{"vocab-size", "vocab_size"}, {"d-model", "d_model"}, {"num-layers", "num_layers"}})
    if (o.has(flag) && nlohmann::json(o.integer(flag)) != to_json(saved)[key])
      throw UsageError(std::string("--") + flag + " " + std::to_string(o.integer(flag)) + " disagrees with the backbone " +
                       ckpt + ", whose " + key + " is " + to_json(saved)[key].dump());
  // The model is the backbone's: a --set that changes it describes another one.
  const auto now = to_json(config), was = to_json(saved);
  for (const char* key : kModelKeys)
    if (now[key] != was[key])
      throw UsageError("--set " + std::string(key) + "=" + now[key].dump() + " disagrees with the backbone " + ckpt +
                       ", whose " + key + " is " + was[key].dump());
  return config;
}

struct Collected {
  bool preempted = false;
  std::string train, val;  // master files
};

Collected collect(const ParsedOptions& o, const RunConfig& config, model::Backbone& model, const std::string& ckpt,
                  const std::string& out, dist::Communicator& comm) {
  const bool root = comm.rank() == 0;
  const std::string data_dir = train::resolve_training_data(o.text("data"), out, comm);
  if (data_dir.empty()) return {true, "", ""};
  auto corpus = data::PreparedCorpus::open(data_dir);
  data::check_vocab_matches(*corpus.tokenizer, config.model.vocab_size, "--data " + data_dir + " with the backbone " + ckpt);
  const int64_t seq_len = o.has("seq-len") ? o.integer("seq-len") : config.train.seq_len;
  const int64_t samples = config.dynamics.samples;
  const int64_t val_samples = o.value("val-samples").is_string() ? std::max((samples + 9) / 10, seq_len)
                                                                  : o.integer("val-samples");
  data::TransitionSchema schema{config.model.num_layers, config.model.d_model, config.model.vocab_size,
                                data::parse_transition_dtype(o.text("dtype")), checkpoint::backbone_sha256(ckpt), ""};
  distill::CollectOptions options;
  options.dir = checkpoint::RunDir(out).transitions();
  // About 4 MiB per chunk: fewer, larger flushes keep the writer near the disk's speed,
  // and a chunk stays far below what HDF5 handles well on the large config (10 rows).
  const int64_t row_bytes = 2 * config.model.num_layers * config.model.d_model *
                                (schema.dtype == data::TransitionDtype::kFloat16 ? 2 : 4) + 16;
  options.writer.chunk_rows = o.value("chunk-rows").is_string() ? std::max<int64_t>(1, (int64_t{4} << 20) / row_bytes)
                                                                 : o.integer("chunk-rows");
  if (options.writer.chunk_rows > data::max_chunk_rows(schema))
    throw UsageError("--chunk-rows " + std::to_string(options.writer.chunk_rows) + ": a chunk of that many rows of [" +
                     std::to_string(config.model.num_layers) + ", " + std::to_string(config.model.d_model) + "] " +
                     data::to_string(schema.dtype) + " states is over HDF5's limit of 4 GiB per chunk: at most " +
                     std::to_string(data::max_chunk_rows(schema)) + " rows");
  options.writer.compression = data::parse_compression(o.text("compression"));
  // Both plans first, and whatever an earlier run left checked against them: a corpus too
  // small for them, or files this collection cannot continue, are refused before anything
  // is collected.
  std::vector<distill::CollectionPlan> plans;
  for (const auto& [split, tokens, n] : {std::tuple{"train", &corpus.train, samples}, {"val", &corpus.val, val_samples}})
    plans.push_back(distill::plan_collection(split, tokens->size(), n, seq_len, static_cast<uint64_t>(config.seed),
                                           "--data " + data_dir));
  for (const auto& plan : plans) {
    schema.plan = distill::collection_plan_text(plan, comm.world_size());
    for (const auto& note : distill::check_collection_resumable(plan, schema, options, comm))
      if (root) std::printf("distill: %s\n", note.c_str());
  }
  Collected result;
  for (const auto& plan : plans) {
    const auto& tokens = plan.split == "train" ? corpus.train : corpus.val;
    schema.plan = distill::collection_plan_text(plan, comm.world_size());
    const auto r = distill::collect_transitions(model, tokens, plan, schema, options, comm);
    if (r.preempted) {
      if (root)
        std::printf("distill: preempted by %s while collecting %s transitions; every flushed row is kept: rerun the "
                    "same command to resume\n",
                    dist::signal_name(dist::preemption_signal()).c_str(), plan.split.c_str());
      return {true, "", ""};
    }
    if (root)
      std::printf("distill: %s: %lld transitions in %s (%lld kept from an earlier run, %.1f s, %.0f/s on rank 0)\n",
                  plan.split.c_str(), static_cast<long long>(r.rows_total), r.master.c_str(),
                  static_cast<long long>(r.rows_resumed), r.seconds, r.rows_written / std::max(r.seconds, 1e-9));
    (plan.split == "train" ? result.train : result.val) = r.master;
  }
  return result;
}

// The files of an earlier collection, checked against the backbone in use.
Collected existing_collection(const ParsedOptions& o, const RunConfig& config, const std::string& ckpt) {
  const std::string dir = o.text("transitions");
  Collected c{false, distill::master_file_path(dir, "train"), distill::master_file_path(dir, "val")};
  for (const auto& file : {c.train, c.val}) {
    const auto info = data::inspect_transition_file(file);
    data::TransitionSchema expected{config.model.num_layers, config.model.d_model, config.model.vocab_size,
                                    o.given("dtype") ? data::parse_transition_dtype(o.text("dtype")) : info.schema.dtype,
                                    checkpoint::backbone_sha256(ckpt), ""};
    data::check_schema(info, expected);
  }
  return c;
}

}  // namespace

DistillBackbone distill_backbone(const ParsedOptions& o) {
  if (!o.has("model-path")) throw UsageError("--model-path is required: distill's config is its backbone's");
  DistillBackbone b;
  b.checkpoint = checkpoint::resolve_checkpoint(o.text("model-path"), "--model-path", &b.skipped);
  const auto manifest = checkpoint::read_train_manifest(b.checkpoint);
  b.config = parse_run_config(manifest.config, manifest.path);
  return b;
}

distill::DynamicsResult run_distill(const ParsedOptions& o, const DistillBackbone& backbone, Session& session) {
  if (o.has("data") == o.has("transitions"))
    throw UsageError("give exactly one of --data (collect transitions from it) and --transitions (train on an earlier "
                     "collection)");
  if (o.has("transitions") && o.is_set("collect-only"))
    throw UsageError("--collect-only and --transitions exclude each other: there is nothing to collect");
  const std::string& ckpt = backbone.checkpoint;
  const std::vector<std::string>& skipped = backbone.skipped;
  std::vector<Input> inputs = checkpoint_inputs(ckpt, o.text("model-path"));
  if (o.has("transitions")) inputs.push_back({Input::Kind::kCollection, o.text("transitions")});
  check_output_directory("--output-path", o.text("output-path"), inputs);
  const std::string tensorboard = tensorboard_directory(o, o.text("output-path"), inputs);
  auto model = checkpoint::load_checkpoint_model(ckpt);
  const RunConfig config = distill_config(o, backbone.config, ckpt);
  if (config.dynamics.epochs == 0 && !o.has("max-steps") && !o.is_set("collect-only"))
    throw UsageError("nothing to train: --epochs (or the config's dynamics_epochs) is 0 and --max-steps is not given; "
                     "use --collect-only to collect alone");

  const auto& rt = session.runtime;
  const model::DynamicsConfig arch{model::parse_dynamics_arch(config.dynamics.arch), config.model.num_layers,
                                   config.model.d_model, config.dynamics.hidden};
  if (!o.is_set("collect-only")) {
    check_dynamics_fits_in_memory(arch, rt.local_world_size, "--arch " + config.dynamics.arch + " --hidden " +
                                                                        std::to_string(arch.resolved_hidden()));
    distill::check_dynamics_resumable(o.text("output-path"), arch);
  }
  const auto device = session.device;
  dist::Communicator& comm = *session.comm;
  for (const auto& note : skipped)
    if (rt.is_root()) std::printf("distill: %s\n", note.c_str());
  model->to(device);
  model->eval();
  const std::string out = o.text("output-path");
  distill::DynamicsResult result;
  result.train.exit_status = kExitPreempted;
  if (train::preempted_in_startup(comm, "distill")) return result;

  const Collected files = o.has("transitions") ? existing_collection(o, config, ckpt)
                                               : collect(o, config, model, ckpt, out, comm);
  if (files.preempted) return result;
  result.train.exit_status = kExitOk;
  if (o.is_set("collect-only")) return result;

  distill::DynamicsRun run;
  run.train_file = files.train;
  run.val_file = files.val;
  run.run_dir = out;
  run.tensorboard_dir = tensorboard;
  run.backbone_dir = ckpt;
  run.embeddings = model->embed(torch::arange(config.model.vocab_size, torch::kLong).to(device)).detach().clone();
  run.arch = arch;
  run.batch_size = config.dynamics.batch_size;
  run.length.epochs = config.dynamics.epochs;
  run.length.max_steps = o.has("max-steps") ? o.integer("max-steps") : 0;
  run.optimizer.lr = config.dynamics.lr;
  run.optimizer.weight_decay = 0.0;  // the dynamics' few matrices are not decayed
  run.cadence.log_every = o.integer("log-every");
  run.cadence.save_every = o.integer("save-every");
  run.cadence.keep_last = static_cast<int>(o.integer("keep-last"));
  run.profile = profile_options(o);
  run.resume = true;
  run.config = to_json(config);
  run.run_info = run_record("distill", o, config, session);
  run.metadata = {{"model_path", ckpt},
                  {"output_path", out},
                  {"num_samples", data::inspect_transition_file(files.train).rows},
                  {"val_samples", data::inspect_transition_file(files.val).rows}};
  result = distill::train_dynamics(run, comm);
  if (result.train.exit_status == kExitOk && rt.is_root())
    std::printf("distill: done: validation R² %.4f, MSE %.6f (%s); wrote %s and %s\n",
                result.validation.value("avg_r2", 0.0), result.validation.value("avg_mse", 0.0),
                result.validation.value("beats_trivial", false) ? "beats both trivial predictors at every layer"
                                                                 : "does NOT beat both trivial predictors at every layer",
                checkpoint::RunDir(out).dynamics().c_str(), checkpoint::RunDir(out).dynamics_report().c_str());
  return result;
}

int distill_command(int argc, char** argv) {
  const auto parsed = parse_options(argc, argv,
                                    "usage: crsm_train distill --model-path CKPT --output-path DIR --data DATA [options]",
                                    distill_options());
  if (!parsed) return 0;
  // Resolved (and verified) once; distillation runs on the device the backbone was trained on.
  const DistillBackbone backbone = distill_backbone(*parsed);
  if (parsed->is_set("print-config")) return print_config(distill_config(*parsed, backbone.config, backbone.checkpoint));
  Session session = start_session(backbone.config.device, *parsed, "distill");
  return run_distill(*parsed, backbone, session).train.exit_status;
}

}  // namespace crsm::cli
