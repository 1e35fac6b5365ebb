// Whole-run learner checkpoints (see checkpoint.h and docs/CHECKPOINTS.md): a temporary directory
// filled, checksummed, fsynced and renamed into place; verified against its manifest on load.
#include "learner/checkpoint.h"

#include "core/file_io.h"

#include <ATen/CPUGeneratorImpl.h>
#include <fcntl.h>
#include <torch/cuda.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>

#include "core/crc32c.h"
#include "core/log.h"
#include "model/lora_io.h"
#include "model/model_io.h"
#include "model/safetensors.h"

namespace chainrl::learner {
namespace fs = std::filesystem;

namespace {

constexpr char kManifest[] = "manifest.json";
constexpr char kState[] = "state.json";
constexpr char kOptimizer[] = "optimizer.pt";
constexpr char kStepPrefix[] = "step-";
constexpr char kTmpPrefix[] = ".tmp-step-";
constexpr char kOldPrefix[] = ".old-step-";

// The bytes of the regular files under `dir`.
uint64_t DirBytes(const std::string& dir) {
  uint64_t total = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    std::error_code ec2;
    if (it->is_regular_file(ec2)) total += it->file_size(ec2);
  }
  return total;
}

// Whether `failure`, a write under `root`, came from a full disk: the error says so, or under
// 1 MiB is left (writers that report no errno).
bool DiskFull(const std::string& root, const Status& failure) {
  if (failure.message().find(std::strerror(ENOSPC)) != std::string::npos) return true;
  std::error_code ec;
  const auto space = fs::space(root, ec);
  return !ec && space.available < (1u << 20);
}

std::string Join(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

// Names the checkpoint writes itself; a caller's file may not shadow them.
bool IsReservedName(const std::string& name) {
  // clang-format off
  static const std::set<std::string> kReserved = {
      kManifest, kState, kOptimizer, "config.json", "generation_config.json", "model.safetensors",
      "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json",
      "special_tokens_map.json", "vocab.json", "merges.txt", "tokenizer.model",
      "added_tokens.json", "chat_template.jinja"};
  // clang-format on
  if (kReserved.contains(name)) return true;
  return name.starts_with("model-") && name.ends_with(".safetensors");
}

Status CheckFileName(const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos || name.starts_with("."))
    return InvalidArgument("checkpoint file name \"" + name +
                           "\": must be a plain file name (no '/', not starting with '.')");
  if (IsReservedName(name))
    return InvalidArgument("checkpoint file name \"" + name +
                           "\": reserved for the checkpoint's own contents");
  return Status::Ok();
}

// fsync of a file or directory already written (by code that does not sync itself).
Status SyncPath(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return IoError(path + ": " + std::strerror(errno));
  if (::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    return IoError(path + ": fsync: " + std::strerror(e));
  }
  ::close(fd);
  return Status::Ok();
}

Result<std::string> ReadFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    if (errno == ENOENT) return NotFound(path + ": missing");
    return IoError(path + ": " + std::strerror(errno));
  }
  std::string out;
  std::array<char, 1 << 16> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) out.append(buf.data(), n);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) return IoError(path + ": read failed");
  return out;
}

struct FileSum {
  uint64_t size = 0;
  uint32_t crc = 0;
};

// Size and CRC32C of a file, streamed (weights can be many GiB).
Result<FileSum> SumFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    if (errno == ENOENT) return NotFound(path + ": missing");
    return IoError(path + ": " + std::strerror(errno));
  }
  FileSum s;
  std::vector<char> buf(1 << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) {
    s.crc = crc32c::Extend(s.crc, buf.data(), n);
    s.size += n;
  }
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) return IoError(path + ": read failed");
  return s;
}

// Step of a directory name "step-<digits>", or -1.
int64_t ParseStepDirName(const std::string& name) {
  if (!name.starts_with(kStepPrefix)) return -1;
  const std::string digits = name.substr(std::strlen(kStepPrefix));
  if (digits.empty() || digits.size() > 18) return -1;
  if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return -1;
  return std::stoll(digits);
}

// manifest.json of `dir`, parsed and shape-checked.
Result<nlohmann::json> ReadManifest(const std::string& dir) {
  const std::string path = Join(dir, kManifest);
  CHAINRL_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseCheckpointManifest(text, path);
}

// Cheap completeness check for "latest": manifest valid and every listed file has its size.
Status CheckSizes(const std::string& dir, const nlohmann::json& manifest) {
  for (const auto& [name, entry] : manifest["files"].items()) {
    const std::string path = Join(dir, name);
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    if (ec) return Corrupt(path + ": missing (listed in " + kManifest + ")");
    if (size != entry["size"].get<uint64_t>())
      return Corrupt(path + ": " + std::to_string(size) + " bytes, manifest says " +
                     entry["size"].dump());
  }
  return Status::Ok();
}

Status RemoveAll(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) return IoError(path + ": cannot remove: " + ec.message());
  return Status::Ok();
}

constexpr char kBase64Chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string Base64Encode(const uint8_t* data, size_t size) {
  std::string out;
  out.reserve((size + 2) / 3 * 4);
  for (size_t i = 0; i < size; i += 3) {
    uint32_t v = static_cast<uint32_t>(data[i]) << 16;
    if (i + 1 < size) v |= static_cast<uint32_t>(data[i + 1]) << 8;
    if (i + 2 < size) v |= data[i + 2];
    out += kBase64Chars[(v >> 18) & 63];
    out += kBase64Chars[(v >> 12) & 63];
    out += i + 1 < size ? kBase64Chars[(v >> 6) & 63] : '=';
    out += i + 2 < size ? kBase64Chars[v & 63] : '=';
  }
  return out;
}

Result<std::vector<uint8_t>> Base64Decode(const std::string& text) {
  if (text.size() % 4 != 0) return InvalidArgument("base64 length not a multiple of 4");
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::vector<uint8_t> out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    const int pad = (text[i + 3] == '=') + (text[i + 2] == '=');
    if (pad > 0 && !last) return InvalidArgument("base64 padding before the end");
    if (text[i + 2] == '=' && text[i + 3] != '=') return InvalidArgument("bad base64 padding");
    uint32_t v = 0;
    for (int k = 0; k < 4 - pad; ++k) {
      const int d = value(text[i + k]);
      if (d < 0) return InvalidArgument("invalid base64 character");
      v |= static_cast<uint32_t>(d) << (18 - 6 * k);
    }
    out.push_back(static_cast<uint8_t>(v >> 16));
    if (pad < 2) out.push_back(static_cast<uint8_t>(v >> 8));
    if (pad < 1) out.push_back(static_cast<uint8_t>(v));
  }
  return out;
}

std::string GeneratorState(at::Generator gen) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  at::Tensor s = gen.get_state().contiguous();  // uint8 bytes
  return Base64Encode(s.data_ptr<uint8_t>(), static_cast<size_t>(s.numel()));
}

Status SetGeneratorState(at::Generator gen, const nlohmann::json& j, const std::string& key) {
  if (!j.is_string()) return InvalidArgument("torch RNG state: \"" + key + "\" must be a string");
  auto bytes = Base64Decode(j.get<std::string>());
  if (!bytes.ok())
    return InvalidArgument("torch RNG state: \"" + key + "\": " + bytes.status().message());
  at::Tensor t = torch::empty({static_cast<int64_t>(bytes->size())}, torch::kUInt8);
  std::memcpy(t.data_ptr<uint8_t>(), bytes->data(), bytes->size());
  try {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(t);
  } catch (const std::exception& e) {
    return InvalidArgument("torch RNG state: \"" + key + "\": " + e.what());
  }
  return Status::Ok();
}

}  // namespace

std::string CheckpointDirName(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s%09lld", kStepPrefix, static_cast<long long>(step));
  return buf;
}

Result<std::string> SaveCheckpoint(const std::string& root, int64_t step,
                                   const model::DecoderModel& model, const Optimizer& optimizer,
                                   const CheckpointData& data, int keep,
                                   const std::string& tokenizer_dir) {
  if (step < 0) return InvalidArgument("checkpoint step " + std::to_string(step) + " < 0");
  if (keep < 1)
    return InvalidArgument("checkpoint.keep = " + std::to_string(keep) + ": must be >= 1");
  for (const auto& [name, contents] : data.files) CHAINRL_RETURN_IF_ERROR(CheckFileName(name));
  if (!tokenizer_dir.empty() && !fs::is_directory(tokenizer_dir))
    return NotFound(tokenizer_dir + ": tokenizer directory not found");

  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return IoError(root + ": cannot create directory: " + ec.message());

  const std::string name = CheckpointDirName(step);
  const std::string pid = "." + std::to_string(::getpid());
  const std::string tmp = Join(root, kTmpPrefix + name.substr(std::strlen(kStepPrefix)) + pid);
  const std::string final_dir = Join(root, name);
  CHAINRL_RETURN_IF_ERROR(RemoveAll(tmp));

  // Any failure from here leaves only the temporary directory, which is removed.
  auto fill = [&]() -> Status {
    fs::create_directory(tmp, ec);
    if (ec) return IoError(tmp + ": cannot create directory: " + ec.message());
    // SaveModel only reads the parameters; its signature predates const-correct callers.
    CHAINRL_RETURN_IF_ERROR(model::SaveModel(const_cast<model::DecoderModel&>(model), tmp));
    // A LoRA policy: its adapters beside the (frozen) base, as a PEFT adapter directory.
    if (model.has_lora())
      CHAINRL_RETURN_IF_ERROR(
          model::SaveLoraAdapter(const_cast<model::DecoderModel&>(model), tmp, ""));
    CHAINRL_RETURN_IF_ERROR(optimizer.Save(Join(tmp, kOptimizer)));
    if (!tokenizer_dir.empty())
      CHAINRL_RETURN_IF_ERROR(model::CopyTokenizerFiles(tokenizer_dir, tmp));
    nlohmann::json state = {
        {"format_version", kCheckpointFormatVersion}, {"step", step}, {"state", data.state}};
    CHAINRL_RETURN_IF_ERROR(WriteFileSynced(Join(tmp, kState), state.dump(1) + "\n"));
    nlohmann::json data_files = nlohmann::json::array();
    for (const auto& [file, contents] : data.files) {
      CHAINRL_RETURN_IF_ERROR(WriteFileSynced(Join(tmp, file), contents));
      data_files.push_back(file);
    }
    // Checksums of what is on disk, after every writer closed its file; each file synced.
    nlohmann::json files = nlohmann::json::object();
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(tmp, ec)) {
      if (entry.is_regular_file()) names.push_back(entry.path().filename().string());
    }
    if (ec) return IoError(tmp + ": cannot list: " + ec.message());
    std::sort(names.begin(), names.end());
    for (const auto& file : names) {
      const std::string path = Join(tmp, file);
      CHAINRL_RETURN_IF_ERROR(SyncPath(path, /*directory=*/false));
      CHAINRL_ASSIGN_OR_RETURN(FileSum sum, SumFile(path));
      files[file] = {{"size", sum.size}, {"crc32c", sum.crc}};
    }
    nlohmann::json manifest = {{"format_version", kCheckpointFormatVersion},
                               {"step", step},
                               {"files", files},
                               {"data_files", data_files}};
    CHAINRL_RETURN_IF_ERROR(WriteFileSynced(Join(tmp, kManifest), manifest.dump(1) + "\n"));
    return SyncPath(tmp, /*directory=*/true);
  };
  if (Status st = fill(); !st.ok()) {
    // A full disk: the checkpoints the retention policy would delete after this one is written
    // (all but the newest keep - 1) go first, and the save is tried once more.
    const bool full = DiskFull(root, st);
    const uint64_t written = DirBytes(tmp);
    (void)RemoveAll(tmp);
    if (!full) return st;
    CHAINRL_ASSIGN_OR_RETURN(auto complete, ListCheckpoints(root));
    const size_t keep_old = static_cast<size_t>(std::max(keep - 1, 1));
    int pruned = 0;
    for (size_t i = 0; i + keep_old < complete.size(); ++i, ++pruned) {
      CHAINRL_LOG(kWarn) << "checkpoint: the disk under " << root << " is full; removing "
                         << complete[i].second << " early (checkpoint.keep = " << keep << ")";
      CHAINRL_RETURN_IF_ERROR(RemoveAll(complete[i].second));
    }
    if (pruned > 0) {
      st = fill();
      if (!st.ok()) {
        const bool still_full = DiskFull(root, st);
        (void)RemoveAll(tmp);
        if (!still_full) return st;
      }
    }
    if (!st.ok()) {
      CHAINRL_ASSIGN_OR_RETURN(complete, ListCheckpoints(root));
      const uint64_t free_bytes = fs::space(root, ec).available;
      std::string need =
          "more than " + std::to_string(written) + " bytes (written before it failed)";
      std::string last = "no checkpoint has been written yet";
      if (!complete.empty()) {
        need = "about " + std::to_string(DirBytes(complete.back().second)) +
               " bytes (the size of " + complete.back().second + ")";
        last = "the last good checkpoint, " + complete.back().second + ", is intact";
      }
      return NoSpace(root + ": the disk is full: checkpoint " + name + " needs " + need + ", " +
                     std::to_string(ec ? 0 : free_bytes) + " bytes are free" +
                     (pruned > 0 ? " after removing " + std::to_string(pruned) +
                                       " older checkpoint(s) early (checkpoint.keep = " +
                                       std::to_string(keep) + ")"
                                 : "") +
                     "; " + last + " (" + st.message() + ")");
    }
  }

  // Replacing a checkpoint of the same step: move the old one aside first (rename cannot replace
  // a non-empty directory); it is ignored by ListCheckpoints and removed below.
  std::string old_dir;
  if (fs::exists(final_dir, ec)) {
    old_dir = Join(root, kOldPrefix + name.substr(std::strlen(kStepPrefix)) + pid);
    CHAINRL_RETURN_IF_ERROR(RemoveAll(old_dir));
    if (::rename(final_dir.c_str(), old_dir.c_str()) != 0) {
      const int e = errno;
      (void)RemoveAll(tmp);
      return IoError(final_dir + ": cannot move the old checkpoint aside: " + std::strerror(e));
    }
  }
  if (::rename(tmp.c_str(), final_dir.c_str()) != 0) {
    const int e = errno;
    (void)RemoveAll(tmp);
    if (!old_dir.empty()) (void)::rename(old_dir.c_str(), final_dir.c_str());  // put it back
    return IoError(final_dir + ": cannot rename " + tmp + " into place: " + std::strerror(e));
  }
  CHAINRL_RETURN_IF_ERROR(SyncPath(root, /*directory=*/true));
  if (!old_dir.empty()) CHAINRL_RETURN_IF_ERROR(RemoveAll(old_dir));

  // Pruning: the oldest complete checkpoints beyond `keep` (never the one just written), then
  // leftovers of interrupted saves. Directories step-N without a valid manifest are not ours to
  // delete (ListCheckpoints warns about them).
  CHAINRL_ASSIGN_OR_RETURN(auto complete, ListCheckpoints(root));
  int64_t excess = static_cast<int64_t>(complete.size()) - keep;
  for (const auto& [s, dir] : complete) {
    if (excess <= 0) break;
    if (dir == final_dir) continue;
    CHAINRL_RETURN_IF_ERROR(RemoveAll(dir));
    --excess;
  }
  std::vector<std::string> leftovers;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string n = entry.path().filename().string();
    if (entry.is_directory() && (n.starts_with(kTmpPrefix) || n.starts_with(kOldPrefix)))
      leftovers.push_back(entry.path().string());
  }
  if (ec) return IoError(root + ": cannot list: " + ec.message());
  for (const auto& dir : leftovers) {
    CHAINRL_LOG(kInfo) << "checkpoint: removing " << dir << " (left by an interrupted save)";
    CHAINRL_RETURN_IF_ERROR(RemoveAll(dir));
  }
  return final_dir;
}

Result<std::vector<std::pair<int64_t, std::string>>> ListCheckpoints(const std::string& root) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  if (!fs::exists(root, ec)) return out;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (!entry.is_directory()) continue;
    const int64_t step = ParseStepDirName(entry.path().filename().string());
    if (step < 0) continue;
    const std::string dir = entry.path().string();
    auto manifest = ReadManifest(dir);
    Status st = manifest.ok() ? CheckSizes(dir, *manifest) : manifest.status();
    if (st.ok() && (*manifest)["step"].get<int64_t>() != step)
      st = Corrupt(Join(dir, kManifest) + ": step " + (*manifest)["step"].dump() +
                   " does not match the directory name");
    if (!st.ok()) {
      CHAINRL_LOG(kWarn) << "checkpoint: ignoring incomplete " << dir << ": " << st.message();
      continue;
    }
    out.emplace_back(step, dir);
  }
  if (ec) return IoError(root + ": cannot list: " + ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::string> ResolveCheckpoint(const std::string& root, const std::string& spec) {
  if (spec.empty()) return InvalidArgument("checkpoint.resume: empty (a directory or \"latest\")");
  if (spec == "latest") {
    CHAINRL_ASSIGN_OR_RETURN(auto complete, ListCheckpoints(root));
    if (complete.empty()) return NotFound(root + ": no complete checkpoint to resume from");
    // The newest that verifies: a damaged one (a bad disk, a copy cut short) is passed over for
    // the one before it, loudly, rather than failing the same way at every restart.
    std::string damaged;
    for (auto it = complete.rbegin(); it != complete.rend(); ++it) {
      Status st = VerifyCheckpoint(it->second);
      if (st.ok()) {
        if (!damaged.empty()) {
          CHAINRL_LOG(kWarn) << "checkpoint: resuming from " << it->second
                             << ", the newest intact one (passed over: " << damaged << ")";
        }
        return it->second;
      }
      CHAINRL_LOG(kWarn) << "checkpoint: " << it->second << " is damaged (" << st.message()
                         << "); trying the one before it";
      damaged += (damaged.empty() ? "" : ", ") + it->second;
    }
    return Corrupt(root + ": every checkpoint is damaged (" + damaged + ")");
  }
  std::error_code ec;
  if (!fs::is_directory(spec, ec)) return NotFound(spec + ": checkpoint directory not found");
  if (!fs::exists(Join(spec, kManifest), ec))
    return NotFound(spec + ": not a complete checkpoint (no " + kManifest + ")");
  return spec;
}

Status VerifyCheckpoint(const std::string& dir) {
  CHAINRL_ASSIGN_OR_RETURN(nlohmann::json manifest, ReadManifest(dir));
  for (const auto& [name, entry] : manifest["files"].items()) {
    const std::string path = Join(dir, name);
    auto sum = SumFile(path);
    if (!sum.ok()) {
      if (sum.status().code() == StatusCode::kNotFound)
        return Corrupt(path + ": missing (listed in " + kManifest + ")");
      return sum.status();
    }
    if (sum->size != entry["size"].get<uint64_t>())
      return Corrupt(path + ": truncated or resized: " + std::to_string(sum->size) +
                     " bytes, manifest says " + entry["size"].dump());
    if (sum->crc != entry["crc32c"].get<uint32_t>())
      return Corrupt(path + ": CRC32C mismatch (corrupt file)");
  }
  return Status::Ok();
}

Result<CheckpointData> ReadCheckpointData(const std::string& dir, bool verify) {
  if (verify) CHAINRL_RETURN_IF_ERROR(VerifyCheckpoint(dir));
  CHAINRL_ASSIGN_OR_RETURN(nlohmann::json manifest, ReadManifest(dir));
  const std::string state_path = Join(dir, kState);
  CHAINRL_ASSIGN_OR_RETURN(std::string text, ReadFile(state_path));
  CheckpointData out;
  CHAINRL_ASSIGN_OR_RETURN(out.state, ParseCheckpointState(text, state_path, manifest["step"]));
  for (const auto& name : manifest["data_files"]) {
    const std::string file = name.get<std::string>();
    CHAINRL_ASSIGN_OR_RETURN(out.files[file], ReadFile(Join(dir, file)));
  }
  return out;
}

Result<CheckpointData> LoadCheckpoint(const std::string& dir, model::DecoderModel& model,
                                      Optimizer& optimizer) {
  CHAINRL_ASSIGN_OR_RETURN(CheckpointData data, ReadCheckpointData(dir));
  CHAINRL_ASSIGN_OR_RETURN(model::TensorMap tensors, model::LoadSafetensorsDir(dir));
  const bool adapters = model::HasLoraAdapter(dir);
  if (model.has_lora() && !adapters)
    return InvalidArgument(dir +
                           ": written by a run without LoRA adapters, and [lora] is enabled "
                           "now; resume it with the [lora] section it was written with");
  if (!model.has_lora() && adapters)
    return InvalidArgument(dir +
                           ": written by a run with LoRA adapters (adapter_config.json), and "
                           "lora.enabled is false now; resume it with its [lora] section");
  CHAINRL_RETURN_IF_ERROR(model::CopyStateDict(model, tensors, dir));
  if (adapters) CHAINRL_RETURN_IF_ERROR(model::LoadLoraAdapter(model, dir));
  CHAINRL_RETURN_IF_ERROR(optimizer.Load(Join(dir, kOptimizer)));
  return data;
}

nlohmann::json CaptureTorchRng() {
  nlohmann::json j;
  j["cpu"] = GeneratorState(at::detail::getDefaultCPUGenerator());
  if (torch::cuda::is_available()) {
    nlohmann::json cuda = nlohmann::json::array();
    const auto n = static_cast<int64_t>(torch::cuda::device_count());
    for (int64_t i = 0; i < n; ++i)
      cuda.push_back(GeneratorState(at::globalContext().defaultGenerator(
          at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(i)))));
    j["cuda"] = std::move(cuda);
  }
  return j;
}

Status RestoreTorchRng(const nlohmann::json& j) {
  if (!j.is_object()) return InvalidArgument("torch RNG state: not a JSON object");
  if (!j.contains("cpu")) return InvalidArgument("torch RNG state: no \"cpu\"");
  if (j.contains("cuda")) {
    const auto& cuda = j["cuda"];
    if (!cuda.is_array()) return InvalidArgument("torch RNG state: \"cuda\" must be an array");
    const size_t have = torch::cuda::is_available() ? torch::cuda::device_count() : 0;
    if (cuda.size() > have)
      return InvalidArgument("torch RNG state: saved for " + std::to_string(cuda.size()) +
                             " CUDA devices, this process has " + std::to_string(have));
  }
  CHAINRL_RETURN_IF_ERROR(SetGeneratorState(at::detail::getDefaultCPUGenerator(), j["cpu"], "cpu"));
  if (j.contains("cuda")) {
    const auto& cuda = j["cuda"];
    for (size_t i = 0; i < cuda.size(); ++i)
      CHAINRL_RETURN_IF_ERROR(SetGeneratorState(at::globalContext().defaultGenerator(at::Device(
                                                    at::kCUDA, static_cast<c10::DeviceIndex>(i))),
                                                cuda[i], "cuda[" + std::to_string(i) + "]"));
  }
  return Status::Ok();
}

std::string CheckpointRoot(const std::string& configured, const std::string& run_dir) {
  return configured.empty() ? (std::filesystem::path(run_dir) / "checkpoints").string()
                            : configured;
}

Status CheckCheckpointRoot(const std::string& root) {
  namespace fs = std::filesystem;
  const std::string where = "checkpoint.dir: " + root + ": ";
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return InvalidArgument(where + "cannot create the directory: " + ec.message());
  if (!fs::is_directory(root, ec)) return InvalidArgument(where + "not a directory");
  const std::string probe =
      (fs::path(root) / (".write-probe-" + std::to_string(getpid()))).string();
  {
    std::ofstream f(probe, std::ios::binary | std::ios::trunc);
    if (!f) {
      return InvalidArgument(where + "cannot write a file there: " + std::strerror(errno));
    }
  }
  fs::remove(probe, ec);
  return Status::Ok();
}

}  // namespace chainrl::learner
