// Whole-run learner checkpoints: model weights (HF layout), optimizer + schedule state, the run's
// own state as JSON and named text files, written atomically with a checksummed manifest and
// pruned to the newest `keep`, so that a resumed run continues bit-identically
// (docs/CHECKPOINTS.md).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"
#include "learner/checkpoint_files.h"
#include "learner/optimizer.h"
#include "model/decoder.h"

namespace chainrl::learner {

// What a learner checkpoint holds besides the model and optimizer: an opaque JSON `state` the
// caller fills (step, policy version, data position, curriculum state, RNG states, metrics so
// far...) and named text blobs (e.g. "ledger.json").
struct CheckpointData {
  nlohmann::json state = nlohmann::json::object();
  // name -> contents; names are plain file names (no '/', not "." / "..", not one of the
  // checkpoint's own files: state.json, manifest.json, optimizer.pt, config.json, model weights).
  std::map<std::string, std::string> files;
};

// The directory name of step `step` under a root: "step-000000123".
std::string CheckpointDirName(int64_t step);

// Writes the checkpoint of `step` under `root` (created if needed) as root/step-000000123/
// atomically: everything is written into a temporary sibling directory (".tmp-step-..."), each
// file and the directory fsynced, then renamed into place, so a crash at any point leaves either
// the previous checkpoints or the complete new one (never a partial directory that "latest" would
// pick). Contents: model weights + config (SaveModel, so the directory also loads as a HF model;
// tokenizer files are copied from `tokenizer_dir` if non-empty), optimizer.pt (Optimizer::Save),
// state.json ({"format_version", "step", "state"}), the named files, and manifest.json (written
// last) with each file's size and CRC32C. An existing checkpoint of the same step is replaced.
// Then deletes the oldest checkpoints beyond `keep` (REQUIRES keep >= 1) and stale temporary
// directories. Returns the checkpoint directory. Errors name the file or directory. Not safe to
// call concurrently on the same root.
// A full disk: the checkpoints that would be deleted after this one is written (all but the newest
// keep - 1, never the newest) are deleted first and the save is tried once more; if it still does
// not fit, NoSpace naming the root, the bytes needed and free, and the last good checkpoint (left
// intact).
Result<std::string> SaveCheckpoint(const std::string& root, int64_t step,
                                   const model::DecoderModel& model, const Optimizer& optimizer,
                                   const CheckpointData& data, int keep,
                                   const std::string& tokenizer_dir = "");

// The checkpoints' root: checkpoint.dir (`configured`), or RUN_DIR/checkpoints when it is empty.
std::string CheckpointRoot(const std::string& configured, const std::string& run_dir);

// At start-up, so that a run does not learn at its first checkpoint (after its SFT warm-up, say)
// that it cannot keep any: `root` is created if missing and a file is written to it and removed.
// InvalidArgument naming checkpoint.dir, the path and why (not a directory, permission denied,
// read-only file system...).
Status CheckCheckpointRoot(const std::string& root);

// The complete checkpoints under `root` (directories named step-N holding a manifest.json that
// parses), oldest first, as (step, directory). Missing root -> empty list.
Result<std::vector<std::pair<int64_t, std::string>>> ListCheckpoints(const std::string& root);

// "latest" -> the newest complete checkpoint under root that verifies (temporary directories and
// directories without a valid manifest are ignored; one whose files fail their checksums is passed
// over with a warning, Corrupt when all do); otherwise `spec` is a checkpoint directory path, which
// must exist and hold a manifest.json. NotFound naming root (or spec) when none.
Result<std::string> ResolveCheckpoint(const std::string& root, const std::string& spec);

// Verifies the manifest of checkpoint `dir`: every listed file present with its size and CRC32C.
// A missing/truncated/corrupt file is Corrupt naming the file.
Status VerifyCheckpoint(const std::string& dir);

// Verifies the manifest, then loads the weights into `model` (names and shapes must match: an
// error naming the tensor), the optimizer state (Optimizer::Load) and returns state + files.
// On error `model` and `optimizer` may be partly overwritten.
Result<CheckpointData> LoadCheckpoint(const std::string& dir, model::DecoderModel& model,
                                      Optimizer& optimizer);

// Reads only state.json and the named files of checkpoint `dir` (manifest verified), for tools
// that inspect a run without building the model.
// `verify` false skips the checksums of every file (a whole pass over the weights and optimizer
// state) for a caller that loads the checkpoint right after (LoadCheckpoint verifies).
Result<CheckpointData> ReadCheckpointData(const std::string& dir, bool verify = true);

// RNG state for `state`: {"cpu": base64 of torch's default CPU generator state, "cuda": [base64
// per device]} (the CUDA entries only when CUDA is available). RestoreTorchRng puts it back;
// InvalidArgument naming the key on malformed input, and when the JSON holds CUDA states but this
// process has fewer CUDA devices.
nlohmann::json CaptureTorchRng();
Status RestoreTorchRng(const nlohmann::json& j);

}  // namespace chainrl::learner
