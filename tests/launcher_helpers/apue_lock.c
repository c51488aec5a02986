/* The classic single-instance check ("already_running" in APUE, 13.5): open the pid file,
 * take a POSIX write lock on the whole file with F_SETLK, then truncate it and write our PID.
 * Exit 1 when another process holds the lock. While holding it, wait until stdin closes
 * (the test controls our lifetime) and print "locked PID" once the lock is ours. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s LOCKFILE\n", argv[0]);
        return 2;
    }
    int fd = open(argv[1], O_RDWR | O_CREAT, 0644);
    if (fd < 0) {
        perror("open");
        return 2;
    }
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 0;
    if (fcntl(fd, F_SETLK, &fl) < 0) {
        if (errno == EACCES || errno == EAGAIN) {
            printf("busy\n");
            return 1;
        }
        perror("fcntl");
        return 2;
    }
    char buf[32];
    if (ftruncate(fd, 0) < 0) {
        perror("ftruncate");
        return 2;
    }
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (write(fd, buf, (size_t)n) != n) {
        perror("write");
        return 2;
    }
    printf("locked %ld\n", (long)getpid());
    fflush(stdout);
    char c;
    while (read(STDIN_FILENO, &c, 1) > 0) {
    }
    return 0;
}
