// hello for linux/arm64/v8 (bashbrew arch: arm64v8)
// Raw Linux syscalls (svc #0), no libc: write(1, msg, len); exit(0)
	.text
	.globl	_start
_start:
	mov	x0, #1			// fd = stdout
	adr	x1, msg			// buf (PC-relative)
	mov	x2, #len		// count
	mov	x8, #64			// SYS_write
	svc	#0
	mov	x0, #0			// status = 0
	mov	x8, #93			// SYS_exit
	svc	#0

msg:	.ascii	"Hello from imgraph! This image runs on linux/arm64/v8 (arm64v8).\n"
	.set	len, . - msg

	.section .note.GNU-stack,"",%progbits
