/* syscalls [N]: N cheap system calls (getppid) and one line; the benchmark of the system call
 * path (bench/run.py syscalls: untraced against strace). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000, sum = 0;
	for (long i = 0; i < n; i++)
		sum += syscall(SYS_getppid);
	printf("syscalls: %ld getppid calls, sum %ld\n", n, sum);
	return 0;
}
