# hello for linux/386 (bashbrew arch: i386)
# Raw Linux syscalls (int $0x80), no libc: write(1, msg, len); exit(0)
	.text
	.globl	_start
_start:
	mov	$4, %eax		# SYS_write
	mov	$1, %ebx		# fd = stdout
	mov	$msg, %ecx		# buf
	mov	$len, %edx		# count
	int	$0x80
	mov	$1, %eax		# SYS_exit
	xor	%ebx, %ebx		# status = 0
	int	$0x80

	.section .rodata
msg:	.ascii	"Hello from imgraph! This image runs on linux/386 (i386).\n"
	.set	len, . - msg

	.section .note.GNU-stack,"",@progbits
