/* fionread.h -- client sockets whose FIONREAD the host answers itself (see fionread.c). */
#ifndef SL_FIONREAD_H
#define SL_FIONREAD_H

/* on: reads of fd through libevent skip the kernel's FIONREAD; off when fd is closed. */
void sl_fionread_mark(int fd, int on);
int sl_fionread_marked(int fd);

/* 1 when this build answers FIONREAD itself (not under AddressSanitizer). */
int sl_fionread_active(void);

#endif
