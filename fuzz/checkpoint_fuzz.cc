// libFuzzer harness: what a learner checkpoint's files go through on resume, as far as it runs
// without LibTorch. The first byte picks the file:
//   0: buffer.bin: SplitRecords (learner/record_file.h), then each record parsed as a trajectory
//      envelope, as ReadBufferRecords (learner/train_batch.cc) does;
//   1: partials.bin: SegmentAssembler::LoadRecords (learner/segment_intake.h);
//   2: manifest.json, then after a "\n#state.json\n" line state.json: ParseCheckpointManifest and
//      ParseCheckpointState (learner/checkpoint_files.h), as ReadCheckpointData does, then the
//      run's state through RunState::FromJson;
//   3: ledger.json: WorkLedger::FromJson.
// Properties: every record lies inside the input and AppendRecord of the records gives the input
// back; a record that parses serializes to a message that parses to the same message; partials
// that load write back records that load to the same groups, whose unfinished samples sit at their
// positions; a manifest that parses has every
// field its readers take, of the right type, and prints and parses to the same manifest. Refusals
// are Corrupt and name the file.
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/field_comparator.h>
#include <google/protobuf/util/message_differencer.h>

#include "core/proto/wire.pb.h"
#include "fuzz/fuzz_input.h"
#include "learner/checkpoint_files.h"
#include "learner/record_file.h"
#include "learner/run_state.h"
#include "learner/segment_intake.h"
#include "learner/work_ledger.h"

using namespace chainrl;
using namespace chainrl::learner;

namespace {

// Protobuf messages equal field by field (maps as maps); a NaN equals a NaN (a logprob of
// damaged bytes may be one).
bool SameMessage(const google::protobuf::Message& a, const google::protobuf::Message& b) {
  google::protobuf::util::DefaultFieldComparator comparator;
  comparator.set_treat_nan_as_equal(true);
  google::protobuf::util::MessageDifferencer differencer;
  differencer.set_field_comparator(&comparator);
  return differencer.Compare(a, b);
}

// The records of `bytes`, checked against the input; empty when the split refuses it.
std::vector<std::string_view> CheckedRecords(std::string_view bytes, const std::string& what) {
  auto records = SplitRecords(bytes, what);
  if (!records.ok()) {
    CHAINRL_FUZZ_CHECK(records.status().code() == StatusCode::kCorrupt, records.status().message());
    CHAINRL_FUZZ_CHECK(records.status().message().starts_with(what + ": "),
                       records.status().message());
    return {};
  }
  std::string again;
  for (std::string_view r : *records) {
    CHAINRL_FUZZ_CHECK(r.data() >= bytes.data() && r.size() <= bytes.size() &&
                           static_cast<size_t>(r.data() - bytes.data()) <= bytes.size() - r.size(),
                       "a record outside the input");
    AppendRecord(&again, r);
  }
  CHAINRL_FUZZ_CHECK(again == bytes, "AppendRecord of the records is not the input");
  return *records;
}

void BufferRecords(std::string_view bytes) {
  for (std::string_view rec : CheckedRecords(bytes, "ck/buffer.bin")) {
    wire::Envelope e;
    if (!e.ParseFromArray(rec.data(), static_cast<int>(rec.size())) || !e.has_trajectory())
      continue;  // ReadBufferRecords: Corrupt "record N does not parse as a trajectory envelope"
    wire::Envelope back;
    CHAINRL_FUZZ_CHECK(back.ParseFromString(e.SerializeAsString()), "an envelope re-parses");
    CHAINRL_FUZZ_CHECK(SameMessage(e, back), e.ShortDebugString());
  }
}

void PartialRecords(std::string_view bytes) {
  CheckedRecords(bytes, "ck/partials.bin");
  SegmentAssembler a(4);
  const Status st = a.LoadRecords(bytes, "ck/partials.bin");
  if (!st.ok()) {
    CHAINRL_FUZZ_CHECK(st.code() == StatusCode::kCorrupt, st.message());
    CHAINRL_FUZZ_CHECK(st.message().starts_with("ck/partials.bin: "), st.message());
    CHAINRL_FUZZ_CHECK(a.groups() == 0, "a failed load kept groups");
    return;
  }
  const std::string records = a.ToRecords();
  SegmentAssembler b(4);
  const Status st2 = b.LoadRecords(records, "again");
  CHAINRL_FUZZ_CHECK(st2.ok(), st2.message());
  CHAINRL_FUZZ_CHECK(b.groups() == a.groups(), "groups after a reload");
  for (std::string_view rec : CheckedRecords(records, "again")) {
    wire::Trajectory t;
    CHAINRL_FUZZ_CHECK(t.ParseFromArray(rec.data(), static_cast<int>(rec.size())), "a record");
    const wire::Trajectory* p = a.Partial(t.prompt_group_id());
    CHAINRL_FUZZ_CHECK(p != nullptr, "a group written back is not held");
    // The same messages (not bytes: Protobuf maps serialize in no fixed order).
    const wire::Trajectory* q = b.Partial(t.prompt_group_id());
    CHAINRL_FUZZ_CHECK(q != nullptr && SameMessage(*p, *q), p->ShortDebugString());
    // What the learner asks an actor for next: the unfinished samples, each at its position.
    for (uint32_t i : a.Expected(t.prompt_group_id()))
      CHAINRL_FUZZ_CHECK(i < static_cast<uint32_t>(p->samples_size()) &&
                             p->samples(static_cast<int>(i)).sample_index() == i,
                         "expected sample " + std::to_string(i));
    wire::WorkItem item;
    a.AddCarried(t.prompt_group_id(), &item);
  }
}

// The values of a manifest its readers take, as text: the step, each file's size and checksum and
// the data files, each checked to be of the type they are taken as.
std::string Taken(const nlohmann::json& m) {
  std::string out = "step " + std::to_string(m.at("step").get<int64_t>());
  for (const auto& [name, entry] : m.at("files").items()) {
    const uint64_t crc = entry.at("crc32c").get<uint64_t>();
    CHAINRL_FUZZ_CHECK(crc <= UINT32_MAX, name);
    out += "; " + name + " " + std::to_string(entry.at("size").get<uint64_t>()) + " " +
           std::to_string(crc);
  }
  for (const auto& name : m.at("data_files")) {
    CHAINRL_FUZZ_CHECK(m.at("files").contains(name.get<std::string>()), name.dump());
    out += "; data " + name.get<std::string>();
  }
  return out;
}

void ManifestAndState(std::string_view text) {
  const auto [manifest_text, state_text] = fuzz::SplitAt(text, "\n#state.json\n");
  auto m = ParseCheckpointManifest(manifest_text, "ck/manifest.json");
  if (!m.ok()) {
    CHAINRL_FUZZ_CHECK(m.status().code() == StatusCode::kCorrupt, m.status().message());
    CHAINRL_FUZZ_CHECK(m.status().message().starts_with("ck/manifest.json: "),
                       m.status().message());
    return;
  }
  // What ListCheckpoints, CheckSizes, VerifyCheckpoint and ReadCheckpointData take from it, the
  // same when it is printed and parsed again (other keys may hold values JSON cannot print back,
  // such as a number too large for a double).
  const std::string taken = Taken(*m);
  auto again = ParseCheckpointManifest(m->dump(1), "again");
  CHAINRL_FUZZ_CHECK(again.ok(), again.status().message());
  CHAINRL_FUZZ_CHECK(Taken(*again) == taken, taken);

  auto state = ParseCheckpointState(state_text, "ck/state.json", m->at("step"));
  if (!state.ok()) {
    CHAINRL_FUZZ_CHECK(state.status().code() == StatusCode::kCorrupt, state.status().message());
    CHAINRL_FUZZ_CHECK(state.status().message().starts_with("ck/state.json: "),
                       state.status().message());
    return;
  }
  // The run's state as the learner restores it: an error naming the file, or a state that
  // prints and restores to the same.
  auto run = RunState::FromJson(*state, "ck/state.json");
  if (!run.ok()) {
    CHAINRL_FUZZ_CHECK(run.status().message().starts_with("ck/state.json: "),
                       run.status().message());
    return;
  }
  auto run_again = RunState::FromJson(run->ToJson(), "again");
  CHAINRL_FUZZ_CHECK(run_again.ok(), run_again.status().message());
  CHAINRL_FUZZ_CHECK(run_again->ToJson() == run->ToJson(), run->ToJson().dump());
}

// ledger.json: the work ledger's state as a resumed learner restores it (WorkLedger::FromJson): an
// error, or a ledger whose state prints and restores to the same text.
void Ledger(std::string_view text) {
  ManualClock clock;
  auto l = WorkLedger::FromJson(text, LedgerOptions(), &clock);
  if (!l.ok()) {
    CHAINRL_FUZZ_CHECK(l.status().code() == StatusCode::kCorrupt, l.status().message());
    return;
  }
  const std::string json = l->ToJson();
  auto again = WorkLedger::FromJson(json, LedgerOptions(), &clock);
  CHAINRL_FUZZ_CHECK(again.ok(), again.status().message());
  CHAINRL_FUZZ_CHECK(again->ToJson() == json, json);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool quiet = [] {  // Protobuf's log of every string that is not UTF-8
    google::protobuf::SetLogHandler(nullptr);
    return true;
  }();
  (void)quiet;
  if (size < 1) return -1;
  const std::string_view rest = fuzz::AsText(data + 1, size - 1);
  switch (data[0] % 4) {
    case 0:
      BufferRecords(rest);
      break;
    case 1:
      PartialRecords(rest);
      break;
    case 2:
      ManifestAndState(rest);
      break;
    default:
      Ledger(rest);
      break;
  }
  return 0;
}
