/* File-system work as a program does it, printing what it sees; run natively and in the guest
   with the same tree, the outputs must match. usage: filetest DIR */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int cmp(const void *a, const void *b) { return strcmp(*(char **)a, *(char **)b); }

static void list(const char *path) {
    DIR *d = opendir(path);
    char *names[256]; int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) && n < 256) names[n++] = strdup(e->d_name);
    if (d) closedir(d);
    qsort(names, n, sizeof *names, cmp);
    printf("ls %s:", path);
    for (int i = 0; i < n; i++) printf(" %s", names[i]);
    printf("\n");
}

static unsigned long sum_file(const char *path, long *size) {
    FILE *f = fopen(path, "rb");
    unsigned long h = 5381; int c; *size = 0;
    if (!f) return 0;
    while ((c = getc(f)) != EOF) { h = h * 33 + c; (*size)++; }
    fclose(f);
    return h;
}

int main(int argc, char **argv) {
    if (argc < 2 || chdir(argv[1])) { perror("chdir"); return 2; }
    char cwd[256]; getcwd(cwd, sizeof cwd);
    list(".");
    long size; unsigned long h = sum_file("input.txt", &size);
    printf("input.txt: %ld bytes, hash %lx\n", size, h);
    int fd = open("out.txt", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    for (int i = 0; i < 3000; i++) dprintf(fd, "line %d of the output file\n", i);
    close(fd);
    fd = open("out.txt", O_WRONLY | O_APPEND);
    write(fd, "appended\n", 9);
    fsync(fd);
    close(fd);
    h = sum_file("out.txt", &size);
    printf("out.txt: %ld bytes, hash %lx\n", size, h);
    fd = open("out.txt", O_RDWR);
    pwrite(fd, "XXXX", 4, 5000);
    ftruncate(fd, 70000);
    close(fd);
    h = sum_file("out.txt", &size);
    printf("after pwrite+truncate: %ld bytes, hash %lx\n", size, h);
    mkdir("sub", 0755);
    rename("out.txt", "sub/moved.txt");
    printf("rename: stat old %d, new %d\n", access("out.txt", F_OK), access("sub/moved.txt", F_OK));
    struct stat st;
    stat("sub/moved.txt", &st);
    printf("stat: size %ld regular %d\n", (long)st.st_size, S_ISREG(st.st_mode));
    list("sub");
    printf("unlink: %d, rmdir nonempty: %d errno %d\n", unlink("input.txt"), rmdir("sub"), errno);
    unlink("sub/moved.txt");
    printf("rmdir: %d\n", rmdir("sub"));
    printf("open missing: %d errno %d\n", open("nope", O_RDONLY), errno);
    list(".");
    return 0;
}
