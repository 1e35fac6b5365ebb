// File output shared by every process: atomic writes, so a reader (or a resumed run) never sees a
// half-written config, checkpoint index, address file or scrape-target list.
#pragma once

#include <string>

#include "core/status.h"

namespace chainrl {

// Writes `contents` to `path` atomically: a temporary file in the same directory, fsync, rename.
// IoError naming the file on failure; the temporary file is removed then.
Status WriteFileAtomic(const std::string& path, const std::string& contents);
// Writes `contents` to `path` (created or truncated) and fsyncs it; no rename. For files inside a
// directory that is itself made visible atomically (checkpoints). IoError naming the file.
Status WriteFileSynced(const std::string& path, const std::string& contents);

}  // namespace chainrl
