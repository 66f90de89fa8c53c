#define _GNU_SOURCE
#include "CTransferShims.h"
#include <isa-l/igzip_lib.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <string.h>
#include <stdio.h>
#include <stdarg.h>
#include <unistd.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/vfs.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <linux/fs.h>

CURLcode tx_curl_easy_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}

CURLcode tx_curl_easy_setopt_offset(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}

CURLcode tx_curl_easy_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}

CURLcode tx_curl_easy_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}

CURLcode tx_curl_easy_setopt_read_function(CURL *handle, curl_read_callback callback) {
    return curl_easy_setopt(handle, CURLOPT_READFUNCTION, callback);
}

CURLcode tx_curl_easy_setopt_write_function(CURL *handle, curl_write_callback callback) {
    return curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, callback);
}

CURLcode tx_curl_easy_setopt_header_function(CURL *handle, curl_write_callback callback) {
    return curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, callback);
}

CURLcode tx_curl_easy_setopt_xferinfo_function(CURL *handle, curl_xferinfo_callback callback) {
    return curl_easy_setopt(handle, CURLOPT_XFERINFOFUNCTION, callback);
}

CURLcode tx_curl_easy_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}

static void (*tx_log_sink)(const char *) = NULL;

void tx_mhd_set_log_sink(void (*sink)(const char *message)) { tx_log_sink = sink; }

static void tx_mhd_logger(void *context, const char *format, va_list arguments) {
    (void)context;
    char message[512];
    vsnprintf(message, sizeof message, format, arguments);
    if (tx_log_sink != NULL) tx_log_sink(message);
}

// libmicrohttpd 0.9.75, MHD_upgrade_action(CLOSE): it sets `urh->was_closed`, then calls
// MHD_resume_connection(connection). With a thread per connection the connection is already
// marked resuming (its thread ended after the upgrade), so the listen thread, woken by any other
// connection, may free it in between: the resume then writes into freed memory (heap corruption,
// crashes; seen with many websockets closing at once). The listen thread tells us "closed" before
// it frees a connection: that notification waits for any CLOSE still in progress.
static pthread_mutex_t tx_upgrade_close_lock = PTHREAD_MUTEX_INITIALIZER;

static void tx_mhd_connection_notify(void *context, struct MHD_Connection *connection, void **socket_context,
                                     enum MHD_ConnectionNotificationCode code) {
    (void)context;
    (void)connection;
    (void)socket_context;
    if (code != MHD_CONNECTION_NOTIFY_CLOSED) return;
    pthread_mutex_lock(&tx_upgrade_close_lock);
    pthread_mutex_unlock(&tx_upgrade_close_lock);
}

struct MHD_Daemon *tx_mhd_start_daemon(unsigned int flags, const struct sockaddr *address,
                                       MHD_AccessHandlerCallback handler, void *handler_context,
                                       MHD_RequestCompletedCallback completed, void *completed_context,
                                       unsigned int connection_timeout_seconds,
                                       size_t connection_memory_limit,
                                       unsigned int connection_limit, unsigned int per_ip_connection_limit,
                                       const char *tls_key_pem, const char *tls_cert_pem) {
    uint16_t port = 0;
    if (address->sa_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
        port = ntohs(((const struct sockaddr_in6 *)address)->sin6_port);
    } else {
        port = ntohs(((const struct sockaddr_in *)address)->sin_port);
    }
    if (tls_key_pem != NULL && tls_cert_pem != NULL) {
        flags |= MHD_USE_TLS;
        return MHD_start_daemon(flags, port, NULL, NULL, handler, handler_context,
                                MHD_OPTION_SOCK_ADDR, address,
                                MHD_OPTION_NOTIFY_COMPLETED, completed, completed_context,
                                MHD_OPTION_CONNECTION_TIMEOUT, connection_timeout_seconds,
                                MHD_OPTION_CONNECTION_MEMORY_LIMIT, connection_memory_limit,
                                MHD_OPTION_CONNECTION_LIMIT, connection_limit,
                                MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip_connection_limit,
                                MHD_OPTION_HTTPS_MEM_KEY, tls_key_pem,
                                MHD_OPTION_HTTPS_MEM_CERT, tls_cert_pem,
                                MHD_OPTION_EXTERNAL_LOGGER, tx_mhd_logger, NULL,
                                MHD_OPTION_NOTIFY_CONNECTION, tx_mhd_connection_notify, NULL,
                                MHD_OPTION_END);
    }
    return MHD_start_daemon(flags, port, NULL, NULL, handler, handler_context,
                            MHD_OPTION_SOCK_ADDR, address,
                            MHD_OPTION_NOTIFY_COMPLETED, completed, completed_context,
                            MHD_OPTION_CONNECTION_TIMEOUT, connection_timeout_seconds,
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, connection_memory_limit,
                            MHD_OPTION_CONNECTION_LIMIT, connection_limit,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip_connection_limit,
                            MHD_OPTION_EXTERNAL_LOGGER, tx_mhd_logger, NULL,
                            MHD_OPTION_NOTIFY_CONNECTION, tx_mhd_connection_notify, NULL,
                            MHD_OPTION_END);
}

uint16_t tx_mhd_bound_port(struct MHD_Daemon *daemon) {
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    return info == NULL ? 0 : info->port;
}

void tx_mhd_client_address(struct MHD_Connection *connection, char *buffer, size_t buffer_size) {
    buffer[0] = '\0';
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (info == NULL || info->client_addr == NULL) return;
    const struct sockaddr *sa = info->client_addr;
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buffer, (socklen_t)buffer_size);
    } else if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buffer, (socklen_t)buffer_size);
    }
}

void *tx_memmem(const void *haystack, size_t haystack_length, const void *needle, size_t needle_length) {
    return memmem(haystack, haystack_length, needle, needle_length);
}

int tx_syncfs(int fd) { return syncfs(fd); }

int tx_set_direct_io(int fd, int enabled) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;
    return fcntl(fd, F_SETFL, enabled ? (flags | O_DIRECT) : (flags & ~O_DIRECT));
}

int tx_no_access_time_flag(void) { return O_NOATIME; }

int tx_get_inode_flags(int fd, int *flags) { return ioctl(fd, FS_IOC_GETFLAGS, flags); }

int tx_add_inode_flags(int fd, int add) {
    int flags = 0;
    if (ioctl(fd, FS_IOC_GETFLAGS, &flags) != 0) return -1;
    if ((flags & add) == add) return 0;
    flags |= add;
    return ioctl(fd, FS_IOC_SETFLAGS, &flags);
}

int tx_topdir_flag(void) { return FS_TOPDIR_FL; }

int tx_rename_exchange(int old_dirfd, const char *old_path, int new_dirfd, const char *new_path) {
    return renameat2(old_dirfd, old_path, new_dirfd, new_path, RENAME_EXCHANGE);
}

int tx_rename_noreplace(int old_dirfd, const char *old_path, int new_dirfd, const char *new_path) {
    return renameat2(old_dirfd, old_path, new_dirfd, new_path, RENAME_NOREPLACE);
}

int tx_mhd_upgrade_close(struct MHD_UpgradeResponseHandle *handle) {
    // Held until MHD_upgrade_action returns: the connection is not freed before (see above).
    pthread_mutex_lock(&tx_upgrade_close_lock);
    int closed = MHD_upgrade_action(handle, MHD_UPGRADE_ACTION_CLOSE) == MHD_YES ? 0 : -1;
    pthread_mutex_unlock(&tx_upgrade_close_lock);
    return closed;
}

size_t tx_isal_level_buffer_size(int level) {
    switch (level) {
    case 0: return ISAL_DEF_LVL0_DEFAULT;
    case 1: return ISAL_DEF_LVL1_DEFAULT;
    case 2: return ISAL_DEF_LVL2_DEFAULT;
    default: return ISAL_DEF_LVL3_DEFAULT;
    }
}

void tx_configure_malloc(int mmap_threshold, int trim_threshold, int max_arenas) {
    mallopt(M_MMAP_THRESHOLD, mmap_threshold);
    mallopt(M_TRIM_THRESHOLD, trim_threshold);
    mallopt(M_ARENA_MAX, max_arenas);
}

void tx_release_free_memory(void) { malloc_trim(0); }

int tx_mhd_connection_fd(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    return info == NULL ? -1 : info->connect_fd;
}

void tx_set_thread_name(const char *name) {
    char cut[16];
    strncpy(cut, name, sizeof cut - 1);
    cut[sizeof cut - 1] = '\0';
    pthread_setname_np(pthread_self(), cut);
}


long tx_filesystem_type(const char *path) {
    struct statfs fs;
    if (statfs(path, &fs) != 0) return -1;
    return (long)fs.f_type;
}

int tx_flush_stdout(void) {
    errno = 0;
    int failed = fflush(stdout) != 0;
    int code = errno;
    int sticky = ferror(stdout);
    clearerr(stdout);
    if (failed) return code != 0 ? code : -1;
    return sticky ? -1 : 0;
}
