/* LD_PRELOAD shim that lets Xen's own xenstore daemons (oxenstored and the C xenstored of
 * xen-utils-4.17) start on a machine without a hypervisor, as reference servers for the
 * differential tests. Used only by tests/reference/xenstored.sh; see docs/reference-servers.md.
 *
 * What the daemons ask of the hypervisor at start-up, and what this shim answers:
 * - xc_interface_open (libxenctrl): a dummy handle. xc_domain_getinfo answers that the domain
 *   asked for exists and runs, so that the C xenstored accepts permission entries naming any
 *   domain (its domain_alloc_permrefs marks entries of unknown domains as ignored and a set
 *   of permissions whose owner is unknown fails with ENOENT), as oxenstored does.
 * - xenevtchn_open / xenevtchn_fdopen (libxenevtchn): a handle whose file descriptor is an
 *   eventfd that nobody writes, so poll() never reports an event; binds return local port
 *   numbers, notify does nothing.
 * - xengnttab_open (libxengnttab): a dummy handle; mapping a grant fails, so no domain other
 *   than the master one can be introduced (the tests never introduce one).
 * - The C xenstored reads its own event channel from /proc/xen/xsd_port and maps its own
 *   ring page from /proc/xen/xsd_kva (its xenbus_evtchn and xenbus_map): opening those two
 *   paths gives a memory file holding "1\n" and a zero-filled page. The master domain is
 *   then connected through a ring page that no one writes, so it never sends a request;
 *   clients use the Unix socket.
 * - setrlimit succeeds without doing anything: oxenstored raises RLIMIT_NOFILE at start-up
 *   and a container may refuse that.
 *
 * Every handle is a small heap block of our own type; the libraries are never called, so
 * nothing here reaches /dev/xen or /proc/xen. Bounds: one eventfd per event channel
 * handle, one memory file of 4 KiB per open of xsd_kva. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <xenctrl.h>
#include <xenevtchn.h>
#include <xengnttab.h>

/* Local port numbers handed out by the fake event channel: any value other than 0 works,
 * since both daemons use the number only to compare it with what xenevtchn_pending says. */
static int next_port = 2;

struct fake_evtchn {
  int fd;
};

static const char xsd_port_path[] = "/proc/xen/xsd_port";
static const char xsd_kva_path[] = "/proc/xen/xsd_kva";

/* A memory file holding LEN bytes of DATA (or LEN zero bytes when DATA is NULL), positioned
 * at its start; -1 with errno set when memfd_create or the write fails. */
static int memory_file(const char* name, const char* data, size_t len) {
  int fd = memfd_create(name, MFD_CLOEXEC);
  if (fd < 0) return -1;
  if (data ? write(fd, data, len) != (ssize_t)len : ftruncate(fd, (off_t)len) != 0) {
    int err = errno;
    close(fd);
    errno = err;
    return -1;
  }
  if (lseek(fd, 0, SEEK_SET) != 0) {
    close(fd);
    errno = EIO;
    return -1;
  }
  return fd;
}

/* The two /proc/xen files of the C xenstored; -2 for any other path. */
static int fake_proc_xen(const char* path) {
  if (path && strcmp(path, xsd_port_path) == 0) return memory_file("xsd_port", "1\n", 2);
  if (path && strcmp(path, xsd_kva_path) == 0) return memory_file("xsd_kva", NULL, 4096);
  return -2;
}

typedef int (*open_fn)(const char*, int, ...);
typedef int (*openat_fn)(int, const char*, int, ...);

static mode_t mode_arg(int flags, va_list ap) { return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0; }

int open(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  int fd = fake_proc_xen(path);
  if (fd != -2) return fd;
  open_fn next = (open_fn)dlsym(RTLD_NEXT, "open");
  return next(path, flags, mode);
}

int open64(const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  int fd = fake_proc_xen(path);
  if (fd != -2) return fd;
  open_fn next = (open_fn)dlsym(RTLD_NEXT, "open64");
  return next(path, flags, mode);
}

int openat(int dirfd, const char* path, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  int fd = fake_proc_xen(path);
  if (fd != -2) return fd;
  openat_fn next = (openat_fn)dlsym(RTLD_NEXT, "openat");
  return next(dirfd, path, flags, mode);
}

int setrlimit(__rlimit_resource_t resource, const struct rlimit* limit) {
  (void)resource;
  (void)limit;
  return 0;
}

/* libxenctrl */
static char fake_xc;

xc_interface* xc_interface_open(xentoollog_logger* logger, xentoollog_logger* dombuild_logger, unsigned open_flags) {
  (void)logger;
  (void)dombuild_logger;
  (void)open_flags;
  return (xc_interface*)(void*)&fake_xc;
}

int xc_interface_close(xc_interface* xch) {
  (void)xch;
  return 0;
}

int xc_domain_getinfo(xc_interface* xch, uint32_t first_domid, unsigned int max_doms, xc_dominfo_t* info) {
  (void)xch;
  if (max_doms == 0 || first_domid >= DOMID_FIRST_RESERVED) return 0;
  memset(info, 0, sizeof *info);
  info->domid = first_domid;
  info->running = 1;
  return 1;
}

/* libxenevtchn */
static xenevtchn_handle* fake_evtchn_new(void) {
  struct fake_evtchn* h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (h->fd < 0) {
    free(h);
    return NULL;
  }
  return (xenevtchn_handle*)(void*)h;
}

xenevtchn_handle* xenevtchn_open(xentoollog_logger* logger, unsigned int flags) {
  (void)logger;
  (void)flags;
  return fake_evtchn_new();
}

xenevtchn_handle* xenevtchn_fdopen(struct xentoollog_logger* logger, int fd, unsigned int flags) {
  (void)logger;
  (void)fd;
  (void)flags;
  return fake_evtchn_new();
}

int xenevtchn_close(xenevtchn_handle* xce) {
  struct fake_evtchn* h = (struct fake_evtchn*)(void*)xce;
  if (h) {
    close(h->fd);
    free(h);
  }
  return 0;
}

int xenevtchn_fd(xenevtchn_handle* xce) { return ((struct fake_evtchn*)(void*)xce)->fd; }

xenevtchn_port_or_error_t xenevtchn_bind_virq(xenevtchn_handle* xce, unsigned int virq) {
  (void)xce;
  (void)virq;
  return next_port++;
}

xenevtchn_port_or_error_t xenevtchn_bind_interdomain(xenevtchn_handle* xce, uint32_t domid, evtchn_port_t remote_port) {
  (void)xce;
  (void)domid;
  (void)remote_port;
  return next_port++;
}

int xenevtchn_unbind(xenevtchn_handle* xce, evtchn_port_t port) {
  (void)xce;
  (void)port;
  return 0;
}

int xenevtchn_notify(xenevtchn_handle* xce, evtchn_port_t port) {
  (void)xce;
  (void)port;
  return 0;
}

xenevtchn_port_or_error_t xenevtchn_pending(xenevtchn_handle* xce) {
  (void)xce;
  errno = EAGAIN;
  return -1;
}

int xenevtchn_unmask(xenevtchn_handle* xce, evtchn_port_t port) {
  (void)xce;
  (void)port;
  return 0;
}

/* libxengnttab */
static char fake_gnttab;

xengnttab_handle* xengnttab_open(struct xentoollog_logger* logger, unsigned open_flags) {
  (void)logger;
  (void)open_flags;
  return (xengnttab_handle*)(void*)&fake_gnttab;
}

int xengnttab_close(xengnttab_handle* xgt) {
  (void)xgt;
  return 0;
}

int xengnttab_set_max_grants(xengnttab_handle* xgt, uint32_t nr_grants) {
  (void)xgt;
  (void)nr_grants;
  return 0;
}

void* xengnttab_map_grant_ref(xengnttab_handle* xgt, uint32_t domid, uint32_t ref, int prot) {
  (void)xgt;
  (void)domid;
  (void)ref;
  (void)prot;
  errno = ENOSYS;
  return NULL;
}

int xengnttab_unmap(xengnttab_handle* xgt, void* start_address, uint32_t count) {
  (void)xgt;
  (void)start_address;
  (void)count;
  return 0;
}
