# hello for linux/ppc64le (bashbrew arch: ppc64le), ELFv2 little-endian
# Raw Linux syscalls (sc, number in r0), no libc: write(1, msg, len); exit(0)
	.abiversion 2
	.text
	.globl	_start
_start:
	bl	1f			# get our own address in LR (PC-relative,
1:	mflr	4			#   no TOC needed)
	addi	4, 4, msg - 1b		# r4 = buf
	li	3, 1			# r3 = fd = stdout
	li	5, len			# r5 = count
	li	0, 4			# SYS_write
	sc
	li	3, 0			# status = 0
	li	0, 1			# SYS_exit
	sc

msg:	.ascii	"Hello from imgraph! This image runs on linux/ppc64le (ppc64le).\n"
	.set	len, . - msg

	.section .note.GNU-stack,"",@progbits
