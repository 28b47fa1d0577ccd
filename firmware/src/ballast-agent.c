/* The guest agent: runs programs for the host, like qemu-ga over a serial line.
 *
 * Protocol on /dev/ttyS1, one request per line:
 *   host:  RUN<US>path<US>arg1<US>...\n    (US is the byte 0x1f)
 *   agent: EXIT <wait status>\n            once the program has ended
 * The agent says READY\n when it starts. The program's stdin, stdout and stderr are the
 * agent's own: the console. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_LINE 4096
#define MAX_ARGS 64

static int channel;

static void say(const char *text) {
    size_t n = strlen(text);
    while (n > 0) {
        ssize_t w = write(channel, text, n);
        if (w <= 0) return;
        text += w;
        n -= (size_t)w;
    }
}

static int read_line(char *line, size_t size) {
    size_t n = 0;
    for (;;) {
        char c;
        ssize_t r = read(channel, &c, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        if (c == '\n') break;
        if (n + 1 < size) line[n++] = c;
    }
    line[n] = 0;
    return (int)n;
}

static void run(char **argv) {
    char reply[64];
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(reply, sizeof reply, "ERROR %d\n", errno);
        say(reply);
        return;
    }
    if (pid == 0) {
        execv(argv[0], argv);
        dprintf(2, "ballast-agent: %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    snprintf(reply, sizeof reply, "EXIT %d\n", status);
    say(reply);
}

int main(void) {
    channel = open("/dev/ttyS1", O_RDWR);
    if (channel < 0) {
        perror("ballast-agent: /dev/ttyS1");
        return 1;
    }
    say("READY\n");
    static char line[MAX_LINE];
    while (read_line(line, sizeof line) >= 0) {
        char *argv[MAX_ARGS + 1];
        int argc = 0;
        char *field = line;
        for (;;) {
            char *sep = strchr(field, '\x1f');
            if (sep) *sep = 0;
            if (argc < MAX_ARGS) argv[argc++] = field;
            if (!sep) break;
            field = sep + 1;
        }
        argv[argc] = NULL;
        if (strcmp(argv[0], "RUN") == 0 && argc >= 2) {
            run(argv + 1);
        } else {
            say("ERROR unknown request\n");
        }
    }
    return 0;
}
