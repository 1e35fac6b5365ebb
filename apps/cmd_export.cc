// `chainrl export CHECKPOINT --out DIR`: writes a Hugging Face model directory (config.json,
// safetensors, generation_config.json, tokenizer files) from a chainrl checkpoint or any model
// directory, optionally converting the dtype and sharding.
#include <cstdio>
#include <filesystem>

#include "apps/args.h"
#include "model/model_io.h"

namespace chainrl::app {
namespace {

int RunExport(const std::vector<std::string>& argv) {
  std::string checkpoint, out, dtype_name;
  int64_t shard_mb = 0;
  Args a("chainrl export", "CHECKPOINT --out DIR [--dtype D] [--shard-mb N]",
         "Export the policy of CHECKPOINT as a Hugging Face directory that transformers (and\n"
         "chainrl generate) load unchanged. CHECKPOINT is a chainrl checkpoint directory (its\n"
         "model/ folder is exported) or a model directory in Hugging Face layout.");
  a.Positional("CHECKPOINT", &checkpoint, "checkpoint or model directory")
      .Option("out", &out, "output directory", true)
      .Option("dtype", &dtype_name, "float32, bfloat16 or float16 (default: as stored)")
      .Option("shard-mb", &shard_mb, "largest safetensors shard in MiB; 0 writes one file (0)");
  return ParseAndRun(a, argv, [&]() -> int {
    namespace fs = std::filesystem;
    std::string src = checkpoint;
    if (fs::exists(fs::path(checkpoint) / "model" / "config.json"))
      src = (fs::path(checkpoint) / "model").string();
    if (!fs::exists(fs::path(src) / "config.json"))
      return ReportError(NotFound(checkpoint + ": neither a checkpoint (model/config.json) nor a "
                                               "model directory (config.json)"));
    model::ModelOptions mo;
    if (!dtype_name.empty()) {
      auto dt = model::ParseTorchDtype(dtype_name);
      if (!dt.ok()) return ReportError(InvalidArgument("--dtype: " + dt.status().message()));
      mo.dtype = *dt;
    } else {
      auto cfg = model::LoadModelConfig((fs::path(src) / "config.json").string());
      if (!cfg.ok()) return ReportError(cfg.status());
      auto dt = model::ParseTorchDtype(cfg->torch_dtype);
      mo.dtype = dt.ok() ? *dt : torch::kFloat32;
    }
    auto m = model::LoadModel(src, mo);
    if (!m.ok()) return ReportError(m.status());
    std::error_code ec;
    fs::create_directories(out, ec);
    if (ec) return ReportError(IoError(out + ": " + ec.message()));
    if (Status st = model::SaveModel(**m, out, shard_mb * (int64_t{1} << 20)); !st.ok())
      return ReportError(st);
    std::string tok_src = fs::exists(fs::path(src) / "tokenizer.json") ||
                                  fs::exists(fs::path(src) / "tokenizer.model")
                              ? src
                              : checkpoint;
    if (Status st = model::CopyTokenizerFiles(tok_src, out); !st.ok()) return ReportError(st);
    std::fprintf(stderr, "exported %s to %s (%s)\n", src.c_str(), out.c_str(),
                 model::TorchDtypeName(mo.dtype).c_str());
    return kExitOk;
  });
}

}  // namespace

CHAINRL_COMMAND("export", "export a checkpoint as a Hugging Face model directory", RunExport);

}  // namespace chainrl::app
