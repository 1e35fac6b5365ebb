// Run files for actors on fresh hosts; see run_files.h.
#include "core/run_files.h"

#include <algorithm>
#include <filesystem>

#include "core/file_io.h"
#include "core/json_file.h"

namespace chainrl {

namespace fs = std::filesystem;

const std::vector<std::string>& RunFileNames() {
  static const std::vector<std::string> names = {"config.json",
                                                 "generation_config.json",
                                                 "tokenizer.json",
                                                 "tokenizer_config.json",
                                                 "special_tokens_map.json",
                                                 "vocab.json",
                                                 "merges.txt",
                                                 "tokenizer.model",
                                                 "added_tokens.json",
                                                 "chat_template.jinja"};
  return names;
}

Result<wire::RunFiles> CollectRunFiles(const Config& config, size_t max_bytes) {
  wire::RunFiles out;
  out.set_config_toml(config.ToToml());
  size_t total = out.config_toml().size();
  const std::string model_dir = config.GetString("model.path");
  std::string tok_dir = config.GetString("tokenizer.path");
  if (tok_dir.empty()) tok_dir = model_dir;
  if (!fs::exists(fs::path(model_dir) / "config.json"))
    return NotFound(model_dir + "/config.json: the learner has no model config to serve");
  for (const std::string& name : RunFileNames()) {
    // Tokenizer files from tokenizer.path first; config.json and the generation config from the
    // model.
    fs::path p = fs::path(tok_dir) / name;
    if (!fs::exists(p)) p = fs::path(model_dir) / name;
    if (!fs::is_regular_file(p)) continue;
    auto data = ReadFileBounded(p.string(), max_bytes - std::min(total, max_bytes));
    if (!data.ok())
      return data.status().WithPrefix("the run's files, served to actors, are limited to " +
                                      std::to_string(max_bytes) + " bytes together");
    total += data->size();
    wire::RunFile* f = out.add_model_files();
    f->set_name(name);
    f->set_data(std::move(data).value());
  }
  return out;
}

Result<std::string> WriteRunFiles(const wire::RunFiles& files, const std::string& dir) {
  const fs::path model = fs::path(dir) / "model";
  std::error_code ec;
  fs::create_directories(model, ec);
  if (ec) return IoError(model.string() + ": " + ec.message());
  bool has_config = false;
  for (const auto& f : files.model_files()) {
    const std::string& name = f.name();
    if (name.empty() || name.front() == '.' || name.find('/') != std::string::npos ||
        name.find('\0') != std::string::npos)
      return InvalidArgument("run files: '" + name + "' is not a plain file name");
    CHAINRL_RETURN_IF_ERROR(WriteFileAtomic((model / name).string(), f.data()));
    has_config = has_config || name == "config.json";
  }
  if (!has_config) return InvalidArgument("run files: no config.json among the model's files");
  const std::string toml = (fs::path(dir) / "run.toml").string();
  CHAINRL_RETURN_IF_ERROR(WriteFileAtomic(toml, files.config_toml()));
  return toml;
}

}  // namespace chainrl
