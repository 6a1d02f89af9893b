#include "support.h"

#include <dirent.h>
#include <string.h>
#include <sys/socket.h>

int rt_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n - 1; /* the descriptor of the open directory itself */
}

void rt_tcp_pair(rill_stream **client, rill_stream **server)
{
    rill_error err;
    rill_listener *l = NULL;
    rill_status st = rill_listen("127.0.0.1", 0, NULL, &l, &err);
    ck_assert_msg(st == RILL_OK, "listen: %s", err.msg);
    st = rill_tcp_connect_addr("127.0.0.1", rill_listener_port(l), NULL, client, &err);
    ck_assert_msg(st == RILL_OK, "connect: %s", err.msg);
    st = rill_accept(l, 5000, server, &err);
    ck_assert_msg(st == RILL_OK, "accept: %s", err.msg);
    rill_listener_free(l);
}

void rt_socketpair(int fds[2])
{
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
}

void rt_fill_pattern(void *buf, size_t len, uint64_t seed)
{
    uint64_t x = seed ? seed : 0x9e3779b97f4a7c15ull;
    unsigned char *p = buf;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (unsigned char)x;
    }
}

uint64_t rt_checksum(uint64_t h, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    if (h == 0)
        h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
