// safetensors reading (validated header, mmap, zero-copy views) and writing (HF layout, shards).
#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <torch/torch.h>
#include <nlohmann/json.hpp>
#include "core/json_file.h"

namespace chainrl::model {
namespace fs = std::filesystem;

namespace {

struct DtypeInfo {
  const char* name;
  bool supported;
  torch::ScalarType type;
};

// Every dtype the safetensors format defines (their sizes: SafetensorsElementSize); the unsigned
// wide and float8 types have no LibTorch 1.13 counterpart and are rejected with a clear message.
constexpr DtypeInfo kDtypes[] = {
    {"F64", true, torch::kFloat64},    {"F32", true, torch::kFloat32},
    {"F16", true, torch::kFloat16},    {"BF16", true, torch::kBFloat16},
    {"I64", true, torch::kInt64},      {"I32", true, torch::kInt32},
    {"I16", true, torch::kInt16},      {"I8", true, torch::kInt8},
    {"U8", true, torch::kUInt8},       {"BOOL", true, torch::kBool},
    {"U64", false, torch::kInt64},     {"U32", false, torch::kInt32},
    {"U16", false, torch::kInt16},     {"F8_E4M3", false, torch::kUInt8},
    {"F8_E5M2", false, torch::kUInt8},
};

const DtypeInfo* FindDtype(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

std::string Quote(const std::string& s) { return "'" + s + "'"; }

}  // namespace

struct SafetensorsFile::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr != nullptr) munmap(addr, size);
  }
};

Result<torch::ScalarType> SafetensorsDtype(const std::string& name) {
  const DtypeInfo* d = FindDtype(name);
  if (d == nullptr) return InvalidArgument("unknown safetensors dtype " + Quote(name));
  if (!d->supported) return Unimplemented("safetensors dtype " + Quote(name) + " is not supported");
  return d->type;
}

Result<std::string> SafetensorsDtypeName(torch::ScalarType type) {
  for (const auto& d : kDtypes)
    if (d.supported && d.type == type) return std::string(d.name);
  return InvalidArgument(std::string("dtype ") + c10::toString(type) +
                         " cannot be stored in safetensors");
}

Result<std::shared_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return NotFound(path + ": no such file");
    return IoError(path + ": cannot open: " + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return IoError(path + ": not a regular file");
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    return Corrupt(path + ": truncated: " + std::to_string(size) + " bytes, no header length");
  }
  void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (addr == MAP_FAILED) return IoError(path + ": mmap failed: " + std::strerror(err));
  auto mapping = std::make_shared<Mapping>();
  mapping->addr = addr;
  mapping->size = size;

  CHAINRL_ASSIGN_OR_RETURN(SafetensorsHeader header,
                           ParseSafetensorsHeader(static_cast<const uint8_t*>(addr), size, path));
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->mapping_ = std::move(mapping);
  f->header_ = std::move(header);
  for (size_t i = 0; i < f->header_.entries.size(); ++i) f->index_[f->header_.entries[i].name] = i;
  return f;
}

SafetensorsFile::~SafetensorsFile() = default;

bool SafetensorsFile::Contains(const std::string& name) const { return index_.count(name) > 0; }

Result<torch::Tensor> SafetensorsFile::Get(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) return NotFound(path_ + ": no tensor " + Quote(name));
  const SafetensorsEntry& e = header_.entries[it->second];
  CHAINRL_ASSIGN_OR_RETURN(torch::ScalarType type, SafetensorsDtype(e.dtype));
  const auto options = torch::TensorOptions().dtype(type).device(torch::kCPU);
  if (e.end == e.begin) return torch::empty(e.shape, options);
  uint8_t* ptr = static_cast<uint8_t*>(mapping_->addr) + header_.data_start + e.begin;
  const uint64_t elem = torch::elementSize(type);
  std::shared_ptr<Mapping> keep = mapping_;
  torch::Tensor view = torch::from_blob(
      ptr, e.shape, [keep](void*) mutable { keep.reset(); }, options);
  if (reinterpret_cast<uintptr_t>(ptr) % elem == 0) return view;
  return view.clone();  // misaligned for its dtype: kernels may assume alignment
}

Result<TensorMap> SafetensorsFile::GetAll() const {
  TensorMap out;
  for (const auto& e : header_.entries) {
    CHAINRL_ASSIGN_OR_RETURN(torch::Tensor t, Get(e.name));
    out.emplace(e.name, std::move(t));
  }
  return out;
}

Result<TensorMap> LoadSafetensors(const std::string& path) {
  CHAINRL_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path));
  return file->GetAll();
}

namespace {

// Writes `bytes` to `path` via a temporary file in the same directory renamed into place, so a
// reader (or a live mapping of the old file) never sees a partial file.
Status WriteFileAtomic(const std::string& path,
                       const std::vector<std::pair<const void*, size_t>>& parts) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return IoError(tmp + ": cannot create: " + std::strerror(errno));
  for (const auto& [p, n] : parts) {
    if (n > 0 && std::fwrite(p, 1, n, f) != n) {
      std::fclose(f);
      std::remove(tmp.c_str());
      return IoError(tmp + ": write failed");
    }
  }
  if (std::fclose(f) != 0) {
    std::remove(tmp.c_str());
    return IoError(tmp + ": close failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return IoError(path + ": rename failed: " + std::strerror(errno));
  }
  return Status::Ok();
}

std::string ShardName(size_t k, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "model-%05zu-of-%05zu.safetensors", k, n);
  return buf;
}

// Names in the order HF lays out data: larger elements first, then by name.
std::vector<std::string> LayoutOrder(const TensorMap& tensors) {
  std::vector<std::string> names;
  for (const auto& [name, t] : tensors) names.push_back(name);
  std::stable_sort(names.begin(), names.end(), [&](const auto& a, const auto& b) {
    const size_t ea = tensors.at(a).element_size(), eb = tensors.at(b).element_size();
    return ea != eb ? ea > eb : a < b;
  });
  return names;
}

}  // namespace

Result<TensorMap> LoadSafetensorsDir(const std::string& dir) {
  const std::string index_path = (fs::path(dir) / "model.safetensors.index.json").string();
  const std::string single_path = (fs::path(dir) / "model.safetensors").string();
  std::error_code ec;
  if (!fs::exists(index_path, ec)) {
    if (!fs::exists(single_path, ec))
      return NotFound(dir + ": neither model.safetensors nor model.safetensors.index.json");
    return LoadSafetensors(single_path);
  }
  CHAINRL_ASSIGN_OR_RETURN(nlohmann::json index, ReadJsonFile(index_path, kMaxSmallJsonBytes,
                                                              kMaxJsonDepth, StatusCode::kCorrupt));
  auto wm = index.is_object() ? index.find("weight_map") : index.end();
  if (wm == index.end() || !wm->is_object())
    return Corrupt(index_path + ": missing object 'weight_map'");
  std::map<std::string, std::vector<std::string>> by_shard;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string())
      return Corrupt(index_path + ": weight_map entry " + Quote(it.key()) + " is not a string");
    const std::string shard = it.value().get<std::string>();
    if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
      return Corrupt(index_path + ": weight_map entry " + Quote(it.key()) +
                     " names an invalid shard file " + Quote(shard));
    by_shard[shard].push_back(it.key());
  }
  TensorMap out;
  for (const auto& [shard, names] : by_shard) {
    const std::string shard_path = (fs::path(dir) / shard).string();
    CHAINRL_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(shard_path));
    for (const auto& name : names) {
      if (!file->Contains(name))
        return Corrupt(index_path + ": maps tensor " + Quote(name) + " to " + shard +
                       ", which does not contain it");
      CHAINRL_ASSIGN_OR_RETURN(torch::Tensor t, file->Get(name));
      out.emplace(name, std::move(t));
    }
    const std::set<std::string> listed(names.begin(), names.end());
    for (const auto& e : file->header().entries)
      if (!listed.count(e.name))
        return Corrupt(shard_path + ": tensor " + Quote(e.name) +
                       " is not listed for this shard in " + index_path);
  }
  return out;
}

Status SaveSafetensors(const std::string& path, const TensorMap& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    auto& m = header["__metadata__"];
    m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
  }
  std::vector<torch::Tensor> data;  // contiguous CPU copies where needed, kept alive until written
  uint64_t offset = 0;
  for (const auto& name : LayoutOrder(tensors)) {
    if (name == "__metadata__")
      return InvalidArgument(path + ": tensor name '__metadata__' is reserved");
    const torch::Tensor& src = tensors.at(name);
    if (!src.defined()) return InvalidArgument(path + ": tensor " + Quote(name) + " is undefined");
    auto dtype = SafetensorsDtypeName(src.scalar_type());
    if (!dtype.ok()) return dtype.status().WithPrefix(path + ": tensor " + Quote(name));
    torch::Tensor t = src.detach().to(torch::kCPU).contiguous();
    const uint64_t nbytes = t.numel() * t.element_size();
    auto& e = header[name];
    e["dtype"] = *dtype;
    e["shape"] = t.sizes().vec();
    e["data_offsets"] = {offset, offset + nbytes};
    offset += nbytes;
    data.push_back(std::move(t));
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // HF pads the header to 8 bytes with spaces
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>((text.size() >> (8 * i)) & 0xff);
  std::vector<std::pair<const void*, size_t>> parts = {{len, 8}, {text.data(), text.size()}};
  for (const auto& t : data) parts.push_back({t.data_ptr(), t.numel() * t.element_size()});
  return WriteFileAtomic(path, parts);
}

Status SaveSafetensorsDir(const std::string& dir, const TensorMap& tensors,
                          int64_t max_shard_bytes) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return IoError(dir + ": cannot create directory: " + ec.message());
  uint64_t total = 0;
  for (const auto& [name, t] : tensors) total += t.numel() * t.element_size();
  const std::string index_path = (fs::path(dir) / "model.safetensors.index.json").string();
  const std::string single_path = (fs::path(dir) / "model.safetensors").string();

  // Remove weight files of a previous save so the directory has exactly one layout.
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string fname = entry.path().filename().string();
    if (fname == "model.safetensors.index.json" || fname == "model.safetensors" ||
        (fname.rfind("model-", 0) == 0 && entry.path().extension() == ".safetensors"))
      fs::remove(entry.path(), ec);
  }

  if (max_shard_bytes <= 0 || total <= static_cast<uint64_t>(max_shard_bytes))
    return SaveSafetensors(single_path, tensors);

  std::vector<TensorMap> shards(1);
  uint64_t current = 0;
  for (const auto& name : LayoutOrder(tensors)) {
    const torch::Tensor& t = tensors.at(name);
    const uint64_t nbytes = t.numel() * t.element_size();
    if (!shards.back().empty() && current + nbytes > static_cast<uint64_t>(max_shard_bytes)) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().emplace(name, t);
    current += nbytes;
  }
  nlohmann::ordered_json index;
  index["metadata"]["total_size"] = total;
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  std::map<std::string, std::string> sorted_map;
  for (size_t k = 0; k < shards.size(); ++k) {
    const std::string name = ShardName(k + 1, shards.size());
    CHAINRL_RETURN_IF_ERROR(SaveSafetensors((fs::path(dir) / name).string(), shards[k]));
    for (const auto& [tensor, t] : shards[k]) sorted_map[tensor] = name;
  }
  for (const auto& [tensor, shard] : sorted_map) weight_map[tensor] = shard;
  index["weight_map"] = weight_map;
  const std::string text = index.dump(2) + "\n";
  return WriteFileAtomic(index_path, {{text.data(), text.size()}});
}

}  // namespace chainrl::model
