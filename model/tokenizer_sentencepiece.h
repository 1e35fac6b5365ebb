// A SentencePiece `tokenizer.model` (Llama 2 style) read and run natively: the ModelProto is
// decoded from protobuf wire format and BPE encoding follows libsentencepiece's algorithm.
// (libsentencepiece itself embeds a protobuf runtime whose exported symbols clash with the
// libprotobuf that LibTorch and our transport load, so the `chainrl` binary cannot link it;
// tests compare this implementation with libsentencepiece.)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/status.h"

namespace chainrl {

// Immutable after Load(); thread-safe to use concurrently.
class SentencePieceModel {
 public:
  enum class PieceType {
    kNormal = 1,
    kUnknown = 2,
    kControl = 3,
    kUserDefined = 4,
    kUnused = 5,
    kByte = 6
  };
  struct Piece {
    std::string text;
    float score = 0;
    PieceType type = PieceType::kNormal;
  };

  // Parses a serialized ModelProto. Supports model_type BPE with the identity normalizer (an
  // empty precompiled_charsmap), as Llama 2 and Mistral ship; Unigram models and other
  // normalizers are Unimplemented errors naming `source`.
  Status Load(std::string_view serialized, const std::string& source);

  // Ids of `text` (valid UTF-8), as libsentencepiece's EncodeAsIds.
  void Encode(std::string_view text, std::vector<int32_t>* out) const;
  // Text of ids, as libsentencepiece's DecodeIds (control pieces decode to nothing).
  // `at_start` says the ids begin the output (the dummy-prefix space is removed there).
  void Decode(const std::vector<int32_t>& ids, bool at_start, std::string* out) const;

  const std::vector<Piece>& pieces() const { return pieces_; }
  std::optional<int32_t> PieceToId(std::string_view piece) const;
  int32_t unk_id() const { return unk_id_; }
  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  int32_t pad_id() const { return pad_id_; }

 private:
  std::vector<Piece> pieces_;
  std::unordered_map<std::string, int32_t> mergeable_;  // normal and user-defined pieces
  std::unordered_map<std::string, int32_t> all_;
  std::vector<int32_t> user_defined_;  // ids, longest first
  int32_t byte_ids_[256];
  bool byte_fallback_ = false;
  bool add_dummy_prefix_ = true;
  bool remove_extra_whitespaces_ = true;
  bool escape_whitespaces_ = true;
  int32_t unk_id_ = 0, bos_id_ = 1, eos_id_ = 2, pad_id_ = -1;
};

}  // namespace chainrl
