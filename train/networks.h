// The paper's networks (appendix G, table 5, as in the authors' published
// code), each starting with a normalize layer holding the data set's mean and
// std, so the relaxations bound exactly what the network computes on [0, 1]
// inputs:
//   fc        Linear 400, 200, 100, 100, 10 with ReLUs between
//   conv      Conv 16 4x4 stride 2 padding 1, ReLU, FC 100, ReLU, FC 10
//   conv+     Conv 16 4x4 s2 p0, ReLU, Conv 32 4x4 s1 p0, ReLU, FC 100, ReLU, FC 10
//   fc-small  Linear 100, 100, 10 with ReLUs between
//   fc-2x20   Linear 20, 20, 10 with ReLUs between (table 14's net, appendix K.3)
// or a network JSON file (engine/netjson.h), trained from the weights it holds.
// Weights are initialised PyTorch-style from a generator seeded by --seed.
#pragma once
#include <string>
#include <vector>

#include "datasets/dataset.h"
#include "engine/nn.h"

namespace cte::train {

struct Normalization {
  std::vector<float> mean, std;  // one per channel
};
// mnist 0.1307/0.3081, fashion-mnist 0.2861/0.3530, svhn and cifar10 per
// channel; folder (or anything else): computed from `train` when given, else 0/1.
Normalization dataset_normalization(const std::string& dataset, const Dataset* train = nullptr);

const std::vector<std::string>& builtin_networks();  // fc, conv, conv+, fc-small, fc-2x20, cnn7
bool is_builtin_network(const std::string& name);

// input_shape: (C, H, W) of the data. For a JSON network the input shape must
// hold the same number of values and the output `num_classes` logits.
Network build_network(const std::string& name_or_path, const Shape& input_shape, int num_classes,
                      const Normalization& normalization, uint64_t seed);

// Shi et al. 2021's IBP initialisation, as the official SABR code applies it:
// every weight tensor but the last layer's is redrawn from N(0, sigma^2) with
// sigma = sqrt(2 pi) / fan_in (fan_in: inputs of a linear layer, C kh kw of a
// conv), which keeps the Box bounds' width about constant through the layers;
// biases and the last layer keep their initialisation. Draws from mix_seed(seed, "IBPI").
void ibp_initialise(Network& net, uint64_t seed);

// The FNV-1a 64-bit hash of every parameter's float bytes in order: equal
// hashes mean bitwise-equal weights (the resume tests compare these).
uint64_t parameter_hash(const Network& net);
// fnv1a64 of the tensors' float bytes in order, continuing from h (parameter_hash's routine).
uint64_t tensors_hash(const std::vector<Tensor>& tensors, uint64_t h = 0xcbf29ce484222325ull);
std::string hex64(uint64_t value);

}  // namespace cte::train
