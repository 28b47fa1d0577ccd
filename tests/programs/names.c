/* File names as bytes: list a directory (sorted), stat and read every entry by the name readdir gave,
   then create, rename into and list a directory whose name is not UTF-8, chdir into it and getcwd.
   Names are printed with every byte outside printable ASCII as \xNN. Run natively and in the guest. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void put_name(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p >= 0x20 && *p < 0x7f && *p != '\\')
            putchar(*p);
        else
            printf("\\x%02x", *p);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        perror("opendir");
        exit(1);
    }
    char *names[256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, n, sizeof names[0], by_name);
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        struct stat st;
        put_name(names[i]);
        if (stat(path, &st) != 0) {
            printf(" stat failed\n");
            continue;
        }
        printf(" mode=%o size=%ld", (unsigned)st.st_mode, (long)st.st_size);
        if (S_ISREG(st.st_mode)) {
            char buf[256];
            int fd = open(path, O_RDONLY);
            ssize_t got = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
            buf[got > 0 ? got : 0] = 0;
            printf(" content=");
            put_name(buf);
            if (fd >= 0)
                close(fd);
        }
        putchar('\n');
        free(names[i]);
    }
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/names";
    list(dir);
    /* a new name that is not UTF-8, made by the program */
    char newdir[4096], newfile[4096], cwd[4096];
    snprintf(newdir, sizeof newdir, "%s/new-\xff\xfe", dir);
    snprintf(newfile, sizeof newfile, "%s/new-\xff\xfe/f-\xc3\x28", dir);
    if (mkdir(newdir, 0755) != 0 || close(open(newfile, O_CREAT | O_WRONLY, 0644)) != 0) {
        perror("create");
        return 1;
    }
    char moved[4096];
    snprintf(moved, sizeof moved, "%s/new-\xff\xfe/g-\x80", dir);
    if (rename(newfile, moved) != 0) {
        perror("rename");
        return 1;
    }
    list(newdir);
    if (chdir(newdir) != 0 || !getcwd(cwd, sizeof cwd)) {
        perror("chdir");
        return 1;
    }
    const char *tail = strrchr(cwd, '/');
    printf("cwd ends in ");
    put_name(tail ? tail : cwd);
    putchar('\n');
    return 0;
}
