// [posix] Hands a posix::machine (or any descriptor) to an unrelated process over a unix socket (SCM_RIGHTS).
#pragma once

#include <xenbus/result.hpp>
#include <xenbus/version.hpp>

#include <cerrno>
#include <cstring>

#include <sys/socket.h>
#include <sys/uio.h>

XENBUS_BEGIN_NAMESPACE
namespace posix {

/// Sends `fd` over the connected unix socket `sock` (with one byte of payload, as
/// SCM_RIGHTS needs). Returns an errno value on failure.
inline result<void, int> send_fd(int sock, int fd) noexcept {
  char byte = 'x';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof ctrl;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  ssize_t n;
  do n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n != 1) return unexpected{n < 0 ? errno : EIO};
  return {};
}

/// Receives a descriptor sent by send_fd() (close-on-exec). Anything else on the socket
/// (no descriptor, several, a truncated control message) is refused with EBADMSG.
inline result<int, int> receive_fd(int sock) noexcept {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctrl;
  msg.msg_controllen = sizeof ctrl;
  ssize_t n;
  do n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) return unexpected{errno};
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (n != 1 || (msg.msg_flags & MSG_CTRUNC) || !c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
      c->cmsg_len != CMSG_LEN(sizeof(int)))
    return unexpected{EBADMSG};
  int fd = -1;
  std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
  return fd;
}

}  // namespace posix
XENBUS_END_NAMESPACE
