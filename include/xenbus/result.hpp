// [freestanding] result<T, E>: an expected-like value-or-error for code that has no exceptions.
#pragma once

#include <xenbus/version.hpp>

#include <memory>
#include <new>
#include <type_traits>
#include <utility>

XENBUS_BEGIN_NAMESPACE

/// Tag wrapper that marks a value as the error alternative of a result.
template <class E>
struct unexpected {
  E error;
};
template <class E>
unexpected(E) -> unexpected<E>;

/// Holds either a T or an E, never both; no heap, no exceptions.
/// Accessing the wrong alternative is a programming error: check has_value() first.
template <class T, class E>
class [[nodiscard]] result {
  static_assert(std::is_trivially_destructible_v<E>,
                "result<T, E>: E must be trivially destructible; use an error code or "
                "a small struct of codes and string_views");

 public:
  using value_type = T;
  using error_type = E;

  constexpr result(T v) noexcept(std::is_nothrow_move_constructible_v<T>)  // NOLINT
      : ok_{true} {
    std::construct_at(&u_.value, std::move(v));
  }
  constexpr result(unexpected<E> e) noexcept : ok_{false} {  // NOLINT
    std::construct_at(&u_.error, e.error);
  }
  constexpr result(const result& o) noexcept(std::is_nothrow_copy_constructible_v<T>) : ok_{o.ok_} {
    if (ok_)
      std::construct_at(&u_.value, o.u_.value);
    else
      std::construct_at(&u_.error, o.u_.error);
  }
  constexpr result(result&& o) noexcept(std::is_nothrow_move_constructible_v<T>) : ok_{o.ok_} {
    if (ok_)
      std::construct_at(&u_.value, std::move(o.u_.value));
    else
      std::construct_at(&u_.error, o.u_.error);
  }
  result& operator=(const result&) = delete;
  result& operator=(result&&) = delete;
  constexpr ~result() {
    if (ok_) std::destroy_at(&u_.value);
  }

  constexpr bool has_value() const noexcept { return ok_; }
  constexpr explicit operator bool() const noexcept { return ok_; }
  constexpr T& value() & noexcept { return u_.value; }
  constexpr const T& value() const& noexcept { return u_.value; }
  constexpr T&& value() && noexcept { return std::move(u_.value); }
  constexpr T& operator*() & noexcept { return u_.value; }
  constexpr const T& operator*() const& noexcept { return u_.value; }
  constexpr T* operator->() noexcept { return &u_.value; }
  constexpr const T* operator->() const noexcept { return &u_.value; }
  constexpr const E& error() const noexcept { return u_.error; }
  constexpr T value_or(T fallback) const noexcept { return ok_ ? u_.value : fallback; }

 private:
  union storage {
    constexpr storage() noexcept : none{} {}
    constexpr ~storage() {}
    char none;
    T value;
    E error;
  } u_;
  bool ok_;
};

/// result<void, E>: success carries nothing.
template <class E>
class [[nodiscard]] result<void, E> {
 public:
  using value_type = void;
  using error_type = E;
  constexpr result() noexcept : ok_{true}, err_{} {}
  constexpr result(unexpected<E> e) noexcept : ok_{false}, err_{e.error} {}  // NOLINT
  constexpr bool has_value() const noexcept { return ok_; }
  constexpr explicit operator bool() const noexcept { return ok_; }
  constexpr const E& error() const noexcept { return err_; }

 private:
  bool ok_;
  E err_;
};

XENBUS_END_NAMESPACE
