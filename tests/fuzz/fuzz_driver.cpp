// Replays a fuzz target as an ordinary test (ARCHITECTURE.md "Tests"): every file of the corpus
// directories given on the command line, then a fixed number of deterministic byte mutations of
// each (flips, truncations, duplications, splices), so the test explores beyond the seeds even
// where no fuzzing engine is installed. The target aborts on a broken invariant; exit 0 = pass.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

std::string mutate(const std::string& seed, const std::vector<std::string>& corpus,
                   std::mt19937_64& rng) {
  std::string out = seed;
  const int steps = 1 + static_cast<int>(rng() % 4);
  for (int i = 0; i < steps; ++i) {
    const std::size_t at = out.empty() ? 0 : rng() % out.size();
    switch (rng() % 6) {
      case 0:  // flip a bit
        if (!out.empty()) out[at] = static_cast<char>(out[at] ^ (1 << (rng() % 8)));
        break;
      case 1:  // truncate
        out.resize(at);
        break;
      case 2:  // insert a byte that parsers care about
        out.insert(at, 1, "\r\n:- \"'{}[]#&*!|>%@`\t\0"[rng() % 22]);
        break;
      case 3:  // duplicate a span
        if (!out.empty()) out.insert(at, out.substr(at, 1 + rng() % 32));
        break;
      case 4: {  // splice in a piece of another input
        const auto& other = corpus[rng() % corpus.size()];
        if (!other.empty()) out.insert(at, other.substr(rng() % other.size(), 1 + rng() % 64));
        break;
      }
      default:  // erase a span
        out.erase(at, 1 + rng() % 16);
        break;
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> corpus;
  for (int i = 1; i < argc; ++i) {
    for (const auto& entry : std::filesystem::recursive_directory_iterator(argv[i])) {
      if (!entry.is_regular_file()) continue;
      std::ifstream in(entry.path(), std::ios::binary);
      corpus.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
  }
  if (corpus.empty()) {
    std::fprintf(stderr, "no corpus files found\n");
    return 1;
  }
  constexpr int kMutationsPerSeed = 400;
  std::mt19937_64 rng(20261129);
  std::size_t runs = 0;
  for (const auto& seed : corpus) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(seed.data()), seed.size());
    ++runs;
    for (int m = 0; m < kMutationsPerSeed; ++m) {
      const auto input = mutate(seed, corpus, rng);
      LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(input.data()), input.size());
      ++runs;
    }
  }
  std::printf("%zu inputs from %zu seeds: no crash, no broken invariant\n", runs, corpus.size());
  return 0;
}
