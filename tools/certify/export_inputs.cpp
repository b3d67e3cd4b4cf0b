// certify export-inputs --dataset D [--data-dir DIR] [--split test|train] [--indices 0-9,15] [--out x.json]
//     images and labels as the x.json that certify bounds reads.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "datasets/dataset.h"
#include "tools/certify/commands.h"
#include "tools/lib/curves.h"

namespace cte::tools {

using nlohmann::json;

namespace {

// "0-9,15,20-22" as the list of indices it names, in order; each below `size`.
std::vector<int64_t> parse_indices(const std::string& text, int64_t size) {
  std::vector<int64_t> out;
  std::stringstream items(text);
  std::string item;
  auto number = [&](const std::string& part) {
    size_t used = 0;
    int64_t v = -1;
    try {
      v = std::stoll(part, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (part.empty() || used != part.size() || v < 0)
      throw std::invalid_argument("[certify] --indices '" + text + "': '" + item +
                                  "' is not an index or a range A-B of indices");
    if (v >= size)
      throw std::invalid_argument("[certify] --indices: " + std::to_string(v) + " is outside the " +
                                  std::to_string(size) + " images of the split");
    return v;
  };
  while (std::getline(items, item, ',')) {
    const size_t dash = item.find('-');
    const int64_t first = number(item.substr(0, dash));
    const int64_t last = dash == std::string::npos ? first : number(item.substr(dash + 1));
    if (last < first)
      throw std::invalid_argument("[certify] --indices: the range " + item + " runs backwards");
    for (int64_t i = first; i <= last; ++i) out.push_back(i);
  }
  if (out.empty()) throw std::invalid_argument("[certify] --indices '" + text + "' names no image");
  return out;
}

}  // namespace

int certify_export_inputs_command(int argc, char** argv) {
  CLI::App app{"certify export-inputs: images of a data set (pixels / 255, in C,H,W order) and their labels as the "
               "x.json that certify bounds --x reads: {\"x\": [[...], ...], \"y\": [...]}"};
  std::string dataset, data_dir, split = "test", indices = "0-9", out_path = "x.json";
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_option("--dataset", dataset, "mnist | fashion-mnist | svhn | cifar10 | folder")->required();
  app.add_option("--data-dir", data_dir, "where the data set lives (default: the usual search, as train)");
  app.add_option("--split", split, "test | train")->capture_default_str()->check(CLI::IsMember({"test", "train"}));
  app.add_option("--indices", indices, "images to export: indices and ranges, e.g. 0-9,15")->capture_default_str();
  app.add_option("--out", out_path, "the JSON file to write")->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  const DatasetSplits data = load_dataset(dataset, data_dir);
  const Dataset& images = split == "test" ? data.test : data.train;
  const std::vector<int64_t> chosen = parse_indices(indices, int64_t(images.size()));
  const size_t numel = images.image_numel();
  json x = json::array(), y = json::array();
  for (int64_t i : chosen) {
    json row = json::array();
    // The float that train and certify landscape feed the network (pixel / 255 in float).
    for (size_t k = 0; k < numel; ++k) row.push_back(double(float(images.images[size_t(i) * numel + k]) / 255.0f));
    x.push_back(std::move(row));
    y.push_back(int(images.labels[size_t(i)]));
  }
  tools::write_text_file(out_path, json{{"x", x}, {"y", y}}.dump() + "\n");
  std::cout << "[export-inputs] wrote " << out_path << ": " << chosen.size() << " " << split << " images of " << dataset
            << " (" << images.channels << "x" << images.height << "x" << images.width << ", labels in y)" << std::endl;
  return 0;
}

}  // namespace cte::tools
