// PowerSGD building blocks (algorithms.md §4.11), shared by the single-worker compressor
// (compressor "powersgd") and the P-worker simulator, which runs the distributed form
//
//     P = M_i Q  ->  allreduce(P)  ->  orthogonalize(P)  ->  Q = M_i^T P^  ->  allreduce-mean(Q)
//     output = P^ Q^T
//
// with these same functions. Matrices are row major f32; every dot product is accumulated in
// double and rounded to f32 once, when stored (the oracle numerics of algorithms.md §2).
#pragma once

#include <cstdint>

#include "gradcomp/span.hpp"
#include "gradcomp/status.hpp"

namespace gradcomp::ref {

// r' = min(n, m, rank): the clamp that keeps P's columns independent (§4.11).
std::uint64_t powersgd_effective_rank(std::uint64_t n, std::uint64_t m, std::uint64_t rank);

// The fresh shared Q (m x r', row major) of matrix segment `segment`: element (row, col) is
// RngStream(seed, kPowerSgdInit, step, tensor_id, kSharedRank).normal((segment << 32) |
// (row * r' + col)), draw 0, rounded to f32. Every rank draws the same Q.
Status powersgd_initial_q(std::uint64_t seed, std::uint32_t step, std::uint32_t tensor_id,
                          std::uint32_t segment, std::uint64_t m, std::uint64_t r, Span<float> q);

// p (n x r) = mat (n x m) * q (m x r).
Status matmul_mq(Span<const float> mat, std::uint64_t n, std::uint64_t m, Span<const float> q,
                 std::uint64_t r, Span<float> p);

// q (m x r) = mat^T (m x n) * p (n x r), mat being n x m.
Status matmul_mtp(Span<const float> mat, std::uint64_t n, std::uint64_t m, Span<const float> p,
                  std::uint64_t r, Span<float> q);

// out (n x m) = p (n x r) * q^T (r x m).
Status matmul_pqt(Span<const float> p, std::uint64_t n, Span<const float> q, std::uint64_t m,
                  std::uint64_t r, Span<float> out);

// Modified Gram-Schmidt on the r columns of p (n x r, row major), in place, column by column:
//   col_i /= (||col_i|| + eps);  col_j -= <col_i, col_j> col_i  for every later j.
// Norms and dot products in double, each updated column rounded to f32. A zero column with
// eps = 0 stays zero (no 0/0). eps >= 0; sizes must agree (kInvalidArgument otherwise).
Status orthogonalize(Span<float> p, std::uint64_t n, std::uint64_t r, double eps);

}  // namespace gradcomp::ref
