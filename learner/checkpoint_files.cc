// Parsing of a checkpoint's manifest.json and state.json (see checkpoint_files.h).
#include "learner/checkpoint_files.h"

#include "core/json_file.h"

namespace chainrl::learner {
namespace {

// The text as a JSON object, deep nesting refused before it is built.
Result<nlohmann::json> ParseObject(std::string_view text, const std::string& path) {
  CHAINRL_RETURN_IF_ERROR(CheckJson(text, path, kMaxJsonDepth, StatusCode::kCorrupt));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Corrupt(path + ": not a JSON object");
  return j;
}

}  // namespace

Result<nlohmann::json> ParseCheckpointManifest(std::string_view text, const std::string& path) {
  CHAINRL_ASSIGN_OR_RETURN(nlohmann::json m, ParseObject(text, path));
  if (!m.contains("format_version") || !m["format_version"].is_number_integer())
    return Corrupt(path + ": no integer \"format_version\"");
  if (m["format_version"] != kCheckpointFormatVersion)
    return Corrupt(path + ": format_version " + m["format_version"].dump() + ", expected " +
                   std::to_string(kCheckpointFormatVersion));
  if (!m.contains("step") || !m["step"].is_number_integer())
    return Corrupt(path + ": no integer \"step\"");
  if (!m.contains("files") || !m["files"].is_object())
    return Corrupt(path + ": no \"files\" object");
  for (const auto& [name, entry] : m["files"].items()) {
    if (!entry.is_object() || !entry.contains("size") || !entry["size"].is_number_unsigned() ||
        !entry.contains("crc32c") || !entry["crc32c"].is_number_unsigned())
      return Corrupt(path + ": files." + name + ": needs unsigned \"size\" and \"crc32c\"");
    if (entry["crc32c"].get<uint64_t>() > UINT32_MAX)
      return Corrupt(path + ": files." + name + ": crc32c " + entry["crc32c"].dump() +
                     " is not a 32-bit checksum");
  }
  if (!m.contains("data_files") || !m["data_files"].is_array())
    return Corrupt(path + ": no \"data_files\" array");
  for (const auto& name : m["data_files"]) {
    if (!name.is_string() || !m["files"].contains(name.get<std::string>()))
      return Corrupt(path + ": data_files entry " + name.dump() + " not listed in \"files\"");
  }
  return m;
}

Result<nlohmann::json> ParseCheckpointState(std::string_view text, const std::string& path,
                                            const nlohmann::json& manifest_step) {
  CHAINRL_ASSIGN_OR_RETURN(nlohmann::json j, ParseObject(text, path));
  if (!j.contains("format_version") || j["format_version"] != kCheckpointFormatVersion)
    return Corrupt(path + ": format_version must be " + std::to_string(kCheckpointFormatVersion));
  if (!j.contains("step") || j["step"] != manifest_step)
    return Corrupt(path + ": step does not match manifest.json");
  if (!j.contains("state")) return Corrupt(path + ": no \"state\"");
  return std::move(j["state"]);
}

}  // namespace chainrl::learner
