"""The seccomp filter: system calls the child may not make, compiled with libseccomp through ctypes."""

import ctypes
import ctypes.util
import errno
import functools
import os
import tempfile

from .limits import SandboxUnavailable

#: System calls the child may not make: they would let it build namespaces, mount
#: file systems, trace other processes or reach rarely hardened kernel interfaces.
BLOCKED_SYSCALLS = (
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "bpf",
    "keyctl",
    "add_key",
    "request_key",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "swapon",
    "swapoff",
    "reboot",
    "open_by_handle_at",
    "name_to_handle_at",
    "acct",
    "quotactl",
) + (
    # Objects that outlive the process that made them, in the IPC namespace a warm slot keeps
    # from one student to the next: SysV shared memory, semaphores, message queues, POSIX
    # message queues. Nothing the kit runs needs them (POSIX shm is files in /dev/shm).
    "shmget",
    "semget",
    "msgget",
    "mq_open",
)
#: Refused only where no cgroup limits memory: memory that RLIMIT_DATA does not count and no
#: tmpfs size caps (memfd files, shared anonymous mappings), and widening the CPU affinity that
#: stands in for the cgroup cpu quota.
FALLBACK_BLOCKED_SYSCALLS = ("memfd_create", "sched_setaffinity")
CLONE_NEWUSER = 0x10000000
MAP_SHARED, MAP_ANONYMOUS = 0x01, 0x20


def load_libseccomp():
    """libseccomp through ctypes, or None when it is not installed."""
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None


class _ArgCmp(ctypes.Structure):
    """libseccomp's ``struct scmp_arg_cmp``."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


@functools.cache
def seccomp_program(fallback=False):
    """The filter (allow everything except :data:`BLOCKED_SYSCALLS`) compiled to BPF: bytes.

    ``fallback=True`` (no cgroups) also refuses :data:`FALLBACK_BLOCKED_SYSCALLS` and
    ``mmap`` with MAP_SHARED|MAP_ANONYMOUS.

    Blocked calls fail with EPERM; ``clone`` with CLONE_NEWUSER fails with EPERM and
    ``clone3`` with ENOSYS so that libc falls back to ``clone``, whose flags the
    filter can see. Compiled once per grader process and kept in memory: no file that
    another thread, or a later process with the same pid, could overwrite.
    """
    lib = load_libseccomp()
    if lib is None:
        raise SandboxUnavailable("libseccomp.so.2 is missing: `apt-get install libseccomp2`.")
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    allow, deny = 0x7FFF0000, lambda err: 0x00050000 | err  # SCMP_ACT_ALLOW, SCMP_ACT_ERRNO(err)
    ctx = lib.seccomp_init(allow)
    try:

        def add(name, action, *comparisons):
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number < 0:  # not a system call on this architecture
                return
            array = (_ArgCmp * max(len(comparisons), 1))(*comparisons)
            if lib.seccomp_rule_add_array(ctx, action, number, len(comparisons), array) != 0:
                raise SandboxUnavailable(f"libseccomp refused the rule for {name}")

        masked_eq = 7  # SCMP_CMP_MASKED_EQ: (arg & datum_a) == datum_b
        for name in BLOCKED_SYSCALLS + FALLBACK_BLOCKED_SYSCALLS * fallback:
            add(name, deny(errno.EPERM))
        add("clone3", deny(errno.ENOSYS))
        add("clone", deny(errno.EPERM), _ArgCmp(0, masked_eq, CLONE_NEWUSER, CLONE_NEWUSER))
        if fallback:
            shared_anonymous = MAP_SHARED | MAP_ANONYMOUS
            add("mmap", deny(errno.EPERM), _ArgCmp(3, masked_eq, shared_anonymous, shared_anonymous))
        with tempfile.TemporaryFile() as exported:
            if lib.seccomp_export_bpf(ctx, exported.fileno()) != 0:
                raise SandboxUnavailable("libseccomp could not export the BPF program")
            exported.seek(0)
            return exported.read()
    finally:
        lib.seccomp_release(ctx)


def open_seccomp_program(fallback=False):
    """A new descriptor, at offset 0, holding :func:`seccomp_program` for ``bwrap --seccomp FD``.

    bwrap reads the descriptor to its end, so every run needs its own; the caller closes it.
    """
    program = seccomp_program(fallback)  # first: if compiling fails, no descriptor is left open
    descriptor = os.memfd_create("handin3-seccomp", os.MFD_CLOEXEC)
    if os.write(descriptor, program) != len(program):
        os.close(descriptor)
        raise SandboxUnavailable("could not write the seccomp program to a memfd")
    os.lseek(descriptor, 0, os.SEEK_SET)
    return descriptor
