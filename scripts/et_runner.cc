// edgecart's ExecuTorch runner for the emulated ARM64 target: loads a .pte with the ExecuTorch C++ runtime shipped in
// the executorch wheel (libexecutorch + optimized/quantized kernels + XNNPACK backend; no torch), feeds raw input
// tensors, writes raw outputs. Built by scripts/setup_arm.sh with aarch64-linux-gnu-g++ against the aarch64 wheel.
//
//   et_runner MODEL.pte OUT_DIR N IN_0.bin [IN_1.bin ...]
//
// Runs the method N times (one process, one load: emulation is slow). IN_i.bin holds N samples of input i, each
// exactly as the method expects it (dtype and shape from the program's method meta; the size is checked). Writes
// OUT_DIR/output_<j>.bin (N samples of output j, back to back) and prints one line per output:
// "output <j> dtype <ScalarType code> shape <d0>,<d1>,..." (the shape of one sample).
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

using executorch::extension::from_blob;
using executorch::extension::module::Module;
using executorch::runtime::Error;
using executorch::runtime::EValue;

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s MODEL.pte OUT_DIR N IN_0.bin [IN_1.bin ...]\n", argv[0]);
    return 2;
  }
  const long n = std::atol(argv[3]);
  if (n < 1) {
    std::fprintf(stderr, "N must be >= 1\n");
    return 2;
  }
  Module module(argv[1], Module::LoadMode::File);
  auto meta = module.method_meta("forward");
  if (!meta.ok()) {
    std::fprintf(stderr, "cannot load method 'forward' of %s (error %d)\n", argv[1], static_cast<int>(meta.error()));
    return 3;
  }
  const size_t n_in = meta->num_inputs();
  if (static_cast<size_t>(argc - 4) != n_in) {
    std::fprintf(stderr, "the program takes %zu inputs, got %d files\n", n_in, argc - 4);
    return 2;
  }
  std::vector<std::vector<char>> buffers(n_in);
  std::vector<size_t> nbytes(n_in);
  for (size_t i = 0; i < n_in; ++i) {
    auto info = meta->input_tensor_meta(i);
    if (!info.ok()) {
      std::fprintf(stderr, "input %zu is not a tensor\n", i);
      return 3;
    }
    std::ifstream f(argv[4 + i], std::ios::binary);
    buffers[i].assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    nbytes[i] = info->nbytes();
    if (buffers[i].size() != nbytes[i] * static_cast<size_t>(n)) {
      std::fprintf(stderr, "input %zu: %zu bytes, expected %ld x %zu\n", i, buffers[i].size(), n, nbytes[i]);
      return 2;
    }
  }
  std::vector<std::ofstream> outs;
  for (long k = 0; k < n; ++k) {
    std::vector<executorch::extension::TensorPtr> tensors;
    std::vector<EValue> inputs;
    for (size_t i = 0; i < n_in; ++i) {
      auto info = meta->input_tensor_meta(i);
      std::vector<executorch::aten::SizesType> sizes(info->sizes().begin(), info->sizes().end());
      tensors.push_back(from_blob(buffers[i].data() + nbytes[i] * k, sizes, info->scalar_type()));
      inputs.emplace_back(*tensors.back());
    }
    auto out = module.forward(inputs);
    if (!out.ok()) {
      std::fprintf(stderr, "forward failed on sample %ld (error %d)\n", k, static_cast<int>(out.error()));
      return 4;
    }
    for (size_t j = 0; j < out->size(); ++j) {
      const auto& t = out->at(j).toTensor();
      if (k == 0) {
        outs.emplace_back(std::string(argv[2]) + "/output_" + std::to_string(j) + ".bin", std::ios::binary);
        std::printf("output %zu dtype %d shape ", j, static_cast<int>(t.scalar_type()));
        for (ssize_t d = 0; d < t.dim(); ++d) std::printf(d ? ",%d" : "%d", static_cast<int>(t.size(d)));
        std::printf("\n");
      }
      outs[j].write(static_cast<const char*>(t.const_data_ptr()), static_cast<std::streamsize>(t.nbytes()));
    }
  }
  return 0;
}
