// [freestanding] Fixed-capacity tracker of outstanding request ids, to check the ids a backend answers with.
#pragma once

#include <xenbus/result.hpp>
#include <xenbus/version.hpp>

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

XENBUS_BEGIN_NAMESPACE

/// Why a response id (or a request for a new id) was refused.
enum class response_id_error : std::uint8_t {
  out_of_range = 1,  ///< the id is not one we could ever have issued
  duplicate,         ///< the id was answered already and not issued again since
  unsolicited,       ///< the id was never issued
  exhausted,         ///< issue(): every id is outstanding
};

constexpr std::string_view to_string(response_id_error e) noexcept {
  switch (e) {
    case response_id_error::out_of_range:
      return "response id out of range";
    case response_id_error::duplicate:
      return "response id answered twice";
    case response_id_error::unsolicited:
      return "response id was never requested";
    case response_id_error::exhausted:
      return "no free request id";
  }
  return "(invalid)";
}

/// Ids 0..N-1 for requests a frontend has in flight, each with a small Tag (the operation,
/// say) to compare with what the response claims. The backend's response id is peer data:
/// complete() accepts it only if that id is outstanding, as Linux blkfront/netfront check
/// since the 2021 hardening. Freed ids are reused in FIFO order, so a late duplicate
/// answer for an id is caught for as long as possible rather than matched to a new request.
/// No heap; O(1) per call.
template <std::size_t N, class Tag = std::uint8_t>
class id_tracker {
  static_assert(N > 0 && N <= 0x80000000u, "id_tracker: N must be in 1..2^31");
  static_assert(std::is_trivially_copyable_v<Tag>, "id_tracker: Tag must be a plain value");

 public:
  static constexpr std::size_t capacity = N;

  constexpr id_tracker() noexcept {
    for (std::size_t i = 0; i < N; ++i) {
      free_[i] = static_cast<std::uint32_t>(i);
      state_[i] = idle;
      tag_[i] = Tag{};
    }
  }

  /// Takes a free id and records `tag` for it.
  constexpr result<std::uint32_t, response_id_error> issue(Tag tag = Tag{}) noexcept {
    if (outstanding_ == N) return unexpected{response_id_error::exhausted};
    const std::uint32_t id = free_[head_];
    head_ = (head_ + 1) % N;
    ++outstanding_;
    state_[id] = in_flight;
    tag_[id] = tag;
    return id;
  }

  /// Checks the id a response carries: if outstanding, frees it and returns its tag.
  constexpr result<Tag, response_id_error> complete(std::uint64_t id) noexcept {
    if (id >= N) return unexpected{response_id_error::out_of_range};
    const auto i = static_cast<std::size_t>(id);
    if (state_[i] == answered) return unexpected{response_id_error::duplicate};
    if (state_[i] != in_flight) return unexpected{response_id_error::unsolicited};
    state_[i] = answered;
    free_[(head_ + (N - outstanding_)) % N] = static_cast<std::uint32_t>(i);
    --outstanding_;
    return tag_[i];
  }

  /// Whether `id` is in flight (issued, not yet completed).
  constexpr bool is_outstanding(std::uint64_t id) const noexcept {
    return id < N && state_[static_cast<std::size_t>(id)] == in_flight;
  }
  constexpr std::size_t outstanding() const noexcept { return outstanding_; }

 private:
  enum : std::uint8_t { idle, in_flight, answered };
  std::uint32_t free_[N]{};  // FIFO of free ids: [head_, head_ + N - outstanding_)
  std::uint8_t state_[N]{};
  Tag tag_[N]{};
  std::size_t head_ = 0;
  std::size_t outstanding_ = 0;
};

XENBUS_END_NAMESPACE
