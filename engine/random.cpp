// xoshiro256** (Blackman & Vigna) seeded through splitmix64.
#include "engine/random.h"

#include <cmath>

namespace cte {
namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

Rng::Rng(uint64_t seed) {
  for (uint64_t& s : state_) s = splitmix64(seed);
}

uint64_t Rng::next_u64() {
  const uint64_t result = rotl(state_[1] * 5, 7) * 9;
  const uint64_t t = state_[1] << 17;
  state_[2] ^= state_[0];
  state_[3] ^= state_[1];
  state_[1] ^= state_[2];
  state_[0] ^= state_[3];
  state_[2] ^= t;
  state_[3] = rotl(state_[3], 45);
  return result;
}

double Rng::uniform() { return double(next_u64() >> 11) * 0x1.0p-53; }

float Rng::uniform(float lo, float hi) {
  float value = float(lo + (double(hi) - lo) * uniform());
  return value < hi ? value : lo;  // rounding to float must not reach hi
}

double Rng::normal() {
  const double u1 = 1.0 - uniform(), u2 = uniform();  // u1 in (0, 1]
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

uint64_t Rng::below(uint64_t n) {
  if (n == 0) return 0;
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;  // reject the biased tail
  uint64_t x;
  do x = next_u64();
  while (x >= limit);
  return x % n;
}

uint64_t mix_seed_words(std::initializer_list<uint64_t> words) {
  uint64_t x = 0, h = 0;
  bool first = true;
  for (uint64_t word : words) {
    x = first ? word : h ^ word;
    first = false;
    h = splitmix64(x);
  }
  return h;
}

uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c) { return mix_seed_words({a, b, c}); }

}  // namespace cte
