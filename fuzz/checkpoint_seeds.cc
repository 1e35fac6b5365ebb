// Writes seeds for checkpoint_fuzz into the folder given, as a learner writes a checkpoint: a
// buffer.bin of trajectory envelopes (the tests' samples, tests/core/wire_samples.h), a
// partials.bin of groups part-way through segment rollout (SegmentAssembler), and a manifest.json
// with its state.json; each after the byte that picks it.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "learner/checkpoint_files.h"
#include "learner/record_file.h"
#include "learner/run_state.h"
#include "learner/segment_intake.h"
#include "learner/work_ledger.h"
#include "tests/core/wire_samples.h"

using namespace chainrl;
using namespace chainrl::learner;

namespace {

void Write(const std::string& dir, const std::string& name, char pick, const std::string& bytes) {
  std::ofstream(dir + "/" + name, std::ios::binary) << pick << bytes;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  std::mt19937_64 rng(11);

  std::string buffer;
  for (int i = 0; i < 3; ++i) {
    wire::Envelope e = wire::MakeEnvelope("learner");
    *e.mutable_trajectory() = wire::testing::MakeTrajectory(rng, 1 + i, 3 << i);
    e.mutable_trajectory()->set_prompt_group_id(100 + static_cast<uint64_t>(i));
    AppendRecord(&buffer, e.SerializeAsString());
  }
  Write(dir, "buffer.bin", 0, buffer);
  Write(dir, "buffer-empty.bin", 0, "");

  // Two groups of 4 with two samples unfinished after their first segment.
  SegmentAssembler segments(4);
  for (uint64_t gid : {7, 8}) {
    wire::Trajectory t = wire::testing::MakeTrajectory(rng, 4, 5);
    t.set_prompt_group_id(gid);
    t.mutable_samples(1)->set_finish_reason(wire::FINISH_UNFINISHED);
    t.mutable_samples(3)->set_finish_reason(wire::FINISH_UNFINISHED);
    wire::Trajectory assembled;
    segments.Add(t, "actor-1", &assembled);
  }
  const std::string partials = segments.ToRecords();
  Write(dir, "partials.bin", 1, partials);

  const nlohmann::json manifest = {
      {"format_version", kCheckpointFormatVersion},
      {"step", 42},
      {"files",
       {{"buffer.bin", {{"size", buffer.size()}, {"crc32c", 3735928559u}}},
        {"ledger.json", {{"size", 412}, {"crc32c", 1234567}}},
        {"model.safetensors", {{"size", 1048576}, {"crc32c", 4294967295u}}},
        {"state.json", {{"size", 96}, {"crc32c", 77}}}}},
      {"data_files", {"buffer.bin", "ledger.json"}}};
  RunState run;
  run.sft_done = true;
  run.sft_step = 2;
  run.step = 42;
  run.version = 42;
  run.next_group = 700;
  run.tokens_trained = 123456;
  run.trained = {3, 9, 11};
  run.history =
      nlohmann::json::array({{{"step", 41}, {"loss", 0.25}}, {{"step", 42}, {"loss", 0.5}}});
  run.wall_seconds = 12.5;
  const nlohmann::json state = {
      {"format_version", kCheckpointFormatVersion}, {"step", 42}, {"state", run.ToJson()}};
  Write(dir, "manifest.json", 2, manifest.dump(1) + "\n#state.json\n" + state.dump(1) + "\n");

  // The work ledger with groups in every state: pending, leased, completed and lost.
  ManualClock clock;
  clock.Advance(std::chrono::seconds(5));
  WorkLedger ledger(LedgerOptions().set_max_attempts(1), &clock);
  for (uint64_t g = 1; g <= 6; ++g) (void)ledger.AddGroup(g);
  const auto leases = ledger.Dispatch("actor-0", 3);
  (void)ledger.Complete(leases[0].lease_id, leases[0].group_id, 0, 0);
  (void)ledger.Decline(leases[1].lease_id, leases[1].group_id, "actor-0");
  (void)ledger.Dispatch("actor-1", 1);
  Write(dir, "ledger.json", 3, ledger.ToJson());

  // A seed the readers refuse would only start the fuzzer bare.
  SegmentAssembler reload(4);
  const Status checks[] = {
      SplitRecords(buffer, "buffer.bin").status(),
      reload.LoadRecords(partials, "partials.bin"),
      ParseCheckpointManifest(manifest.dump(1), "manifest.json").status(),
      ParseCheckpointState(state.dump(1), "state.json", manifest["step"]).status(),
      RunState::FromJson(state["state"], "state.json").status(),
      WorkLedger::FromJson(ledger.ToJson(), LedgerOptions(), &clock).status()};
  for (const Status& st : checks) {
    if (st.ok()) continue;
    std::fprintf(stderr, "%s\n", st.ToString().c_str());
    return 1;
  }
  if (reload.groups() != 2) {
    std::fprintf(stderr, "partials.bin: %zu groups, not 2\n", reload.groups());
    return 1;
  }
  return 0;
}
