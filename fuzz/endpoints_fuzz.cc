// libFuzzer harness: a learner's endpoints (core/endpoints.h): the endpoints.json an actor reads
// from a run directory, and the address given to `chainrl actor --connect`.
#include "core/endpoints.h"
#include "fuzz/fuzz_input.h"

using namespace chainrl;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in = fuzz::AsText(data, size);
  auto file = ParseEndpointsJson(in, "fuzz/endpoints.json");
  if (file.ok())
    CHAINRL_FUZZ_CHECK(!file->work.empty() && !file->trajectories.empty() && !file->weights.empty(),
                       "an empty endpoint accepted");
  // An address ending in .json names a file to read; the file's contents are fuzzed above.
  const std::string address(in);
  if (address.size() >= 5 && address.compare(address.size() - 5, 5, ".json") == 0) return 0;
  auto resolved = ResolveLearnerEndpoints(address);
  if (resolved.ok())
    CHAINRL_FUZZ_CHECK(resolved->work.rfind(address.substr(0, 6), 0) == 0, resolved->work);
  return 0;
}
