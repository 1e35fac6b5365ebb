// The rollout engine on a small random model: cached generation equals recomputation, seeded
// samples do not depend on their batch, behaviour logprobs equal the learner's recomputation,
// stop strings, budgets, group prefix sharing (also for members admitted later), continuous
// batching, carried-over segments and steps ending at an occupancy floor.
#include "rollout/engine.h"
#include "tests/model/tiny_model.h"

#include <gtest/gtest.h>

#include <cmath>

namespace chainrl::rollout {
namespace {

using chainrl::testing::TinyModel;

GenerationRequest Req(std::string id, std::vector<int32_t> prompt, int64_t max_new, uint64_t seed,
                      double temperature = 1.0) {
  GenerationRequest r;
  r.id = std::move(id);
  r.prompt = std::move(prompt);
  r.max_new_tokens = max_new;
  r.sampling.seed = seed;
  r.sampling.temperature = temperature;
  return r;
}

EngineOptions Opts(int64_t max_batch = 4) {
  EngineOptions o;
  o.max_batch = max_batch;
  o.max_seq_len = 128;
  o.repetition_detection = false;
  return o;
}

// Calls Generate with the unfinished requests until none is left (at most `max_calls` calls), each
// continuation carrying the tokens generated so far: every request's tokens and logprobs, and its
// new tokens per call.
struct CarriedRun {
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::vector<float>> logprobs;
  std::vector<std::vector<size_t>> per_call;
  std::vector<bool> done;
};
CarriedRun RunCarryingOver(RolloutEngine& engine, std::vector<GenerationRequest> cur,
                           int max_calls) {
  CarriedRun run;
  run.tokens.resize(cur.size());
  run.logprobs.resize(cur.size());
  run.per_call.resize(cur.size());
  run.done.assign(cur.size(), false);
  for (int call = 0; call < max_calls; ++call) {
    std::vector<GenerationRequest> todo;
    std::vector<size_t> which;
    for (size_t i = 0; i < cur.size(); ++i)
      if (!run.done[i]) {
        todo.push_back(cur[i]);
        which.push_back(i);
      }
    if (todo.empty()) break;
    auto res = engine.Generate(todo);
    EXPECT_TRUE(res.ok()) << res.status().ToString();
    if (!res.ok()) break;
    for (size_t j = 0; j < todo.size(); ++j) {
      const size_t i = which[j];
      const auto& r = (*res)[j];
      run.tokens[i].insert(run.tokens[i].end(), r.tokens.begin(), r.tokens.end());
      run.logprobs[i].insert(run.logprobs[i].end(), r.logprobs.begin(), r.logprobs.end());
      run.per_call[i].push_back(r.tokens.size());
      cur[i].carried = run.tokens[i];
      run.done[i] = r.finish != FinishReason::kUnfinished;
    }
  }
  return run;
}

// Greedy decoding by recomputing the whole sequence every step (no cache).
std::vector<int32_t> GreedyNoCache(model::DecoderModel& m, std::vector<int32_t> seq, int n) {
  torch::NoGradGuard g;
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    auto ids =
        torch::tensor(std::vector<int64_t>(seq.begin(), seq.end()), torch::kLong).unsqueeze(0);
    auto logits = m.Logits(m.Forward(ids))[0][-1];
    int32_t t = static_cast<int32_t>(logits.argmax().item<int64_t>());
    out.push_back(t);
    seq.push_back(t);
  }
  return out;
}

TEST(EngineTest, GreedyWithCacheEqualsRecomputation) {
  auto m = TinyModel();
  RolloutEngine engine(m, Opts(3));
  std::vector<GenerationRequest> reqs = {Req("a", {1, 2, 3}, 24, 0, 0.0),
                                         Req("b", {5, 9, 11, 13, 2, 7, 7}, 24, 0, 0.0),
                                         Req("c", {40}, 24, 0, 0.0), Req("d", {3, 3}, 10, 0, 0.0)};
  auto res = engine.Generate(reqs);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ((*res)[i].tokens, GreedyNoCache(*m, reqs[i].prompt, reqs[i].max_new_tokens)) << i;
    EXPECT_EQ((*res)[i].finish, FinishReason::kLength);
  }
}

TEST(EngineTest, SeededSamplesDoNotDependOnTheBatch) {
  auto m = TinyModel();
  auto target = Req("x", {4, 8, 15, 16, 23, 42}, 30, 1234);
  RolloutEngine alone(m, Opts(1));
  auto a = alone.Generate({target});
  ASSERT_TRUE(a.ok());
  RolloutEngine crowded(m, Opts(5));
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 6; ++i)
    reqs.push_back(Req("n" + std::to_string(i), {i + 1, 2 * i + 3}, 5 + 7 * i, i));
  reqs.insert(reqs.begin() + 3, target);
  auto b = crowded.Generate(reqs);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*a)[0].tokens, (*b)[3].tokens);
  ASSERT_EQ((*a)[0].logprobs.size(), (*b)[3].logprobs.size());
  for (size_t t = 0; t < (*a)[0].logprobs.size(); ++t)
    EXPECT_NEAR((*a)[0].logprobs[t], (*b)[3].logprobs[t], 1e-5);
  auto again = crowded.Generate(reqs);
  EXPECT_EQ((*again)[3].tokens, (*b)[3].tokens);
}

TEST(EngineTest, BehaviourLogprobsMatchLearnerRecomputation) {
  auto m = TinyModel(2);
  EngineOptions o = Opts(4);
  o.compute_entropy = true;
  RolloutEngine engine(m, o);
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 4; ++i) {
    reqs.push_back(Req("r" + std::to_string(i), {i + 1, 7, 9}, 40, 99 + i, 0.7 + 0.2 * i));
    reqs.back().sampling.top_k = i == 1 ? 10 : 0;
    reqs.back().sampling.top_p = i == 2 ? 0.9 : 1.0;
  }
  auto res = engine.Generate(reqs);
  ASSERT_TRUE(res.ok());
  torch::NoGradGuard g;
  double max_diff = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    std::vector<int64_t> seq(reqs[i].prompt.begin(), reqs[i].prompt.end());
    seq.insert(seq.end(), (*res)[i].tokens.begin(), (*res)[i].tokens.end());
    auto logits = m->Logits(m->Forward(torch::tensor(seq, torch::kLong).unsqueeze(0)))[0];
    auto logp = torch::log_softmax(logits / reqs[i].sampling.temperature, -1);
    const int64_t p = static_cast<int64_t>(reqs[i].prompt.size());
    for (size_t t = 0; t < (*res)[i].tokens.size(); ++t) {
      double want = logp[p - 1 + static_cast<int64_t>(t)][(*res)[i].tokens[t]].item<float>();
      max_diff = std::max(max_diff, std::abs(want - (*res)[i].logprobs[t]));
      double h =
          -(logp[p - 1 + static_cast<int64_t>(t)].exp() * logp[p - 1 + static_cast<int64_t>(t)])
               .sum()
               .item<float>();
      EXPECT_NEAR((*res)[i].entropy[t], h, 1e-4);
    }
  }
  EXPECT_LE(max_diff, 1e-4);
}

TEST(EngineTest, StopStringsAcrossTokensEosAndBudgets) {
  auto m = TinyModel(3);
  EngineOptions o = Opts(2);
  o.token_bytes = [](int32_t t) { return std::string(1, static_cast<char>('A' + t % 26)) + "."; };
  RolloutEngine engine(m, o);
  auto base = engine.Generate({Req("s", {1, 2}, 12, 7, 0.0)});
  ASSERT_TRUE(base.ok());
  const auto& toks = (*base)[0].tokens;
  // A stop string made of the tail of token 3 and the whole of token 4 ("X." + "Y" -> ".Y").
  auto req = Req("s", {1, 2}, 12, 7, 0.0);
  req.stop_strings = {"." + o.token_bytes(toks[4]).substr(0, 1)};
  // Earlier tokens may already contain that text; find where it first appears.
  std::string text;
  size_t first_end = 0, first_at = 0;
  for (size_t i = 0; i < toks.size(); ++i) {
    text += o.token_bytes(toks[i]);
    auto at = text.find(req.stop_strings[0]);
    if (at != std::string::npos) {
      first_end = i + 1;
      first_at = at;
      break;
    }
  }
  ASSERT_GT(first_end, 0u);
  auto stopped = engine.Generate({req});
  ASSERT_TRUE(stopped.ok());
  EXPECT_EQ((*stopped)[0].finish, FinishReason::kStop);
  EXPECT_EQ((*stopped)[0].tokens, std::vector<int32_t>(toks.begin(), toks.begin() + first_end));
  EXPECT_EQ((*stopped)[0].stop_text_bytes, static_cast<int64_t>(first_at));
  // EOS: the 6th greedy token as end-of-sequence.
  o.token_bytes = nullptr;
  o.eos_token_ids = {toks[5]};
  RolloutEngine eos_engine(m, o);
  auto eos = eos_engine.Generate({Req("s", {1, 2}, 12, 7, 0.0)});
  size_t first_eos = std::find(toks.begin(), toks.end(), toks[5]) - toks.begin();
  EXPECT_EQ((*eos)[0].finish, FinishReason::kStop);
  EXPECT_EQ((*eos)[0].tokens.size(), first_eos + 1);
  // Budget below max_new_tokens.
  auto b = Req("s", {1, 2}, 12, 7, 0.0);
  b.budget_tokens = 4;
  auto budget = engine.Generate({b});
  EXPECT_EQ((*budget)[0].finish, FinishReason::kBudget);
  EXPECT_EQ((*budget)[0].tokens.size(), 4u);
}

TEST(EngineTest, GroupPrefixIsPrefilledOnce) {
  auto m = TinyModel(4);
  std::vector<int32_t> prompt(40);
  for (int i = 0; i < 40; ++i) prompt[i] = (i * 7) % 64;
  std::vector<GenerationRequest> group;
  for (int g = 0; g < 8; ++g) group.push_back(Req("g" + std::to_string(g), prompt, 10, 500 + g));
  RolloutEngine shared(m, Opts(8));
  auto a = shared.Generate(group);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(shared.stats().prefill_tokens, 40);
  EngineOptions o = Opts(8);
  o.share_prefix = false;
  RolloutEngine separate(m, o);
  auto b = separate.Generate(group);
  EXPECT_EQ(separate.stats().prefill_tokens, 8 * 40);
  for (size_t g = 0; g < group.size(); ++g) {
    EXPECT_EQ((*a)[g].tokens, (*b)[g].tokens) << g;
    for (size_t t = 0; t < (*a)[g].logprobs.size(); ++t)
      EXPECT_NEAR((*a)[g].logprobs[t], (*b)[g].logprobs[t], 1e-5);
  }
}

// Six samples of one group and another prompt on two slots: the group's members are admitted at
// different times, and those admitted after the first prefill take its held prompt KV and
// first-token logits instead of prefilling the prompt again. The tokens and logprobs are those of
// every sample prefilling its own prompt. No hold when it does not fit its bound, or when the
// weights change between forwards (the held KV belongs to the earlier weights).
TEST(EngineTest, GroupMembersAdmittedLaterTakeTheHeldPromptKv) {
  auto m = TinyModel(4);
  std::vector<int32_t> prompt(40);
  for (int i = 0; i < 40; ++i) prompt[i] = (i * 7) % 64;
  std::vector<GenerationRequest> reqs;
  for (int g = 0; g < 6; ++g) {
    reqs.push_back(Req("g" + std::to_string(g), prompt, 3 + 2 * g, 500 + g));
    if (g == 1) reqs.push_back(Req("x", {5, 6, 7}, 6, 77));
  }
  EngineOptions separate_opts = Opts(2);
  separate_opts.share_prefix = false;
  RolloutEngine separate(m, separate_opts);
  auto want = separate.Generate(reqs);
  ASSERT_TRUE(want.ok());
  EXPECT_EQ(separate.stats().prefill_tokens, 6 * 40 + 3);

  auto check_same = [&](const std::vector<GenerationResult>& got, const std::string& what) {
    for (size_t i = 0; i < reqs.size(); ++i) {
      EXPECT_EQ(got[i].tokens, (*want)[i].tokens) << what << " " << reqs[i].id;
      ASSERT_EQ(got[i].logprobs.size(), (*want)[i].logprobs.size());
      for (size_t t = 0; t < got[i].logprobs.size(); ++t)
        EXPECT_NEAR(got[i].logprobs[t], (*want)[i].logprobs[t], 1e-5) << what << " " << reqs[i].id;
    }
  };
  RolloutEngine held(m, Opts(2));
  auto a = held.Generate(reqs);
  ASSERT_TRUE(a.ok());
  check_same(*a, "held");
  EXPECT_EQ(held.stats().prefill_tokens, 40 + 3) << "the group's prompt is prefilled once";
  EXPECT_EQ(held.stats().prompt_reused, 4) << "g0 and g1 share a prefill; g2..g5 take it held";
  EXPECT_EQ(held.stats().prompt_prefills, 2) << "the group's prompt and x's";
  EXPECT_EQ(held.stats().prompt_shared, 5) << "g1 with g0's prefill, g2..g5 from the held KV";

  EngineOptions tiny = Opts(2);
  tiny.prompt_hold_bytes = 64;  // smaller than one prompt's KV
  RolloutEngine unheld(m, tiny);
  auto b = unheld.Generate(reqs);
  ASSERT_TRUE(b.ok());
  check_same(*b, "64-byte bound");
  EXPECT_EQ(unheld.stats().prompt_reused, 0);
  EXPECT_EQ(unheld.stats().prompt_prefills + unheld.stats().prompt_shared, 7);
  EXPECT_GE(unheld.stats().prompt_prefills, 4);
  EXPECT_GE(unheld.stats().prefill_tokens, 3 * 40 + 3);

  EngineOptions swapping = Opts(2);
  int64_t version = 0;
  swapping.between_steps = [&]() -> Result<int64_t> { return ++version; };
  RolloutEngine swapped(m, swapping);
  auto c = swapped.Generate(reqs);
  ASSERT_TRUE(c.ok());
  check_same(*c, "versions changing");  // the same weights, reported as new versions
  EXPECT_EQ(swapped.stats().prompt_reused, 0);
}

TEST(EngineTest, ContinuousAndStaticBatchingAgree) {
  auto m = TinyModel(5);
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 10; ++i)
    reqs.push_back(Req("q" + std::to_string(i), {i + 1, i + 2, 3}, 2 + (i * 5) % 17, 70 + i));
  RolloutEngine cont(m, Opts(3));
  auto a = cont.Generate(reqs);
  EngineOptions o = Opts(3);
  o.continuous_batching = false;
  RolloutEngine stat(m, o);
  auto b = stat.Generate(reqs);
  ASSERT_TRUE(a.ok() && b.ok());
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ((*a)[i].tokens.size(), static_cast<size_t>(reqs[i].max_new_tokens));
    EXPECT_EQ((*a)[i].tokens, (*b)[i].tokens) << i;
  }
  // Continuous batching keeps slots busier: fewer decode steps for the same tokens.
  EXPECT_LT(cont.stats().decode_steps, stat.stats().decode_steps);
}

TEST(EngineTest, SegmentsContinueExactlyWhereTheyStopped) {
  auto m = TinyModel(6);
  std::vector<GenerationRequest> full = {Req("u", {9, 8, 7}, 23, 31), Req("v", {1}, 17, 32)};
  RolloutEngine whole(m, Opts(2));
  auto want = whole.Generate(full);
  ASSERT_TRUE(want.ok());
  for (bool invalidate : {false, true}) {
    RolloutEngine seg(m, Opts(2));
    std::vector<GenerationRequest> cur = full;
    for (auto& r : cur) r.segment_tokens = 5;
    std::vector<std::vector<int32_t>> got(2);
    std::vector<std::vector<float>> lps(2);
    for (int step = 0; step < 10; ++step) {
      std::vector<GenerationRequest> todo;
      std::vector<size_t> which;
      for (size_t i = 0; i < cur.size(); ++i)
        if (cur[i].carried.size() < static_cast<size_t>(cur[i].max_new_tokens) &&
            (got[i].empty() || got[i].size() % 5 == 0)) {
          todo.push_back(cur[i]);
          which.push_back(i);
        }
      if (todo.empty()) break;
      auto res = seg.Generate(todo);
      ASSERT_TRUE(res.ok()) << res.status().ToString();
      bool all_done = true;
      for (size_t j = 0; j < todo.size(); ++j) {
        size_t i = which[j];
        got[i].insert(got[i].end(), (*res)[j].tokens.begin(), (*res)[j].tokens.end());
        lps[i].insert(lps[i].end(), (*res)[j].logprobs.begin(), (*res)[j].logprobs.end());
        cur[i].carried = got[i];
        if ((*res)[j].finish == FinishReason::kUnfinished)
          all_done = false;
        else
          cur[i].carried.assign(static_cast<size_t>(cur[i].max_new_tokens), 0);  // finished
      }
      if (invalidate) seg.InvalidateKeptKv();  // as after a weight update: prefill again
      if (all_done) break;
    }
    for (size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(got[i], (*want)[i].tokens) << "request " << i << " invalidate " << invalidate;
      for (size_t t = 0; t < lps[i].size() && t < (*want)[i].logprobs.size(); ++t)
        EXPECT_NEAR(lps[i][t], (*want)[i].logprobs[t], 1e-4);
    }
    if (invalidate) {
      EXPECT_EQ(seg.stats().resumed, 0);
      EXPECT_GT(seg.stats().reprefilled, 0);
    } else {
      EXPECT_GT(seg.stats().resumed, 0);
      EXPECT_EQ(seg.stats().reprefilled, 0);
    }
  }
}

// Segmented samples on four slots with an occupancy floor of 1: once a sample finishes and nothing
// waits, the call ends and the busy samples carry over with their KV kept (fewer new tokens than
// their segment), instead of idling the freed slot while they finish their segments. The floor is
// relative to the call's peak, so a call of three resumed samples runs until one of them ends.
// Tokens equal one uninterrupted generation; a request without segment_tokens is never cut.
TEST(EngineTest, StepsEndAtTheOccupancyFloorAndContinueExactly) {
  auto m = TinyModel(6);
  std::vector<GenerationRequest> full = {Req("a", {9, 8, 7}, 4, 31), Req("b", {1}, 30, 32),
                                         Req("c", {4, 4}, 25, 33), Req("d", {2, 3}, 30, 34)};
  RolloutEngine whole(m, Opts(4));
  auto want = whole.Generate(full);
  ASSERT_TRUE(want.ok());

  EngineOptions o = Opts(4);
  o.segment_min_occupancy = 1.0;
  RolloutEngine seg(m, o);
  std::vector<GenerationRequest> cur = full;
  for (auto& r : cur) r.segment_tokens = 12;
  const CarriedRun run = RunCarryingOver(seg, cur, 10);
  for (size_t i = 0; i < cur.size(); ++i) {
    EXPECT_TRUE(run.done[i]) << full[i].id;
    EXPECT_EQ(run.tokens[i], (*want)[i].tokens) << full[i].id;
  }
  const auto& per_call = run.per_call;
  // Call 1: a ends after 4 tokens, b c d are cut at 4. Call 2: b c d run their 12-token segments.
  // Call 3: c ends at 25 (9 tokens), b and d are cut at 9. Call 4: b and d end at 30.
  EXPECT_EQ(per_call[0], (std::vector<size_t>{4}));
  EXPECT_EQ(per_call[1], (std::vector<size_t>{4, 12, 9, 5}));
  EXPECT_EQ(per_call[2], (std::vector<size_t>{4, 12, 9}));
  EXPECT_EQ(per_call[3], (std::vector<size_t>{4, 12, 9, 5}));
  EXPECT_EQ(seg.stats().segments_cut, 5);
  EXPECT_EQ(seg.stats().reprefilled, 0) << "cut samples resume from their kept KV";

  // A request without a segment is never cut: it runs to its end in the call.
  RolloutEngine mixed(m, o);
  std::vector<GenerationRequest> two = {full[0], full[1]};
  two[0].segment_tokens = 12;
  auto res = mixed.Generate(two);
  ASSERT_TRUE(res.ok());
  EXPECT_EQ((*res)[1].tokens, (*want)[1].tokens);
  EXPECT_EQ((*res)[1].finish, FinishReason::kLength);
  EXPECT_EQ(mixed.stats().segments_cut, 0);
}

// New weights arrive in the middle of a batch: the engine swaps them in between two decode steps
// and goes on. Tokens before the swap are those of a run without it; every token records the
// version that produced it; nothing is prefilled again; and the tokens after the swap carry the
// logprobs of the new weights reading the KV the old weights wrote (recomputed here by hand).
// More requests than slots: a sample paused at its segment end gives its slot to a waiting one.
// With a KV stash its KV is copied aside and back (no prefill again); without one, or with a
// stash too small to hold it, it is prefilled again. Tokens equal one uninterrupted generation.
TEST(EngineTest, KvStashResumesPausedSamplesWithoutPrefill) {
  auto m = TinyModel(9);
  std::vector<GenerationRequest> full;
  for (int i = 0; i < 5; ++i)
    full.push_back(Req("k" + std::to_string(i), {i + 2, 5, 1}, 18, 90 + i));
  RolloutEngine whole(m, Opts(2));
  auto want = whole.Generate(full);
  ASSERT_TRUE(want.ok());
  for (int64_t stash : {int64_t{0}, int64_t{64}, int64_t{1} << 24}) {
    EngineOptions o = Opts(2);
    o.kv_stash_bytes = stash;
    RolloutEngine seg(m, o);
    std::vector<GenerationRequest> cur = full;
    for (auto& r : cur) r.segment_tokens = 4;
    const CarriedRun run = RunCarryingOver(seg, cur, 20);
    for (size_t i = 0; i < cur.size(); ++i) {
      EXPECT_TRUE(run.done[i]) << "request " << i << " stash " << stash;
      EXPECT_EQ(run.tokens[i], (*want)[i].tokens) << "request " << i << " stash " << stash;
      ASSERT_EQ(run.logprobs[i].size(), (*want)[i].logprobs.size());
      for (size_t t = 0; t < run.logprobs[i].size(); ++t)
        EXPECT_NEAR(run.logprobs[i][t], (*want)[i].logprobs[t], 1e-4);
    }
    const auto& st = seg.stats();
    EXPECT_GT(st.evicted, 0) << "5 requests on 2 slots pause and give up slots";
    if (stash >= (int64_t{1} << 24)) {
      EXPECT_EQ(st.stashed, st.evicted);
      EXPECT_EQ(st.restored, st.stashed);
      EXPECT_EQ(st.reprefilled, 0);
    } else {
      EXPECT_EQ(st.stashed, 0) << "a 64-byte stash holds no sequence's KV";
      EXPECT_EQ(st.restored, 0);
      EXPECT_GT(st.reprefilled, 0);
    }
  }
}

TEST(EngineTest, WeightsSwapBetweenDecodeStepsWithoutRestartingTheBatch) {
  auto m = TinyModel(7);
  auto fresh = TinyModel(8);
  std::vector<GenerationRequest> reqs = {Req("p", {3, 1, 4, 1, 5}, 20, 71),
                                         Req("q", {2, 7, 1}, 16, 72)};
  RolloutEngine plain(m, Opts(2));
  auto base = plain.Generate(reqs);
  ASSERT_TRUE(base.ok());
  const int64_t base_prefill = plain.stats().prefill_tokens;

  // Keep the old weights to restore them for the reference computation.
  std::vector<torch::Tensor> old_params;
  for (auto& p : m->parameters()) old_params.push_back(p.detach().clone());
  auto load = [](model::DecoderModel& dst, const std::vector<torch::Tensor>& src) {
    torch::NoGradGuard g;
    auto ps = dst.parameters();
    for (size_t i = 0; i < ps.size(); ++i) ps[i].copy_(src[i]);
  };
  std::vector<torch::Tensor> new_params;
  for (auto& p : fresh->parameters()) new_params.push_back(p.detach().clone());

  constexpr int kSwapAtCall = 6;  // call 1: prefill + first decode; each later call: one decode
  int calls = 0;
  EngineOptions o = Opts(2);
  o.between_steps = [&]() -> Result<int64_t> {
    if (++calls == kSwapAtCall) load(*m, new_params);
    return calls >= kSwapAtCall ? int64_t{5} : int64_t{4};
  };
  RolloutEngine engine(m, o);
  auto res = engine.Generate(reqs);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_EQ(engine.stats().version_changes, 1);
  EXPECT_EQ(engine.stats().version_changes_mid_sequence, 1);
  EXPECT_EQ(engine.stats().prefill_tokens, base_prefill);  // the batch was not restarted

  // Tokens 0..5 came from calls 1..5 (two from the first: prefill and decode) under version 4.
  const size_t before = 2 + (kSwapAtCall - 2);
  torch::NoGradGuard g;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto& r = (*res)[i];
    ASSERT_EQ(r.versions.size(), r.tokens.size());
    ASSERT_GT(r.tokens.size(), before + 3);
    for (size_t t = 0; t < r.tokens.size(); ++t)
      EXPECT_EQ(r.versions[t], t < before ? 4 : 5) << "request " << i << " token " << t;
    EXPECT_EQ(std::vector<int32_t>(r.tokens.begin(), r.tokens.begin() + before),
              std::vector<int32_t>((*base)[i].tokens.begin(), (*base)[i].tokens.begin() + before));
    EXPECT_NE(r.tokens, (*base)[i].tokens);  // the new weights do change what follows

    // Reference: the old weights write the KV of the prompt and tokens [0, before-1); the new
    // weights read it and go on from token before-1.
    const auto& prompt = reqs[i].prompt;
    model::KvCache cache(m->config(), 1, 128, torch::kFloat32, torch::kCPU);
    std::vector<int64_t> head(prompt.begin(), prompt.end());
    head.insert(head.end(), r.tokens.begin(), r.tokens.begin() + (before - 1));
    const int64_t hl = static_cast<int64_t>(head.size());
    load(*m, old_params);
    m->ForwardCached(torch::tensor(head, torch::kLong).unsqueeze(0),
                     torch::arange(hl, torch::kLong).unsqueeze(0), cache, {hl});
    load(*m, new_params);
    std::vector<int64_t> tail(r.tokens.begin() + (before - 1), r.tokens.end() - 1);
    const int64_t tl = static_cast<int64_t>(tail.size());
    auto hidden =
        m->ForwardCached(torch::tensor(tail, torch::kLong).unsqueeze(0),
                         torch::arange(hl, hl + tl, torch::kLong).unsqueeze(0), cache, {tl});
    auto logp = torch::log_softmax(m->Logits(hidden)[0], -1);
    double max_diff = 0;
    for (int64_t t = 0; t < tl; ++t) {
      const size_t k = before + static_cast<size_t>(t);
      max_diff = std::max(max_diff, std::abs(logp[t][r.tokens[k]].item<float>() -
                                             static_cast<double>(r.logprobs[k])));
    }
    EXPECT_LE(max_diff, 1e-4) << "request " << i;
  }
  load(*m, old_params);

  // An error from the hook stops generation and is returned.
  EngineOptions bad = Opts(2);
  bad.between_steps = []() -> Result<int64_t> { return Corrupt("weights v9: checksum mismatch"); };
  RolloutEngine failing(m, bad);
  auto err = failing.Generate(reqs);
  ASSERT_FALSE(err.ok());
  EXPECT_NE(err.status().message().find("checksum mismatch"), std::string::npos);
}

TEST(EngineTest, BadRequestsAreErrorsNamingTheRequest) {
  auto m = TinyModel();
  RolloutEngine engine(m, Opts(2));
  auto r = engine.Generate({Req("ok", {1}, 4, 0), Req("bad", {1, 99}, 4, 0)});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("request 'bad': token id 99"), std::string::npos);
  auto too_long = engine.Generate({Req("long", std::vector<int32_t>(100, 1), 40, 0)});
  ASSERT_FALSE(too_long.ok());
  EXPECT_NE(too_long.status().message().find("exceeds max_seq_len 128"), std::string::npos);
  auto dup = engine.Generate({Req("d", {1}, 4, 0), Req("d", {2}, 4, 0)});
  ASSERT_FALSE(dup.ok());
  auto empty = engine.Generate({Req("e", {}, 4, 0)});
  ASSERT_FALSE(empty.ok());
}

}  // namespace
}  // namespace chainrl::rollout
