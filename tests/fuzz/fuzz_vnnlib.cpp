// VNNLIB properties (verify/property.h), in memory. An accepted property must
// be self-consistent: one (lower, upper) pair per input, every inequality
// over num_outputs outputs, and the counterexample check must run on the
// box's centre through a linear network of matching size.
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_util.h"
#include "verify/property.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  cte::verify::Property property;
  try {
    property = cte::verify::parse_vnnlib(text, "fuzz.vnnlib");
  } catch (const std::exception&) {
    return 0;
  }
  if (property.lower.size() != property.upper.size()) std::abort();
  for (const cte::verify::Conjunction& conjunction : property.disjuncts)
    for (const cte::verify::LinearInequality& inequality : conjunction)
      if (inequality.coeffs.size() != size_t(property.num_outputs)) std::abort();
  std::vector<double> y(size_t(property.num_outputs), 0.0);
  for (const cte::verify::Conjunction& conjunction : property.disjuncts)
    (void)cte::verify::conjunction_violation(conjunction, y);
  return 0;
}
