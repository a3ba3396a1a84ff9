// Status and error handling for gradcomp.
//
// Library code never throws and never exits: every fallible operation returns a Status (or a
// Result<T>) that carries a code and a human-readable message naming the problem. Only the
// command-line drivers turn a Status into an exit code.
#pragma once

#include <sstream>
#include <string>
#include <utility>

namespace gradcomp {

enum class StatusCode : int {
  kSuccess = 0,
  kInvalidArgument,  // the caller passed something the operation does not accept
  kUnimplemented,    // valid request, but this implementation declines it
  kCorruptPayload,   // a payload failed a wire-format check (truncated, bad field, ...)
  kNonFinite,        // NaN or Inf in an input under nonfinite=error
  kIoError,          // file could not be read or written
  kMpiError,
  kCudaError,
  kNcclError,
  kTimeout,
  kInternal,  // a bug in gradcomp: please report it
};

inline const char* status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kSuccess: return "success";
    case StatusCode::kInvalidArgument: return "invalid argument";
    case StatusCode::kUnimplemented: return "unimplemented";
    case StatusCode::kCorruptPayload: return "corrupt payload";
    case StatusCode::kNonFinite: return "non-finite input";
    case StatusCode::kIoError: return "I/O error";
    case StatusCode::kMpiError: return "MPI error";
    case StatusCode::kCudaError: return "CUDA error";
    case StatusCode::kNcclError: return "NCCL error";
    case StatusCode::kTimeout: return "timeout";
    case StatusCode::kInternal: return "internal error";
  }
  return "unknown status";
}

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status success() { return Status(); }

  bool ok() const { return code_ == StatusCode::kSuccess; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "invalid argument: topk: density must be in [0, 1], got 1.5"
  std::string to_string() const {
    if (ok()) return "success";
    return std::string(status_code_name(code_)) + ": " + message_;
  }

 private:
  StatusCode code_ = StatusCode::kSuccess;
  std::string message_;
};

// A value or the Status that explains why there is none.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)), has_value_(true) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}            // NOLINT: implicit by design

  bool ok() const { return has_value_; }
  const Status& status() const { return status_; }
  const T& value() const& { return value_; }
  T& value() & { return value_; }
  T&& value() && { return std::move(value_); }
  const T& operator*() const { return value_; }
  const T* operator->() const { return &value_; }

 private:
  T value_{};
  Status status_;
  bool has_value_ = false;
};

namespace detail {
template <class... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  os.precision(17);
  (os << ... << args);
  return os.str();
}
}  // namespace detail

template <class... Args>
Status make_status(StatusCode code, const Args&... args) {
  return Status(code, detail::str_cat(args...));
}

}  // namespace gradcomp

// Propagate a non-success Status to the caller.
#define GRADCOMP_TRY(expr)                             \
  do {                                                 \
    ::gradcomp::Status gradcomp_try_s_ = (expr);       \
    if (!gradcomp_try_s_.ok()) return gradcomp_try_s_; \
  } while (0)

// Return kInvalidArgument with a message built from the remaining arguments.
#define GRADCOMP_CHECK_ARG(cond, ...)                                                        \
  do {                                                                                       \
    if (!(cond))                                                                             \
      return ::gradcomp::make_status(::gradcomp::StatusCode::kInvalidArgument, __VA_ARGS__); \
  } while (0)

// Return kCorruptPayload with a message built from the remaining arguments.
#define GRADCOMP_CHECK_PAYLOAD(cond, ...)                                                   \
  do {                                                                                      \
    if (!(cond))                                                                            \
      return ::gradcomp::make_status(::gradcomp::StatusCode::kCorruptPayload, __VA_ARGS__); \
  } while (0)
