/* fetch-url.exe: one HTTP GET of http://127.0.0.1:PORT/PATH from inside Wine, for the Wine
 * end-to-end test. It prints the raw answer (status line, headers, body) to stdout and sends
 * nothing else. The test needs a *Windows* process of the test's user to talk to the agent's
 * loopback sign-in listener: the agent accepts a redirect only from a socket whose owning process
 * runs as its own user (GetExtendedTcpTable + the process token), and a Linux process of the test
 * is no Windows process at all. Built by the test into its scratch directory with mingw; never
 * shipped, never installed into the prefix. */
#include <winsock2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    static const char prefix[] = "http://127.0.0.1:";
    if (argc != 2 || strncmp(argv[1], prefix, sizeof prefix - 1) != 0) {
        fputs("usage: fetch-url http://127.0.0.1:PORT/PATH\n", stderr);
        return 2;
    }
    char *end = NULL;
    long port = strtol(argv[1] + sizeof prefix - 1, &end, 10);
    if (port <= 0 || port > 65535 || !end || *end != '/') {
        fputs("fetch-url: no port and path in the URL\n", stderr);
        return 2;
    }
    WSADATA wsa;
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) {
        fputs("fetch-url: WSAStartup failed\n", stderr);
        return 1;
    }
    SOCKET s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((u_short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s == INVALID_SOCKET || connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) {
        fprintf(stderr, "fetch-url: cannot connect (%d)\n", WSAGetLastError());
        return 1;
    }
    static char request[16384];
    int n = snprintf(request, sizeof request,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%ld\r\nConnection: close\r\n\r\n", end, port);
    if (n <= 0 || n >= (int)sizeof request) {
        fputs("fetch-url: URL too long\n", stderr);
        return 2;
    }
    for (int sent = 0; sent < n;) {
        int k = send(s, request + sent, n - sent, 0);
        if (k <= 0) {
            fprintf(stderr, "fetch-url: send failed (%d)\n", WSAGetLastError());
            return 1;
        }
        sent += k;
    }
    char buffer[4096];
    int got;
    while ((got = recv(s, buffer, sizeof buffer, 0)) > 0) {
        fwrite(buffer, 1, (size_t)got, stdout);
    }
    closesocket(s);
    WSACleanup();
    return fflush(stdout) == 0 ? 0 : 1;
}
