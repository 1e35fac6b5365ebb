// Tests of safetensors reading and writing: exact bytes of the HF layout, bit-exact round trips,
// zero-copy views, shards with an index, every class of malformed file, and a fuzz loop over
// corrupted variants that must each load or fail with an error, never crash.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "model/safetensors.h"

namespace chainrl::model {
namespace {
namespace fs = std::filesystem;

fs::path TempDir(const std::string& name) {
  fs::path d = fs::temp_directory_path() /
               ("chainrl_safetensors_test_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string ReadBytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteBytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// A file from a header text and a data section, with the length prefix.
std::string MakeImage(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return out + header + data;
}

bool BitEqual(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  torch::Tensor ac = a.contiguous(), bc = b.contiguous();
  return std::memcmp(ac.data_ptr(), bc.data_ptr(), ac.numel() * ac.element_size()) == 0;
}

TensorMap SampleTensors() {
  torch::manual_seed(1);
  TensorMap t;
  t["a.f32"] = torch::randn({3, 5});
  t["b.bf16"] = torch::randn({7}).to(torch::kBFloat16);  // 14 bytes: later tensors need sorting
  t["c.f16"] = torch::randn({2, 2}).to(torch::kHalf);
  t["d.i64"] = torch::arange(4, torch::kLong);
  t["e.bool"] = torch::tensor({true, false, true});
  t["f.i8"] = torch::tensor({-3, 4}, torch::kChar);
  t["g.scalar"] = torch::tensor(2.5);
  t["h.empty"] = torch::zeros({0, 3});
  t["i.f64"] = torch::randn({2}, torch::kDouble);
  return t;
}

TEST(Safetensors, WritesHfLayoutAndRoundTripsBitExact) {
  fs::path dir = TempDir("roundtrip");
  const std::string path = (dir / "x.safetensors").string();
  TensorMap in = SampleTensors();
  ASSERT_TRUE(SaveSafetensors(path, in).ok());
  const std::string bytes = ReadBytes(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  EXPECT_EQ(n % 8, 0u);
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.rfind("{\"__metadata__\":{\"format\":\"pt\"},", 0), 0u) << header;
  EXPECT_EQ(header.find_last_not_of(' '), header.find_last_of('}'));  // padded with spaces only
  uint64_t data_bytes = 0;
  for (const auto& [k, t] : in) data_bytes += t.numel() * t.element_size();
  EXPECT_EQ(bytes.size(), 8 + n + data_bytes);
  // Largest elements first (f64, i64 before f32 ...), so each tensor is aligned for its dtype.
  auto j = nlohmann::json::parse(header);
  EXPECT_EQ(j["d.i64"]["data_offsets"], nlohmann::json({0, 32}));
  EXPECT_EQ(j["i.f64"]["data_offsets"], nlohmann::json({32, 48}));
  EXPECT_EQ(j["a.f32"]["data_offsets"], nlohmann::json({48, 108}));
  EXPECT_EQ(j["a.f32"]["dtype"], "F32");
  EXPECT_EQ(j["a.f32"]["shape"], nlohmann::json({3, 5}));

  auto out = LoadSafetensors(path);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  ASSERT_EQ(out->size(), in.size());
  for (const auto& [k, t] : in) EXPECT_TRUE(BitEqual(out->at(k), t)) << k;
}

TEST(Safetensors, TensorsAreZeroCopyCopyOnWriteViews) {
  fs::path dir = TempDir("zerocopy");
  const std::string path = (dir / "x.safetensors").string();
  ASSERT_TRUE(SaveSafetensors(path, {{"w", torch::arange(6, torch::kFloat)}}).ok());
  torch::Tensor a, b;
  {
    auto file = SafetensorsFile::Open(path);
    ASSERT_TRUE(file.ok());
    a = (*file)->Get("w").value();
    b = (*file)->Get("w").value();
  }  // the file object is gone; the tensors keep the mapping alive
  EXPECT_EQ(a.data_ptr(), b.data_ptr());  // both views of the same mapped bytes: no copy
  EXPECT_EQ(a[5].item<float>(), 5.0f);
  a.mul_(10);  // copy-on-write: the file is untouched
  EXPECT_EQ(LoadSafetensors(path)->at("w")[5].item<float>(), 5.0f);
}

TEST(Safetensors, UnsupportedDtypesAreErrors) {
  EXPECT_EQ(SafetensorsDtype("F8_E4M3").status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(SafetensorsDtype("Q4").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(SafetensorsDtype("BF16").value(), torch::kBFloat16);
  EXPECT_FALSE(SaveSafetensors("/nonexistent-dir/x.safetensors", {{"w", torch::ones({1})}}).ok());
}

struct BadCase {
  const char* what;
  std::string image;
  const char* must_mention;
};

TEST(Safetensors, MalformedFilesAreErrorsNamingFileAndTensor) {
  fs::path dir = TempDir("malformed");
  const std::string d8(8, '\1');
  std::string huge_len = MakeImage("{}", "");
  huge_len[3] = 0x10;  // header length ~268 MB
  std::string past_end = MakeImage("{}", "");
  past_end[0] = 50;
  const std::vector<BadCase> cases = {
      {"truncated", "abc", "truncated"},
      {"header length past end", past_end, "past the end"},
      {"header over 100 MB", huge_len, "100 MB"},
      {"not json", MakeImage("{\"w\": [", d8), "not valid JSON"},
      {"not an object", MakeImage("[1,2]", ""), "not a JSON object"},
      {"duplicate",
       MakeImage(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                 R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                 d8),
       "'w' appears twice"},
      {"unknown dtype", MakeImage(R"({"w":{"dtype":"F7","shape":[2],"data_offsets":[0,8]}})", d8),
       "'w'"},
      {"byte count", MakeImage(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", d8),
       "'w'"},
      {"out of range", MakeImage(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", d8),
       "'w'"},
      {"end before begin",
       MakeImage(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[4,2]}})", d8), "'w'"},
      {"negative dim", MakeImage(R"({"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", d8),
       "'w'"},
      {"overflowing shape",
       MakeImage(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
                 d8),
       "'w'"},
      {"overlap",
       MakeImage(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                 R"("b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})",
                 d8),
       "overlapping"},
      {"missing dtype", MakeImage(R"({"w":{"shape":[1],"data_offsets":[0,1]}})", d8), "'w'"},
      {"bad metadata", MakeImage(R"({"__metadata__":{"format":1}})", ""), "__metadata__"},
  };
  for (const auto& c : cases) {
    const std::string path = (dir / "bad.safetensors").string();
    WriteBytes(path, c.image);
    auto r = LoadSafetensors(path);
    ASSERT_FALSE(r.ok()) << c.what;
    EXPECT_EQ(r.status().code(), StatusCode::kCorrupt) << c.what << ": " << r.status().ToString();
    EXPECT_NE(r.status().message().find(path), std::string::npos) << c.what;
    EXPECT_NE(r.status().message().find(c.must_mention), std::string::npos)
        << c.what << ": " << r.status().ToString();
  }
  EXPECT_EQ(LoadSafetensors((dir / "absent.safetensors").string()).status().code(),
            StatusCode::kNotFound);
}

TEST(Safetensors, FuzzedVariantsLoadOrFailButNeverCrash) {
  fs::path dir = TempDir("fuzz");
  const std::string good_path = (dir / "good.safetensors").string();
  ASSERT_TRUE(SaveSafetensors(good_path, SampleTensors()).ok());
  const std::string good = ReadBytes(good_path);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(good[i]);
  std::mt19937_64 rng(1234);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  const std::string digits = "0123456789";
  int ok = 0, failed = 0;
  const std::string path = (dir / "fuzz.safetensors").string();
  for (int iter = 0; iter < 1500; ++iter) {
    std::string v = good;
    switch (iter % 5) {
      case 0:  // random byte flips, mostly in the length prefix and header
        for (int k = 0, n = 1 + pick(4); k < n; ++k)
          v[pick(rng() % 4 ? 8 + header_len : v.size())] ^= static_cast<char>(1 + pick(255));
        break;
      case 1:  // truncation
        v.resize(pick(v.size()));
        break;
      case 2: {  // a digit of the header replaced: shapes and offsets change
        for (int k = 0, n = 1 + pick(3); k < n; ++k) {
          size_t p = 8 + pick(header_len);
          if (std::isdigit(static_cast<unsigned char>(v[p]))) v[p] = digits[pick(10)];
        }
        break;
      }
      case 3: {  // a dtype name swapped for another of a different size, or garbage
        const char* names[] = {"F64", "F16", "I8", "BOOL", "XX", "U64", "F8_E5M2"};
        size_t p = v.find("\"F32\"");
        if (p != std::string::npos) {
          std::string repl = std::string("\"") + names[pick(7)] + "\"";
          v.replace(p, 5, repl);
          // keep the declared header length as is: a longer or shorter header is another error
        }
        break;
      }
      case 4: {  // a random header-length prefix, small or large
        uint64_t n = rng() % 4 ? pick(v.size() + 16) : rng();
        for (int i = 0; i < 8; ++i) v[i] = static_cast<char>((n >> (8 * i)) & 0xff);
        break;
      }
    }
    WriteBytes(path, v);
    auto r = LoadSafetensors(path);
    if (r.ok()) {
      ++ok;
      double sum = 0;  // touch every byte the tensors claim
      for (auto& [k, t] : *r)
        if (t.numel() > 0) sum += t.to(torch::kDouble).abs().sum().item<double>();
      (void)sum;
    } else {
      ++failed;
      EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().ToString();
    }
  }
  EXPECT_GT(failed, 500);  // the corruptions mostly break the file ...
  EXPECT_GT(ok, 10);       // ... but some (e.g. flips inside float data) leave it valid
}

TEST(Safetensors, ShardsWithIndexRoundTrip) {
  fs::path dir = TempDir("shards");
  TensorMap in;
  for (int i = 0; i < 6; ++i) in["layer." + std::to_string(i)] = torch::randn({10, 10});  // 400 B
  ASSERT_TRUE(SaveSafetensorsDir(dir.string(), in, 1000).ok());
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));
  EXPECT_TRUE(fs::exists(dir / "model-00001-of-00003.safetensors"));
  EXPECT_TRUE(fs::exists(dir / "model-00003-of-00003.safetensors"));
  auto index = nlohmann::json::parse(ReadBytes(dir / "model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"], 2400);
  EXPECT_EQ(index["weight_map"]["layer.0"], "model-00001-of-00003.safetensors");
  EXPECT_EQ(index["weight_map"]["layer.5"], "model-00003-of-00003.safetensors");
  auto out = LoadSafetensorsDir(dir.string());
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  for (const auto& [k, t] : in) EXPECT_TRUE(BitEqual(out->at(k), t)) << k;

  // Saving again unsharded replaces the shards.
  ASSERT_TRUE(SaveSafetensorsDir(dir.string(), in, 0).ok());
  EXPECT_TRUE(fs::exists(dir / "model.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(dir / "model-00001-of-00003.safetensors"));
  EXPECT_EQ(LoadSafetensorsDir(dir.string())->size(), 6u);
}

TEST(Safetensors, InconsistentIndexesAreErrors) {
  fs::path dir = TempDir("badindex");
  ASSERT_TRUE(SaveSafetensors((dir / "s1.safetensors").string(),
                              {{"a", torch::ones({2})}, {"b", torch::ones({2})}})
                  .ok());
  auto write_index = [&](const nlohmann::json& wm) {
    WriteBytes(dir / "model.safetensors.index.json",
               nlohmann::json({{"metadata", {}}, {"weight_map", wm}}).dump());
  };
  auto expect_error = [&](const char* mention) {
    auto r = LoadSafetensorsDir(dir.string());
    ASSERT_FALSE(r.ok()) << mention;
    EXPECT_NE(r.status().message().find(mention), std::string::npos) << r.status().ToString();
  };
  write_index({{"a", "s1.safetensors"}, {"b", "s1.safetensors"}});
  EXPECT_TRUE(LoadSafetensorsDir(dir.string()).ok());
  write_index({{"a", "s1.safetensors"}, {"b", "s1.safetensors"}, {"c", "s1.safetensors"}});
  expect_error("'c'");
  write_index({{"a", "s1.safetensors"}});
  expect_error("'b' is not listed");
  write_index({{"a", "s1.safetensors"}, {"b", "s1.safetensors"}, {"c", "s2.safetensors"}});
  expect_error("s2.safetensors");  // a shard that does not exist
  write_index({{"a", "../s1.safetensors"}});
  expect_error("invalid shard");
  WriteBytes(dir / "model.safetensors.index.json", "{not json");
  expect_error("model.safetensors.index.json");
  fs::remove(dir / "model.safetensors.index.json");
  expect_error("neither");
}

}  // namespace
}  // namespace chainrl::model
