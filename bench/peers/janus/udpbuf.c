/* LD_PRELOAD shim for the benchmark: gives every UDP socket a process
 * creates SO_RCVBUF and SO_SNDBUF of $BENCH_UDP_BUFFER bytes (the kernel
 * caps them at rmem_max/wmem_max). Janus (libnice) leaves its sockets at
 * the system default (rmem_default, 208 KiB here), and has no setting for
 * it; Nodo asks for 4 MiB, as performance.md §4.1 says every server should
 * get. Built by janus.py: cc -shared -fPIC -O2 -o udpbuf.so udpbuf.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/socket.h>

int socket(int domain, int type, int protocol) {
    static int (*real)(int, int, int);
    if (!real)
        real = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
    if (!real)
        return -1;
    int fd = real(domain, type, protocol);
    int kind = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0 && kind == SOCK_DGRAM && (domain == AF_INET || domain == AF_INET6)) {
        const char *env = getenv("BENCH_UDP_BUFFER");
        int size = env ? atoi(env) : 0;
        if (size > 0) {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
            setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
        }
    }
    return fd;
}
