# hello for linux/s390x (bashbrew arch: s390x), 64-bit z/Architecture
# Raw Linux syscalls (svc NR), no libc: write(1, msg, len); exit(0)
	.text
	.globl	_start
_start:
	lghi	%r2, 1			# fd = stdout
	larl	%r3, msg		# buf (PC-relative)
	lghi	%r4, len		# count
	svc	4			# SYS_write
	lghi	%r2, 0			# status = 0
	svc	1			# SYS_exit

	.section .rodata
	.balign	2			# larl needs an even address
msg:	.ascii	"Hello from imgraph! This image runs on linux/s390x (s390x).\n"
	.set	len, . - msg

	.section .note.GNU-stack,"",@progbits
