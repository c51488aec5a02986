/* Run a command with memory-deny-write-execute (PR_SET_MDWE, Linux 6.3+), the kernel's form of
 * what MemoryDenyWriteExecute=yes does in a unit.  usage: mdwe PROGRAM ARGS...
 * Exit 3 when the kernel does not support it. */
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>

#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#endif
#ifndef PR_MDWE_REFUSE_EXEC_GAIN
#define PR_MDWE_REFUSE_EXEC_GAIN 1
#endif

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PROGRAM ARGS...\n", argv[0]);
        return 2;
    }
    if (prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0L, 0L, 0L) != 0) {
        perror("prctl(PR_SET_MDWE)");
        return 3;
    }
    execvp(argv[1], argv + 1);
    perror("execvp");
    return 127;
}
