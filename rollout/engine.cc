// The rollout engine (see engine.h).
#include "rollout/engine.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <numeric>
#include <unordered_set>

#include "core/check.h"

namespace chainrl::rollout {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kBudget:
      return "budget";
    case FinishReason::kRepetition:
      return "repetition";
    case FinishReason::kAborted:
      return "aborted";
    case FinishReason::kUnfinished:
      return "unfinished";
  }
  return "?";
}

struct RolloutEngine::Slot {
  int64_t req = -1;  // index into the current requests; -1 when free
  int32_t last_token = 0;
  std::vector<int32_t> response;  // carried + new
  int64_t new_count = 0;
  std::optional<StopMatcher> matcher;
};

RolloutEngine::RolloutEngine(std::shared_ptr<model::DecoderModel> model, EngineOptions options)
    : model_(std::move(model)), options_(std::move(options)) {
  CHAINRL_CHECK(options_.max_batch > 0 && options_.max_seq_len > 1, "engine options");
  cache_ =
      std::make_unique<model::KvCache>(model_->config(), options_.max_batch, options_.max_seq_len,
                                       model_->options().ComputeDtype(), model_->options().device);
  slot_kept_.assign(static_cast<size_t>(options_.max_batch), false);
}

void RolloutEngine::InvalidateKeptKv() {
  for (auto& [id, k] : kept_) {
    cache_->SetLength(k.slot, 0);
    slot_kept_[static_cast<size_t>(k.slot)] = false;
  }
  kept_.clear();
  stash_.clear();
  stash_bytes_ = 0;
}

int64_t RolloutEngine::SequenceKv::bytes() const {
  int64_t n = 0;
  for (const auto* side : {&k, &v})
    for (const auto& t : *side) n += t.numel() * t.element_size();
  return n;
}

RolloutEngine::SequenceKv RolloutEngine::SequenceKv::Clone() const {
  SequenceKv c;
  for (const auto& t : k) c.k.push_back(t.clone());
  for (const auto& t : v) c.v.push_back(t.clone());
  return c;
}

RolloutEngine::SequenceKv RolloutEngine::ReadKv(model::KvCache& cache, int64_t b, int64_t len) {
  SequenceKv kv;
  for (int64_t l = 0; l < cache.num_layers(); ++l) {
    kv.k.push_back(cache.k(l)[b].narrow(1, 0, len));
    kv.v.push_back(cache.v(l)[b].narrow(1, 0, len));
  }
  return kv;
}

void RolloutEngine::WriteKv(model::KvCache& cache, int64_t b, const SequenceKv& kv) {
  const int64_t len = kv.length();
  for (int64_t l = 0; l < cache.num_layers(); ++l) {
    const auto li = static_cast<size_t>(l);
    cache.k(l)[b].narrow(1, 0, len).copy_(kv.k[li]);
    cache.v(l)[b].narrow(1, 0, len).copy_(kv.v[li]);
  }
  cache.SetLength(b, 0);
  std::vector<int64_t> advance(static_cast<size_t>(cache.batch()), 0);
  advance[static_cast<size_t>(b)] = len;
  cache.Advance(advance);
}

void RolloutEngine::Stash(const std::string& id, const Kept& kept) {
  const int64_t len = cache_->length(kept.slot);
  if (options_.kv_stash_bytes <= 0 || len <= 0) return;
  Stashed st;
  st.kv = ReadKv(*cache_, kept.slot, len).Clone();
  st.bytes = st.kv.bytes();
  if (st.bytes > options_.kv_stash_bytes) return;
  while (stash_bytes_ + st.bytes > options_.kv_stash_bytes && !stash_.empty()) {
    auto oldest = stash_.begin();
    for (auto it = stash_.begin(); it != stash_.end(); ++it)
      if (it->second.order < oldest->second.order) oldest = it;
    stash_bytes_ -= oldest->second.bytes;
    stash_.erase(oldest);
  }
  st.response = kept.response;
  st.prompt_len = kept.prompt_len;
  st.order = stash_counter_++;
  stash_bytes_ += st.bytes;
  stash_[id] = std::move(st);
  ++stats_.stashed;
}

Status RolloutEngine::Validate(const GenerationRequest& r) const {
  const int64_t vocab = model_->config().vocab_size;
  auto bad = [&](const std::string& why) {
    return InvalidArgument("request '" + r.id + "': " + why);
  };
  if (r.prompt.empty()) return bad("empty prompt");
  if (r.max_new_tokens < 1) return bad("max_new_tokens must be >= 1");
  if (r.budget_tokens < 0 || r.segment_tokens < 0) return bad("negative budget or segment");
  if (static_cast<int64_t>(r.carried.size()) >= r.max_new_tokens)
    return bad("carried tokens already reach max_new_tokens");
  if (static_cast<int64_t>(r.prompt.size()) + r.max_new_tokens > options_.max_seq_len)
    return bad("prompt (" + std::to_string(r.prompt.size()) + ") + max_new_tokens (" +
               std::to_string(r.max_new_tokens) + ") exceeds max_seq_len " +
               std::to_string(options_.max_seq_len));
  for (const auto* v : {&r.prompt, &r.carried})
    for (int32_t t : *v)
      if (t < 0 || t >= vocab)
        return bad("token id " + std::to_string(t) + " outside the vocabulary [0, " +
                   std::to_string(vocab) + ")");
  if (r.embeddings) {
    const std::string what = "embeddings " + r.embeddings->ToString();
    if (!options_.embedding_cache) return bad(what + " but the engine has no embedding cache");
    if (r.placeholder_token_id < 0 || r.placeholder_token_id >= vocab)
      return bad(what + ": placeholder token id " + std::to_string(r.placeholder_token_id) +
                 " outside the vocabulary [0, " + std::to_string(vocab) + ")");
    if (model::PlaceholderPositions(r.prompt, r.placeholder_token_id).empty())
      return bad(what + ": the prompt has no placeholder token " +
                 std::to_string(r.placeholder_token_id));
  }
  return Status::Ok();
}

Result<std::vector<torch::Tensor>> RolloutEngine::ResolveEmbeddings(
    const std::vector<GenerationRequest>& requests) const {
  std::vector<torch::Tensor> out(requests.size());
  std::map<EmbeddingRef, torch::Tensor> fetched;  // one lookup per distinct reference
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto& r = requests[i];
    if (!r.embeddings) continue;
    // A continuation that will resume from its kept KV (as Generate decides) needs no prefill.
    auto kept = kept_.find(r.id);
    if (kept != kept_.end() && kept->second.response == r.carried &&
        kept->second.prompt_len == r.prompt.size() && !r.carried.empty())
      continue;
    auto it = fetched.find(*r.embeddings);
    if (it == fetched.end()) {
      auto t = options_.embedding_cache->Get(*r.embeddings);
      if (!t.ok())
        return Status(t.status().code(), "request '" + r.id + "': " + t.status().message());
      // Converted once for all rows that splice it.
      it = fetched.emplace(*r.embeddings, t->to(model_->options().device, model_->options().dtype))
               .first;
    }
    const int64_t rows = it->second.size(0);
    const int64_t slots =
        static_cast<int64_t>(model::PlaceholderPositions(r.prompt, r.placeholder_token_id).size());
    if (rows != slots)
      return InvalidArgument("request '" + r.id + "': embeddings " + r.embeddings->ToString() +
                             " have " + std::to_string(rows) + " rows but the prompt has " +
                             std::to_string(slots) + " placeholder tokens " +
                             std::to_string(r.placeholder_token_id));
    out[i] = it->second;
  }
  return out;
}

// One Generate call: its requests and results, the decode slots, the requests waiting for a slot,
// and the prompts held for group members admitted later. Its steps also update the engine's kept
// KV, stash and stats.
struct RolloutEngine::Call {
  // Requests with the same prompt, the same embeddings and nothing carried share one prefill:
  // those admitted together share one prefill row, and those admitted later take the KV and
  // first-token logits held from it (EngineOptions::prompt_hold_bytes) while group members of
  // this call still wait.
  using ShareKey = std::pair<std::vector<int32_t>, std::string>;
  struct Held {
    SequenceKv kv;
    torch::Tensor logits;  // [V] at the prompt's last position
    int64_t bytes = 0;
  };
  // (slot, request) pairs admitted together.
  using Assignment = std::vector<std::pair<int64_t, int64_t>>;
  // What one admission prefills (a row per distinct sequence) and where each sample's KV is from.
  struct PrefillPlan {
    std::vector<std::vector<int32_t>> rows;  // prompt + carried tokens
    std::vector<std::optional<ShareKey>> row_key;
    std::vector<torch::Tensor> row_embeds;               // [n, hidden] or undefined, per row
    std::vector<std::vector<int64_t>> row_placeholders;  // prompt positions taking those rows
    std::vector<int64_t> row_of;                         // per sample: its prefill row
    std::vector<const Held*> from_held;                  // per sample: its held prompt, if any
  };

  Call(RolloutEngine& engine, const std::vector<GenerationRequest>& requests,
       std::vector<torch::Tensor> embeddings);

  // The loop's steps, in the order Generate runs them.
  void ResumeOrQueue();
  Status SyncVersion();
  void AdmitWaiting();
  std::vector<int64_t> ActiveSlots() const;
  bool CutBelowOccupancy(const std::vector<int64_t>& active);
  bool NothingWaits() const { return next_waiting >= waiting.size(); }
  void DecodeStep(const std::vector<int64_t>& active);

  void StartSlot(int64_t s, int64_t i);
  void KeepInSlot(int64_t s);
  void Accept(int64_t s, int32_t token, float logprob, float entropy);
  std::optional<FinishReason> FinishOf(Slot& slot, int32_t token, GenerationResult& res) const;
  std::optional<ShareKey> ShareKeyOf(const GenerationRequest& r) const;
  void EvictKept(int64_t s);
  bool RestoreFromStash(int64_t s);
  void Admit(const Assignment& assign);
  PrefillPlan PlanPrefill(const Assignment& assign);
  torch::Tensor Prefill(const PrefillPlan& plan, model::KvCache& temp);
  model::EmbeddingSplice SpliceChunk(const PrefillPlan& plan, int64_t off, int64_t T) const;
  void HoldPrompts(const PrefillPlan& plan, model::KvCache& temp, const torch::Tensor& logits);
  void SampleFirstTokens(const Assignment& assign, const std::vector<torch::Tensor>& first_logits);
  void DropHeldOfAdmittedGroups();
  int64_t ActiveCount() const;

  RolloutEngine& engine;
  const EngineOptions& options;
  EngineStats& stats;
  model::KvCache& cache;
  const std::vector<GenerationRequest>& requests;
  const std::vector<torch::Tensor> embeddings;  // indexed like requests (see ResolveEmbeddings)
  const int64_t n_slots;
  const torch::Device device;
  std::vector<GenerationResult> results;
  std::vector<Slot> slots;
  std::vector<int64_t> waiting;  // request indices, in order
  size_t next_waiting = 0;
  int64_t peak_busy = 0;  // most slots busy at once in this call
  int64_t version = 0;    // from EngineOptions::between_steps, recorded with every token sampled
  bool version_known = false;
  std::map<ShareKey, int64_t> unadmitted;  // waiting requests per key not admitted yet
  std::map<ShareKey, Held> held;
  int64_t held_bytes = 0;
};

RolloutEngine::Call::Call(RolloutEngine& engine, const std::vector<GenerationRequest>& requests,
                          std::vector<torch::Tensor> embeddings)
    : engine(engine),
      options(engine.options_),
      stats(engine.stats_),
      cache(*engine.cache_),
      requests(requests),
      embeddings(std::move(embeddings)),
      n_slots(engine.options_.max_batch),
      device(engine.model_->options().device),
      results(requests.size()),
      slots(static_cast<size_t>(n_slots)) {
  for (size_t i = 0; i < requests.size(); ++i) results[i].id = requests[i].id;
}

void RolloutEngine::Call::StartSlot(int64_t s, int64_t i) {
  Slot& slot = slots[static_cast<size_t>(s)];
  const auto& r = requests[static_cast<size_t>(i)];
  slot = Slot();
  slot.req = i;
  slot.response = r.carried;
  std::vector<std::string> stops = r.stop_strings;
  if (options.token_bytes && !stops.empty()) {
    slot.matcher.emplace(std::move(stops));
    for (int32_t t : r.carried) slot.matcher->Append(options.token_bytes(t));
  }
}

// Continuations whose KV is still in a slot resume there without a prefill; every other request
// waits for a slot, its stale kept or stashed KV dropped.
void RolloutEngine::Call::ResumeOrQueue() {
  auto& kept = engine.kept_;
  auto& stash = engine.stash_;
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto& r = requests[i];
    auto it = kept.find(r.id);
    if (it != kept.end() && it->second.response == r.carried &&
        it->second.prompt_len == r.prompt.size() && !r.carried.empty()) {
      int64_t s = it->second.slot;
      engine.slot_kept_[static_cast<size_t>(s)] = false;
      kept.erase(it);
      StartSlot(s, static_cast<int64_t>(i));
      slots[static_cast<size_t>(s)].last_token = r.carried.back();
      ++stats.resumed;
      continue;
    }
    if (it != kept.end()) {  // stale: the caller moved on
      cache.SetLength(it->second.slot, 0);
      engine.slot_kept_[static_cast<size_t>(it->second.slot)] = false;
      kept.erase(it);
    }
    if (auto st = stash.find(r.id);
        st != stash.end() && (st->second.response != r.carried ||
                              st->second.prompt_len != r.prompt.size() || r.carried.empty())) {
      engine.stash_bytes_ -= st->second.bytes;  // stale
      stash.erase(st);
    }
    if (!r.carried.empty() && !stash.count(r.id)) ++stats.reprefilled;
    waiting.push_back(static_cast<int64_t>(i));
  }
  for (int64_t i : waiting)
    if (auto key = ShareKeyOf(requests[static_cast<size_t>(i)])) ++unadmitted[*key];
}

// Ends slot s's part of this call: the KV of its prompt + response[:-1] stays in the slot for
// the sample's next segment, and the slot is free.
void RolloutEngine::Call::KeepInSlot(int64_t s) {
  Slot& slot = slots[static_cast<size_t>(s)];
  const auto& r = requests[static_cast<size_t>(slot.req)];
  engine.kept_[r.id] = Kept{s, slot.response, r.prompt.size()};
  engine.slot_kept_[static_cast<size_t>(s)] = true;
  slot = Slot();
}

// Appends a sampled token to slot s and decides whether the sample has finished.
void RolloutEngine::Call::Accept(int64_t s, int32_t token, float logprob, float entropy) {
  Slot& slot = slots[static_cast<size_t>(s)];
  const auto& r = requests[static_cast<size_t>(slot.req)];
  GenerationResult& res = results[static_cast<size_t>(slot.req)];
  res.tokens.push_back(token);
  res.logprobs.push_back(logprob);
  res.versions.push_back(version);
  if (options.compute_entropy) res.entropy.push_back(entropy);
  slot.response.push_back(token);
  slot.last_token = token;
  ++slot.new_count;
  ++stats.generated_tokens;
  if (auto fin = FinishOf(slot, token, res)) {
    res.finish = *fin;
    cache.SetLength(s, 0);
    slot = Slot();
    return;
  }
  if (r.segment_tokens > 0 && slot.new_count >= r.segment_tokens) {
    res.finish = FinishReason::kUnfinished;
    KeepInSlot(s);
  }
}

// Whether `token`, just appended to the slot's response, ends the sample, checked in order: stop
// token, stop string, max_new_tokens, budget, repetition. Records the stop string's offset or the
// loop in `res`.
std::optional<FinishReason> RolloutEngine::Call::FinishOf(Slot& slot, int32_t token,
                                                          GenerationResult& res) const {
  const auto& r = requests[static_cast<size_t>(slot.req)];
  const int64_t n = static_cast<int64_t>(slot.response.size());
  if (std::find(options.eos_token_ids.begin(), options.eos_token_ids.end(), token) !=
          options.eos_token_ids.end() ||
      std::find(r.stop_token_ids.begin(), r.stop_token_ids.end(), token) != r.stop_token_ids.end())
    return FinishReason::kStop;
  if (slot.matcher) {
    if (auto at = slot.matcher->Append(options.token_bytes(token))) {
      res.stop_text_bytes = static_cast<int64_t>(*at);
      return FinishReason::kStop;
    }
  }
  if (n >= r.max_new_tokens) return FinishReason::kLength;
  if (r.budget_tokens > 0 && r.budget_tokens < r.max_new_tokens && n >= r.budget_tokens)
    return FinishReason::kBudget;
  if (options.repetition_detection) {
    if (auto rep = DetectRepetition(slot.response, options.repetition)) {
      res.repetition = rep;
      return FinishReason::kRepetition;
    }
  }
  return std::nullopt;
}

std::optional<RolloutEngine::Call::ShareKey> RolloutEngine::Call::ShareKeyOf(
    const GenerationRequest& r) const {
  if (!options.share_prefix || !r.carried.empty()) return std::nullopt;
  return ShareKey{r.prompt, r.embeddings ? r.embeddings->ToString() + "\n" +
                                               std::to_string(r.placeholder_token_id)
                                         : std::string()};
}

int64_t RolloutEngine::Call::ActiveCount() const {
  int64_t n = 0;
  for (const auto& s : slots) n += s.req >= 0;
  return n;
}

// Asks EngineOptions::between_steps for the policy version before a forward; prompt KV held under
// earlier weights is dropped when it changed.
Status RolloutEngine::Call::SyncVersion() {
  if (!options.between_steps) return Status::Ok();
  CHAINRL_ASSIGN_OR_RETURN(const int64_t now, options.between_steps());
  if (version_known && now != version) {
    held.clear();  // prompt KV of the earlier weights
    held_bytes = 0;
    ++stats.version_changes;
    if (ActiveCount() > 0) ++stats.version_changes_mid_sequence;
  }
  version = now;
  version_known = true;
  return Status::Ok();
}

// Free slots take waiting requests (static batching: only an empty batch refills): free slots
// first, then slots holding the KV of a paused sample (a later continuation of it is prefilled
// again, which costs far less than leaving the slot idle).
void RolloutEngine::Call::AdmitWaiting() {
  if (NothingWaits() || !(options.continuous_batching || ActiveCount() == 0)) return;
  Assignment assign;
  for (int pass = 0; pass < 2; ++pass) {
    for (int64_t s = 0; s < n_slots && !NothingWaits(); ++s) {
      if (slots[static_cast<size_t>(s)].req >= 0) continue;
      if (engine.slot_kept_[static_cast<size_t>(s)]) {
        if (pass == 0) continue;
        EvictKept(s);
      }
      StartSlot(s, waiting[next_waiting++]);
      if (RestoreFromStash(s)) continue;
      assign.push_back({s, slots[static_cast<size_t>(s)].req});
    }
  }
  if (!assign.empty()) {
    const auto t_admit = std::chrono::steady_clock::now();
    Admit(assign);
    stats.prefill_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t_admit).count();
  }
}

// Gives up the paused sample's KV kept in slot s (to the stash, when it has room).
void RolloutEngine::Call::EvictKept(int64_t s) {
  for (auto it = engine.kept_.begin(); it != engine.kept_.end(); ++it)
    if (it->second.slot == s) {
      engine.Stash(it->first, it->second);
      engine.kept_.erase(it);
      break;
    }
  engine.slot_kept_[static_cast<size_t>(s)] = false;
  cache.SetLength(s, 0);
  ++stats.evicted;
}

// The request just started in slot s takes its KV back from the stash: no prefill.
bool RolloutEngine::Call::RestoreFromStash(int64_t s) {
  Slot& slot = slots[static_cast<size_t>(s)];
  const auto& r = requests[static_cast<size_t>(slot.req)];
  auto st = engine.stash_.find(r.id);
  if (st == engine.stash_.end()) return false;
  WriteKv(cache, s, st->second.kv);
  slot.last_token = r.carried.back();
  engine.stash_bytes_ -= st->second.bytes;
  engine.stash_.erase(st);
  ++stats.restored;
  return true;
}

// Prefills the requests assigned to slots `assign` (slot, request) and samples their first
// token. Prompt embeddings are spliced in at their placeholders (also when a continuation is
// prefilled again).
void RolloutEngine::Call::Admit(const Assignment& assign) {
  PrefillPlan plan = PlanPrefill(assign);
  const int64_t R = static_cast<int64_t>(plan.rows.size());
  int64_t max_len = 0;
  for (const auto& s : plan.rows)
    max_len = std::max<int64_t>(max_len, static_cast<int64_t>(s.size()));
  std::optional<model::KvCache> temp;
  torch::Tensor logits;  // [R, V]
  if (R > 0) {
    const auto& model = *engine.model_;
    temp.emplace(model.config(), R, max_len, model.options().ComputeDtype(), device);
    logits = Prefill(plan, *temp);
    HoldPrompts(plan, *temp, logits);
  }
  // Copy each sample's KV into its slot, from its prefill row or from the held prompt.
  std::vector<torch::Tensor> first_logits;
  for (size_t a = 0; a < assign.size(); ++a) {
    const Held* h = plan.from_held[a];
    const int64_t r = plan.row_of[a];
    WriteKv(cache, assign[a].first,
            h ? h->kv
              : ReadKv(*temp, r, static_cast<int64_t>(plan.rows[static_cast<size_t>(r)].size())));
    first_logits.push_back(h ? h->logits : logits[r]);
  }
  SampleFirstTokens(assign, first_logits);
  DropHeldOfAdmittedGroups();
}

// One prefill row per distinct sequence: a sample whose group member is admitted with it shares
// that member's row, and one whose prompt is held takes the held KV instead.
RolloutEngine::Call::PrefillPlan RolloutEngine::Call::PlanPrefill(const Assignment& assign) {
  PrefillPlan plan;
  plan.row_of.assign(assign.size(), -1);
  plan.from_held.assign(assign.size(), nullptr);
  std::map<ShareKey, int64_t> shared;
  for (size_t a = 0; a < assign.size(); ++a) {
    const auto& r = requests[static_cast<size_t>(assign[a].second)];
    auto key = ShareKeyOf(r);
    if (key) {
      --unadmitted[*key];
      if (auto h = held.find(*key); h != held.end()) {
        plan.from_held[a] = &h->second;
        ++stats.prompt_reused;
        ++stats.prompt_shared;
        continue;
      }
      auto [it, fresh] = shared.emplace(*key, static_cast<int64_t>(plan.rows.size()));
      if (!fresh) {
        plan.row_of[a] = it->second;
        ++stats.prompt_shared;
        continue;
      }
      ++stats.prompt_prefills;
    }
    std::vector<int32_t> seq = r.prompt;
    seq.insert(seq.end(), r.carried.begin(), r.carried.end());
    plan.row_of[a] = static_cast<int64_t>(plan.rows.size());
    plan.rows.push_back(std::move(seq));
    plan.row_key.push_back(std::move(key));
    plan.row_embeds.push_back(embeddings[static_cast<size_t>(assign[a].second)]);
    plan.row_placeholders.push_back(
        r.embeddings ? model::PlaceholderPositions(r.prompt, r.placeholder_token_id)
                     : std::vector<int64_t>());
  }
  return plan;
}

// Prefills the plan's rows (embedding rows spliced at their placeholder positions) into `temp` in
// chunks of EngineOptions::prefill_chunk tokens; the logits at each row's last position [R, V].
torch::Tensor RolloutEngine::Call::Prefill(const PrefillPlan& plan, model::KvCache& temp) {
  const auto& rows = plan.rows;
  const int64_t R = static_cast<int64_t>(rows.size());
  int64_t max_len = 0;
  for (const auto& s : rows) max_len = std::max<int64_t>(max_len, static_cast<int64_t>(s.size()));
  std::vector<torch::Tensor> last_hidden(static_cast<size_t>(R));
  const int64_t chunk = std::max<int64_t>(1, options.prefill_chunk);
  for (int64_t off = 0; off < max_len; off += chunk) {
    const int64_t T = std::min(chunk, max_len - off);
    std::vector<int64_t> ids(static_cast<size_t>(R * T), 0), pos(static_cast<size_t>(R * T), 0),
        n_new(static_cast<size_t>(R), 0);
    for (int64_t r = 0; r < R; ++r) {
      const auto& seq = rows[static_cast<size_t>(r)];
      const int64_t len = static_cast<int64_t>(seq.size());
      n_new[static_cast<size_t>(r)] = std::clamp<int64_t>(len - off, 0, T);
      for (int64_t t = 0; t < T; ++t) {
        pos[static_cast<size_t>(r * T + t)] = temp.length(r) + t;
        if (off + t < len) ids[static_cast<size_t>(r * T + t)] = seq[static_cast<size_t>(off + t)];
      }
    }
    const model::EmbeddingSplice splice = SpliceChunk(plan, off, T);
    auto ids_t = torch::tensor(ids, torch::kLong).view({R, T}).to(device);
    auto pos_t = torch::tensor(pos, torch::kLong).view({R, T}).to(device);
    auto hidden = engine.model_->ForwardCached(ids_t, pos_t, temp, n_new, splice);
    for (int64_t r = 0; r < R; ++r) {
      const int64_t len = static_cast<int64_t>(rows[static_cast<size_t>(r)].size());
      if (len > off && len <= off + T)
        last_hidden[static_cast<size_t>(r)] = hidden[r][len - off - 1];
    }
    stats.prefill_tokens += std::accumulate(n_new.begin(), n_new.end(), int64_t{0});
  }
  return engine.model_->Logits(torch::stack(last_hidden));
}

// The embedding rows whose placeholders fall in the prefill chunk [off, off + T).
model::EmbeddingSplice RolloutEngine::Call::SpliceChunk(const PrefillPlan& plan, int64_t off,
                                                        int64_t T) const {
  model::EmbeddingSplice splice;
  std::vector<int64_t> flat;
  std::vector<torch::Tensor> parts;
  for (size_t r = 0; r < plan.rows.size(); ++r) {
    const auto& at = plan.row_placeholders[r];
    std::vector<int64_t> picked;
    for (size_t j = 0; j < at.size(); ++j)
      if (at[j] >= off && at[j] < off + T) {
        flat.push_back(static_cast<int64_t>(r) * T + at[j] - off);
        picked.push_back(static_cast<int64_t>(j));
      }
    if (!picked.empty())
      parts.push_back(
          plan.row_embeds[r].index_select(0, torch::tensor(picked, torch::kLong).to(device)));
  }
  if (!flat.empty()) {
    splice.index = torch::tensor(flat, torch::kLong).to(device);
    splice.rows = torch::cat(parts);
  }
  return splice;
}

// Holds the prompts whose group members are still waiting, within the byte bound.
void RolloutEngine::Call::HoldPrompts(const PrefillPlan& plan, model::KvCache& temp,
                                      const torch::Tensor& logits) {
  for (size_t r = 0; r < plan.rows.size(); ++r) {
    const auto& key = plan.row_key[r];
    if (!key || unadmitted[*key] <= 0) continue;
    const int64_t len = static_cast<int64_t>(plan.rows[r].size());
    const int64_t ri = static_cast<int64_t>(r);
    Held h;
    h.kv = ReadKv(temp, ri, len).Clone();
    h.logits = logits[ri].clone();
    h.bytes = h.kv.bytes() + h.logits.numel() * h.logits.element_size();
    if (held_bytes + h.bytes > options.prompt_hold_bytes) continue;
    held_bytes += h.bytes;
    held.emplace(*key, std::move(h));
  }
}

// Samples each admitted sample's first token from its prompt's last logits.
void RolloutEngine::Call::SampleFirstTokens(const Assignment& assign,
                                            const std::vector<torch::Tensor>& first_logits) {
  std::vector<SamplingParams> params;
  std::vector<int64_t> counters;
  for (const auto& [slot, req] : assign) {
    const auto& r = requests[static_cast<size_t>(req)];
    params.push_back(r.sampling);
    counters.push_back(static_cast<int64_t>(r.carried.size()));
  }
  auto out = SampleTokens(torch::stack(first_logits), params, counters, options.compute_entropy);
  auto toks = out.tokens.to(torch::kCPU), lps = out.logprobs.to(torch::kCPU);
  torch::Tensor ents = options.compute_entropy ? out.entropy.to(torch::kCPU) : torch::Tensor();
  stats.prefill_sampled += static_cast<int64_t>(assign.size());
  for (size_t a = 0; a < assign.size(); ++a) {
    const int64_t ai = static_cast<int64_t>(a);
    Accept(assign[a].first, static_cast<int32_t>(toks[ai].item<int64_t>()), lps[ai].item<float>(),
           ents.defined() ? ents[ai].item<float>() : 0.f);
  }
}

// A held prompt is dropped once the last member of its group in this call is admitted.
void RolloutEngine::Call::DropHeldOfAdmittedGroups() {
  for (auto it = held.begin(); it != held.end();) {
    if (unadmitted[it->first] > 0) {
      ++it;
      continue;
    }
    held_bytes -= it->second.bytes;
    it = held.erase(it);
  }
}

std::vector<int64_t> RolloutEngine::Call::ActiveSlots() const {
  std::vector<int64_t> active;
  for (int64_t s = 0; s < n_slots; ++s)
    if (slots[static_cast<size_t>(s)].req >= 0) active.push_back(s);
  return active;
}

// Nothing waits and the batch has drained below the occupancy floor: end the call, keeping the
// busy samples' KV as at a segment end. The floor is relative to the call's peak, so a call ends
// only after some sample finished or reached its segment end, and a call that starts with fewer
// samples than slots is not cut for that.
bool RolloutEngine::Call::CutBelowOccupancy(const std::vector<int64_t>& active) {
  peak_busy = std::max(peak_busy, static_cast<int64_t>(active.size()));
  if (!(options.segment_min_occupancy > 0 && NothingWaits() && !active.empty() &&
        static_cast<double>(active.size()) <
            options.segment_min_occupancy * static_cast<double>(peak_busy)))
    return false;
  bool cut = true;
  for (int64_t s : active) {
    const Slot& slot = slots[static_cast<size_t>(s)];
    cut = cut && slot.new_count > 0 && requests[static_cast<size_t>(slot.req)].segment_tokens > 0;
  }
  if (!cut) return false;
  for (int64_t s : active) {
    KeepInSlot(s);  // its result stays kUnfinished
    ++stats.segments_cut;
  }
  return true;
}

// One decode step over every slot; idle slots carry a dummy token that is not kept.
void RolloutEngine::Call::DecodeStep(const std::vector<int64_t>& active) {
  const auto t_step = std::chrono::steady_clock::now();
  std::vector<int64_t> ids(static_cast<size_t>(n_slots), 0), pos(static_cast<size_t>(n_slots), 0),
      n_new(static_cast<size_t>(n_slots), 0);
  for (int64_t s : active) {
    ids[static_cast<size_t>(s)] = slots[static_cast<size_t>(s)].last_token;
    n_new[static_cast<size_t>(s)] = 1;
  }
  for (int64_t s = 0; s < n_slots; ++s) pos[static_cast<size_t>(s)] = cache.length(s);
  auto hidden = engine.model_->ForwardCached(
      torch::tensor(ids, torch::kLong).view({n_slots, 1}).to(device),
      torch::tensor(pos, torch::kLong).view({n_slots, 1}).to(device), cache, n_new);
  ++stats.decode_steps;
  stats.slot_steps += n_slots;
  auto act = torch::tensor(active, torch::kLong).to(device);
  auto logits = engine.model_->Logits(hidden.select(1, 0).index_select(0, act));
  std::vector<SamplingParams> params;
  std::vector<int64_t> counters;
  for (int64_t s : active) {
    const Slot& slot = slots[static_cast<size_t>(s)];
    params.push_back(requests[static_cast<size_t>(slot.req)].sampling);
    counters.push_back(static_cast<int64_t>(slot.response.size()));
  }
  auto out = SampleTokens(logits, params, counters, options.compute_entropy);
  auto toks = out.tokens.to(torch::kCPU), lps = out.logprobs.to(torch::kCPU);
  torch::Tensor ents = options.compute_entropy ? out.entropy.to(torch::kCPU) : torch::Tensor();
  const int64_t* tp = toks.data_ptr<int64_t>();
  const float* lp = lps.data_ptr<float>();
  const float* ep = ents.defined() ? ents.data_ptr<float>() : nullptr;
  stats.decode_seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t_step).count();
  for (size_t a = 0; a < active.size(); ++a)
    Accept(active[a], static_cast<int32_t>(tp[a]), lp[a], ep ? ep[a] : 0.f);
}

Result<std::vector<GenerationResult>> RolloutEngine::Generate(
    const std::vector<GenerationRequest>& requests) {
  std::unordered_set<std::string> ids;
  for (const auto& r : requests) {
    CHAINRL_RETURN_IF_ERROR(Validate(r));
    if (!ids.insert(r.id).second) return InvalidArgument("request id '" + r.id + "' given twice");
  }
  CHAINRL_ASSIGN_OR_RETURN(std::vector<torch::Tensor> embeddings, ResolveEmbeddings(requests));
  torch::NoGradGuard no_grad;
  Call call(*this, requests, std::move(embeddings));
  call.ResumeOrQueue();
  for (;;) {
    CHAINRL_RETURN_IF_ERROR(call.SyncVersion());  // before every forward
    call.AdmitWaiting();
    const std::vector<int64_t> active = call.ActiveSlots();
    if (call.CutBelowOccupancy(active)) break;
    if (active.empty()) {
      if (call.NothingWaits()) break;
      continue;
    }
    call.DecodeStep(active);
  }
  return std::move(call.results);
}

}  // namespace chainrl::rollout
