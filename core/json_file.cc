#include "core/json_file.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace chainrl {
namespace {

// Counts nesting without building anything; stops at the first level past the bound.
class DepthCheck : public nlohmann::json_sax<nlohmann::json> {
 public:
  explicit DepthCheck(int max_depth) : max_depth_(max_depth) {}
  bool too_deep() const { return too_deep_; }
  const std::string& error() const { return error_; }

  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return Enter(); }
  bool key(string_t&) override { return true; }
  bool end_object() override { return Leave(); }
  bool start_array(std::size_t) override { return Enter(); }
  bool end_array() override { return Leave(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    error_ = e.what();
    return false;
  }

 private:
  bool Enter() {
    if (++depth_ <= max_depth_) return true;
    too_deep_ = true;
    return false;
  }
  bool Leave() {
    --depth_;
    return true;
  }
  int max_depth_;
  int depth_ = 0;
  bool too_deep_ = false;
  std::string error_;
};

}  // namespace

Result<std::string> ReadFileBounded(const std::string& path, uint64_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    const std::string why = path + ": cannot open (" + std::strerror(err) + ")";
    return err == ENOENT ? NotFound(why) : IoError(why);
  }
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (!ec && size > max_bytes)
    return InvalidArgument(path + ": " + std::to_string(size) + " bytes, over the limit of " +
                           std::to_string(max_bytes) + " for this file");
  std::string out;
  if (!ec) out.reserve(static_cast<size_t>(size));
  // Read in blocks up to the bound (a file that grows, or a pipe without a size, stops there).
  char buf[1 << 16];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    out.append(buf, static_cast<size_t>(in.gcount()));
    if (out.size() > max_bytes)
      return InvalidArgument(path + ": over the limit of " + std::to_string(max_bytes) +
                             " bytes for this file");
  }
  if (in.bad()) return IoError(path + ": read failed");
  return out;
}

Status CheckJson(std::string_view text, const std::string& where, int max_depth, StatusCode code) {
  DepthCheck check(max_depth);
  if (nlohmann::json::sax_parse(text, &check)) return Status::Ok();
  if (check.too_deep())
    return Status(code,
                  where + ": JSON nested deeper than " + std::to_string(max_depth) + " levels");
  return Status(code, where + ": not valid JSON (" + check.error() + ")");
}

Result<nlohmann::json> ParseJson(std::string_view text, const std::string& where, int max_depth,
                                 StatusCode code) {
  CHAINRL_RETURN_IF_ERROR(CheckJson(text, where, max_depth, code));
  return nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
}

Result<nlohmann::json> ReadJsonFile(const std::string& path, uint64_t max_bytes, int max_depth,
                                    StatusCode code) {
  CHAINRL_ASSIGN_OR_RETURN(const std::string text, ReadFileBounded(path, max_bytes));
  return ParseJson(text, path, max_depth, code);
}

namespace {

Status RequireIntegersAt(const nlohmann::json& j, const std::string& where,
                         const std::string& path) {
  if (j.is_number_float())
    return InvalidArgument(where + ": " + (path.empty() ? "the value" : path) + ": " + j.dump() +
                           " is not an integer");
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it)
      CHAINRL_RETURN_IF_ERROR(
          RequireIntegersAt(it.value(), where, path + (path.empty() ? "" : ".") + it.key()));
  } else if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i)
      CHAINRL_RETURN_IF_ERROR(RequireIntegersAt(j[i], where, path + "[" + std::to_string(i) + "]"));
  }
  return Status::Ok();
}

}  // namespace

Status RequireIntegers(const nlohmann::json& j, const std::string& where,
                       std::initializer_list<std::string_view> free) {
  if (!j.is_object()) return RequireIntegersAt(j, where, "");
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool skip = false;
    for (std::string_view f : free) skip = skip || it.key() == f;
    if (!skip) CHAINRL_RETURN_IF_ERROR(RequireIntegersAt(it.value(), where, it.key()));
  }
  return Status::Ok();
}

}  // namespace chainrl
