// kexec-file: the two system calls of `kexec -s -l ...` and `kexec -e`, for the
// initramfs of parkboot's Linux kexec loop. Linked statically, so the initramfs
// needs no shared libraries (Debian's kexec-tools binary needs libxenctrl and the
// Xen libraries behind it).
//
//   kexec-file load KERNEL INITRD CMDLINE   kexec_file_load(2): the running kernel
//                                           parses and places the bzImage itself
//   kexec-file exec                         reboot(LINUX_REBOOT_CMD_KEXEC), after the
//                                           console has sent what was written to it
//   kexec-file drain                        tcdrain(3) on the console: returns once every
//                                           byte written to it has left the serial port,
//                                           so a line printed just before the run ends
//                                           (or kexecs) is not lost
//
// Exit status 0 on success; on failure a message naming the step and the errno.
#include <errno.h>
#include <fcntl.h>
#include <linux/reboot.h>
#include <stdio.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

static int fail(const char *what, const char *arg) {
    fprintf(stderr, "kexec-file: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "",
            strerror(errno));
    return 1;
}

static int load(const char *kernel, const char *initrd, const char *cmdline) {
    int kernel_fd = open(kernel, O_RDONLY | O_CLOEXEC);
    if (kernel_fd < 0)
        return fail("open", kernel);
    int initrd_fd = open(initrd, O_RDONLY | O_CLOEXEC);
    if (initrd_fd < 0)
        return fail("open", initrd);
    // The command line length counts its terminating NUL: the kernel checks that
    // the last byte it copies is 0.
    unsigned long cmdline_len = strlen(cmdline) + 1;
    if (syscall(SYS_kexec_file_load, kernel_fd, initrd_fd, cmdline_len, cmdline, 0UL) != 0)
        return fail("kexec_file_load", kernel);
    close(kernel_fd);
    close(initrd_fd);
    return 0;
}

static int drain(void) {
    int fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return fail("open", "/dev/console");
    if (tcdrain(fd) != 0)
        return fail("tcdrain", "/dev/console");
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "load") == 0)
        return load(argv[2], argv[3], argv[4]);
    if (argc == 2 && strcmp(argv[1], "drain") == 0)
        return drain();
    if (argc == 2 && strcmp(argv[1], "exec") == 0) {
        // The serial log is the test's record: let it out before the kernel goes.
        drain();
        // Returns only when no kernel is loaded (or on EPERM).
        reboot(LINUX_REBOOT_CMD_KEXEC);
        return fail("reboot(LINUX_REBOOT_CMD_KEXEC)", NULL);
    }
    fprintf(stderr, "usage: kexec-file load KERNEL INITRD CMDLINE | kexec-file exec | kexec-file drain\n");
    return 2;
}
