/* cli_health.c: `reel health`, a container healthcheck that needs no curl:
 * GET /healthz from a worker's metrics port; exit 0 on HTTP 200. */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "workers/workers.h"

int cmd_health(int argc, char **argv) {
    const char *host = "127.0.0.1", *port = "9464";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = argv[++i];
        else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
            host = argv[++i];
        else {
            fprintf(stderr,
                    "usage: reel health [--host H] [--port P]   (GET /healthz; exit 0 on 200)\n");
            return 2;
        }
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "reel health: %s:%s: %s\n", host, port, gai_strerror(rc));
        return 1;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    struct timeval tv = {5, 0};
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        fprintf(stderr, "reel health: cannot connect to %s:%s\n", host, port);
        if (fd >= 0) close(fd);
        freeaddrinfo(ai);
        return 1;
    }
    freeaddrinfo(ai);
    char req[256], resp[512];
    int n = snprintf(req, sizeof req, "GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n", host);
    ssize_t got = 0;
    if (write(fd, req, (size_t)n) == n) got = read(fd, resp, sizeof resp - 1);
    close(fd);
    if (got <= 0) {
        fprintf(stderr, "reel health: no answer from %s:%s\n", host, port);
        return 1;
    }
    resp[got] = '\0';
    int ok = strncmp(resp, "HTTP/1.", 7) == 0 && strncmp(resp + 8, " 200", 4) == 0;
    char *eol = strpbrk(resp, "\r\n");
    if (eol) *eol = '\0';
    printf("%s\n", resp);
    return ok ? 0 : 1;
}
