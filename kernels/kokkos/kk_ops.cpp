#include "kk_ops.hpp"

#include <Kokkos_Core.hpp>
#include <cctype>
#include <cstdlib>

namespace gradcomp::kk {
namespace {

void finalize_at_exit() {
  if (Kokkos::is_initialized()) Kokkos::finalize();
}

CompressorOps kk_ops(CompressorKind kind) {
  const auto& t = table();
  auto it = t.find(kind);
  return it == t.end() ? CompressorOps{} : it->second.ops;
}

}  // namespace

bool can_implement(const CompressorDesc& desc) {
  if (!validate(desc).ok()) return false;
  const auto& t = table();
  auto it = t.find(desc.kind);
  if (it == t.end()) return false;
  return it->second.can_implement == nullptr || it->second.can_implement(desc);
}

const KkTable& table() {
  static const KkTable t = [] {
    KkTable table;
    register_streaming(table);
    register_selection(table);
    register_blocks(table);
    return table;
  }();
  return t;
}

void ensure_initialized() {
  if (Kokkos::is_initialized()) return;
  Kokkos::initialize();
  std::atexit(finalize_at_exit);
}

std::string impl_name() {
  std::string space = Kokkos::DefaultExecutionSpace::name();
  for (char& c : space) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return "kk:" + space;
}

CompressorImpl registry_entry() {
  CompressorImpl impl;
  impl.name = impl_name();
  impl.is_reference = false;
  impl.deterministic = true;
  impl.can_implement = can_implement;
  impl.ops = kk_ops;
  return impl;
}

}  // namespace gradcomp::kk
