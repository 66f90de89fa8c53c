// Typed wrappers for C functions Swift cannot call: variadic functions (curl_easy_setopt,
// curl_easy_getinfo, MHD_start_daemon, MHD_get_daemon_info) and calls whose argument types
// depend on the option. Each wrapper fixes one argument type. They can go when Swift imports
// C variadics with typed arguments.
#ifndef C_TRANSFER_SHIMS_H
#define C_TRANSFER_SHIMS_H

#include <curl/curl.h>
#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>

// MARK: libcurl
CURLcode tx_curl_easy_setopt_long(CURL *handle, CURLoption option, long value);
CURLcode tx_curl_easy_setopt_offset(CURL *handle, CURLoption option, curl_off_t value);
CURLcode tx_curl_easy_setopt_pointer(CURL *handle, CURLoption option, void *value);
CURLcode tx_curl_easy_setopt_string(CURL *handle, CURLoption option, const char *value);
CURLcode tx_curl_easy_setopt_read_function(CURL *handle, curl_read_callback callback);
CURLcode tx_curl_easy_setopt_write_function(CURL *handle, curl_write_callback callback);
CURLcode tx_curl_easy_setopt_header_function(CURL *handle, curl_write_callback callback);
CURLcode tx_curl_easy_setopt_xferinfo_function(CURL *handle, curl_xferinfo_callback callback);
CURLcode tx_curl_easy_getinfo_long(CURL *handle, CURLINFO info, long *value);

// MARK: libmicrohttpd
/// Starts a thread-per-connection daemon bound to `address` (IPv4 or IPv6 sockaddr).
/// `tls_key_pem`/`tls_cert_pem` may be NULL for plain HTTP.
struct MHD_Daemon *tx_mhd_start_daemon(unsigned int flags, const struct sockaddr *address,
                                       MHD_AccessHandlerCallback handler, void *handler_context,
                                       MHD_RequestCompletedCallback completed, void *completed_context,
                                       unsigned int connection_timeout_seconds,
                                       size_t connection_memory_limit,
                                       unsigned int connection_limit, unsigned int per_ip_connection_limit,
                                       const char *tls_key_pem, const char *tls_cert_pem);
/// Routes libmicrohttpd's own messages (formatted) to `sink` instead of stderr.
void tx_mhd_set_log_sink(void (*sink)(const char *message));
/// The port the daemon is bound to (useful after binding port 0), or 0.
uint16_t tx_mhd_bound_port(struct MHD_Daemon *daemon);
/// The peer address as text ("127.0.0.1"), written to `buffer`; empty on failure.
void tx_mhd_client_address(struct MHD_Connection *connection, char *buffer, size_t buffer_size);

/// The connection's socket, or -1.
int tx_mhd_connection_fd(struct MHD_Connection *connection);
/// MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE): hands an upgraded socket back for closing.
/// Safe while other upgraded sockets are handed back (libmicrohttpd 0.9.75 alone is not: shims.c).
int tx_mhd_upgrade_close(struct MHD_UpgradeResponseHandle *handle);

// MARK: glibc malloc
/// mallopt(M_MMAP_THRESHOLD, threshold) and mallopt(M_ARENA_MAX, arenas): malloc.h is not in
/// Swift's Glibc module.
void tx_configure_malloc(int mmap_threshold, int trim_threshold, int max_arenas);
/// malloc_trim(0): hands the heap's free pages back to the system (every arena, not just the top).
void tx_release_free_memory(void);

// MARK: ISA-L
/// Bytes of working memory isal_deflate needs at `level` (0-3); the sizes are macros.
size_t tx_isal_level_buffer_size(int level);

// MARK: GNU extensions (glibc hides them unless _GNU_SOURCE is defined before any include)
/// memmem(3): first occurrence of needle in haystack, or NULL.
void *tx_memmem(const void *haystack, size_t haystack_length, const void *needle, size_t needle_length);
/// syncfs(2): flush the file system holding fd.
int tx_syncfs(int fd);
/// Turns O_DIRECT (a GNU flag) on or off for an open descriptor with fcntl(F_SETFL); -1 with errno
/// EINVAL where the file system does not support it.
int tx_set_direct_io(int fd, int enabled);
/// O_NOATIME (a GNU flag): reads through the descriptor leave the access time alone.
int tx_no_access_time_flag(void);
/// FS_IOC_GETFLAGS: the inode flags (`chattr` attributes) of an open file; -1 with errno ENOTTY
/// or EOPNOTSUPP where the file system has none.
int tx_get_inode_flags(int fd, int *flags);
/// FS_IOC_SETFLAGS with `add` or'ed into the current flags (no call when already set).
int tx_add_inode_flags(int fd, int add);
/// FS_TOPDIR_FL (`chattr +T`): the directory's subdirectories are unrelated hierarchies.
int tx_topdir_flag(void);
/// statfs(2)'s f_type for `path` (e.g. 0xEF53 for ext2/3/4), or -1 with errno set.
long tx_filesystem_type(const char *path);
/// pthread_setname_np for the calling thread (names over 15 bytes are cut).
void tx_set_thread_name(const char *name);
/// renameat2(2) with RENAME_EXCHANGE: atomically swap two paths (both must exist).
int tx_rename_exchange(int old_dirfd, const char *old_path, int new_dirfd, const char *new_path);
/// renameat2(2) with RENAME_NOREPLACE: fails with EEXIST instead of replacing.
int tx_rename_noreplace(int old_dirfd, const char *old_path, int new_dirfd, const char *new_path);

// MARK: stdio
/// fflush(stdout), then ferror(stdout): 0 when everything printed so far reached standard output,
/// else the errno of the failed flush, or -1 when only an earlier buffered write had failed (its
/// errno is gone). Clears the stream's error. A shim because Swift 6 refuses to touch `stdout`, a
/// C global it cannot prove concurrency-safe; it can go when the Glibc overlay annotates it.
int tx_flush_stdout(void);

#endif
