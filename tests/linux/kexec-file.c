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
//   kexec-file peek ADDRESS WIDTH:OFFSET...  reads little-endian fields (WIDTH 8, 16, 32
//                                           or 64 bits) at physical ADDRESS + OFFSET
//                                           through /dev/mem and prints them in decimal,
//                                           space-separated, on one line: the park
//                                           table in one process instead of one
//                                           `devmem` per field
//
// Exit status 0 on success; on failure a message naming the step and the errno.
#include <errno.h>
#include <fcntl.h>
#include <linux/reboot.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

// Parses "WIDTH:OFFSET"; 0 on success.
static int field(const char *text, unsigned *width, unsigned long *offset) {
    char *end;
    unsigned long w = strtoul(text, &end, 10);
    if (*end != ':' || (w != 8 && w != 16 && w != 32 && w != 64))
        return -1;
    const char *rest = end + 1;
    *offset = strtoul(rest, &end, 0);
    if (end == rest || *end != 0)
        return -1;
    *width = (unsigned)w;
    return 0;
}

static int peek(const char *address_text, int count, char **fields) {
    char *end;
    unsigned long long address = strtoull(address_text, &end, 0);
    if (end == address_text || *end != 0) {
        fprintf(stderr, "kexec-file: peek: bad address '%s'\n", address_text);
        return 2;
    }
    unsigned long span = 0;
    for (int i = 0; i < count; i++) {
        unsigned width;
        unsigned long offset;
        if (field(fields[i], &width, &offset) != 0) {
            fprintf(stderr, "kexec-file: peek: bad field '%s' (expected WIDTH:OFFSET, WIDTH 8/16/32/64)\n",
                    fields[i]);
            return 2;
        }
        if (offset + width / 8 > span)
            span = offset + width / 8;
    }
    long page = sysconf(_SC_PAGESIZE);
    unsigned long long base = address & ~(unsigned long long)(page - 1);
    size_t length = (size_t)(address - base) + span;
    int fd = open("/dev/mem", O_RDONLY | O_SYNC | O_CLOEXEC);
    if (fd < 0)
        return fail("open", "/dev/mem");
    const volatile uint8_t *map = mmap(NULL, length, PROT_READ, MAP_SHARED, fd, (off_t)base);
    if (map == MAP_FAILED)
        return fail("mmap /dev/mem at", address_text);
    const volatile uint8_t *at = map + (address - base);
    for (int i = 0; i < count; i++) {
        unsigned width;
        unsigned long offset;
        field(fields[i], &width, &offset);
        unsigned long long value = 0;
        switch (width) {
        case 8: value = *(const volatile uint8_t *)(at + offset); break;
        case 16: value = *(const volatile uint16_t *)(at + offset); break;
        case 32: value = *(const volatile uint32_t *)(at + offset); break;
        default: value = *(const volatile uint64_t *)(at + offset); break;
        }
        printf("%s%llu", i ? " " : "", value);
    }
    printf("\n");
    munmap((void *)map, length);
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "peek") == 0)
        return peek(argv[2], argc - 3, argv + 3);
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
    fprintf(stderr, "usage: kexec-file load KERNEL INITRD CMDLINE | kexec-file exec | kexec-file drain"
                    " | kexec-file peek ADDRESS WIDTH:OFFSET...\n");
    return 2;
}
