/* writefile PATH TEXT: writes TEXT to PATH (as `echo TEXT > PATH` would, without the newline). */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: writefile PATH TEXT\n"); return 2; }
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { perror(argv[1]); return 1; }
    if (write(fd, argv[2], strlen(argv[2])) != (ssize_t)strlen(argv[2])) { perror("write"); return 1; }
    return close(fd) == 0 ? 0 : 1;
}
