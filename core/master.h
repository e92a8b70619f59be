/* master.h -- what a worker needs from the process that forked it. */
#ifndef SL_MASTER_H
#define SL_MASTER_H

#include "conf.h"
#include "listen.h"

/* Runs the master: zones, listeners, workers, signals. Returns the exit status. */
int sl_master_run(sl_conf_t *conf);

#endif
