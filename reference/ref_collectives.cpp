// Oracles of the compressed collectives, on host arrays (ref/collectives.hpp).
#include "gradcomp/ref/collectives.hpp"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "gradcomp/chunking.hpp"
#include "gradcomp/ref/compress.hpp"

namespace gradcomp::ref {
namespace {

Status check_inputs(const std::vector<std::vector<float>>& in, std::uint64_t n) {
  GRADCOMP_CHECK_ARG(!in.empty(), "collective oracle: no ranks");
  for (std::size_t r = 0; r < in.size(); ++r) {
    GRADCOMP_CHECK_ARG(in[r].size() == n, "collective oracle: rank ", r, " has ", in[r].size(),
                       " elements, expected ", n);
  }
  return Status::success();
}

// D(C(x)) of rank r.
Status roundtrip(const CompressorDesc& desc, std::uint32_t step, std::uint32_t tensor_id,
                 std::uint32_t rank, const std::vector<float>& x, std::vector<float>& q) {
  CompressContext ctx;
  ctx.step = step;
  ctx.tensor_id = tensor_id;
  ctx.rank = rank;
  std::vector<std::uint8_t> payload;
  GRADCOMP_TRY(compress(desc, ctx, x, payload));
  q.assign(desc.n, 0.0f);
  return decompress(desc, ctx, payload, q);
}

std::vector<float> mean_in_rank_order(const std::vector<std::vector<float>>& rows,
                                      std::uint64_t n) {
  std::vector<float> out(n);
  for (std::uint64_t j = 0; j < n; ++j) {
    double sum = 0.0;
    for (const std::vector<float>& row : rows) sum += static_cast<double>(row[j]);
    out[j] = static_cast<float>(sum / static_cast<double>(rows.size()));
  }
  return out;
}

}  // namespace

Result<std::vector<float>> coll_dense_mean(const std::vector<std::vector<float>>& in) {
  GRADCOMP_CHECK_ARG(!in.empty(), "collective oracle: no ranks");
  GRADCOMP_TRY(check_inputs(in, in[0].size()));
  return mean_in_rank_order(in, in[0].size());
}

Result<std::vector<float>> coll_compressed_mean(const CompressorDesc& desc, std::uint32_t step,
                                                std::uint32_t tensor_id,
                                                const std::vector<std::vector<float>>& in) {
  GRADCOMP_TRY(check_inputs(in, desc.n));
  std::vector<std::vector<float>> q(in.size());
  for (std::uint32_t r = 0; r < in.size(); ++r)
    GRADCOMP_TRY(roundtrip(desc, step, tensor_id, r, in[r], q[r]));
  return mean_in_rank_order(q, desc.n);
}

Result<std::vector<float>> coll_majority(const CompressorDesc& desc, std::uint32_t step,
                                         std::uint32_t tensor_id,
                                         const std::vector<std::vector<float>>& in, bool tie_plus) {
  GRADCOMP_TRY(check_inputs(in, desc.n));
  std::vector<int> votes(desc.n, 0);
  for (std::uint32_t r = 0; r < in.size(); ++r) {
    std::vector<float> q;
    GRADCOMP_TRY(roundtrip(desc, step, tensor_id, r, in[r], q));
    for (std::uint64_t j = 0; j < desc.n; ++j) votes[j] += q[j] >= 0.0f ? 1 : -1;
  }
  std::vector<float> out(desc.n);
  for (std::uint64_t j = 0; j < desc.n; ++j) {
    if (votes[j] > 0)
      out[j] = 1.0f;
    else if (votes[j] < 0)
      out[j] = -1.0f;
    else
      out[j] = tie_plus ? 1.0f : 0.0f;
  }
  return out;
}

Result<std::vector<float>> coll_two_phase(const CompressorDesc& up, const CompressorDesc& down,
                                          std::uint32_t step,
                                          const std::vector<std::vector<float>>& in,
                                          std::vector<float>& server_error, double rescale) {
  Result<std::vector<float>> mean = coll_compressed_mean(up, step, 0, in);
  if (!mean.ok()) return mean.status();
  const std::uint64_t n = up.n;
  GRADCOMP_CHECK_ARG(server_error.size() == n, "collective oracle: server memory has ",
                     server_error.size(), " elements, expected ", n);
  const std::uint32_t p = static_cast<std::uint32_t>(in.size());
  std::vector<float> out(n, 0.0f);
  std::vector<float> next_error = server_error;
  const std::vector<ChunkRange> chunks = chunk_bounds(n, p);
  // The owner's blocks: the worker blocks (blocksign) or tensor segments cut at the chunk.
  const std::vector<Segment> blocks =
      down.kind == CompressorKind::kBlockSign ? sign_blocks(down) : tensor_segments(down);
  for (std::uint32_t owner = 0; owner < chunks.size(); ++owner) {
    const ChunkRange c = chunks[owner];
    if (c.size() == 0) continue;
    CompressorDesc cd = down;
    cd.n = c.size();
    cd.block = 0;
    cd.shapes.clear();
    for (const Segment& b : blocks) {
      const std::uint64_t lo = std::max(b.offset, c.begin);
      const std::uint64_t hi = std::min(b.offset + b.size, c.end);
      if (lo < hi) cd.shapes.push_back({hi - lo});
    }
    std::vector<float> s(c.size());
    for (std::uint64_t j = 0; j < c.size(); ++j)
      s[j] = static_cast<float>((*mean)[c.begin + j] + rescale * server_error[c.begin + j]);
    std::vector<float> q;
    GRADCOMP_TRY(roundtrip(cd, step, 1, owner, s, q));
    for (std::uint64_t j = 0; j < c.size(); ++j) {
      next_error[c.begin + j] = static_cast<float>(static_cast<double>(s[j]) - q[j]);
      out[c.begin + j] = q[j];
    }
  }
  server_error = std::move(next_error);
  return out;
}

}  // namespace gradcomp::ref
