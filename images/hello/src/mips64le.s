# hello for linux/mips64le (bashbrew arch: mips64le), n64 ABI little-endian
# Raw Linux n64 syscalls (syscall, number in v0), no libc: write(1, msg, len); exit(0)
	.section .rodata		# defined first: li needs len as a known constant
msg:	.ascii	"Hello from imgraph! This image runs on linux/mips64le (mips64le).\n"
	.set	len, . - msg

	.text
	.globl	__start
	.globl	_start
__start:
_start:
	li	$a0, 1			# fd = stdout
	dla	$a1, msg		# buf (absolute, non-PIC)
	li	$a2, len		# count
	li	$v0, 5001		# SYS_write (n64)
	syscall
	li	$a0, 0			# status = 0
	li	$v0, 5058		# SYS_exit (n64)
	syscall

	.section .note.GNU-stack,"",@progbits
