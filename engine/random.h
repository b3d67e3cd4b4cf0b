// A small, fully specified random number generator (xoshiro256**, seeded by
// splitmix64), so initialisation, shuffling and attacks give the same numbers
// with every compiler and standard library (std:: distributions do not).
#pragma once
#include <cstdint>
#include <initializer_list>

namespace cte {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0);
  uint64_t next_u64();
  double uniform();                        // [0, 1), 53 random bits
  float uniform(float lo, float hi);       // [lo, hi)
  double normal();                         // standard normal (Box-Muller)
  uint64_t below(uint64_t n);              // uniform in [0, n), unbiased

 private:
  uint64_t state_[4];
};

// Mixes several integers into one seed (e.g. seed, tag, epoch, step): the
// first through splitmix64, then each next one xor-ed into the running hash
// and mixed again. mix_seed(a, b, c) is mix_seed_words({a, b, c}).
uint64_t mix_seed_words(std::initializer_list<uint64_t> words);
uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c = 0);

}  // namespace cte
