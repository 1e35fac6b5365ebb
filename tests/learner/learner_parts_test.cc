// Tests for the learner process's parts on a tiny model written to disk: prompt inputs (tokens
// rendered once per example, SFT examples, the embedding placeholder refused when unset), the
// transport (endpoints file, weights an actor's client fetches byte for byte, garbage counted as
// rejected), the held-out evaluation's record, and the rank-0 side of an update with one process.
#include <gtest/gtest.h>

#include <unistd.h>
#include <chrono>
#include <thread>

#include <filesystem>
#include <fstream>
#include <optional>
#include <zmq.hpp>

#include "apps/run_config.h"
#include "core/endpoints.h"
#include "learner/group_source.h"
#include "learner/held_out_eval.h"
#include "learner/learner_transport.h"
#include "learner/policy_trainer.h"
#include "learner/prompt_inputs.h"
#include "model/flat_weights.h"
#include "model/model_init.h"
#include "rewards/reward_config.h"

namespace chainrl::learner {
namespace {

namespace fs = std::filesystem;

std::string TempDir(const std::string& name) {
  const fs::path d =
      fs::temp_directory_path() / ("chainrl_learner_parts_" + std::to_string(::getpid()) + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

std::string ModelDir() {
  static const std::string dir = [] {
    const std::string d = TempDir("_model");
    model::InitModelSpec spec;
    spec.layers = 1;
    spec.hidden = 32;
    spec.heads = 2;
    spec.intermediate = 64;
    spec.tokenizer = "bytes";
    EXPECT_TRUE(model::InitModelDir(spec, d).ok());
    return d;
  }();
  return dir;
}

Config RunConfig(const std::string& extra = "") {
  auto c = ParseConfig("[model]\npath = \"" + ModelDir() +
                           "\"\n[data]\ntask = \"arithmetic\"\nnum_train_examples = 8\n"
                           "num_eval_examples = 3\n[rollout]\nmax_new_tokens = 6\n"
                           "[[rewards]]\nname = \"short\"\nkind = \"length\"\n"
                           "options = { target_tokens = 4, max_tokens = 6 }\n" +
                           extra,
                       "t.toml");
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return *c;
}

TEST(PromptInputsTest, RendersEachExampleOnceAndBuildsSftExamples) {
  const Config c = RunConfig();
  auto data = GroupSource::Load(c);
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  auto p = PromptInputs::Create(c);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  PromptInputs& in = **p;
  EXPECT_EQ(in.tokenizer_dir(), ModelDir());
  bool hit = true;
  auto first = in.Tokens(2, data->train()[2], &hit);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_FALSE(hit);
  auto direct = in.renderer().Render(data->train()[2]);
  ASSERT_TRUE(direct.ok());
  EXPECT_EQ(**first, *direct);
  auto again = in.Tokens(2, data->train()[2], &hit);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(hit);
  EXPECT_EQ(*again, *first) << "the cached vector itself";
  EXPECT_EQ(in.cached_prompts(), 1u);

  auto sft = in.SftExamples(data->train(), {0, 3});
  ASSERT_TRUE(sft.ok()) << sft.status().ToString();
  ASSERT_EQ(sft->size(), 2u);
  EXPECT_EQ((*sft)[1].prompt, *in.renderer().Render(data->train()[3]));
  EXPECT_EQ((*sft)[1].response, *in.renderer().EncodeResponse(SftResponse(data->train()[3])));
  std::vector<data::Example> bare = {data->train()[0]};
  bare[0].solution.clear();
  bare[0].answer = 5;
  auto none = in.SftExamples(bare, {0});
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("no solution to imitate"), std::string::npos)
      << none.status().message();

  // Without embeddings in the data there is nothing to set up; with them an unset placeholder is
  // refused naming the key.
  EXPECT_TRUE(in.SetupEmbeddings(c, nullptr, 32, nullptr).ok());
  EXPECT_EQ(in.embeddings(), nullptr);
  EXPECT_EQ(in.placeholder_id(), -1);
  data::Example with = data->train()[0];
  with.embeddings = "e.safetensors#x";
  with.source = "train.jsonl:4";
  // data.embedding_placeholder defaults to "".
  Status st = in.SetupEmbeddings(c, &with, 32, nullptr);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("data.embedding_placeholder"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("train.jsonl:4"), std::string::npos) << st.message();
}

TEST(LearnerTransportTest, WritesEndpointsPublishesWeightsAndCountsGarbage) {
  const std::string run = TempDir("_transport");
  auto t = LearnerTransport::Open("ipc://", run, {});
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  auto ep = ReadEndpointsFile(run + "/endpoints.json");
  ASSERT_TRUE(ep.ok()) << ep.status().ToString();
  EXPECT_EQ(ep->work, "ipc://" + fs::absolute(run).string() + "/learner.work");
  EXPECT_EQ(ep->trajectories, (*t)->endpoints().trajectories);
  EXPECT_EQ(ep->weights, (*t)->endpoints().weights);

  const Config c = RunConfig();
  auto trainer = PolicyTrainer::Create(c, nullptr);
  ASSERT_TRUE(trainer.ok());
  ASSERT_TRUE((*trainer)->LoadPolicy().ok());
  auto& model = (*trainer)->model();
  auto seconds = (*t)->PublishWeights(model, 7);
  ASSERT_TRUE(seconds.ok()) << seconds.status().ToString();
  EXPECT_GE(*seconds, 0.0);
  transport::Context ctx(1);
  auto client = transport::WeightsClient::Connect(ctx, ep->weights);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto announce = (*client)->PollAnnounce(std::chrono::milliseconds(5000));
  ASSERT_TRUE(announce.ok() && announce->has_value());
  EXPECT_EQ((*announce)->version(), 7);
  auto got = (*client)->Fetch(**announce);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  std::vector<uint8_t> want(model::FlatWeightsBytes(model, model.options().ComputeDtype()));
  model::PackFlatWeights(model, want.data(), model.options().ComputeDtype());
  ASSERT_EQ(got->bytes.size(), want.size());
  EXPECT_TRUE(std::equal(want.begin(), want.end(), got->bytes.begin()));
  // The server counts a chunk once its send returns, which may be just after the client has it.
  for (int i = 0; i < 200 && (*t)->weights_bytes_sent() < want.size(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_GE((*t)->weights_bytes_sent(), want.size());

  // Bytes that are no envelope, pushed at the trajectory sink: refused and counted.
  EXPECT_EQ((*t)->RejectedTotal(), 0u);
  zmq::context_t zctx;
  zmq::socket_t push(zctx, zmq::socket_type::push);
  push.set(zmq::sockopt::linger, 1000);
  push.connect(ep->trajectories);
  push.send(zmq::buffer(std::string("not a protobuf envelope")), zmq::send_flags::none);
  for (int i = 0; i < 100 && (*t)->RejectedTotal() == 0; ++i) {
    auto m = (*t)->trajectories().Receive(std::chrono::milliseconds(50));
    ASSERT_TRUE(m.ok());
    EXPECT_FALSE(m->has_value());
  }
  EXPECT_EQ((*t)->RejectedTotal(), 1u);
}

// A trajectory whose token id lies outside the policy's vocabulary is refused at the socket and
// counted as invalid; the same trajectory inside it arrives.
TEST(LearnerTransportTest, OutOfVocabularyTokensAreRefusedAtTheSocket) {
  const std::string run = TempDir("_vocab");
  auto t = LearnerTransport::Open("ipc://", run, {}, 300);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  transport::Context ctx(1);
  transport::ChannelOptions co;
  co.name = "rogue";
  auto push = transport::Channel::Open(ctx, transport::ChannelKind::kTrajectorySource,
                                       (*t)->endpoints().trajectories, co);
  ASSERT_TRUE(push.ok()) << push.status().ToString();
  auto send = [&](uint32_t token) {
    wire::Envelope e = wire::MakeEnvelope("rogue");
    wire::Trajectory* tr = e.mutable_trajectory();
    tr->set_prompt_group_id(3);
    tr->set_lease_id(5);
    tr->set_actor_id("rogue");
    wire::Sample* s = tr->add_samples();
    s->set_finish_reason(wire::FINISH_STOP);
    s->mutable_completion()->add_token_ids(7);
    s->mutable_completion()->add_token_ids(token);
    s->mutable_completion()->add_behaviour_logprobs(-0.5f);
    s->mutable_completion()->add_behaviour_logprobs(-0.5f);
    const std::vector<int64_t> versions = {0, 0};
    *s->mutable_completion()->mutable_policy_versions() = wire::CompressPolicyVersions(versions);
    ASSERT_TRUE((*push)->Send(e).ok());
  };
  auto receive = [&]() -> std::optional<transport::Received> {
    for (int i = 0; i < 100; ++i) {
      auto m = (*t)->trajectories().Receive(std::chrono::milliseconds(50));
      EXPECT_TRUE(m.ok());
      if (m.ok() && m->has_value()) return std::move(**m);
      if ((*t)->RejectedTotal() > 0) return std::nullopt;
    }
    return std::nullopt;
  };
  send(299);
  auto ok = receive();
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->envelope.trajectory().samples(0).completion().token_ids(1), 299u);
  send(300);
  EXPECT_FALSE(receive().has_value());
  EXPECT_EQ((*t)->Rejected(wire::RejectReason::kInvalid), 1u);
}

TEST(HeldOutEvalTest, RecordCarriesTheEvaluationsFigures) {
  const Config c = RunConfig();
  auto data = GroupSource::Load(c);
  ASSERT_TRUE(data.ok());
  auto p = PromptInputs::Create(c);
  ASSERT_TRUE(p.ok());
  auto pool = rewards::CreateRewardPool(c);
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  auto trainer = PolicyTrainer::Create(c, nullptr);
  ASSERT_TRUE(trainer.ok());
  ASSERT_TRUE((*trainer)->LoadPolicy().ok());
  auto j = EvaluateHeldOut(c, (*trainer)->model(), **p, **pool, data->eval(), "after_sft", 5);
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  EXPECT_EQ((*j)["label"], "after_sft");
  EXPECT_EQ((*j)["step"], 5);
  EXPECT_EQ((*j)["examples"], 3);
  // A random model rarely stops within 6 tokens; whatever it does, the figures are in range.
  const double len = (*j)["mean_length"].get<double>();
  EXPECT_GT(len, 0.0);
  EXPECT_LE(len, 6.0);
  EXPECT_GE((*j)["truncated_fraction"].get<double>(), 0.0);
  EXPECT_LE((*j)["truncated_fraction"].get<double>(), 1.0);
  EXPECT_GE((*j)["mean_reward"].get<double>(), 0.0);
  EXPECT_LE((*j)["mean_reward"].get<double>(), 1.0);
  EXPECT_TRUE((*j)["seconds"].is_number());
}

}  // namespace
}  // namespace chainrl::learner
