// An actor that is handed work its model cannot make (only a misbehaving or mismatched learner
// sends it: a real learner refuses such prompts before leasing them) declines that one lease and
// generates the rest. A real actor (RunActor, a tiny model on disk, a built-in reward) against the
// learner's real transport: ZeroMQ sockets, published weights, work batches and trajectories.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <thread>

#include "actors/actor.h"
#include "apps/run_config.h"
#include "core/proto/wire.pb.h"  // IWYU pragma: keep
#include "core/security.h"
#include "core/wire.h"
#include "learner/learner_transport.h"
#include "model/decoder.h"
#include "model/model_init.h"
#include "model/model_io.h"

namespace chainrl::actors {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr int64_t kContext = 64;  // the tiny model's max_position_embeddings

wire::WorkItem Item(uint64_t lease, uint64_t group, int prompt_tokens, uint32_t budget) {
  wire::WorkItem item;
  item.set_prompt_group_id(group);
  item.set_lease_id(lease);
  item.set_example_id("example-" + std::to_string(group));
  for (int i = 0; i < prompt_tokens; ++i)
    item.add_prompt_token_ids(static_cast<uint32_t>(97 + i % 26));
  item.set_token_budget(budget);
  item.set_group_size(2);
  item.set_policy_version(0);
  item.mutable_sampling()->set_temperature(1.0f);
  item.mutable_sampling()->set_top_p(1.0f);
  item.mutable_sampling()->set_seed(7);
  item.mutable_sampling()->set_repetition_penalty(1.0f);
  item.set_answer_json("null");
  return item;
}

// A one-layer model with the byte tokenizer and a 64-position context at `path`.
::testing::AssertionResult MakeTinyModel(const fs::path& path) {
  model::InitModelSpec spec;
  spec.layers = 1;
  spec.hidden = 32;
  spec.heads = 2;
  spec.intermediate = 64;
  spec.max_position = kContext;
  spec.tokenizer = "bytes";
  auto made = model::InitModelDir(spec, path.string());
  if (!made.ok()) return ::testing::AssertionFailure() << made.status().ToString();
  return ::testing::AssertionSuccess();
}

TEST(CheckWorkItemTest, SaysWhyAnItemCannotBeMade) {
  EXPECT_TRUE(CheckWorkItem(Item(1, 1, 10, 8), kContext, 300).ok());
  EXPECT_TRUE(CheckWorkItem(Item(1, 1, 56, 8), kContext, 300).ok());  // exactly the context
  const Status too_long = CheckWorkItem(Item(1, 1, 57, 8), kContext, 300);
  EXPECT_EQ(too_long.message(),
            "a prompt of 57 tokens and up to 8 new tokens exceed the model's context of 64 "
            "positions (max_position_embeddings)");
  const Status empty = CheckWorkItem(Item(1, 1, 0, 8), kContext, 300);
  EXPECT_EQ(empty.message(), "the prompt has no tokens");
  wire::WorkItem oov = Item(1, 1, 4, 8);
  oov.set_prompt_token_ids(2, 300);
  EXPECT_EQ(CheckWorkItem(oov, kContext, 300).message(),
            "prompt token id 300 is outside the model's vocabulary [0, 300)");
  wire::WorkItem carried = Item(1, 1, 4, 8);
  carried.add_carried()->mutable_segment()->add_token_ids(1000);
  EXPECT_EQ(CheckWorkItem(carried, kContext, 300).message(),
            "carried token id 1000 is outside the model's vocabulary [0, 300)");
  wire::WorkItem embedded = Item(1, 1, 4, 8);
  embedded.set_prompt_embeddings("img.safetensors#pixels");
  embedded.set_placeholder_token_id(5);
  EXPECT_EQ(CheckWorkItem(embedded, kContext, 300).message(),
            "prompt embeddings: the prompt has no placeholder token 5");
}

TEST(ActorDeclineTest, AnItemTooLongForTheModelIsDeclinedAloneAndTheRestIsGenerated) {
  const fs::path dir =
      fs::temp_directory_path() / ("chainrl_actor_decline_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir / "run");
  ASSERT_TRUE(MakeTinyModel(dir / "model"));
  const std::string toml = "[model]\npath = \"" + (dir / "model").string() +
                           "\"\n[actors]\ncredits = 2\n"
                           "[[rewards]]\nname = \"len\"\nkind = \"length\"\n"
                           "options = { target_tokens = 4, max_tokens = 8 }\n";
  auto config = ParseConfig(toml, "decline.toml", {});
  ASSERT_TRUE(config.ok()) << config.status().ToString();

  // The learner's side: its real endpoints, and the model's weights published as version 0.
  auto transport = learner::LearnerTransport::Open("ipc://", (dir / "run").string(),
                                                   transport::LearnerSecurity{});
  ASSERT_TRUE(transport.ok()) << transport.status().ToString();
  auto mo = model::ModelOptionsFromConfig(*config, model::ModelRole::kInference);
  ASSERT_TRUE(mo.ok()) << mo.status().ToString();
  auto policy = model::LoadModel((dir / "model").string(), *mo);
  ASSERT_TRUE(policy.ok()) << policy.status().ToString();
  ASSERT_TRUE((*transport)->PublishWeights(**policy, 0).ok());

  ActorOptions options;
  options.endpoints = (*transport)->endpoints();
  options.run_dir = (dir / "run").string();
  std::atomic<bool> stop{false};
  Status actor_status;
  std::thread actor([&] { actor_status = RunActor(*config, options, stop); });

  // Wait for the actor's credits, then hand it one item it can make and one 6 tokens too long.
  std::string peer;
  bool sent = false;
  std::map<uint64_t, wire::Trajectory> results;
  std::vector<wire::WorkDeclined> declined;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < until && (results.empty() || declined.empty())) {
    auto msg = (*transport)->work().Receive(milliseconds(20));
    ASSERT_TRUE(msg.ok()) << msg.status().ToString();
    if (*msg && (*msg)->envelope.has_work_request() && !sent) {
      peer = (*msg)->peer;
      wire::Envelope batch = wire::MakeEnvelope("learner");
      *batch.mutable_work_batch()->add_items() = Item(11, 1, 20, 8);
      *batch.mutable_work_batch()->add_items() = Item(12, 2, 62, 8);
      ASSERT_TRUE((*transport)->work().SendTo(peer, batch).ok());
      sent = true;
    }
    if (*msg && (*msg)->envelope.has_work_declined()) {
      declined.push_back((*msg)->envelope.work_declined());
      EXPECT_EQ((*msg)->envelope.sender(), "actor-0");
    }
    auto traj = (*transport)->trajectories().Receive(milliseconds(0));
    ASSERT_TRUE(traj.ok()) << traj.status().ToString();
    if (*traj && (*traj)->envelope.has_trajectory())
      results[(*traj)->envelope.trajectory().lease_id()] = (*traj)->envelope.trajectory();
  }
  stop = true;
  actor.join();
  EXPECT_TRUE(actor_status.ok()) << actor_status.ToString();

  ASSERT_EQ(declined.size(), 1u);
  EXPECT_EQ(declined[0].lease_id(), 12u);
  EXPECT_EQ(declined[0].prompt_group_id(), 2u);
  EXPECT_EQ(declined[0].reason(),
            "a prompt of 62 tokens and up to 8 new tokens exceed the model's context of 64 "
            "positions (max_position_embeddings)");
  // The other item was generated and scored as usual: both samples, each with tokens.
  ASSERT_EQ(results.size(), 1u);
  ASSERT_EQ(results.count(11), 1u);
  const wire::Trajectory& t = results[11];
  EXPECT_EQ(t.prompt_group_id(), 1u);
  ASSERT_EQ(t.samples_size(), 2);
  for (const auto& s : t.samples()) {
    EXPECT_GE(s.completion().token_ids_size(), 1);
    EXPECT_LE(s.completion().token_ids_size(), 8);
  }
  fs::remove_all(dir);
}

// LoRA: the learner publishes adapters alone. An actor whose [lora] matches takes them and asks for
// work; one whose rank differs refuses the weights, says why, and never asks for work (so it never
// samples its base policy in place of the learner's). A real actor against the real transport.
TEST(ActorLoraTest, AnActorWhoseAdaptersDoNotMatchTheLearnersRefusesToGenerate) {
  const fs::path dir =
      fs::temp_directory_path() / ("chainrl_actor_lora_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  ASSERT_TRUE(MakeTinyModel(dir / "model"));
  for (const int64_t actor_rank : {4, 8}) {
    SCOPED_TRACE("actor rank " + std::to_string(actor_rank) + ", learner rank 4");
    const fs::path run = dir / ("run" + std::to_string(actor_rank));
    fs::create_directories(run);
    const std::string toml = "[model]\npath = \"" + (dir / "model").string() +
                             "\"\n[lora]\nenabled = true\ntargets = [\"q_proj\", \"down_proj\"]\n"
                             "rank = " +
                             std::to_string(actor_rank) +
                             "\n[[rewards]]\nname = \"len\"\nkind = \"length\"\n"
                             "options = { target_tokens = 4, max_tokens = 8 }\n";
    auto config = ParseConfig(toml, "lora.toml", {});
    ASSERT_TRUE(config.ok()) << config.status().ToString();
    auto transport =
        learner::LearnerTransport::Open("ipc://", run.string(), transport::LearnerSecurity{});
    ASSERT_TRUE(transport.ok()) << transport.status().ToString();
    auto mo = model::ModelOptionsFromConfig(*config, model::ModelRole::kInference);
    ASSERT_TRUE(mo.ok());
    auto policy = model::LoadModel((dir / "model").string(), *mo);
    ASSERT_TRUE(policy.ok()) << policy.status().ToString();
    model::LoraOptions lo;
    lo.targets = {"q_proj", "down_proj"};
    lo.rank = 4;
    ASSERT_TRUE((*policy)->AttachLora(lo, 9).ok());
    ASSERT_TRUE((*transport)->PublishWeights(**policy, 0).ok());

    ActorOptions options;
    options.endpoints = (*transport)->endpoints();
    options.run_dir = run.string();
    std::atomic<bool> stop{false}, done{false};
    Status actor_status;
    std::thread actor([&] {
      actor_status = RunActor(*config, options, stop);
      done = true;
    });
    bool asked = false;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < until && !done && !asked) {
      auto msg = (*transport)->work().Receive(milliseconds(20));
      ASSERT_TRUE(msg.ok()) << msg.status().ToString();
      asked = *msg && (*msg)->envelope.has_work_request();
    }
    stop = true;
    actor.join();
    if (actor_rank == 4) {
      EXPECT_TRUE(asked) << "the matching actor never asked for work";
      EXPECT_TRUE(actor_status.ok()) << actor_status.ToString();
    } else {
      EXPECT_FALSE(asked) << "an actor with other adapters asked for work";
      EXPECT_EQ(actor_status.code(), StatusCode::kInvalidArgument) << actor_status.ToString();
      EXPECT_NE(actor_status.message().find("LoRA adapters of format"), std::string::npos)
          << actor_status.ToString();
      EXPECT_NE(actor_status.message().find("LoRA rank, targets or scale"), std::string::npos)
          << actor_status.ToString();
    }
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace chainrl::actors
