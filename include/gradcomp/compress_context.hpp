// The per-call context of a compressor (what changes from call to call), shared by every
// backend: the reference, the Kokkos kernels and the CUDA kernels.
#pragma once

#include <cstdint>
#include <vector>

#include "gradcomp/span.hpp"

namespace gradcomp {

// Warm-start state of PowerSGD: the last Q of each matrix-shaped tensor segment (m x r', row
// major). Empty entries are initialised from the shared N(0, 1) stream on first use.
struct PowerSgdState {
  std::vector<std::vector<float>> q;
};

struct CompressContext {
  std::uint32_t step = 0;       // keys the counter RNG and is checked by decoders
  std::uint32_t tensor_id = 0;  // likewise
  std::uint32_t rank = 0;       // per-rank randomness (kSharedRank streams ignore it)
  // terngrad scaler=shared: one scaler per tensor segment, the max over workers of the local
  // scalers. Ignored otherwise.
  Span<const float> shared_scalers;
  // powersgd warm start (warm_start=1). nullptr: a fresh shared Q every call.
  PowerSgdState* powersgd = nullptr;
};

}  // namespace gradcomp
