// Writes seed frames for wire_fuzz into the folder given: one frame of every message type (the
// tests' samples, tests/core/wire_samples.h) and trajectories of several sizes.
#include <cstdio>
#include <fstream>
#include <random>

#include "core/wire.h"
#include "tests/core/wire_samples.h"

using namespace chainrl::wire;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  std::vector<Envelope> all = testing::AllMessageTypes();
  std::mt19937_64 rng(7);
  for (int i = 0; i < 4; ++i) {
    Envelope e = MakeEnvelope("actor-" + std::to_string(i));
    *e.mutable_trajectory() = testing::MakeTrajectory(rng, 1 + i, 4 << i);
    all.push_back(std::move(e));
  }
  for (size_t i = 0; i < all.size(); ++i) {
    auto frame = EncodeFrame(all[i]);
    if (!frame.ok()) {
      std::fprintf(stderr, "%s\n", frame.status().ToString().c_str());
      return 1;
    }
    char name[32];
    std::snprintf(name, sizeof name, "/frame-%02zu", i);
    std::ofstream(argv[1] + std::string(name), std::ios::binary) << *frame;
  }
  return 0;
}
