# hello for linux/amd64 (bashbrew arch: amd64)
# Raw Linux syscalls, no libc: write(1, msg, len); exit(0)
	.text
	.globl	_start
_start:
	mov	$1, %eax		# SYS_write
	mov	$1, %edi		# fd = stdout
	lea	msg(%rip), %rsi		# buf
	mov	$len, %edx		# count
	syscall
	mov	$60, %eax		# SYS_exit
	xor	%edi, %edi		# status = 0
	syscall

	.section .rodata
msg:	.ascii	"Hello from imgraph! This image runs on linux/amd64 (amd64).\n"
	.set	len, . - msg

	.section .note.GNU-stack,"",@progbits
