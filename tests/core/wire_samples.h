// Test helpers: one fully populated, valid Envelope of every wire message type, and a
// deterministic random generator of valid envelopes (used by the wire, channel and fuzz tests).
#pragma once

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/wire.h"

namespace chainrl::wire::testing {

inline TokenSegment MakeSegment(std::mt19937_64& rng, int n, uint32_t vocab, int64_t v0) {
  TokenSegment s;
  std::vector<int64_t> versions;
  for (int i = 0; i < n; ++i) {
    s.add_token_ids(static_cast<uint32_t>(rng() % vocab));
    s.add_behaviour_logprobs(-static_cast<float>(rng() % 100000) / 997.0f);
    versions.push_back(v0 + static_cast<int64_t>(i * 3 / std::max(n, 1)));
  }
  *s.mutable_policy_versions() = CompressPolicyVersions(versions);
  return s;
}

inline SamplingParams MakeSampling() {
  SamplingParams p;
  p.set_temperature(0.7f);
  p.set_top_p(0.95f);
  p.set_top_k(50);
  p.set_min_p(0.05f);
  p.set_repetition_penalty(1.1f);
  p.set_seed(1234567890123ull);
  p.add_stop_token_ids(151643);
  p.add_stop_strings("</answer>");
  return p;
}

inline WorkItem MakeWorkItem(std::mt19937_64& rng, uint64_t group, int prompt_len, int carried) {
  WorkItem w;
  w.set_prompt_group_id(group);
  for (int i = 0; i < prompt_len; ++i)
    w.add_prompt_token_ids(static_cast<uint32_t>(rng() % 151000));
  w.set_prompt_text("What is 17 * 23? Think step by step.");
  *w.mutable_sampling() = MakeSampling();
  w.set_token_budget(4096);
  w.set_group_size(8);
  w.set_policy_version(42);
  w.set_lease_id(group * 10 + 1);
  w.set_lease_deadline_unix_ms(1795000000000);
  for (int i = 0; i < carried; ++i) {
    CarriedSegment* c = w.add_carried();
    c->set_sample_index(static_cast<uint32_t>(i));
    *c->mutable_segment() = MakeSegment(rng, 5 + i, 151000, 40);
  }
  return w;
}

inline Trajectory MakeTrajectory(std::mt19937_64& rng, int samples, int tokens) {
  Trajectory t;
  t.set_prompt_group_id(7);
  t.set_lease_id(71);
  t.set_actor_id("actor-3");
  for (int i = 0; i < samples; ++i) {
    Sample* s = t.add_samples();
    s->set_sample_index(static_cast<uint32_t>(i));
    *s->mutable_completion() = MakeSegment(rng, tokens, 151000, 41);
    s->set_finish_reason(static_cast<FinishReason>(1 + i % 5));
    s->set_reward(0.25 * i - 0.5);
    (*s->mutable_reward_components())["correct"] = i % 2;
    (*s->mutable_reward_components())["length_penalty"] = -0.01 * i;
    (*s->mutable_reward_diagnostics())["parsed_answer"] = std::to_string(391 + i);
    s->mutable_timings()->set_queue_seconds(0.001 * i);
    s->mutable_timings()->set_generate_seconds(1.5 + i);
    s->mutable_timings()->set_reward_seconds(0.02);
  }
  return t;
}

// One valid envelope per message type, fully populated.
inline std::vector<Envelope> AllMessageTypes() {
  std::mt19937_64 rng(7);
  std::vector<Envelope> out;
  auto add = [&](auto fill) {
    Envelope e = MakeEnvelope("learner");
    e.set_seq(out.size() + 1);
    fill(e);
    out.push_back(std::move(e));
  };
  add([&](Envelope& e) { *e.mutable_work_item() = MakeWorkItem(rng, 5, 30, 2); });
  add([&](Envelope& e) {
    for (int i = 0; i < 3; ++i)
      *e.mutable_work_batch()->add_items() = MakeWorkItem(rng, 9 + i, 12, i);
  });
  add([&](Envelope& e) { *e.mutable_trajectory() = MakeTrajectory(rng, 4, 37); });
  add([&](Envelope& e) {
    auto* a = e.mutable_weight_announce();
    a->set_version(12);
    a->set_total_bytes(10'000'001);
    a->set_chunk_bytes(1 << 20);
    a->set_num_chunks(10);
    a->set_crc32c(0xdeadbeef);
    a->set_format("safetensors");
  });
  add([&](Envelope& e) {
    auto* r = e.mutable_weight_chunk_request();
    r->set_version(12);
    r->set_first_chunk(3);
    r->set_count(4);
  });
  add([&](Envelope& e) {
    auto* c = e.mutable_weight_chunk();
    c->set_version(12);
    c->set_index(3);
    c->set_offset(3u << 20);
    c->set_size(1 << 20);
    c->set_crc32c(0x12345678);
  });
  add([&](Envelope& e) {
    auto* h = e.mutable_heartbeat();
    h->set_policy_version(11);
    h->set_in_flight(2);
    h->set_unix_ms(1795000000123);
    h->add_lease_ids(71);
    h->add_lease_ids(72);
  });
  add([&](Envelope& e) {
    auto* j = e.mutable_join();
    j->set_host("node-7");
    j->set_pid(4242);
    j->set_max_credits(16);
  });
  add([&](Envelope& e) { e.mutable_leave()->set_reason("shutdown"); });
  add([&](Envelope& e) { e.mutable_work_request()->set_credits(4); });
  add([&](Envelope& e) {
    auto* r = e.mutable_error();
    r->set_code(ERROR_NOT_AVAILABLE);
    r->set_message("no work");
    r->set_schema_version(kSchemaVersion);
  });
  add([&](Envelope& e) { e.mutable_run_files_request(); });
  add([&](Envelope& e) {
    auto* f = e.mutable_run_files();
    f->set_config_toml("[model]\npath = \"/models/tiny\"\n");
    auto* c = f->add_model_files();
    c->set_name("config.json");
    c->set_data("{\"model_type\": \"qwen2\"}");
    auto* t = f->add_model_files();
    t->set_name("tokenizer.json");
    t->set_data(std::string("\0\xff{}", 4));
  });
  add([&](Envelope& e) {
    auto* d = e.mutable_work_declined();
    d->set_lease_id(12);
    d->set_prompt_group_id(2);
    d->set_reason("a prompt of 62 tokens and up to 8 new tokens exceed the model's context");
  });
  return out;
}

}  // namespace chainrl::wire::testing
