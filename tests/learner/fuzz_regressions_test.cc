// Inputs that fuzz/rank_messages_fuzz and fuzz/checkpoint_fuzz were written against, which the
// decoders of rank messages and checkpoint files (learner/rank_message_codec.h,
// learner/checkpoint_files.h, learner/record_file.h) crashed on, reached undefined behaviour with,
// or took silently; each is now a Corrupt error naming the byte offset or the JSON key and the
// bound. No LibTorch (the rank messages' full path, tensors included, is in data_parallel_test).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "learner/checkpoint_files.h"
#include "learner/rank_message_codec.h"
#include "learner/record_file.h"

namespace chainrl::learner {
namespace {

std::string Error(const Status& st) { return st.ok() ? "ok" : st.message(); }

// Run lengths were summed unchecked: two of INT64_MAX overflowed (UBSan: signed integer
// overflow) before the sum was compared with the tokens.
TEST(RankMessageFuzzRegressions, VersionRunsThatOverflowAreCorrupt) {
  const std::vector<int64_t> overflowing = {1, INT64_MAX, 2, INT64_MAX};
  EXPECT_EQ(Error(rank_codec::CheckVersionRuns(overflowing, 5, 40)),
            "rank message: a sample's policy versions at byte 40 do not cover its 5 tokens");
  const std::vector<int64_t> negative = {1, -3, 2, 8};
  EXPECT_EQ(Error(rank_codec::CheckVersionRuns(negative, 5, 40)),
            "rank message: a sample's policy versions at byte 40 do not cover its 5 tokens");
  EXPECT_EQ(Error(rank_codec::CheckVersionRuns({1, 2, 2, 3}, 5, 40)), "ok");
  EXPECT_EQ(Error(rank_codec::CheckVersionRuns({}, 5, 40)), "ok");  // versions unknown
}

// A shape with a negative dimension next to a zero one has "0 elements" and passed the check,
// then torch::from_blob threw c10::Error through DecodeRankMessage; dimensions whose product
// overflows (UBSan) could wrap to the number of values.
TEST(RankMessageFuzzRegressions, EmbeddingShapesMustBeAMatrixOfTheValues) {
  const std::string bad =
      "rank message: prompt embeddings at byte 12 are not a [rows, hidden] floating-point matrix";
  PromptEmbeddingsBytes e;
  e.dtype = kEmbeddingDtypes[3];
  e.shape = {-1, 0};
  EXPECT_EQ(Error(rank_codec::CheckPromptEmbeddings(e, 12)), bad);
  e.shape = {int64_t{1} << 32, int64_t{1} << 32};  // 2^64 wraps to 0
  EXPECT_EQ(Error(rank_codec::CheckPromptEmbeddings(e, 12)), bad);
  e.shape = {0, 7};
  EXPECT_EQ(Error(rank_codec::CheckPromptEmbeddings(e, 12)), "ok");
  e.shape = {2, 3};
  e.values.assign(6, 0.5f);
  EXPECT_EQ(Error(rank_codec::CheckPromptEmbeddings(e, 12)), "ok");
  e.dtype = 3;  // int32
  EXPECT_EQ(Error(rank_codec::CheckPromptEmbeddings(e, 12)), bad);
}

// A data_files entry nested 100,000 levels deep overflowed the stack printing it into the error
// (ASan: stack-overflow), in ListCheckpoints, ResolveCheckpoint("latest") and every load.
TEST(CheckpointFuzzRegressions, DeepJsonIsRefusedAtTheBound) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  const std::string manifest =
      R"({"format_version": 1, "step": 3, "files": {}, "data_files": [)" + deep + "]}";
  EXPECT_EQ(Error(ParseCheckpointManifest(manifest, "ck/manifest.json").status()),
            "ck/manifest.json: JSON nested deeper than 512 levels");
  const std::string state = R"({"format_version": 1, "step": 3, "state": )" + deep + "}";
  EXPECT_EQ(Error(ParseCheckpointState(state, "ck/state.json", 3).status()),
            "ck/state.json: JSON nested deeper than 512 levels");
}

// A checksum above 32 bits was cut to 32 bits when verified, so 2^32 + c passed for c.
TEST(CheckpointFuzzRegressions, ChecksumsMustFitIn32Bits) {
  const std::string manifest =
      R"({"format_version": 1, "step": 3, "files": {"a": {"size": 1, "crc32c": 4294967296}},
          "data_files": []})";
  EXPECT_EQ(Error(ParseCheckpointManifest(manifest, "ck/manifest.json").status()),
            "ck/manifest.json: files.a: crc32c 4294967296 is not a 32-bit checksum");
}

// A record longer than a serialized message can be was handed to ParseFromArray with its size
// cut to an int; errors now name the record and its offset.
TEST(CheckpointFuzzRegressions, RecordsAreBoundedAndErrorsNameTheOffset) {
  std::string bytes;
  AppendRecord(&bytes, "first");
  std::string huge = bytes;
  const uint64_t claim = kMaxRecordBytes + 1;
  huge.append(reinterpret_cast<const char*>(&claim), 8);
  EXPECT_EQ(Error(SplitRecords(huge, "ck/buffer.bin").status()),
            "ck/buffer.bin: record 2 at byte 13 claims 2147483648 bytes, over the limit of "
            "2147483647");
  EXPECT_EQ(Error(SplitRecords(bytes + "abc", "ck/buffer.bin").status()),
            "ck/buffer.bin: truncated record length: record 2 at byte 13 has 3 of its 8 length "
            "bytes");
  EXPECT_EQ(Error(SplitRecords(std::string_view(bytes).substr(0, 10), "ck/buffer.bin").status()),
            "ck/buffer.bin: truncated record: record 1 at byte 0 claims 5 bytes, 2 are left");
}

}  // namespace
}  // namespace chainrl::learner
