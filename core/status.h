// Status and Result<T>: expected failures at the system's edges (files, config, network peers,
// plugins) as values carrying a message that names the file, key, line or peer.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace chainrl {

// The category of an error; callers branch on it, users read the message.
enum class StatusCode {
  kOk = 0,
  kInvalidArgument,   // bad input from a user: config, command line, data file
  kNotFound,          // a named file, key or peer does not exist
  kCorrupt,           // a file or message that does not parse or fails its checks
  kIoError,           // the operating system refused (open, read, write, socket)
  kUnimplemented,     // a feature that does not exist yet
  kDeadlineExceeded,  // a deadline passed (reward plugin, lease, heartbeat)
  kAborted,           // a run or request was stopped on purpose
  kInternal,          // a bug: an invariant we own was broken
  kNoSpace,           // the machine has no room left (a full disk): retrying will not help
};

const char* StatusCodeName(StatusCode code);

// An OK status or an error code with a message. Cheap to copy when OK. Thread-compatible.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "InvalidArgument: run.toml:3:1: ..." ; "OK" when ok().
  std::string ToString() const;

  // Returns a copy whose message is "<prefix>: <message>" (adds context such as a file name).
  Status WithPrefix(const std::string& prefix) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgument(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status Corrupt(std::string m) { return {StatusCode::kCorrupt, std::move(m)}; }
inline Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
inline Status Unimplemented(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }
inline Status DeadlineExceeded(std::string m) {
  return {StatusCode::kDeadlineExceeded, std::move(m)};
}
inline Status Aborted(std::string m) { return {StatusCode::kAborted, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status NoSpace(std::string m) { return {StatusCode::kNoSpace, std::move(m)}; }

// A value of T or an error Status. REQUIRES: value() only when ok(); status() is OK then.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    if (std::get<Status>(v_).ok()) v_ = Status(StatusCode::kInternal, "Result from OK status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }

  T& value() & { return Get(); }
  const T& value() const& { return const_cast<Result*>(this)->Get(); }
  T&& value() && { return std::move(Get()); }
  T* operator->() { return &Get(); }
  const T* operator->() const { return &const_cast<Result*>(this)->Get(); }
  T& operator*() & { return Get(); }
  const T& operator*() const& { return const_cast<Result*>(this)->Get(); }

 private:
  T& Get() {
    if (!ok()) {
      std::fprintf(stderr, "chainrl: Result::value() on error: %s\n",
                   std::get<Status>(v_).ToString().c_str());
      std::abort();
    }
    return std::get<T>(v_);
  }
  std::variant<T, Status> v_;
};

}  // namespace chainrl

// Returns the Status of `expr` from the enclosing function if it is an error.
#define CHAINRL_RETURN_IF_ERROR(expr)          \
  do {                                         \
    ::chainrl::Status _chainrl_st = (expr);    \
    if (!_chainrl_st.ok()) return _chainrl_st; \
  } while (0)

#define CHAINRL_CONCAT_INNER(a, b) a##b
#define CHAINRL_CONCAT(a, b) CHAINRL_CONCAT_INNER(a, b)
// `CHAINRL_ASSIGN_OR_RETURN(auto x, MakeX());` binds the value or returns the error.
#define CHAINRL_ASSIGN_OR_RETURN(decl, expr)                 \
  auto CHAINRL_CONCAT(_chainrl_res_, __LINE__) = (expr);     \
  if (!CHAINRL_CONCAT(_chainrl_res_, __LINE__).ok())         \
    return CHAINRL_CONCAT(_chainrl_res_, __LINE__).status(); \
  decl = std::move(CHAINRL_CONCAT(_chainrl_res_, __LINE__)).value()
