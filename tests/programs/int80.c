/* int $0x80: the 32-bit system call table with 32-bit registers (upper halves ignored), ENOSYS for
   calls it lacks, and exit with the status in ebx. */
#include <stdio.h>
#include <unistd.h>
static const char msg[] = "hello via int80\n";
static long int80(long nr, long b, long c, long d) {
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(b), "c"(c), "d"(d) : "memory");
    return ret;
}
int main(void) {
    long r = int80(4, 1 | (7L << 32), (long)msg | (1L << 32), sizeof msg - 1);
    printf("write=%ld\n", r);
    printf("read_badfd=%ld\n", int80(3, -1, (long)msg, 1));
    printf("nr17=%ld nr500=%ld\n", int80(17, 0, 0, 0), int80(500, 0, 0, 0));
    fflush(stdout);
    int80(1, 42 | (1L << 32), 0, 0);
    return 1;
}
