// Writes seed models for sentencepiece_fuzz into the folder given: small BPE models trained by
// libsentencepiece with Llama 2's settings (identity normalizer, byte fallback) and without byte
// fallback, as tests/model/tokenizer_test.cc trains its references.
#include <sentencepiece_trainer.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const char* words[] = {"the",     "cat",   "sat",     "on",    "mat", "reward", "token",
                         "learner", "actor", "rollout", "chain", "42",  "naïve",  "日本語"};
  {
    std::ofstream corpus(dir + "/corpus.txt");
    std::mt19937 rng(7);
    for (int line = 0; line < 1000; ++line) {
      for (int w = 0, n = 3 + rng() % 8; w < n; ++w)
        corpus << (w ? " " : "") << words[rng() % std::size(words)];
      corpus << "\n";
    }
  }
  const std::string common = "--input=" + dir + "/corpus.txt --model_type=bpe --minloglevel=2 " +
                             "--character_coverage=1.0 --normalization_rule_name=identity ";
  for (const std::string& flags :
       {std::string("--model_prefix=" + dir + "/llama2 --vocab_size=300 --byte_fallback=true " +
                    "--remove_extra_whitespaces=false"),
        std::string("--model_prefix=" + dir + "/clean --vocab_size=60")}) {
    auto st = sentencepiece::SentencePieceTrainer::Train(common + flags);
    if (!st.ok()) {
      std::fprintf(stderr, "%s\n", st.ToString().c_str());
      return 1;
    }
  }
  std::remove((dir + "/corpus.txt").c_str());
  std::remove((dir + "/llama2.vocab").c_str());
  std::remove((dir + "/clean.vocab").c_str());
  return 0;
}
