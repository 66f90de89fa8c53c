// LD_PRELOAD for transferd in test_websocket.py: makes libmicrohttpd's MHD_resume_connection
// slow when a websocket thread calls it, i.e. inside MHD_upgrade_action(CLOSE) between
// `urh->was_closed = true` and the resume. That is the window in which libmicrohttpd 0.9.75 could
// free the connection under the caller (shims.c, tx_mhd_upgrade_close): a race seen about once a
// run under load becomes one that every run hits.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

struct MHD_Connection;

void MHD_resume_connection(struct MHD_Connection *connection) {
    static void (*resume)(struct MHD_Connection *);
    if (resume == NULL) resume = (void (*)(struct MHD_Connection *))dlsym(RTLD_NEXT, "MHD_resume_connection");
    char name[16] = "";
    pthread_getname_np(pthread_self(), name, sizeof name);
    if (strcmp(name, "websocket") == 0) usleep(20 * 1000);
    resume(connection);
}
