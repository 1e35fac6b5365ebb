// Learner checkpoints: a run of 8 steps equals 4 steps + save + load into fresh objects + 4 steps
// bit for bit (weights, optimizer, losses, torch RNG); keep-K pruning; "latest" skipping partial
// directories; corrupt, truncated and missing files and wrong-shape models give errors naming them.
#include "learner/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>

#include "model/model_io.h"
#include "tests/common/tmpfs.h"
#include "tests/model/tiny_model.h"

namespace chainrl::learner {
namespace {
namespace fs = std::filesystem;
using torch::Tensor;

constexpr int64_t kVocab = 50, kSeqLen = 12, kBatch = 2, kPoolSize = 10;

fs::path TempDir(const std::string& name) {
  fs::path d = fs::temp_directory_path() /
               ("chainrl_checkpoint_test_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// The tiny test decoder over kVocab tokens; another `intermediate` gives a model of another shape.
std::shared_ptr<model::DecoderModel> TinyModel(uint64_t seed, int64_t intermediate = 64) {
  model::ModelConfig c = chainrl::testing::TinyConfig(kVocab, /*initializer_range=*/0.1);
  c.intermediate_size = intermediate;
  return chainrl::testing::TinyModel(c, seed);
}

std::vector<std::pair<std::string, Tensor>> Named(model::DecoderModel& m) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& p : m.named_parameters()) out.emplace_back(p.key(), p.value());
  return out;
}

OptimizerOptions TrainOptions() {
  return OptimizerOptions()
      .set_lr(3e-2)
      .set_weight_decay(0.1)
      .set_lr_scheduler(LrSchedule::kCosine)
      .set_lr_warmup_steps(2)
      .set_total_steps(8)
      .set_min_lr_ratio(0.1)
      .set_max_grad_norm(0.5);  // small enough that clipping is active
}

// A training run's moving parts: model, optimizer, a fixed pool of sequences visited in an order
// drawn by a seeded std::mt19937 (the position in it is the data position), and torch's global
// RNG, which replaces ~25% of each batch's tokens with random ones.
struct TrainingRun {
  std::shared_ptr<model::DecoderModel> model;
  std::unique_ptr<Optimizer> optimizer;
  Tensor pool;                 // [kPoolSize, kSeqLen]
  std::vector<int64_t> order;  // data order: a seeded permutation per epoch, concatenated
  int64_t data_pos = 0;
  std::vector<double> losses;

  explicit TrainingRun(uint64_t init_seed) : model(TinyModel(init_seed)) {
    optimizer = std::move(Optimizer::Create(Named(*model), TrainOptions()).value());
    pool =
        torch::arange(kPoolSize * kSeqLen, torch::kLong).reshape({kPoolSize, kSeqLen}) * 7 % kVocab;
    std::mt19937 gen(2024);
    for (int epoch = 0; epoch < 4; ++epoch) {
      std::vector<int64_t> perm(kPoolSize);
      for (int64_t i = 0; i < kPoolSize; ++i) perm[i] = i;
      std::shuffle(perm.begin(), perm.end(), gen);
      order.insert(order.end(), perm.begin(), perm.end());
    }
  }

  void Steps(int n) {
    for (int s = 0; s < n; ++s) {
      std::vector<int64_t> rows(order.begin() + data_pos, order.begin() + data_pos + kBatch);
      data_pos += kBatch;
      Tensor ids = pool.index_select(0, torch::tensor(rows, torch::kLong));
      const Tensor noise = torch::randint(0, kVocab, {kBatch, kSeqLen}, torch::kLong);
      const Tensor replace = torch::rand({kBatch, kSeqLen}) < 0.25;
      ids = torch::where(replace, noise, ids);
      const Tensor logits = model->Logits(model->Forward(ids));
      const Tensor loss = torch::nn::functional::cross_entropy(
          logits.slice(1, 0, kSeqLen - 1).reshape({-1, kVocab}),
          ids.slice(1, 1, kSeqLen).reshape({-1}));
      loss.backward();
      losses.push_back(loss.item<double>());
      const StepResult r = optimizer->Step();
      ASSERT_FALSE(r.skipped);
    }
  }

  CheckpointData Data() const {
    CheckpointData d;
    d.state = {{"step", optimizer->step()}, {"data_pos", data_pos}, {"rng", CaptureTorchRng()}};
    d.files["ledger.json"] = "{\"leases\": []}\n";
    return d;
  }
};

void ExpectSameParameters(model::DecoderModel& a, model::DecoderModel& b) {
  auto pa = a.named_parameters();
  auto pb = b.named_parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (const auto& p : pa) EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
}

TEST(CheckpointTest, ResumeIsBitIdentical) {
  const fs::path root = TempDir("resume");
  fs::create_directories(root / "tok");
  std::ofstream(root / "tok" / "tokenizer.json") << "{\"model\": {}}";

  torch::manual_seed(1234);
  TrainingRun straight(/*init_seed=*/1);
  straight.Steps(8);

  torch::manual_seed(1234);
  TrainingRun first(/*init_seed=*/1);
  first.Steps(4);
  auto dir = SaveCheckpoint((root / "ckpt").string(), first.optimizer->step(), *first.model,
                            *first.optimizer, first.Data(), /*keep=*/2, (root / "tok").string());
  ASSERT_TRUE(dir.ok()) << dir.status().ToString();
  EXPECT_EQ(fs::path(*dir).filename(), "step-000000004");
  EXPECT_TRUE(fs::exists(fs::path(*dir) / "tokenizer.json"));

  // The directory is also a HF model directory with the same weights.
  auto hf = model::LoadModel(*dir);
  ASSERT_TRUE(hf.ok()) << hf.status().ToString();
  ExpectSameParameters(**hf, *first.model);

  // Fresh objects with other weights, and torch's RNG moved on, as in a new process.
  torch::manual_seed(999);
  TrainingRun resumed(/*init_seed=*/77);
  auto resolved = ResolveCheckpoint((root / "ckpt").string(), "latest");
  ASSERT_TRUE(resolved.ok()) << resolved.status().ToString();
  EXPECT_EQ(*resolved, *dir);
  auto data = LoadCheckpoint(*resolved, *resumed.model, *resumed.optimizer);
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  ASSERT_TRUE(RestoreTorchRng(data->state["rng"]).ok());
  resumed.data_pos = data->state["data_pos"].get<int64_t>();
  EXPECT_EQ(data->state["step"], 4);
  EXPECT_EQ(resumed.data_pos, 4 * kBatch);
  EXPECT_EQ(data->files.at("ledger.json"), "{\"leases\": []}\n");
  EXPECT_EQ(data->files.size(), 1u);
  EXPECT_EQ(resumed.optimizer->step(), 4);
  ExpectSameParameters(*resumed.model, *first.model);

  resumed.Steps(4);
  std::vector<double> losses = first.losses;
  losses.insert(losses.end(), resumed.losses.begin(), resumed.losses.end());
  ASSERT_EQ(losses.size(), straight.losses.size());
  for (size_t i = 0; i < losses.size(); ++i)
    EXPECT_EQ(losses[i], straight.losses[i]) << "step " << i;
  ExpectSameParameters(*resumed.model, *straight.model);
  EXPECT_EQ(resumed.optimizer->step(), straight.optimizer->step());
  EXPECT_EQ(resumed.optimizer->current_lr(), straight.optimizer->current_lr());
  // The training actually moved (else equality would prove nothing).
  EXPECT_FALSE(torch::equal(straight.model->named_parameters()["model.embed_tokens.weight"],
                            hf.value()->named_parameters()["model.embed_tokens.weight"]));

  // Control: the same resume without restoring torch's RNG draws other noise, so the next loss
  // differs; the RNG state in the checkpoint is what makes the run exact.
  torch::manual_seed(999);
  TrainingRun no_rng(/*init_seed=*/77);
  ASSERT_TRUE(LoadCheckpoint(*dir, *no_rng.model, *no_rng.optimizer).ok());
  no_rng.data_pos = 4 * kBatch;
  no_rng.Steps(1);
  EXPECT_NE(no_rng.losses[0], straight.losses[4]);
  fs::remove_all(root);
}

// Saves a checkpoint of a tiny untrained model at `step`.
Result<std::string> SaveTiny(const fs::path& root, int64_t step, int keep,
                             const CheckpointData& data = {}) {
  auto m = TinyModel(5);
  auto opt = std::move(Optimizer::Create(Named(*m), TrainOptions()).value());
  return SaveCheckpoint(root.string(), step, *m, *opt, data, keep);
}

// checkpoint.dir is checked at start-up: created when missing, refused naming the key and the
// path when it cannot be (a path through a file) or is not a directory.
TEST(CheckpointTest, RootIsCheckedAtStartUp) {
  const fs::path dir = TempDir("ckpt_root");
  const std::string fresh = (dir / "a" / "b").string();
  ASSERT_TRUE(CheckCheckpointRoot(fresh).ok());
  EXPECT_TRUE(fs::is_directory(fresh));
  EXPECT_TRUE(fs::is_empty(fresh)) << "the probe file is removed";
  std::ofstream(dir / "file") << "x";
  Status through = CheckCheckpointRoot((dir / "file" / "ckpt").string());
  ASSERT_FALSE(through.ok());
  EXPECT_EQ(through.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(through.message().find("checkpoint.dir: " + (dir / "file" / "ckpt").string() +
                                   ": cannot create the directory"),
            std::string::npos)
      << through.message();
  Status file = CheckCheckpointRoot((dir / "file").string());
  ASSERT_FALSE(file.ok());
  EXPECT_NE(file.message().find("checkpoint.dir"), std::string::npos) << file.message();
  fs::remove_all(dir);
}

TEST(CheckpointTest, KeepsTheNewestK) {
  const fs::path root = TempDir("keep");
  for (int64_t step : {10, 20, 30, 40}) {
    auto dir = SaveTiny(root, step, /*keep=*/2);
    ASSERT_TRUE(dir.ok()) << dir.status().ToString();
    EXPECT_EQ(*dir, (root / CheckpointDirName(step)).string());
  }
  auto list = ListCheckpoints(root.string());
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].first, 30);
  EXPECT_EQ((*list)[1].first, 40);
  EXPECT_FALSE(fs::exists(root / "step-000000010"));
  EXPECT_FALSE(fs::exists(root / "step-000000020"));
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(root)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"step-000000030", "step-000000040"}));

  // Saving a step again replaces it; keep=1 then leaves only it.
  auto again = SaveTiny(root, 40, /*keep=*/1);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  list = ListCheckpoints(root.string());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].first, 40);
  EXPECT_EQ(SaveTiny(root, 50, /*keep=*/0).status().code(), StatusCode::kInvalidArgument);
  fs::remove_all(root);
}

TEST(CheckpointTest, LatestIgnoresPartialDirectories) {
  const fs::path root = TempDir("latest");
  auto none = ResolveCheckpoint(root.string(), "latest");
  EXPECT_EQ(none.status().code(), StatusCode::kNotFound);
  EXPECT_NE(none.status().message().find(root.string()), std::string::npos);
  EXPECT_EQ(ResolveCheckpoint((root / "nope").string(), "latest").status().code(),
            StatusCode::kNotFound);

  ASSERT_TRUE(SaveTiny(root, 1, 5).ok());
  ASSERT_TRUE(SaveTiny(root, 2, 5).ok());
  // An interrupted save, a directory with no manifest, one with a broken manifest, and one whose
  // manifest lists a file that is missing: all newer than step 2, all ignored.
  fs::create_directories(root / ".tmp-step-000000009.4242");
  std::ofstream(root / ".tmp-step-000000009.4242" / "model.safetensors") << "partial";
  fs::create_directories(root / "step-000000010");
  std::ofstream(root / "step-000000010" / "state.json") << "{}";
  fs::create_directories(root / "step-000000011");
  std::ofstream(root / "step-000000011" / "manifest.json") << "{\"format_version\": 1, \"fil";
  fs::copy(root / "step-000000002", root / "step-000000012", fs::copy_options::recursive);
  {  // fix the step so that only the missing file disqualifies it
    std::ifstream in(root / "step-000000012" / "manifest.json");
    nlohmann::json m = nlohmann::json::parse(in);
    m["step"] = 12;
    std::ofstream(root / "step-000000012" / "manifest.json") << m.dump();
    fs::remove(root / "step-000000012" / "optimizer.pt");
  }
  auto latest = ResolveCheckpoint(root.string(), "latest");
  ASSERT_TRUE(latest.ok()) << latest.status().ToString();
  EXPECT_EQ(*latest, (root / "step-000000002").string());

  // An explicit directory is taken as given if it has a manifest.
  EXPECT_EQ(*ResolveCheckpoint(root.string(), (root / "step-000000001").string()),
            (root / "step-000000001").string());
  auto no_manifest = ResolveCheckpoint(root.string(), (root / "step-000000010").string());
  EXPECT_EQ(no_manifest.status().code(), StatusCode::kNotFound);
  EXPECT_NE(no_manifest.status().message().find("step-000000010"), std::string::npos);

  // The next save removes the leftover temporary directory but not directories it did not write.
  ASSERT_TRUE(SaveTiny(root, 3, 5).ok());
  EXPECT_FALSE(fs::exists(root / ".tmp-step-000000009.4242"));
  EXPECT_TRUE(fs::exists(root / "step-000000010"));
  EXPECT_EQ(*ResolveCheckpoint(root.string(), "latest"), (root / "step-000000003").string());
  fs::remove_all(root);
}

// A damaged newest checkpoint (a byte flipped, sizes intact) is passed over for the one before it
// by "latest", so a resume does not fail on it at every restart; all damaged is Corrupt.
TEST(CheckpointTest, LatestPassesOverADamagedCheckpoint) {
  const fs::path root = TempDir("damaged_latest");
  ASSERT_TRUE(SaveTiny(root, 1, 5).ok());
  ASSERT_TRUE(SaveTiny(root, 2, 5).ok());
  auto flip = [](const fs::path& file) {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(100);
    char c = 0;
    f.get(c);
    f.seekp(100);
    f.put(static_cast<char>(c ^ 0x5a));
  };
  flip(root / CheckpointDirName(2) / "optimizer.pt");
  auto latest = ResolveCheckpoint(root.string(), "latest");
  ASSERT_TRUE(latest.ok()) << latest.status().ToString();
  EXPECT_EQ(*latest, (root / CheckpointDirName(1)).string());
  flip(root / CheckpointDirName(1) / "optimizer.pt");
  auto none = ResolveCheckpoint(root.string(), "latest");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kCorrupt);
  EXPECT_EQ(none.status().message(), root.string() + ": every checkpoint is damaged (" +
                                         (root / CheckpointDirName(2)).string() + ", " +
                                         (root / CheckpointDirName(1)).string() + ")");
  fs::remove_all(root);
}

TEST(CheckpointTest, FailedSaveLeavesPreviousCheckpoints) {
  const fs::path root = TempDir("failed");
  ASSERT_TRUE(SaveTiny(root / "ckpt", 1, 1).ok());
  // A tokenizer "file" that is a directory: copying it fails after the weights and optimizer
  // state were written into the temporary directory.
  fs::create_directories(root / "tok" / "tokenizer.json");
  auto m = TinyModel(5);
  auto opt = std::move(Optimizer::Create(Named(*m), TrainOptions()).value());
  auto r = SaveCheckpoint((root / "ckpt").string(), 2, *m, *opt, {}, 1, (root / "tok").string());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("tokenizer.json"), std::string::npos) << r.status().message();
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(root / "ckpt")) names.push_back(e.path().filename());
  EXPECT_EQ(names, std::vector<std::string>{"step-000000001"});  // no step 2, no temporary left
  EXPECT_EQ(*ResolveCheckpoint((root / "ckpt").string(), "latest"),
            (root / "ckpt" / "step-000000001").string());
  EXPECT_EQ(SaveCheckpoint((root / "ckpt").string(), 3, *m, *opt, {}, 1, (root / "none").string())
                .status()
                .code(),
            StatusCode::kNotFound);
  fs::remove_all(root);
}

// The bytes of the files in `dir`.
uint64_t FileBytes(const fs::path& dir) {
  uint64_t total = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) total += e.file_size();
  return total;
}

// The bytes a checkpoint directory takes on tmpfs: each file rounded up to whole pages.
uint64_t PageBytes(const fs::path& dir) {
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  uint64_t total = 0;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) total += (e.file_size() + page - 1) / page * page;
  return total;
}

// A full disk, for real: a tmpfs of a given size in a private mount namespace (root only). With
// checkpoint.keep = 2 on room for 2.5 checkpoints, each save removes the oldest early and fits;
// with keep = 1 on room for 1.5, the save fails with NoSpace naming the root, the bytes needed and
// free and the last good checkpoint, which still loads.
TEST(CheckpointTest, FullDiskPrunesEarlyThenFailsNamingTheBytesAndKeepsTheLastGood) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a tmpfs (CI runs as root)";
  const fs::path probe = TempDir("full_probe");
  ASSERT_TRUE(SaveTiny(probe, 1, 1).ok());
  const uint64_t one = PageBytes(probe / CheckpointDirName(1));
  ASSERT_GT(one, 8192u);

  for (const int keep : {2, 1}) {
    const fs::path disk = TempDir("full_disk_" + std::to_string(keep));
    const uint64_t size = keep == 2 ? one * 5 / 2 : one * 3 / 2;
    ASSERT_EQ(chainrl::testing::MountTmpfs(disk.string(), size), "");
    const fs::path root = disk / "ckpt";
    if (keep == 2) {
      for (int64_t step = 1; step <= 5; ++step) {
        auto dir = SaveTiny(root, step, keep);
        ASSERT_TRUE(dir.ok()) << "step " << step << ": " << dir.status().ToString();
      }
      auto list = ListCheckpoints(root.string());
      ASSERT_TRUE(list.ok());
      ASSERT_EQ(list->size(), 2u);
      EXPECT_EQ((*list)[0].first, 4);
      EXPECT_EQ((*list)[1].first, 5);
    } else {
      ASSERT_TRUE(SaveTiny(root, 1, keep).ok());
      auto r = SaveTiny(root, 2, keep);
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.status().code(), StatusCode::kNoSpace);
      const std::string msg = r.status().message();
      const std::string last = (root / CheckpointDirName(1)).string();
      EXPECT_NE(
          msg.find(root.string() + ": the disk is full: checkpoint step-000000002 needs about " +
                   std::to_string(FileBytes(root / CheckpointDirName(1))) + " bytes (the size of " +
                   last + "), "),
          std::string::npos)
          << msg;
      EXPECT_NE(msg.find(" bytes are free; the last good checkpoint, " + last + ", is intact"),
                std::string::npos)
          << msg;
      // Nothing half-written is left, and the last good checkpoint verifies and is "latest".
      std::vector<std::string> names;
      for (const auto& e : fs::directory_iterator(root)) names.push_back(e.path().filename());
      EXPECT_EQ(names, std::vector<std::string>{"step-000000001"});
      EXPECT_TRUE(VerifyCheckpoint(last).ok());
      EXPECT_EQ(*ResolveCheckpoint(root.string(), "latest"), last);
    }
    ASSERT_EQ(chainrl::testing::UnmountTmpfs(disk.string()), "");
    fs::remove_all(disk);
  }
  fs::remove_all(probe);
}

// Loads `dir` into a fresh tiny model; returns the error message ("" if it loaded).
std::string LoadError(const fs::path& dir, int64_t intermediate = 64) {
  auto m = TinyModel(9, intermediate);
  auto opt = std::move(Optimizer::Create(Named(*m), TrainOptions()).value());
  auto r = LoadCheckpoint(dir.string(), *m, *opt);
  return r.ok() ? "" : r.status().message();
}

TEST(CheckpointTest, DamagedFilesAreNamed) {
  const fs::path root = TempDir("damaged");
  auto saved = SaveTiny(root, 7, 3);
  ASSERT_TRUE(saved.ok()) << saved.status().ToString();
  const fs::path dir = *saved;
  ASSERT_EQ(LoadError(dir), "");

  {  // one flipped byte in the middle of the weights
    const fs::path weights = dir / "model.safetensors";
    std::fstream f(weights, std::ios::in | std::ios::out | std::ios::binary);
    const auto mid = static_cast<std::streamoff>(fs::file_size(weights) / 2);
    f.seekg(mid);
    char c = 0;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x10);
    f.seekp(mid);
    f.write(&c, 1);
  }
  std::string err = LoadError(dir);
  EXPECT_NE(err.find("model.safetensors"), std::string::npos) << err;
  EXPECT_NE(err.find("CRC32C"), std::string::npos) << err;
  EXPECT_FALSE(VerifyCheckpoint(dir.string()).ok());

  saved = SaveTiny(root, 8, 3);
  ASSERT_TRUE(saved.ok());
  const fs::path dir8 = *saved;
  fs::resize_file(dir8 / "state.json", fs::file_size(dir8 / "state.json") / 2);
  err = LoadError(dir8);
  EXPECT_NE(err.find("state.json"), std::string::npos) << err;
  EXPECT_NE(err.find("truncated"), std::string::npos) << err;

  saved = SaveTiny(root, 9, 3);
  ASSERT_TRUE(saved.ok());
  const fs::path dir9 = *saved;
  fs::remove(dir9 / "optimizer.pt");
  err = LoadError(dir9);
  EXPECT_NE(err.find("optimizer.pt"), std::string::npos) << err;
  EXPECT_NE(err.find("missing"), std::string::npos) << err;
  fs::remove_all(root);
}

TEST(CheckpointTest, WrongShapeModelNamesTheTensor) {
  const fs::path root = TempDir("shape");
  auto saved = SaveTiny(root, 1, 1);
  ASSERT_TRUE(saved.ok());
  const std::string err = LoadError(*saved, /*intermediate=*/48);
  EXPECT_NE(err.find("model.layers.0.mlp.gate_proj.weight"), std::string::npos) << err;
  EXPECT_NE(err.find("shape"), std::string::npos) << err;
  fs::remove_all(root);
}

TEST(CheckpointTest, FileNamesAreChecked) {
  const fs::path root = TempDir("names");
  for (const std::string bad : {"../escape", "a/b", "", ".hidden", "state.json", "optimizer.pt",
                                "model-00001-of-00002.safetensors"}) {
    CheckpointData d;
    d.files[bad] = "x";
    auto r = SaveTiny(root, 1, 1, d);
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_TRUE(ListCheckpoints(root.string())->empty());
  fs::remove_all(root);
}

TEST(CheckpointTest, TorchRngRoundTrips) {
  torch::manual_seed(5);
  const nlohmann::json saved = CaptureTorchRng();
  ASSERT_TRUE(saved["cpu"].is_string());
  const Tensor a = torch::rand({16});
  torch::manual_seed(6);
  ASSERT_TRUE(RestoreTorchRng(saved).ok());
  EXPECT_TRUE(torch::equal(torch::rand({16}), a));
  // Survives a trip through text, as in state.json.
  ASSERT_TRUE(RestoreTorchRng(nlohmann::json::parse(saved.dump())).ok());
  EXPECT_TRUE(torch::equal(torch::rand({16}), a));

  EXPECT_EQ(RestoreTorchRng(nlohmann::json::array()).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(RestoreTorchRng({{"cpu", "not base64!"}}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(RestoreTorchRng({{"cpu", "AAAA"}}).code(), StatusCode::kInvalidArgument);  // too short
  nlohmann::json too_many = saved;
  too_many["cuda"] = nlohmann::json::array();
  for (int i = 0; i < 64; ++i) too_many["cuda"].push_back(saved["cpu"]);
  EXPECT_EQ(RestoreTorchRng(too_many).code(), StatusCode::kInvalidArgument);
}

TEST(CheckpointTest, RootIsTheConfiguredDirectoryElseTheRunsOwn) {
  EXPECT_EQ(CheckpointRoot("", "/runs/a"), "/runs/a/checkpoints");
  EXPECT_EQ(CheckpointRoot("/shared/ckpt", "/runs/a"), "/shared/ckpt");
}

}  // namespace
}  // namespace chainrl::learner
