// gradcomp_train_ckpt_equal A B: exit 0 when two gradcomp-train checkpoints hold the same
// training state (epochs, step, every rank's optimizer state and model buffers, byte for byte),
// 1 with the first difference otherwise, 2 on unreadable files. The epoch records (timings) and
// hence the checksums may differ.
#include <cstdio>

#include "checkpoint.hpp"

namespace gt = gradcomp::train;

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s A.ckpt B.ckpt\n", argv[0]);
    return 2;
  }
  gt::Checkpoint c[2];
  for (int i = 0; i < 2; ++i) {
    auto bytes = gt::read_file(argv[1 + i]);
    if (!bytes.ok()) {
      std::fprintf(stderr, "%s\n", bytes.status().to_string().c_str());
      return 2;
    }
    auto d = gt::decode_checkpoint(*bytes);
    if (!d.ok()) {
      std::fprintf(stderr, "%s: %s\n", argv[1 + i], d.status().to_string().c_str());
      return 2;
    }
    c[i] = std::move(d.value());
  }
  auto differ = [](const char* what) {
    std::printf("checkpoints differ: %s\n", what);
    return 1;
  };
  if (c[0].epochs_done != c[1].epochs_done) return differ("epochs done");
  if (c[0].step != c[1].step) return differ("step");
  if (!gt::config_mismatch(c[0].config, c[1].config).empty()) return differ("configuration");
  if (c[0].ranks.size() != c[1].ranks.size()) return differ("rank count");
  for (std::size_t r = 0; r < c[0].ranks.size(); ++r) {
    const auto& a = c[0].ranks[r];
    const auto& b = c[1].ranks[r];
    if (a.optimizer.size() != b.optimizer.size()) return differ("optimizer state size");
    for (std::size_t i = 0; i < a.optimizer.size(); ++i) {
      if (a.optimizer[i] != b.optimizer[i]) {
        std::printf("rank %zu: optimizer state byte %zu of %zu differs\n", r, i,
                    a.optimizer.size());
        return 1;
      }
    }
    if (a.buffers != b.buffers) {
      std::printf("rank %zu: ", r);
      return differ("BatchNorm buffers");
    }
  }
  std::printf("checkpoints equal: %u epochs, %llu steps, %zu ranks\n", c[0].epochs_done,
              static_cast<unsigned long long>(c[0].step), c[0].ranks.size());
  return 0;
}
