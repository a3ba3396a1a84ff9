// Non-owning views (pointer + length) usable from host, Kokkos and CUDA code.
// C++17 has no std::span; this is the minimal subset gradcomp needs.
#pragma once

#include <cstddef>
#include <type_traits>
#include <vector>

#include "gradcomp/host_device.hpp"

namespace gradcomp {

template <class T>
class Span {
 public:
  using element_type = T;
  using value_type = std::remove_cv_t<T>;

  GRADCOMP_HOST_DEVICE constexpr Span() = default;
  GRADCOMP_HOST_DEVICE constexpr Span(T* data, std::size_t size) : data_(data), size_(size) {}

  // Span<const T> from Span<T>.
  template <class U, class = std::enable_if_t<std::is_convertible<U (*)[], T (*)[]>::value>>
  GRADCOMP_HOST_DEVICE constexpr Span(const Span<U>& other)  // NOLINT: implicit like std::span
      : data_(other.data()), size_(other.size()) {}

  // Host convenience: a view of a std::vector.
  template <class U, class A,
            class = std::enable_if_t<std::is_convertible<U (*)[], T (*)[]>::value>>
  Span(std::vector<U, A>& v) : data_(v.data()), size_(v.size()) {}  // NOLINT
  template <class U, class A,
            class = std::enable_if_t<std::is_convertible<const U (*)[], T (*)[]>::value>>
  Span(const std::vector<U, A>& v) : data_(v.data()), size_(v.size()) {}  // NOLINT

  GRADCOMP_HOST_DEVICE constexpr T* data() const { return data_; }
  GRADCOMP_HOST_DEVICE constexpr std::size_t size() const { return size_; }
  GRADCOMP_HOST_DEVICE constexpr std::size_t size_bytes() const { return size_ * sizeof(T); }
  GRADCOMP_HOST_DEVICE constexpr bool empty() const { return size_ == 0; }
  GRADCOMP_HOST_DEVICE constexpr T& operator[](std::size_t i) const { return data_[i]; }
  GRADCOMP_HOST_DEVICE constexpr T* begin() const { return data_; }
  GRADCOMP_HOST_DEVICE constexpr T* end() const { return data_ + size_; }

  // Elements [offset, offset + count). The caller guarantees the range is inside the span.
  GRADCOMP_HOST_DEVICE constexpr Span subspan(std::size_t offset, std::size_t count) const {
    return Span(data_ + offset, count);
  }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace gradcomp
