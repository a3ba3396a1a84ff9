// The compressed collective algorithms of compressed.hpp over any Communicator.
//
// Every algorithm has the same skeleton, which is what makes bad input on one rank an error on
// every rank instead of a hang:
//   1. local work that can fail (checks, compression) -> a local Status, no early return;
//   2. a preamble allgather (64 bytes per rank): algorithm, n, payload size, step / tensor id,
//      compressor kinds, header hash and the local status code. Every rank sees every rank's
//      preamble, so all of them take the same decision (error or go) and the variable sizes of
//      the data allgathers are known without another exchange;
//   3. the data collectives; the received messages are decoded into a scratch result;
//   4. an allgather of the decode status codes; only when all succeeded is `out` (and the server
//      memory) written.
#include "gradcomp/coll/compressed.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "gradcomp/wire_format.hpp"

namespace gradcomp::coll {
namespace {

constexpr std::uint64_t kPreambleTag = 0x4c4f43475f434721ull;  // arbitrary, catches strays

struct Preamble {
  std::uint64_t tag = kPreambleTag;
  std::uint64_t algorithm = 0;
  std::uint64_t n = 0;
  std::uint64_t payload_bytes = 0;
  std::uint64_t step_tensor = 0;
  std::uint64_t kinds = 0;
  std::uint64_t header_hash = 0;
  std::uint64_t code = 0;  // StatusCode of the local work
};
static_assert(sizeof(Preamble) == 64, "preamble is 8 u64");

std::uint64_t fnv1a(const std::uint8_t* data, std::size_t bytes) {
  std::uint64_t h = 1469598103934665603ull;
  for (std::size_t i = 0; i < bytes; ++i) {
    h ^= data[i];
    h *= 1099511628211ull;
  }
  return h;
}

void add_stats(CollStats* stats, std::uint64_t sent, std::uint64_t received,
               std::uint64_t control) {
  if (!stats) return;
  stats->bytes_sent += sent;
  stats->bytes_received += received;
  stats->control_bytes += control;
}

// Step 2 of the skeleton. Returns the local error if there is one, else the first remote one,
// else a disagreement of the fields every rank must share.
Status exchange_preamble(Communicator& comm, const Preamble& mine, const Status& local,
                         std::vector<Preamble>& all, CollStats* stats) {
  const std::uint32_t p = comm.size();
  all.assign(p, Preamble{});
  GRADCOMP_TRY(comm.allgather(&mine, all.data(), sizeof(Preamble)));
  add_stats(stats, 0, 0, sizeof(Preamble) * p);
  if (!local.ok()) return local;
  for (std::uint32_t r = 0; r < p; ++r) {
    if (all[r].tag != kPreambleTag) {
      return make_status(StatusCode::kInternal, "collective: rank ", r,
                         " is in a different collective call (bad preamble tag)");
    }
    if (all[r].code != 0) {
      const auto code = static_cast<StatusCode>(all[r].code);
      return make_status(code, "collective: rank ", r, " reported ", status_code_name(code),
                         " (the message is on that rank); no output was written");
    }
  }
  for (std::uint32_t r = 0; r < p; ++r) {
    const Preamble& o = all[r];
    GRADCOMP_CHECK_ARG(o.algorithm == mine.algorithm, "collective: rank ", r, " runs ",
                       algorithm_name(static_cast<Algorithm>(o.algorithm)), ", rank ", comm.rank(),
                       " runs ", algorithm_name(static_cast<Algorithm>(mine.algorithm)));
    GRADCOMP_CHECK_ARG(o.n == mine.n, "collective: sizes differ across ranks: rank ", r,
                       " has n = ", o.n, ", rank ", comm.rank(), " has n = ", mine.n);
    GRADCOMP_CHECK_ARG(o.kinds == mine.kinds, "collective: rank ", r,
                       " uses a different compressor than rank ", comm.rank());
    GRADCOMP_CHECK_ARG(o.step_tensor == mine.step_tensor, "collective: rank ", r, " is at step ",
                       o.step_tensor >> 32, " tensor ", o.step_tensor & 0xffffffffu, ", rank ",
                       comm.rank(), " at step ", mine.step_tensor >> 32, " tensor ",
                       mine.step_tensor & 0xffffffffu, " (desynchronised ranks)");
    GRADCOMP_CHECK_ARG(o.header_hash == mine.header_hash, "collective: the payload header of rank ",
                       r, " differs from rank ", comm.rank(),
                       "'s (shared-support headers / two-phase slice layouts must agree: "
                       "desynchronised shared RNG or a different descriptor?)");
  }
  return Status::success();
}

// Step 4: every rank learns whether any rank failed to decode.
Status agree(Communicator& comm, const Status& local, CollStats* stats) {
  const std::uint32_t p = comm.size();
  const std::uint32_t mine = static_cast<std::uint32_t>(local.code());
  std::vector<std::uint32_t> codes(p, 0);
  GRADCOMP_TRY(comm.allgather(&mine, codes.data(), sizeof(mine)));
  add_stats(stats, 0, 0, sizeof(mine) * p);
  if (!local.ok()) return local;
  for (std::uint32_t r = 0; r < p; ++r) {
    if (codes[r] != 0) {
      const auto code = static_cast<StatusCode>(codes[r]);
      return make_status(code, "collective: rank ", r, " reported ", status_code_name(code),
                         " (the message is on that rank); no output was written");
    }
  }
  return Status::success();
}

Preamble make_preamble(Algorithm a, const CompressorDesc& desc, const CompressContext& ctx,
                       std::uint64_t payload_bytes, std::uint8_t down_kind = 0) {
  Preamble pre;
  pre.algorithm = static_cast<std::uint64_t>(a);
  pre.n = desc.n;
  pre.payload_bytes = payload_bytes;
  pre.step_tensor = (static_cast<std::uint64_t>(ctx.step) << 32) | ctx.tensor_id;
  pre.kinds = (static_cast<std::uint64_t>(desc.kind) << 8) | down_kind;
  return pre;
}

Status check_ops(const CompressorImpl& impl, const CompressorDesc& desc, CompressorOps* ops) {
  GRADCOMP_CHECK_ARG(impl.can_implement && impl.ops, "collective: implementation '", impl.name,
                     "' has no operations");
  GRADCOMP_CHECK_ARG(impl.can_implement(desc), "collective: implementation '", impl.name,
                     "' cannot run ", compressor_name(desc.kind));
  *ops = impl.ops(desc.kind);
  GRADCOMP_CHECK_ARG(ops->compress && ops->decompress && ops->decompress_accumulate,
                     "collective: implementation '", impl.name, "' lacks an operation for ",
                     compressor_name(desc.kind));
  return Status::success();
}

Status compress_local(const CompressorImpl& impl, const CompressorDesc& desc,
                      const CompressContext& ctx, Span<const float> in, Span<float> out,
                      std::vector<std::uint8_t>& payload) {
  GRADCOMP_CHECK_ARG(in.size() == desc.n && out.size() == desc.n, "collective: in has ", in.size(),
                     " and out ", out.size(), " elements, the descriptor n = ", desc.n);
  CompressorOps ops;
  GRADCOMP_TRY(check_ops(impl, desc, &ops));
  return ops.compress(desc, ctx, in, payload);
}

// Offsets of the allgatherv of every rank's payload_bytes.
std::uint64_t layout(const std::vector<Preamble>& all, std::vector<std::uint64_t>& bytes,
                     std::vector<std::uint64_t>& offsets) {
  bytes.resize(all.size());
  offsets.resize(all.size());
  std::uint64_t total = 0;
  for (std::size_t r = 0; r < all.size(); ++r) {
    bytes[r] = all[r].payload_bytes;
    offsets[r] = total;
    total += bytes[r];
  }
  return total;
}

// Allgathers the payloads announced in the preambles.
Status gather_payloads(Communicator& comm, Span<const std::uint8_t> payload,
                       const std::vector<Preamble>& all, std::vector<std::uint8_t>& gathered,
                       std::vector<std::uint64_t>& bytes, std::vector<std::uint64_t>& offsets,
                       CollStats* stats) {
  const std::uint64_t total = layout(all, bytes, offsets);
  gathered.assign(total, 0);
  GRADCOMP_TRY(comm.allgatherv(payload.data(), payload.size(), gathered.data(), bytes, offsets));
  add_stats(stats, payload.size(), total - payload.size(), 0);
  return Status::success();
}

Span<const std::uint8_t> slice(const std::vector<std::uint8_t>& buf, std::uint64_t offset,
                               std::uint64_t bytes) {
  return Span<const std::uint8_t>(buf.data() + offset, bytes);
}

// result = mean over ranks of D(payload_r): rank order in double (deterministic) or f32
// accumulation of D / P (fast). The decode context of rank r's message carries rank r.
Status decode_mean(const CompressorOps& ops, const CompressorDesc& desc, const CompressContext& ctx,
                   const std::vector<std::uint8_t>& gathered,
                   const std::vector<std::uint64_t>& bytes,
                   const std::vector<std::uint64_t>& offsets, ReductionMode mode,
                   std::vector<float>& result) {
  const std::size_t p = bytes.size();
  const std::uint64_t n = desc.n;
  result.assign(n, 0.0f);
  if (mode == ReductionMode::kFast) {
    const float alpha = 1.0f / static_cast<float>(p);
    for (std::size_t r = 0; r < p; ++r) {
      CompressContext c = ctx;
      c.rank = static_cast<std::uint32_t>(r);
      Status s =
          ops.decompress_accumulate(desc, c, slice(gathered, offsets[r], bytes[r]), alpha, result);
      if (!s.ok()) return make_status(s.code(), "message of rank ", r, ": ", s.message());
    }
    return Status::success();
  }
  std::vector<double> acc(n, 0.0);
  std::vector<float> tmp(n);
  for (std::size_t r = 0; r < p; ++r) {
    CompressContext c = ctx;
    c.rank = static_cast<std::uint32_t>(r);
    Status s = ops.decompress(desc, c, slice(gathered, offsets[r], bytes[r]), tmp);
    if (!s.ok()) return make_status(s.code(), "message of rank ", r, ": ", s.message());
    for (std::uint64_t j = 0; j < n; ++j) acc[j] += static_cast<double>(tmp[j]);
  }
  const double dp = static_cast<double>(p);
  for (std::uint64_t j = 0; j < n; ++j) result[j] = static_cast<float>(acc[j] / dp);
  return Status::success();
}

bool is_shared_support(const CompressorDesc& desc) {
  switch (desc.kind) {
    case CompressorKind::kIdentity:
    case CompressorKind::kGrbs:
    case CompressorKind::kRbgs: return true;
    case CompressorKind::kRandK: return desc.indices == IndexMode::kShared;
    default: return false;
  }
}

Status check_finite(Span<const float> in) {
  for (std::size_t j = 0; j < in.size(); ++j) {
    if (!std::isfinite(in[j])) {
      return make_status(StatusCode::kNonFinite, "dense allreduce: in[", j, "] = ", in[j],
                         " is not finite");
    }
  }
  return Status::success();
}

}  // namespace

// ---- names and the break-even rule -----------------------------------------------------------

const char* algorithm_name(Algorithm a) {
  switch (a) {
    case Algorithm::kAuto: return "auto";
    case Algorithm::kDense: return "dense";
    case Algorithm::kAllgather: return "allgather";
    case Algorithm::kSharedSupport: return "shared-support";
    case Algorithm::kTwoPhase: return "two-phase";
    case Algorithm::kMajority: return "majority";
  }
  return "?";
}

Result<Algorithm> parse_algorithm(std::string_view name) {
  for (Algorithm a : {Algorithm::kAuto, Algorithm::kDense, Algorithm::kAllgather,
                      Algorithm::kSharedSupport, Algorithm::kTwoPhase, Algorithm::kMajority}) {
    if (name == algorithm_name(a)) return a;
  }
  return make_status(StatusCode::kInvalidArgument, "unknown collective algorithm '",
                     std::string(name),
                     "' (auto, dense, allgather, shared-support, two-phase, majority)");
}

bool algorithm_supports(Algorithm a, const CompressorDesc& desc) {
  switch (a) {
    case Algorithm::kAuto:
    case Algorithm::kDense:
    case Algorithm::kAllgather: return true;
    case Algorithm::kSharedSupport: return is_shared_support(desc);
    case Algorithm::kTwoPhase:
      return desc.kind == CompressorKind::kBlockSign || desc.kind == CompressorKind::kQsgd ||
             desc.kind == CompressorKind::kTernGrad || desc.kind == CompressorKind::kSign ||
             desc.kind == CompressorKind::kIdentity;
    case Algorithm::kMajority:
      return desc.kind == CompressorKind::kSign || desc.kind == CompressorKind::kBlockSign;
  }
  return false;
}

Algorithm choose_algorithm(const CompressorDesc& desc, std::uint64_t payload_bytes,
                           std::uint32_t ranks, Reduction reduction) {
  if (reduction == Reduction::kMajority) return Algorithm::kMajority;
  if (reduction == Reduction::kTwoWay) return Algorithm::kTwoPhase;
  if (is_shared_support(desc) && desc.kind != CompressorKind::kIdentity)
    return Algorithm::kSharedSupport;
  if (desc.kind == CompressorKind::kIdentity || ranks <= 1) return Algorithm::kDense;
  // Allgather moves (P-1) payloads into each rank; a ring allreduce moves 2 (P-1)/P of the
  // dense vector: allgather pays while payload * P < 2 * dense bytes.
  const long double dense = 4.0L * static_cast<long double>(desc.n);
  return static_cast<long double>(payload_bytes) * ranks < 2.0L * dense ? Algorithm::kAllgather
                                                                        : Algorithm::kDense;
}

Result<Algorithm> resolve_algorithm(std::string_view name, const CompressorDesc& desc,
                                    std::uint64_t payload_bytes, std::uint32_t ranks,
                                    Reduction reduction) {
  Result<Algorithm> parsed = parse_algorithm(name);
  if (!parsed.ok()) return parsed.status();
  Algorithm a = *parsed;
  if (a == Algorithm::kAuto) return choose_algorithm(desc, payload_bytes, ranks, reduction);
  if (!algorithm_supports(a, desc)) {
    std::string ok;
    for (Algorithm b : {Algorithm::kDense, Algorithm::kAllgather, Algorithm::kSharedSupport,
                        Algorithm::kTwoPhase, Algorithm::kMajority}) {
      if (algorithm_supports(b, desc))
        ok += std::string(ok.empty() ? "" : ", ") + algorithm_name(b);
    }
    return make_status(StatusCode::kInvalidArgument, "collective algorithm '", algorithm_name(a),
                       "' does not apply to ", compressor_name(desc.kind), " (use ", ok, ")");
  }
  const bool majority = a == Algorithm::kMajority;
  GRADCOMP_CHECK_ARG(majority == (reduction == Reduction::kMajority), "collective algorithm '",
                     algorithm_name(a), "' does not compute the requested reduction");
  GRADCOMP_CHECK_ARG((a == Algorithm::kTwoPhase) == (reduction == Reduction::kTwoWay),
                     "two-way compression needs the two-phase algorithm and only it");
  return a;
}

CompressorDesc chunk_compressor(const CompressorDesc& down, const ChunkRange& chunk) {
  CompressorDesc desc = down;
  const std::vector<Segment> blocks =
      down.kind == CompressorKind::kBlockSign ? sign_blocks(down) : tensor_segments(down);
  desc.n = chunk.size();
  desc.block = 0;
  desc.shapes.clear();
  for (const Segment& b : blocks) {
    const std::uint64_t begin = std::max(b.offset, chunk.begin);
    const std::uint64_t end = std::min(b.offset + b.size, chunk.end);
    if (begin < end) desc.shapes.push_back({end - begin});
  }
  return desc;
}

// ---- the slice wire form (two-phase phase 1) ---------------------------------------------------

namespace {
// How a sliceable message is laid out: `bits` per element in one packed stream, then one f32 per
// group (block / bucket / segment) when has_scales. group_ends[g] = end offset of group g.
struct SliceLayout {
  std::uint32_t bits = 0;
  bool has_scales = false;
  bool count_is_n = false;  // header count = n (sign, identity) instead of the group count
  std::vector<std::uint64_t> group_ends;
};

std::vector<Segment> slice_groups(const CompressorDesc& up) {
  switch (up.kind) {
    case CompressorKind::kBlockSign: return sign_blocks(up);
    case CompressorKind::kQsgd: return qsgd_buckets(up);
    case CompressorKind::kTernGrad: return tensor_segments(up);
    default: return {};
  }
}

SliceLayout slice_layout(const CompressorDesc& up) {
  SliceLayout l;
  switch (up.kind) {
    case CompressorKind::kIdentity:
      l.bits = 32;
      l.count_is_n = true;
      break;
    case CompressorKind::kSign:
      l.bits = 1;
      l.count_is_n = true;
      break;
    case CompressorKind::kBlockSign:
      l.bits = 1;
      l.has_scales = up.scale != SignScale::kNone;
      break;
    case CompressorKind::kQsgd:
      l.bits = 1 + qsgd_level_bits(up.levels);
      l.has_scales = true;
      break;
    case CompressorKind::kTernGrad:
      l.bits = 2;
      l.has_scales = true;
      break;
    default: return l;
  }
  if (up.n == 0) return l;  // no groups (count 0)
  for (const Segment& g : slice_groups(up)) l.group_ends.push_back(g.offset + g.size);
  return l;
}

// Groups [g0, g1) that meet [begin, end) (end > begin).
void touched_groups(const SliceLayout& l, std::uint64_t begin, std::uint64_t end, std::size_t* g0,
                    std::size_t* g1) {
  const auto& e = l.group_ends;
  *g0 = static_cast<std::size_t>(std::upper_bound(e.begin(), e.end(), begin) - e.begin());
  *g1 = static_cast<std::size_t>(std::lower_bound(e.begin(), e.end(), end) - e.begin()) + 1;
  if (*g1 > e.size()) *g1 = e.size();
}
}  // namespace

bool two_phase_can_slice(const CompressorDesc& up) {
  switch (up.kind) {
    case CompressorKind::kIdentity:
    case CompressorKind::kSign:
    case CompressorKind::kBlockSign:
    case CompressorKind::kQsgd:
    case CompressorKind::kTernGrad: return true;
    default: return false;
  }
}

CompressorDesc two_phase_slice_desc(const CompressorDesc& up, const ChunkRange& chunk) {
  CompressorDesc desc = up;
  desc.n = chunk.size();
  desc.shapes.clear();
  if (up.kind == CompressorKind::kBlockSign) desc.block = 0;
  if (up.kind == CompressorKind::kQsgd) desc.bucket = 0;
  if (up.kind == CompressorKind::kBlockSign || up.kind == CompressorKind::kQsgd ||
      up.kind == CompressorKind::kTernGrad) {
    for (const Segment& g : slice_groups(up)) {
      const std::uint64_t begin = std::max(g.offset, chunk.begin);
      const std::uint64_t end = std::min(g.offset + g.size, chunk.end);
      if (begin < end) desc.shapes.push_back({end - begin});
    }
  }
  return desc;
}

Status two_phase_slice(const CompressorDesc& up, Span<const std::uint8_t> payload,
                       const std::vector<ChunkRange>& chunks, std::vector<std::uint8_t>& out,
                       std::vector<std::uint64_t>& slice_bytes) {
  GRADCOMP_CHECK_ARG(two_phase_can_slice(up), "two-phase slice: ", compressor_name(up.kind),
                     " messages have no slice form");
  const SliceLayout l = slice_layout(up);
  for (const ChunkRange& c : chunks) {
    GRADCOMP_CHECK_ARG(c.begin <= c.end && c.end <= up.n, "two-phase slice: chunk [", c.begin, ", ",
                       c.end, ") is outside n = ", up.n);
    GRADCOMP_CHECK_ARG(c.size() == 0 || c.begin % 32 == 0, "two-phase slice: chunk [", c.begin,
                       ", ", c.end, ") does not start on a 32-element boundary");
    GRADCOMP_CHECK_ARG(c.size() == 0 || c.end % 32 == 0 || c.end == up.n,
                       "two-phase slice: chunk [", c.begin, ", ", c.end,
                       ") ends inside a 32-element word");
  }
  // The whole message must be exactly the layout of up (the receivers check the contents).
  GRADCOMP_CHECK_PAYLOAD(payload.size() >= kHeaderBytes, "two-phase slice: message of ",
                         payload.size(), " bytes is shorter than the header");
  WireHeader h;
  GRADCOMP_TRY(read_header(payload, up.kind, up.n, load_u32(payload.data() + 16),
                           load_u32(payload.data() + 20), &h));
  const std::uint64_t groups = l.group_ends.size();
  const std::uint64_t codes = packed_bytes(up.n, l.bits);
  const std::uint64_t count = l.count_is_n ? up.n : groups;
  GRADCOMP_CHECK_PAYLOAD(h.flags == 0, "two-phase slice: flags 0x", std::hex, int(h.flags),
                         " (sliceable messages have none)");
  GRADCOMP_CHECK_PAYLOAD(h.count == count, "two-phase slice: header count ", h.count,
                         ", the descriptor implies ", count);
  const std::uint64_t body = codes + (l.has_scales ? 4 * groups : 0);
  GRADCOMP_CHECK_PAYLOAD(h.body_bytes == body, "two-phase slice: body of ", h.body_bytes,
                         " bytes, the descriptor implies ", body);

  std::vector<std::uint64_t> sizes(chunks.size(), 0);
  std::uint64_t total = 0;
  for (std::size_t j = 0; j < chunks.size(); ++j) {
    const ChunkRange& c = chunks[j];
    if (c.size() == 0) continue;
    std::size_t g0 = 0, g1 = 0;
    touched_groups(l, c.begin, c.end, &g0, &g1);
    sizes[j] = kHeaderBytes + packed_bytes(c.size(), l.bits) + (l.has_scales ? 4 * (g1 - g0) : 0);
    total += sizes[j];
  }
  const std::size_t base = out.size();
  out.resize(base + total);
  std::uint8_t* dst = out.data() + base;
  const std::uint8_t* src = payload.data() + kHeaderBytes;
  for (std::size_t j = 0; j < chunks.size(); ++j) {
    const ChunkRange& c = chunks[j];
    if (c.size() == 0) continue;
    std::size_t g0 = 0, g1 = 0;
    touched_groups(l, c.begin, c.end, &g0, &g1);
    // c.begin * bits is a multiple of 32: the chunk's fields are whole words of the stream.
    const std::uint64_t code_begin = c.begin * l.bits / 8;
    const std::uint64_t code_bytes = packed_bytes(c.size(), l.bits);
    const std::uint64_t scale_bytes = l.has_scales ? 4 * (g1 - g0) : 0;
    WireHeader sh = h;
    sh.n = c.size();
    sh.count = static_cast<std::uint32_t>(l.count_is_n ? c.size() : g1 - g0);
    sh.body_bytes = static_cast<std::uint32_t>(code_bytes + scale_bytes);
    write_header(sh, dst);
    std::memcpy(dst + kHeaderBytes, src + code_begin, code_bytes);
    if (scale_bytes)
      std::memcpy(dst + kHeaderBytes + code_bytes, src + codes + 4 * g0, scale_bytes);
    dst += sizes[j];
  }
  slice_bytes = std::move(sizes);
  return Status::success();
}

// ---- dense -------------------------------------------------------------------------------------

Status dense_allreduce_mean(Communicator& comm, Span<const float> in, Span<float> out,
                            const CollectiveOptions& options, CollStats* stats) {
  const std::uint32_t p = comm.size();
  const std::uint64_t n = in.size();
  Status local = out.size() == n
                     ? check_finite(in)
                     : make_status(StatusCode::kInvalidArgument, "dense allreduce: in has ", n,
                                   " elements, out ", out.size());
  Preamble mine;
  mine.algorithm = static_cast<std::uint64_t>(Algorithm::kDense);
  mine.n = n;
  mine.code = static_cast<std::uint64_t>(local.code());
  std::vector<Preamble> all;
  GRADCOMP_TRY(exchange_preamble(comm, mine, local, all, stats));
  if (stats) ++stats->calls;
  if (n == 0) return Status::success();
  const std::uint64_t bytes = 4 * n;
  if (options.mode == ReductionMode::kFast) {
    GRADCOMP_TRY(comm.allreduce(in.data(), out.data(), n, DType::kF32, ReduceOp::kSum));
    const float inv = 1.0f / static_cast<float>(p);
    for (float& v : out) v *= inv;
    add_stats(stats, bytes, bytes, 0);
    return Status::success();
  }
  // Deterministic: gather every rank's vector and sum in rank order in double.
  std::vector<float> all_in(static_cast<std::size_t>(n) * p);
  GRADCOMP_TRY(comm.allgather(in.data(), all_in.data(), bytes));
  add_stats(stats, bytes, bytes * (p - 1), 0);
  const double dp = static_cast<double>(p);
  for (std::uint64_t j = 0; j < n; ++j) {
    double sum = 0.0;
    for (std::uint32_t r = 0; r < p; ++r) sum += static_cast<double>(all_in[r * n + j]);
    out[j] = static_cast<float>(sum / dp);
  }
  return Status::success();
}

// ---- allgather ---------------------------------------------------------------------------------

namespace {
Status allgather_impl(Communicator& comm, const CompressorImpl& impl, const CompressorDesc& desc,
                      const CompressContext& ctx, Span<const std::uint8_t> payload, Span<float> out,
                      const CollectiveOptions& options, CollStats* stats, Status local) {
  CompressorOps ops;
  if (local.ok()) local = check_ops(impl, desc, &ops);
  if (local.ok() && out.size() != desc.n)
    local = make_status(StatusCode::kInvalidArgument, "allgather: out has ", out.size(),
                        " elements, the descriptor n = ", desc.n);
  Preamble mine = make_preamble(Algorithm::kAllgather, desc, ctx, local.ok() ? payload.size() : 0);
  mine.code = static_cast<std::uint64_t>(local.code());
  std::vector<Preamble> all;
  GRADCOMP_TRY(exchange_preamble(comm, mine, local, all, stats));
  if (stats) ++stats->calls;
  std::vector<std::uint8_t> gathered;
  std::vector<std::uint64_t> bytes, offsets;
  GRADCOMP_TRY(gather_payloads(comm, payload, all, gathered, bytes, offsets, stats));
  std::vector<float> result;
  const Status decoded =
      decode_mean(ops, desc, ctx, gathered, bytes, offsets, options.mode, result);
  GRADCOMP_TRY(agree(comm, decoded, stats));
  std::copy(result.begin(), result.end(), out.begin());
  return Status::success();
}
}  // namespace

Status allgather_allreduce(Communicator& comm, const CompressorImpl& impl,
                           const CompressorDesc& desc, const CompressContext& ctx,
                           Span<const std::uint8_t> payload, Span<float> out,
                           const CollectiveOptions& options, CollStats* stats) {
  return allgather_impl(comm, impl, desc, ctx, payload, out, options, stats, Status::success());
}

Status allgather_allreduce(Communicator& comm, const CompressorImpl& impl,
                           const CompressorDesc& desc, const CompressContext& ctx,
                           Span<const float> in, Span<float> out, const CollectiveOptions& options,
                           CollStats* stats) {
  std::vector<std::uint8_t> payload;
  const Status local = compress_local(impl, desc, ctx, in, out, payload);
  return allgather_impl(comm, impl, desc, ctx, payload, out, options, stats, local);
}

// ---- shared support ----------------------------------------------------------------------------

namespace {
Status shared_impl(Communicator& comm, const CompressorImpl& impl, const CompressorDesc& desc,
                   const CompressContext& ctx, Span<const std::uint8_t> payload, Span<float> out,
                   const CollectiveOptions& options, CollStats* stats, Status local) {
  CompressorOps ops;
  if (local.ok()) local = check_ops(impl, desc, &ops);
  if (local.ok() && !is_shared_support(desc))
    local =
        make_status(StatusCode::kInvalidArgument, "shared-support: ", compressor_name(desc.kind),
                    " messages have rank-specific supports (use allgather)");
  if (local.ok() && out.size() != desc.n)
    local = make_status(StatusCode::kInvalidArgument, "shared-support: out has ", out.size(),
                        " elements, the descriptor n = ", desc.n);
  WireHeader header;
  if (local.ok()) local = read_header(payload, desc.kind, desc.n, ctx.step, ctx.tensor_id, &header);
  if (local.ok() && header.body_bytes % 4 != 0)
    local = make_status(StatusCode::kCorruptPayload, "shared-support: body of ", header.body_bytes,
                        " bytes is not a whole number of f32 values");
  Preamble mine =
      make_preamble(Algorithm::kSharedSupport, desc, ctx, local.ok() ? payload.size() : 0);
  if (local.ok()) mine.header_hash = fnv1a(payload.data(), kHeaderBytes);
  mine.code = static_cast<std::uint64_t>(local.code());
  std::vector<Preamble> all;
  GRADCOMP_TRY(exchange_preamble(comm, mine, local, all, stats));
  if (stats) ++stats->calls;

  const std::uint32_t p = comm.size();
  const std::uint64_t m = header.body_bytes / 4;  // values on the shared support
  std::vector<float> values(m);
  std::memcpy(values.data(), payload.data() + kHeaderBytes, 4 * m);
  if (options.mode == ReductionMode::kFast) {
    GRADCOMP_TRY(comm.allreduce(values.data(), values.data(), m, DType::kF32, ReduceOp::kSum));
    add_stats(stats, 4 * m, 4 * m, 0);
    const float inv = 1.0f / static_cast<float>(p);
    for (float& v : values) v *= inv;
  } else {
    std::vector<float> all_values(static_cast<std::size_t>(m) * p);
    GRADCOMP_TRY(comm.allgather(values.data(), all_values.data(), 4 * m));
    add_stats(stats, 4 * m, 4 * m * (p - 1), 0);
    for (std::uint64_t j = 0; j < m; ++j) {
      double sum = 0.0;
      for (std::uint32_t r = 0; r < p; ++r) sum += static_cast<double>(all_values[r * m + j]);
      values[j] = static_cast<float>(sum / static_cast<double>(p));
    }
  }
  // The mean values under this rank's header (identical on every rank) decode to the mean of
  // the decoded messages, because these decoders place values without scaling them.
  std::vector<std::uint8_t> mean(payload.begin(), payload.end());
  std::memcpy(mean.data() + kHeaderBytes, values.data(), 4 * m);
  std::vector<float> result(desc.n);
  const Status decoded = ops.decompress(desc, ctx, mean, result);
  GRADCOMP_TRY(agree(comm, decoded, stats));
  std::copy(result.begin(), result.end(), out.begin());
  return Status::success();
}
}  // namespace

Status shared_support_allreduce(Communicator& comm, const CompressorImpl& impl,
                                const CompressorDesc& desc, const CompressContext& ctx,
                                Span<const std::uint8_t> payload, Span<float> out,
                                const CollectiveOptions& options, CollStats* stats) {
  return shared_impl(comm, impl, desc, ctx, payload, out, options, stats, Status::success());
}

Status shared_support_allreduce(Communicator& comm, const CompressorImpl& impl,
                                const CompressorDesc& desc, const CompressContext& ctx,
                                Span<const float> in, Span<float> out,
                                const CollectiveOptions& options, CollStats* stats) {
  std::vector<std::uint8_t> payload;
  const Status local = compress_local(impl, desc, ctx, in, out, payload);
  return shared_impl(comm, impl, desc, ctx, payload, out, options, stats, local);
}

// ---- majority ----------------------------------------------------------------------------------

namespace {
Status majority_impl(Communicator& comm, const CompressorImpl& impl, const CompressorDesc& desc,
                     const CompressContext& ctx, Span<const std::uint8_t> payload, Span<float> out,
                     const CollectiveOptions& options, CollStats* stats, Status local) {
  CompressorOps ops;
  if (local.ok()) local = check_ops(impl, desc, &ops);
  if (local.ok() && !algorithm_supports(Algorithm::kMajority, desc))
    local = make_status(StatusCode::kInvalidArgument, "majority: needs sign or blocksign, got ",
                        compressor_name(desc.kind));
  if (local.ok() && out.size() != desc.n)
    local = make_status(StatusCode::kInvalidArgument, "majority: out has ", out.size(),
                        " elements, the descriptor n = ", desc.n);
  Preamble mine = make_preamble(Algorithm::kMajority, desc, ctx, local.ok() ? payload.size() : 0);
  mine.code = static_cast<std::uint64_t>(local.code());
  std::vector<Preamble> all;
  GRADCOMP_TRY(exchange_preamble(comm, mine, local, all, stats));
  if (stats) ++stats->calls;
  std::vector<std::uint8_t> gathered;
  std::vector<std::uint64_t> bytes, offsets;
  GRADCOMP_TRY(gather_payloads(comm, payload, all, gathered, bytes, offsets, stats));
  const std::uint64_t n = desc.n;
  std::vector<std::int32_t> votes(n, 0);
  std::vector<float> tmp(n);
  Status decoded;
  for (std::uint32_t r = 0; r < comm.size() && decoded.ok(); ++r) {
    CompressContext c = ctx;
    c.rank = r;
    decoded = ops.decompress(desc, c, slice(gathered, offsets[r], bytes[r]), tmp);
    if (!decoded.ok()) {
      decoded = make_status(decoded.code(), "message of rank ", r, ": ", decoded.message());
      break;
    }
    for (std::uint64_t j = 0; j < n; ++j) votes[j] += tmp[j] >= 0.0f ? 1 : -1;  // sgn±(0) = +1
  }
  GRADCOMP_TRY(agree(comm, decoded, stats));
  const float tie = options.majority_tie_plus ? 1.0f : 0.0f;
  for (std::uint64_t j = 0; j < n; ++j) out[j] = votes[j] > 0 ? 1.0f : votes[j] < 0 ? -1.0f : tie;
  return Status::success();
}
}  // namespace

Status majority_vote(Communicator& comm, const CompressorImpl& impl, const CompressorDesc& desc,
                     const CompressContext& ctx, Span<const std::uint8_t> payload, Span<float> out,
                     const CollectiveOptions& options, CollStats* stats) {
  return majority_impl(comm, impl, desc, ctx, payload, out, options, stats, Status::success());
}

Status majority_vote(Communicator& comm, const CompressorImpl& impl, const CompressorDesc& desc,
                     const CompressContext& ctx, Span<const float> in, Span<float> out,
                     const CollectiveOptions& options, CollStats* stats) {
  std::vector<std::uint8_t> payload;
  const Status local = compress_local(impl, desc, ctx, in, out, payload);
  return majority_impl(comm, impl, desc, ctx, payload, out, options, stats, local);
}

// ---- two-phase ---------------------------------------------------------------------------------

namespace {
Status two_phase_impl(Communicator& comm, const CompressorImpl& impl, const CompressorDesc& up,
                      const CompressorDesc& down, const CompressContext& ctx,
                      Span<const std::uint8_t> payload, Span<float> server_error,
                      double server_rescale, Span<float> out, const CollectiveOptions& options,
                      CollStats* stats, Status local) {
  const std::uint32_t p = comm.size();
  const std::uint32_t rank = comm.rank();
  const std::uint64_t n = up.n;
  const std::vector<ChunkRange> chunks = chunk_bounds(n, p);
  const ChunkRange mine_chunk = n == 0 ? ChunkRange{} : chunks[rank];
  CompressorOps up_ops, down_ops;
  if (local.ok()) local = check_ops(impl, up, &up_ops);
  if (local.ok()) local = check_ops(impl, down, &down_ops);
  if (local.ok() && !algorithm_supports(Algorithm::kTwoPhase, down))
    local = make_status(StatusCode::kInvalidArgument, "two-phase: server compressor ",
                        compressor_name(down.kind), " is not supported");
  if (local.ok() && (down.n != n || out.size() != n))
    local = make_status(StatusCode::kInvalidArgument, "two-phase: up n = ", n,
                        ", down n = ", down.n, ", out has ", out.size(), " elements");
  if (local.ok() && server_error.size() != mine_chunk.size())
    local =
        make_status(StatusCode::kInvalidArgument, "two-phase: rank ", rank, " owns a chunk of ",
                    mine_chunk.size(), " elements but its server memory has ", server_error.size());
  if (local.ok() && !std::isfinite(server_rescale))
    local = make_status(StatusCode::kInvalidArgument, "two-phase: server rescale ", server_rescale,
                        " is not finite");
  // Phase-1 slices (a bad local message fails here, before any data moves). The slice sizes
  // depend only on the descriptor, so every rank knows what it receives; their hash in the
  // preamble makes ranks with different layouts fail together instead of truncating.
  const bool sliced = two_phase_can_slice(up);
  std::vector<std::uint8_t> slices;
  std::vector<std::uint64_t> slice_bytes;
  if (local.ok() && sliced) {
    local = two_phase_slice(up, payload, chunks, slices, slice_bytes);
    if (!local.ok())
      local = make_status(local.code(), "two-phase: this rank's message: ", local.message());
  }
  Preamble pre = make_preamble(Algorithm::kTwoPhase, up, ctx, local.ok() ? payload.size() : 0,
                               static_cast<std::uint8_t>(down.kind));
  if (local.ok() && sliced)
    pre.header_hash = fnv1a(reinterpret_cast<const std::uint8_t*>(slice_bytes.data()),
                            slice_bytes.size() * sizeof(std::uint64_t));
  pre.code = static_cast<std::uint64_t>(local.code());
  std::vector<Preamble> all;
  GRADCOMP_TRY(exchange_preamble(comm, pre, local, all, stats));
  if (stats) ++stats->calls;

  // Phase 1: owner j needs every worker's message restricted to chunk j.
  std::vector<std::uint8_t> gathered;
  std::vector<std::uint64_t> bytes, offsets;
  // The owner's view of the worker messages: the chunk slices (desc n = chunk size) or, without
  // a slicer, the whole messages (desc n = n, the chunk starts at mine_chunk.begin).
  CompressorDesc owner_desc = up;
  std::uint64_t mean_offset = mine_chunk.begin;
  if (sliced) {
    std::vector<std::uint64_t> send_offsets(p, 0);
    for (std::uint32_t j = 1; j < p; ++j)
      send_offsets[j] = send_offsets[j - 1] + slice_bytes[j - 1];
    bytes.assign(p, slice_bytes[rank]);
    offsets.assign(p, 0);
    for (std::uint32_t r = 0; r < p; ++r) offsets[r] = r * slice_bytes[rank];
    gathered.assign(static_cast<std::size_t>(p) * slice_bytes[rank], 0);
    // n == 0 (agreed by every rank) moves nothing; both buffers would be empty.
    if (n > 0)
      GRADCOMP_TRY(comm.alltoallv(slices.data(), slice_bytes, send_offsets, gathered.data(), bytes,
                                  offsets));
    std::uint64_t sent = 0;
    for (std::uint32_t j = 0; j < p; ++j) sent += j == rank ? 0 : slice_bytes[j];
    add_stats(stats, sent, (p - 1) * slice_bytes[rank], 0);
    owner_desc = two_phase_slice_desc(up, mine_chunk);
    mean_offset = 0;
  } else {
    GRADCOMP_TRY(gather_payloads(comm, payload, all, gathered, bytes, offsets, stats));
  }

  // Owner step on this rank's chunk; failures are reported with the phase-2 sizes.
  Status owner;
  std::vector<std::uint8_t> chunk_payload;
  std::vector<float> new_error(mine_chunk.size());
  if (mine_chunk.size() > 0) {
    std::vector<float> mean;
    owner = decode_mean(up_ops, owner_desc, ctx, gathered, bytes, offsets, options.mode, mean);
    std::vector<float> server_in(mine_chunk.size());
    for (std::uint64_t j = 0; j < mine_chunk.size() && owner.ok(); ++j) {
      server_in[j] = static_cast<float>(static_cast<double>(mean[mean_offset + j]) +
                                        server_rescale * static_cast<double>(server_error[j]));
    }
    const CompressorDesc cdesc = chunk_compressor(down, mine_chunk);
    CompressContext sctx;
    sctx.step = ctx.step;
    sctx.tensor_id = 1;
    sctx.rank = rank;
    std::vector<float> decoded(mine_chunk.size());
    if (owner.ok()) owner = down_ops.compress(cdesc, sctx, server_in, chunk_payload);
    if (owner.ok()) owner = down_ops.decompress(cdesc, sctx, chunk_payload, decoded);
    for (std::uint64_t j = 0; j < mine_chunk.size() && owner.ok(); ++j)
      new_error[j] =
          static_cast<float>(static_cast<double>(server_in[j]) - static_cast<double>(decoded[j]));
    if (!owner.ok()) {
      owner = make_status(owner.code(), "two-phase owner ", rank, ": ", owner.message());
      chunk_payload.clear();
    }
  }
  // Phase 2 sizes and owner status in one exchange.
  Preamble pre2;
  pre2.algorithm = static_cast<std::uint64_t>(Algorithm::kTwoPhase);
  pre2.n = n;
  pre2.payload_bytes = chunk_payload.size();
  pre2.step_tensor = pre.step_tensor;
  pre2.kinds = pre.kinds;
  pre2.code = static_cast<std::uint64_t>(owner.code());
  GRADCOMP_TRY(exchange_preamble(comm, pre2, owner, all, stats));
  std::vector<std::uint8_t> chunk_msgs;
  GRADCOMP_TRY(gather_payloads(comm, chunk_payload, all, chunk_msgs, bytes, offsets, stats));
  std::vector<float> result(n, 0.0f);
  Status decoded;
  for (std::uint32_t j = 0; j < p && decoded.ok(); ++j) {
    if (chunks[j].size() == 0) continue;
    CompressContext sctx;
    sctx.step = ctx.step;
    sctx.tensor_id = 1;
    sctx.rank = j;
    decoded = down_ops.decompress(chunk_compressor(down, chunks[j]), sctx,
                                  slice(chunk_msgs, offsets[j], bytes[j]),
                                  Span<float>(result.data() + chunks[j].begin, chunks[j].size()));
    if (!decoded.ok())
      decoded = make_status(decoded.code(), "chunk message of owner ", j, ": ", decoded.message());
  }
  GRADCOMP_TRY(agree(comm, decoded, stats));
  std::copy(result.begin(), result.end(), out.begin());
  std::copy(new_error.begin(), new_error.end(), server_error.begin());
  return Status::success();
}
}  // namespace

Status two_phase_allreduce(Communicator& comm, const CompressorImpl& impl, const CompressorDesc& up,
                           const CompressorDesc& down, const CompressContext& ctx,
                           Span<const std::uint8_t> payload, Span<float> server_error,
                           double server_rescale, Span<float> out, const CollectiveOptions& options,
                           CollStats* stats) {
  return two_phase_impl(comm, impl, up, down, ctx, payload, server_error, server_rescale, out,
                        options, stats, Status::success());
}

Status two_phase_allreduce(Communicator& comm, const CompressorImpl& impl, const CompressorDesc& up,
                           const CompressorDesc& down, const CompressContext& ctx,
                           Span<const float> in, Span<float> server_error, double server_rescale,
                           Span<float> out, Span<float> worker_decoded,
                           const CollectiveOptions& options, CollStats* stats) {
  std::vector<std::uint8_t> payload;
  Status local = compress_local(impl, up, ctx, in, out, payload);
  if (local.ok() && !worker_decoded.empty()) {
    if (worker_decoded.size() != up.n) {
      local = make_status(StatusCode::kInvalidArgument, "two-phase: worker_decoded has ",
                          worker_decoded.size(), " elements, n = ", up.n);
    } else {
      local = impl.ops(up.kind).decompress(up, ctx, payload, worker_decoded);
    }
  }
  return two_phase_impl(comm, impl, up, down, ctx, payload, server_error, server_rescale, out,
                        options, stats, local);
}

// ---- dispatch ----------------------------------------------------------------------------------

Status compressed_allreduce(Communicator& comm, Algorithm algorithm, const CompressorImpl& impl,
                            const CompressorDesc& desc, const CompressContext& ctx,
                            Span<const float> in, Span<float> out, const CollectiveOptions& options,
                            CollStats* stats) {
  if (algorithm == Algorithm::kAuto) {
    std::uint64_t payload = 4 * desc.n;
    if (impl.ops && impl.can_implement && impl.can_implement(desc)) {
      const CompressorOps ops = impl.ops(desc.kind);
      if (ops.payload_bytes) payload = ops.payload_bytes(desc);
    }
    algorithm = choose_algorithm(desc, payload, comm.size(), Reduction::kMean);
  }
  switch (algorithm) {
    case Algorithm::kDense: return dense_allreduce_mean(comm, in, out, options, stats);
    case Algorithm::kAllgather:
      return allgather_allreduce(comm, impl, desc, ctx, in, out, options, stats);
    case Algorithm::kSharedSupport:
      return shared_support_allreduce(comm, impl, desc, ctx, in, out, options, stats);
    case Algorithm::kMajority: return majority_vote(comm, impl, desc, ctx, in, out, options, stats);
    case Algorithm::kTwoPhase:
    case Algorithm::kAuto: break;
  }
  return make_status(StatusCode::kInvalidArgument,
                     "compressed_allreduce: two-phase needs the server memory; call "
                     "two_phase_allreduce");
}

}  // namespace gradcomp::coll
