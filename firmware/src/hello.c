/*
 * hello [EXIT_CODE]
 *
 * Prints "Hello from the Ballast guest!" and exits with atoi(EXIT_CODE)
 * (or 0 when no argument is given).  Used to test basic output and exit
 * status propagation in the Ballast emulator.
 */
#include <stdio.h>
#include <stdlib.h>

/* A static stdout buffer: keeps glibc stdio from probing the fd with
 * fstat and from malloc'ing a buffer, so the guest only needs write,
 * brk/mmap and exit_group beyond glibc's static startup. */
static char outbuf[4096];

int main(int argc, char **argv)
{
    setvbuf(stdout, outbuf, _IOLBF, sizeof outbuf);
    printf("Hello from the Ballast guest!\n");
    if (argc > 1)
        return atoi(argv[1]);
    return 0;
}
