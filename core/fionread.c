/* fionread.c -- one system call less per client read. libevent 2.1's evbuffer_read() asks
 * ioctl(FIONREAD) how much a socket holds before every read, only to size the read, which it
 * caps at 4096 bytes (EVBUFFER_MAX_READ) anyway: 4096 is what it would read whenever that much
 * is waiting, and reading fewer bytes than reserved is what readv() does. For the client
 * sockets the host reads through bufferevents (sl_fionread_mark), this ioctl() answers 4096
 * without entering the kernel; every other call (other requests, other descriptors, other
 * callers) goes to the kernel as before. The executable's ioctl() takes precedence over
 * libc's for the libraries it loads (symbol interposition; the host links with -rdynamic).
 * Not under AddressSanitizer, whose runtime defines ioctl() itself. */
#include "fionread.h"

#if !defined(__SANITIZE_ADDRESS__) && !defined(SL_NO_FIONREAD)
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SL_NO_FIONREAD 1
#endif
#endif
#endif

#include <limits.h>

#define MARK_MAX  65536             /* descriptors above this take the kernel's answer */

static unsigned char  marked[MARK_MAX / 8];


void
sl_fionread_mark(int fd, int on)
{
    if (fd < 0 || fd >= MARK_MAX) {
        return;
    }

    if (on) {
        marked[fd >> 3] |= (unsigned char) (1u << (fd & 7));
    } else {
        marked[fd >> 3] &= (unsigned char) ~(1u << (fd & 7));
    }
}


int
sl_fionread_marked(int fd)
{
    return fd >= 0 && fd < MARK_MAX && (marked[fd >> 3] & (1u << (fd & 7))) != 0;
}


#if !defined(__SANITIZE_ADDRESS__) && !defined(SL_NO_FIONREAD) && defined(__linux__)
#define SL_FIONREAD_ON  1
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int
ioctl(int fd, unsigned long request, ...)
{
    va_list  ap;
    void    *arg;

    va_start(ap, request);
    arg = va_arg(ap, void *);
    va_end(ap);

    if (request == FIONREAD && sl_fionread_marked(fd) && arg != NULL) {
        *(int *) arg = 4096;
        return 0;
    }

    return (int) syscall(SYS_ioctl, fd, request, arg);
}
#endif


int
sl_fionread_active(void)
{
#if defined(SL_FIONREAD_ON)
    return 1;
#else
    return 0;
#endif
}
