# hello for linux/riscv64 (bashbrew arch: riscv64), RV64GC / LP64D
# Raw Linux syscalls (ecall, number in a7), no libc: write(1, msg, len); exit(0)
	.section .rodata		# defined first: li needs len as a known constant
msg:	.ascii	"Hello from imgraph! This image runs on linux/riscv64 (riscv64).\n"
	.set	len, . - msg

	.text
	.globl	_start
_start:
	li	a0, 1			# fd = stdout
	lla	a1, msg			# buf (PC-relative)
	li	a2, len			# count
	li	a7, 64			# SYS_write
	ecall
	li	a0, 0			# status = 0
	li	a7, 93			# SYS_exit
	ecall

	.section .note.GNU-stack,"",@progbits
