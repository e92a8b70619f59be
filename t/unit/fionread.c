/* fionread.c -- TAP tests for core/fionread.c: a marked socket's FIONREAD is answered 4096
 * without the kernel, an unmarked one's by the kernel, and other ioctl() requests pass. */
#include "tap.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fionread.h"


int
main(void)
{
    int  sv[2], n = -1, nb = 1;

    ok(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "a socket pair");
    ok(write(sv[1], "0123456789", 10) == 10, "ten bytes waiting");

    ok(ioctl(sv[0], FIONREAD, &n) == 0 && n == 10, "unmarked: the kernel's count (10)");
    ok(!sl_fionread_marked(sv[0]), "not marked");

    sl_fionread_mark(sv[0], 1);
    ok(sl_fionread_marked(sv[0]), "marked");
    n = -1;
    if (sl_fionread_active()) {
        ok(ioctl(sv[0], FIONREAD, &n) == 0 && n == 4096, "marked: 4096, what libevent reads");
    } else {
        ok(ioctl(sv[0], FIONREAD, &n) == 0 && n == 10, "under ASan: the kernel's count still");
    }
    n = -1;
    ok(ioctl(sv[1], FIONREAD, &n) == 0 && n == 0, "the other end, unmarked: the kernel's 0");
    ok(ioctl(sv[0], FIONBIO, &nb) == 0 && (fcntl(sv[0], F_GETFL) & O_NONBLOCK),
       "other requests reach the kernel (FIONBIO)");

    sl_fionread_mark(sv[0], 0);
    n = -1;
    ok(ioctl(sv[0], FIONREAD, &n) == 0 && n == 10, "unmarked again: the kernel's count");
    sl_fionread_mark(-1, 1);
    sl_fionread_mark(1 << 20, 1);
    ok(!sl_fionread_marked(-1) && !sl_fionread_marked(1 << 20), "out of range: ignored");
    ok(ioctl(-1, FIONREAD, &n) == -1, "a bad descriptor still fails");

    close(sv[0]);
    close(sv[1]);
    done_testing();
}
